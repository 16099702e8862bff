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
# Note on glibc: Debian bookworm's cross libc is 2.36, so these binaries may need
# glibc > 2.31 (the script prints the newest symbol version they use). Release
# binaries for Raspberry Pi OS bullseye and JetPack 5 (glibc 2.31) are built
# with `cross` (Cross.toml, cross/*.Dockerfile: Ubuntu 20.04 images).
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

say() { printf '== %s\n' "$*"; }
# Seconds since $1 (an $EPOCHREALTIME value), one decimal.
since() { awk -v s="$1" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.1f", e - s }'; }
die() { printf 'build-and-compare: %s\n' "$*" >&2; exit 2; }

[ ${#IMAGES[@]} -gt 0 ] || die "no fixture images in tests/fixtures/pv/images"
command -v python3 >/dev/null || die "python3 is needed to compare the JSON outputs"

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
OUT=${OUT:-$TARGET_DIR/cross-compare}
mkdir -p "$OUT"
# The profile's output directory: "dev" builds into "debug".
PROFILE_DIR=$PROFILE
[ "$PROFILE" = dev ] && PROFILE_DIR=debug

# gcc triple prefix and qemu binary for a Rust target triple.
gnu_prefix() {
    case $1 in
        aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
        armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
        *) die "unsupported target $1" ;;
    esac
}
qemu_for() {
    case $1 in
        aarch64-unknown-linux-gnu) echo qemu-aarch64-static ;;
        armv7-unknown-linux-gnueabihf) echo qemu-arm-static ;;
    esac
}

# Compares two `pvtherm detect --json` outputs; prints a summary; exit 1 on mismatch.
compare_json() {
    python3 - "$1" "$2" "$RTOL" "$ATOL" <<'PY'
import json, math, re, sys

ref_path, got_path, rtol, atol = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
# Values that legitimately differ between runs or machines.
IGNORED = re.compile(r"latency|elapsed|duration|timing|(^|_)(ms|us)$|message_id|^uuid$")

def load(path):
    text = open(path).read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:  # JSON lines
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        sys.exit(f"   {path} is neither JSON nor JSON lines: {e}")

stats = {"numbers": 0, "exact": 0, "max_abs": 0.0}
errors = []
module_counts = []

def walk(a, b, path):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            errors.append(f"{path}: keys differ: {sorted(set(a) ^ set(b))}")
        for k in sorted(set(a) & set(b)):
            if IGNORED.search(k):
                continue
            if k == "modules" and isinstance(a[k], list) and isinstance(b[k], list):
                module_counts.append((path, len(a[k]), len(b[k])))
            walk(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            errors.append(f"{path}: {len(a)} items on x86_64, {len(b)} here")
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]")
    elif isinstance(a, bool) or isinstance(b, bool):
        if a != b:
            errors.append(f"{path}: {a!r} on x86_64, {b!r} here")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        stats["numbers"] += 1
        diff = abs(a - b)
        stats["exact"] += diff == 0
        stats["max_abs"] = max(stats["max_abs"], diff)
        if not diff <= max(atol, rtol * max(abs(a), abs(b))) and not (
            isinstance(a, float) and math.isnan(a) and math.isnan(b)
        ):
            errors.append(f"{path}: {a!r} on x86_64, {b!r} here (diff {diff:g})")
    elif a != b:
        errors.append(f"{path}: {a!r} on x86_64, {b!r} here")

walk(load(ref_path), load(got_path), "$")
if module_counts:
    same = all(x == y for _, x, y in module_counts)
    total = sum(x for _, x, _ in module_counts)
    print(f"   module counts: {'equal' if same else 'DIFFERENT'} "
          f"({len(module_counts)} images, {total} modules on x86_64)")
print(f"   numbers: {stats['numbers']} compared, {stats['exact']} bit-exact, "
      f"max abs diff {stats['max_abs']:g}")
for e in errors[:20]:
    print("   MISMATCH", e)
if len(errors) > 20:
    print(f"   ... and {len(errors) - 20} more")
sys.exit(1 if errors else 0)
PY
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
    glibc=$("$prefix-objdump" -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
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
