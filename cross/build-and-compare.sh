#!/usr/bin/env bash
# Proves the cross build on a plain Debian machine, without containers:
#
#   1. builds pvtherm for x86_64 (the reference) and for each ARM target with
#      Debian's cross gcc as linker and C compiler, and the target's kernel
#      headers for bindgen (V4L2 bindings);
#   2. runs `pvtherm detect <fixtures> --json` natively and under qemu-user;
#   3. compares the JSON: same structure, same module counts, numbers within a
#      small tolerance (int8 inference should be bit-exact; f32 may differ in
#      the last bits between x86 and ARM SIMD kernels);
#   4. builds a .deb per target when cargo-deb is installed.
#
# Run by hand (two extra release builds: ~15+ min each on 2 cores), not in CI:
#
#   cross/build-and-compare.sh                      # both targets
#   TARGETS=aarch64-unknown-linux-gnu cross/build-and-compare.sh
#
# Needs (Debian bookworm):
#   apt-get install gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf \
#       libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user-static libclang-dev python3
# and the Rust std of each target (`rustup target add`, done here). If rustup
# cannot fetch a target's std on this machine, that target is skipped with a
# message, and the script exits 0.
#
# Note on glibc: Debian bookworm's cross libc is 2.36, so these binaries need
# glibc > 2.31 (the script prints the newest symbol version they use): a check
# of the code generation, not the release. Release packages for Raspberry Pi OS
# bullseye and JetPack 5 (glibc 2.31) come from cross/release.sh (zig linking
# against glibc 2.31, or `cross` with BUILDER=cross), which compares them the
# same way (cross/compare_detections.py).
#
# Environment: TARGETS (space-separated triples), PROFILE (cargo profile,
# default release), RTOL/ATOL (tolerances), OUT (where outputs go),
# RUN_TESTS=1 also runs `cargo test --lib` for each target under qemu.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

TARGETS=${TARGETS:-"aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf"}
PROFILE=${PROFILE:-release}
RTOL=${RTOL:-0.001}
ATOL=${ATOL:-0.001}
RUN_TESTS=${RUN_TESTS:-0}
shopt -s nullglob
IMAGES=(tests/fixtures/pv/images/*.jpg)
shopt -u nullglob

SCRIPT=build-and-compare
# shellcheck source=cross/common.sh
. "$ROOT/cross/common.sh"

[ ${#IMAGES[@]} -gt 0 ] || die "no fixture images in tests/fixtures/pv/images"
command -v python3 >/dev/null || die "python3 is needed to compare the JSON outputs"

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
OUT=${OUT:-$TARGET_DIR/cross-compare}
mkdir -p "$OUT"
# The profile's output directory: "dev" builds into "debug".
PROFILE_DIR=$PROFILE
[ "$PROFILE" = dev ] && PROFILE_DIR=debug

# Compares two `pvtherm detect --json` outputs; prints a summary; exit 1 on mismatch.
compare_json() {
    python3 "$ROOT/cross/compare_detections.py" "$1" "$2" "$RTOL" "$ATOL"
}

# The Rust std of each target first: without any, there is nothing to prove here.
status=0
summary=()
available=()
for t in $TARGETS; do
    gnu_prefix "$t" >/dev/null
    say "$t: rustup target add"
    if rustup target add "$t"; then
        available+=("$t")
    else
        echo "SKIP $t: rustup cannot fetch the Rust std for $t on this machine (no access to static.rust-lang.org?); nothing built for it."
        summary+=("$t: skipped (no Rust std)")
    fi
done
if [ ${#available[@]} -eq 0 ]; then
    say "no target's Rust std available: nothing to build or compare"
    for line in "${summary[@]}"; do echo "   $line"; done
    exit 0
fi

say "x86_64 reference: cargo build --profile $PROFILE"
cargo build --profile "$PROFILE" --bin pvtherm
REF_BIN=$TARGET_DIR/$PROFILE_DIR/pvtherm
start=$EPOCHREALTIME
"$REF_BIN" detect "${IMAGES[@]}" --json >"$OUT/x86_64.json"
say "x86_64: detect on ${#IMAGES[@]} images in $(since "$start") s -> $OUT/x86_64.json"

for t in "${available[@]}"; do
    prefix=$(gnu_prefix "$t")
    qemu=$(qemu_for "$t")
    missing=()
    command -v "$prefix-gcc" >/dev/null || missing+=("gcc-$prefix (and libc6-dev-*-cross)")
    command -v "$qemu" >/dev/null || missing+=("qemu-user-static")
    [ -f "/usr/$prefix/include/linux/videodev2.h" ] || missing+=("linux-libc-dev-*-cross (/usr/$prefix/include/linux/videodev2.h)")
    if [ ${#missing[@]} -gt 0 ]; then
        die "$t needs: ${missing[*]}"
    fi

    # Per-target settings cargo, cc-rs and bindgen read from the environment.
    T_UP=$(echo "$t" | tr 'a-z-' 'A-Z_')
    t_low=${t//-/_}
    export "CARGO_TARGET_${T_UP}_LINKER=$prefix-gcc"
    export "CARGO_TARGET_${T_UP}_RUNNER=$qemu -L /usr/$prefix"
    export "CC_${t_low}=$prefix-gcc" "AR_${t_low}=$prefix-ar"
    export "BINDGEN_EXTRA_CLANG_ARGS_${t_low}=--sysroot=/usr/$prefix -I/usr/$prefix/include"

    say "$t: cargo build --profile $PROFILE --target $t"
    build_start=$(date +%s)
    cargo build --profile "$PROFILE" --target "$t" --bin pvtherm
    build_s=$(($(date +%s) - build_start))
    bin=$TARGET_DIR/$t/$PROFILE_DIR/pvtherm
    glibc=GLIBC_$(glibc_needed "$bin")
    size=$(stat -c %s "$bin")
    say "$t: $(file -b "$bin" | cut -d, -f1-2); $size bytes; needs up to $glibc; built in ${build_s}s"

    start=$EPOCHREALTIME
    if ! "$qemu" -L "/usr/$prefix" "$bin" detect "${IMAGES[@]}" --json >"$OUT/$t.json"; then
        echo "FAIL $t: pvtherm detect failed under $qemu"
        summary+=("$t: detect FAILED under qemu")
        status=1
        continue
    fi
    say "$t: detect under qemu in $(since "$start") s -> $OUT/$t.json"
    if compare_json "$OUT/x86_64.json" "$OUT/$t.json"; then
        summary+=("$t: OK, same detections as x86_64 (binary $size bytes, glibc $glibc)")
    else
        summary+=("$t: detections DIFFER from x86_64")
        status=1
    fi

    if [ "$RUN_TESTS" = 1 ]; then
        say "$t: cargo test --lib under qemu"
        if cargo test --target "$t" --lib; then
            summary+=("$t: library tests pass under qemu")
        else
            summary+=("$t: library tests FAIL under qemu")
            status=1
        fi
    fi

    if cargo deb --version >/dev/null 2>&1; then
        say "$t: cargo deb"
        if deb=$(cargo deb --no-build --no-strip --profile "$PROFILE" --target "$t" 2>&1 | tail -1) && [ -f "$deb" ]; then
            summary+=("$t: package $deb")
        else
            summary+=("$t: cargo deb FAILED: $deb")
            status=1
        fi
    fi
done

say "summary"
for line in "${summary[@]}"; do echo "   $line"; done
exit $status
