#!/usr/bin/env bash
# The test command of README.md (and of .ci/run): installs what the tests need
# on Debian, then runs every test: unit and integration tests (real mosquitto,
# real models, real images, systemd-analyze, journald) and the V4L2 capture path
# against the vivid driver in a qemu-booted Debian kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh --test
cargo test --all-targets --no-fail-fast
tests/vivid/run.sh
