#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, integration, fixtures, doc tests) and Python (pytest against the
# installed package). Installs what the Python tests need into a local venv (.venv-test) by itself: numpy, pytest,
# torch 2.15, ml_dtypes and SciPy (so no infoloss.torch, bfloat16 or SciPy test is skipped: INFOLOSS_REQUIRE_TORCH=1
# makes such a skip a failure), then the package itself exactly as a user installs it,
# `pip install ./crates/infoloss-py`.
#
# Idempotent and quick when everything is installed: pip is only asked for the packages that are missing, and the
# package build reuses the workspace's cargo `target/` directory (maturin builds in the source tree), so an
# unchanged extension is not recompiled.
#
# Environment: PYTHON (the interpreter that creates the venv, default python3); TORCH_INDEX_URL (an index to get
# torch from, e.g. https://download.pytorch.org/whl/cpu for the CPU-only build).
#
# Note: this replaces an editable `maturin develop` install in .venv-test by a regular one; run `maturin develop`
# again in crates/infoloss-py for an editable install while working on the Python sources.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust: cargo test --workspace =="
cargo test --workspace --release

if [ -f crates/infoloss-py/Cargo.toml ]; then
  echo "== Python: install the package and run pytest =="
  PY=${PYTHON:-python3}
  VENV=.venv-test
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
  fi
  # Prints the requirements the venv does not satisfy yet (pip's own version parser; no network).
  missing() {
    "$VENV/bin/python" - "$@" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
from pip._vendor.packaging.requirements import Requirement

for spec in sys.argv[1:]:
    req = Requirement(spec)
    try:
        ok = req.specifier.contains(version(req.name), prereleases=True)
    except PackageNotFoundError:
        ok = False
    if not ok:
        print(spec)
EOF
  }
  need=$(missing "maturin>=1.16,<2" "numpy>=2" "pytest>=8" "ml_dtypes>=0.2" "scipy>=1.11" "safetensors>=0.4")
  if [ -n "$need" ]; then
    # shellcheck disable=SC2086 # one requirement per word
    "$VENV/bin/python" -m pip install --quiet $need
  fi
  if [ -n "$(missing "torch==2.15.*")" ]; then
    "$VENV/bin/python" -m pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.15.*"
  fi
  # The user's install command, as is (pip's build isolation fetches maturin into a throwaway environment, from
  # pip's cache after the first run). pip always rebuilds and reinstalls a local directory; the cargo build in it
  # is incremental, so an unchanged extension costs a few seconds.
  start=$(date +%s)
  "$VENV/bin/python" -m pip install --quiet ./crates/infoloss-py
  echo "pip install ./crates/infoloss-py: $(($(date +%s) - start)) s"
  # INFOLOSS_REQUIRE_TORCH: a torch, ml_dtypes or SciPy test that would skip fails instead (tests/conftest.py);
  # INFOLOSS_TEST_INSTALL: also install the package in fresh venvs, from the checkout and as a wheel
  # (tests/test_install.py).
  INFOLOSS_REQUIRE_TORCH=1 INFOLOSS_TEST_INSTALL=1 "$VENV/bin/python" -m pytest -q crates/infoloss-py/tests
fi
echo "== conformance: fixture cases per front end (passed / not supported / failed) =="
"${PYTHON:-python3}" scripts/conformance_table.py
echo "== all tests passed =="
