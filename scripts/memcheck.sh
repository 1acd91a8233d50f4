#!/usr/bin/env bash
# Memory-safety checks of infoloss's `unsafe` code (the SIMD kernels in crates/infoloss/src/kernels/ and the
# gemm call in kernels/linear_gemm.rs):
#
#   1. valgrind memcheck over the core test suite's binaries (release build with debug info): invalid reads and
#      writes, uses of uninitialized values, definite leaks. Valgrind emulates up to AVX2, so under it the
#      kernels run their AVX2 and scalar paths (`Isa::available()` reports what the emulated CPU has).
#   2. AddressSanitizer (`-Zsanitizer=address`), only where a nightly toolchain is installed (`cargo +nightly`);
#      otherwise the script says so and skips it. ASan runs natively, so it also covers the AVX-512 paths on
#      CPUs that have them.
#
#   scripts/memcheck.sh [--full] [--no-asan] [--dry-run]
#
# By default memcheck runs the tests that exercise every unsafe kernel: the library's unit tests (kernels at
# every instruction-set level) and, of the one integration-test binary (`integration`, tests/main.rs), the
# modules kernels, ce_extras_linear (gemm), fuzz_corpus (every public function on the fuzz corpora), nan_policy,
# oracle::info (the information measures' fast forward and backward kernels) and distill_in_place (gradients
# written over the logits), selected by test-name filters and skipping the dense accuracy sweeps of
# tests/kernels.rs (same code, millions of values). --full runs every test of every test binary of the crate
# (slow: valgrind runs code 20-50 times slower). --dry-run builds the binaries and prints what would run under
# valgrind (each binary, its filters, how many tests they select), and runs neither valgrind nor ASan. Known
# false positives are suppressed by scripts/memcheck.supp (see the reasons there). Exit status: 0 when no errors
# were found.
set -euo pipefail
cd "$(dirname "$0")/.."

FULL=0
ASAN=1
DRY=0
for a in "$@"; do
  case "$a" in
    --full) FULL=1 ;;
    --no-asan) ASAN=0 ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument $a" >&2; exit 2 ;;
  esac
done

status=0

echo "== valgrind memcheck =="
if ! command -v valgrind >/dev/null 2>&1; then
  echo "valgrind is not installed (apt-get install valgrind)" >&2
  exit 2
fi
valgrind --version
list=$(cargo test -p infoloss --release --tests --no-run --message-format=json 2>/dev/null |
  grep -o '"executable":"[^"]*"' | sed 's/"executable":"//; s/"$//')
# The default subset: the library's unit-test binary whole, and these modules of the integration-test binary
# `integration` (tests/main.rs; libtest runs the tests whose names contain any of the filters).
MODULE_FILTERS=(kernels:: ce_extras_linear:: fuzz_corpus:: nan_policy:: oracle::info:: distill_in_place::)
for exe in $list; do
  base=$(basename "$exe")
  extra=()
  if [ $FULL -eq 0 ]; then
    case "$base" in
      infoloss-*) ;;
      # The dense accuracy sweeps of tests/kernels.rs (the only tests named *sweep*) run the same kernel code on
      # millions of values: under valgrind they take most of an hour and add no memory-safety coverage.
      integration-*) extra=("${MODULE_FILTERS[@]}" --skip sweep) ;;
      *) continue ;;
    esac
  fi
  echo "-- $base ${extra[*]}"
  if [ $DRY -eq 1 ]; then
    "$exe" --list "${extra[@]}" 2>/dev/null | grep -c ': test$' | sed 's/^/   tests selected: /'
    continue
  fi
  start=$(date +%s)
  set +e
  valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --track-origins=yes --quiet --suppressions=scripts/memcheck.supp \
    "$exe" --test-threads=2 -q "${extra[@]}" >"target/memcheck-$base.log" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  summary=$(grep -E '^test result' "target/memcheck-$base.log" | tail -1)
  if [ $rc -eq 0 ]; then
    echo "   ok (${secs}s): no memcheck errors; $summary"
  else
    echo "   FAILED (exit $rc, ${secs}s): see target/memcheck-$base.log"
    grep -E '^==[0-9]+== (Invalid|Conditional|Use of uninit|[0-9,]+ bytes in)' "target/memcheck-$base.log" | head -5 || true
    status=1
  fi
done

echo "== AddressSanitizer =="
if [ $ASAN -eq 0 ] || [ $DRY -eq 1 ]; then
  echo "skipped (--no-asan or --dry-run)"
elif cargo +nightly --version >/dev/null 2>&1; then
  echo "nightly: $(cargo +nightly --version)"
  host=$(rustc -vV | sed -n 's/^host: //p')
  set +e
  # allocator_may_return_null: the tests of `Error::TooLarge` ask for more memory than exists and expect
  # `try_reserve` to fail, which ASan's allocator otherwise reports as an error.
  RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
    ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1" \
    CARGO_TARGET_DIR=target/asan cargo +nightly test -p infoloss --release --target "$host" --tests \
    >target/asan.log 2>&1
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    echo "   ok: $(grep -c '^test result: ok' target/asan.log) test binaries passed under ASan, no reports"
  else
    echo "   FAILED (exit $rc): see target/asan.log"
    grep -E 'ERROR: AddressSanitizer|^test result' target/asan.log | head -5 || true
    status=1
  fi
else
  echo "skipped: no nightly toolchain here (\`cargo +nightly\` is not installed and cannot be fetched);"
  echo "         -Zsanitizer=address needs one. valgrind memcheck above is the memory check on this machine."
fi
exit $status
