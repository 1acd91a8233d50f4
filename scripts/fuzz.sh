#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another, each for a set time or number of executions, and
# prints (and appends to fuzz/target/fuzz-runs.tsv) the executions each reached.
#
#   scripts/fuzz.sh [--time SECONDS | --runs N] [--sanitizer address|none] [--merge] [TARGET...]
#
#   --time S       seconds per target (default 60 without --runs)
#   --runs N       stop each target after N executions (with --time too: at whichever comes first)
#   --sanitizer    address (needs a nightly toolchain) or none; default: address when `cargo +nightly` works,
#                  none otherwise
#   --merge        afterwards, fold what was found into the committed corpus fuzz/corpus/<target>/ with
#                  libFuzzer's set-cover merge, keeping at most $KEEP (default 16) inputs per target plus
#                  every input named regression-* (inputs that once found a bug)
#   --merge-only   only the merge step (no fuzzing)
#   --no-build     run the binaries already built (fuzz/target/<host>/release/<target>) as they are
#   TARGET...      default: every target (`cargo fuzz list`)
#
# Toolchains: cargo-fuzz needs nightly-only compiler flags. With a nightly toolchain it is used as is. With only
# the stable toolchain (as on this project's machines) the script sets RUSTC_BOOTSTRAP=1, which lets stable rustc
# accept those flags, and builds without a sanitizer (`-s none`): libFuzzer's coverage guidance, panics, aborts,
# debug assertions (integer overflow) and the memory limits still apply. cargo-fuzz is installed with
# `cargo install cargo-fuzz` if it is missing. FUZZ_STABLE=1 forces the stable path even where nightly exists.
#
# New inputs are written to fuzz/target/work/<target>/ (not committed); crashes to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

TIME=""
RUNS=""
SAN=""
MERGE=0
NOBUILD=0
KEEP=${KEEP:-16}
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) TIME="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --sanitizer) SAN="$2"; shift 2 ;;
    --merge) MERGE=1; shift ;;
    --merge-only) MERGE=2; shift ;;
    --no-build) NOBUILD=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz =="
  cargo install cargo-fuzz --locked
fi

if [ "${FUZZ_STABLE:-0}" != 1 ] && cargo +nightly --version >/dev/null 2>&1; then
  TOOLCHAIN=(+nightly)
  SAN=${SAN:-address}
  echo "== toolchain: nightly ($(cargo +nightly --version)), sanitizer: $SAN =="
else
  TOOLCHAIN=()
  export RUSTC_BOOTSTRAP=1
  if [ "${SAN:-none}" != none ]; then
    echo "no nightly toolchain: sanitizer '$SAN' needs one; building with -s none" >&2
  fi
  SAN=none
  echo "== toolchain: stable with RUSTC_BOOTSTRAP=1 ($(cargo --version)), no sanitizer =="
fi

cd fuzz
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cargo "${TOOLCHAIN[@]}" fuzz list)
fi

echo "== building ${#TARGETS[@]} targets =="
# Build once, then run the binaries directly (`cargo fuzz run` would rebuild with other debug-info settings).
for t in "${TARGETS[@]}"; do
  # --merge-only uses the binaries already built.
  if [ $MERGE -eq 2 ] || [ $NOBUILD -eq 1 ]; then
    [ -x "target/$(rustc -vV | sed -n 's/^host: //p')/release/$t" ] && continue
  fi
  cargo "${TOOLCHAIN[@]}" fuzz build -O -a -s "$SAN" "$t"
done
BIN=target/$(rustc -vV | sed -n 's/^host: //p')/release

# Each input must finish in 30 s (a hang is a bug too). Allocations are not capped by libFuzzer's malloc hook
# (under ASan it would report the `Error::TooLarge` paths, which ask for more than the address space and
# get a null pointer back from ASan's allocator instead, as `try_reserve` expects); the RSS limit stays.
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1}
# The loss targets make libFuzzer's thread the one thread of rayon's pool (the harness's
# `single_threaded`); anything else that asks rayon for threads gets one too.
export RAYON_NUM_THREADS=1
OPTS=(-rss_limit_mb=4096 -malloc_limit_mb=1073741824 -max_len=4096 -timeout=30)
LIMIT=()
[ -n "$RUNS" ] && LIMIT+=(-runs="$RUNS")
[ -n "$TIME" ] && LIMIT+=(-max_total_time="$TIME")
[ ${#LIMIT[@]} -eq 0 ] && LIMIT=(-max_total_time=60)
mkdir -p target/work
LOG=target/fuzz-runs.tsv
[ -f "$LOG" ] || printf 'date\ttarget\tsanitizer\texecutions\tseconds\tresult\n' >"$LOG"
FAILED=0
for t in "${TARGETS[@]}"; do
  [ $MERGE -eq 2 ] && break
  mkdir -p "target/work/$t" "corpus/$t"
  start=$(date +%s)
  set +e
  mkdir -p "artifacts/$t"
  "$BIN/$t" -artifact_prefix="artifacts/$t/" "${LIMIT[@]}" "${OPTS[@]}" -print_final_stats=1 \
    "target/work/$t" "corpus/$t" >"target/work/$t.log" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  execs=$(grep -m1 'stat::number_of_executed_units' "target/work/$t.log" | awk '{print $2}')
  result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (exit $rc; see fuzz/target/work/$t.log and fuzz/artifacts/$t/)"
    FAILED=1
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$SAN" "${execs:-?}" "$secs" "$result" >>"$LOG"
  printf '%-22s %12s executions in %5ss  %s\n' "$t" "${execs:-?}" "$secs" "$result"
done

if [ $MERGE -ge 1 ]; then
  echo "== merging new inputs into fuzz/corpus (at most $KEEP per target) =="
  for t in "${TARGETS[@]}"; do
    tmp=$(mktemp -d)
    "$BIN/$t" -set_cover_merge=1 "${OPTS[@]}" "$tmp" "corpus/$t" "target/work/$t" \
      >"target/work/$t.merge.log" 2>&1 || true
    if [ -n "$(ls -A "$tmp")" ]; then
      # Inputs named regression-* (ones that once found a bug) are always kept.
      find "corpus/$t" -maxdepth 1 -type f ! -name 'regression-*' -delete
      # The set-cover merge keeps the inputs that add coverage; keep the $KEEP largest (they cover the most).
      mapfile -t keep < <(ls -S "$tmp" | head -n "$KEEP")
      for f in "${keep[@]}"; do cp "$tmp/$f" "corpus/$t/$f"; done
    fi
    rm -rf "$tmp"
    echo "$t: $(ls "corpus/$t" | wc -l) corpus files"
  done
fi
exit $FAILED
