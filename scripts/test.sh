#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, integration, fixtures, doc tests) and Python (pytest against the
# built extension module). Installs what the Python tests need into a local venv (.venv-test) by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust: cargo test --workspace =="
cargo test --workspace --release

if [ -f crates/infoloss-py/Cargo.toml ]; then
  echo "== Python: build the extension and run pytest =="
  PY=${PYTHON:-python3}
  if [ ! -x .venv-test/bin/python ]; then
    "$PY" -m venv .venv-test
  fi
  .venv-test/bin/python -m pip install --quiet --upgrade pip
  .venv-test/bin/python -m pip install --quiet "maturin>=1.16,<2" "numpy>=2" "pytest>=8"
  (cd crates/infoloss-py && VIRTUAL_ENV="$PWD/../../.venv-test" PATH="$PWD/../../.venv-test/bin:$PATH" \
    ../../.venv-test/bin/maturin develop --release --quiet)
  .venv-test/bin/python -m pytest -q crates/infoloss-py/tests
fi
echo "== all tests passed =="
