#!/usr/bin/env bash
# Builds mgscope and opens it on the demo dataset, on a fresh Debian 12 machine that has only the
# Rust toolchain: installs the system packages when missing, generates the demo dataset on the
# first run (into ${XDG_DATA_HOME:-~/.local/share}/mgscope/demo), then launches the window.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh
cargo build --release --locked

bin=target/release/mgscope
demo="${MGSCOPE_DEMO_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/mgscope/demo}"
if [[ ! -f "$demo/mgscope.sqlite" ]]; then
  "$bin" demo "$demo/release" --import "$demo"
fi

if [[ -z "${DISPLAY:-}" && -z "${WAYLAND_DISPLAY:-}" ]]; then
  echo "no display (DISPLAY / WAYLAND_DISPLAY unset): the demo dataset is ready in $demo;" >&2
  echo "open it from a desktop session with: $bin gui $demo" >&2
  exit 1
fi
exec "$bin" gui "$demo"
