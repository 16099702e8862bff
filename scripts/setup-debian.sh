#!/usr/bin/env bash
# Installs what building and testing pvtherm needs on Debian/Ubuntu.
#   scripts/setup-debian.sh          build dependencies only (libclang for the V4L2 bindings)
#   scripts/setup-debian.sh --test   also what the tests use: mosquitto, openssl, systemd
#                                    tools, qemu/busybox for the real-kernel V4L2 test, and
#                                    chromium for the browser test of the web page
# Needs root (or sudo). Safe to run again.
set -euo pipefail
packages=(libclang-dev pkg-config)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(mosquitto mosquitto-clients openssl systemd qemu-system-x86 busybox-static cpio chromium)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# mosquitto's Debian package starts a system broker on :1883; the tests start
# their own on free ports, and the demo's embedded broker needs 1883 free.
if systemctl is-active --quiet mosquitto 2>/dev/null; then
  ${SUDO:-} systemctl disable --now mosquitto || true
fi
echo "setup-debian: ok (${packages[*]})"
