#!/usr/bin/env bash
# Installs the Debian 12 packages mgscope needs to build and run, only when missing.
# Used by both README commands (run-demo.sh and test.sh), so a fresh machine with only the
# Rust toolchain works.
set -euo pipefail

pkgs=(
  pkg-config clang libclang-dev                 # ffmpeg-sys-next runs bindgen
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev
  mesa-vulkan-drivers libvulkan1                # lavapipe: a wgpu adapter without a GPU
  libx11-dev libxcursor-dev libxrandr-dev libxi-dev libxkbcommon-dev libxkbcommon-x11-0
  libwayland-dev libgl1 libegl1
  xvfb xauth                                    # headless window tests
  ffmpeg                                        # frame-exact checks against ffmpeg's own decode
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "installing system packages: ${missing[*]}" >&2
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
