#!/usr/bin/env bash
# Makes pvtherm's release artefacts for the ARM devices and proves them, on a
# plain Debian/Ubuntu x86_64 machine without a container engine:
#
#   cross/release.sh
#
# writes into target/release-artefacts/ (OUT):
#
#   pvtherm_<version>-1_arm64.deb        Raspberry Pi OS 64-bit, Jetson (JetPack 5/6)
#   pvtherm_<version>-1_armhf.deb        Raspberry Pi OS 32-bit
#   pvtherm-<version>-linux-arm64.tar.gz the same files as the .deb, as a plain tree
#   pvtherm-<version>-linux-armhf.tar.gz (usr/bin/pvtherm, models, etc/pvtherm, unit, README)
#   SHA256SUMS
#   proof/                               logs and JSON of every check, proof/SUMMARY.txt
#
# Steps, each timed:
#   1. tools: missing Debian packages (apt-get), zig and cargo-zigbuild from PyPI
#      into a venv under target/release-tools/, cargo-deb (cargo install) there too;
#   2. per target: `cargo zigbuild --release --target <triple>.2.31`: zig links
#      against glibc 2.31's symbol versions (Raspberry Pi OS bullseye, Ubuntu 20.04
#      = JetPack 5), whatever the build machine's glibc. BUILDER=cross builds in
#      cross's containers instead (Cross.toml: Ubuntu 20.04 images, glibc 2.31);
#      both then go through the same steps 3 and 4;
#   3. the newest GLIBC_ symbol version the binary needs (readelf): above GLIBC
#      (2.31) the script stops;
#   4. `cargo deb --no-build` per target, the tarball made from the .deb's own
#      files, SHA-256 sums. Version from Cargo.toml; file order (sorted), owners
#      (root) and timestamps (SOURCE_DATE_EPOCH, default: the last commit's time)
#      fixed, so packaging the same binaries again gives the same bytes;
#   5. the proof (PROVE=0 skips it): the x86_64 reference `pvtherm detect --json`
#      on tests/fixtures/pv/images/*.jpg (f32 and int8); per target a Debian root
#      file system of the target's architecture (debootstrap, SUITE=bullseye:
#      glibc 2.31; started in the background after step 1, so that it overlaps
#      the builds), where, under qemu-user through binfmt_misc, `dpkg -i` installs
#      the .deb (maintainer scripts: system user), `pvtherm check-config
#      /etc/pvtherm/pvtherm.toml` passes, `pvtherm detect --json` runs as the
#      user pvtherm and its JSON is compared with x86_64's
#      (cross/compare_detections.py; armv7 with x86_64's without FMA, see
#      reference_for), then `dpkg --purge` removes it. On
#      armv7 with TRACT_CPU_ARM32_NEON=true: qemu-user shows the host's
#      /proc/cpuinfo, so tract would not find the NEON every Pi 2+ has.
#      Without binfmt_misc (some containers) it falls back to running the
#      package's files with `qemu-<arch>-static -L <root file system>` and says so.
#
# Environment: TARGETS (triples; default both), BUILDER (zigbuild | cross | none:
# package the binaries already in target/<triple>/release), GLIBC (2.31), PROVE
# (1), SUITE (bullseye), MIRROR (http://deb.debian.org/debian), PRECISIONS
# ("f32 int8"), REF_PROFILE (cargo profile of the x86_64 reference, default dev:
# its dependencies are built at opt-level 3 like release, and pvtherm's own float
# code gives the same bits at any opt-level) or REF_BIN (an x86_64 pvtherm of
# the same tree, used as it is), RTOL/ATOL (0.001), OUT.
#
# Needs root (or sudo) for apt-get, debootstrap, chroot and dpkg inside the root
# file systems. Takes ~20-30 min per target on 2 cores (tract's release build);
# not part of CI. Measured results: docs/INSTALL.md.

# $SUDO and $knob are empty or one word: unquoted on purpose, so that an empty
# one vanishes. Functions run through timed/logged look unreachable to shellcheck.
# shellcheck disable=SC2086,SC2317
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SCRIPT=release
# shellcheck source=cross/common.sh
. "$ROOT/cross/common.sh"

TARGETS=${TARGETS:-"aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf"}
BUILDER=${BUILDER:-zigbuild}
GLIBC=${GLIBC:-2.31}
PROVE=${PROVE:-1}
SUITE=${SUITE:-bullseye}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PRECISIONS=${PRECISIONS:-"f32 int8"}
REF_PROFILE=${REF_PROFILE:-dev}
RTOL=${RTOL:-0.001}
ATOL=${ATOL:-0.001}
# The tool versions the measured release was made with.
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
CARGO_DEB_VERSION=3.8.0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
VERSION=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "pvtherm"))')
TOOLS=$TARGET_DIR/release-tools
OUT=${OUT:-$TARGET_DIR/release-artefacts}
PROOF=$OUT/proof
mkdir -p "$OUT" "$PROOF" "$TOOLS"
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH
shopt -s nullglob
IMAGES=(tests/fixtures/pv/images/*.jpg)
shopt -u nullglob
[ ${#IMAGES[@]} -gt 0 ] || die "no fixture images in tests/fixtures/pv/images"

summary=()
status=0
RUN_START=$EPOCHREALTIME
# Runs "$@" as the step named $1's label, records its wall time in the summary.
timed() {
    local label=$1 start=$EPOCHREALTIME
    shift
    say "$label"
    "$@"
    local took
    took=$(since "$start")
    summary+=("time: $label: ${took} s")
    say "$label: ${took} s"
}

# Step 1: Debian packages, then zig/cargo-zigbuild and cargo-deb under target/release-tools.
install_tools() {
    local packages=(binutils libclang-dev python3-venv dpkg-dev qemu-user-static debootstrap)
    local t arch
    for t in $TARGETS; do
        arch=$(deb_arch "$t")
        # Kernel and libc headers of the target: bindgen parses <linux/videodev2.h>
        # with the target's struct layouts (V4L2 bindings).
        packages+=("linux-libc-dev-$arch-cross" "libc6-dev-$arch-cross")
    done
    local missing=() p
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    for t in $TARGETS; do
        rustup target add "$t" >/dev/null 2>&1 || rustup target list --installed | grep -qx "$t" \
            || die "rustup cannot add the Rust std for $t (is static.rust-lang.org reachable?)"
    done
    if [ "$BUILDER" = zigbuild ]; then
        if [ ! -x "$TOOLS/venv/bin/cargo-zigbuild" ]; then
            python3 -m venv "$TOOLS/venv"
            "$TOOLS/venv/bin/pip" install --quiet "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
        fi
        # cargo-zigbuild finds zig as `python3 -m ziglang` of the venv.
        export PATH=$TOOLS/venv/bin:$PATH
        summary+=("tools: $(cargo-zigbuild --version), zig $(python3 -m ziglang version)")
    elif [ "$BUILDER" = cross ]; then
        command -v cross >/dev/null || die "BUILDER=cross needs cross (cargo install cross --git https://github.com/cross-rs/cross) and docker or podman"
    fi
    if ! cargo deb --version >/dev/null 2>&1; then
        export PATH=$TOOLS/cargo/bin:$PATH
        cargo deb --version >/dev/null 2>&1 \
            || cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" --root "$TOOLS/cargo"
    fi
    summary+=("tools: $(cargo deb --version | sed -n 1p), $(rustc --version)")
}

# Step 2: the release binary of target $1 in target/<triple>/release/pvtherm.
build_target() {
    local t=$1 prefix headers
    prefix=$(gnu_prefix "$t")
    # bindgen (V4L2 bindings) must see the target's headers, not the host's.
    headers="--sysroot=/usr/$prefix -I/usr/$prefix/include"
    case $BUILDER in
        # cargo-zigbuild appends zig's include directories to the hyphenated
        # variable, the one bindgen reads first, but as paths relative to the
        # project (zig 0.17's `zig env`), which the build script, running in the
        # crate's own directory, cannot find: ours come first. A hyphenated name
        # cannot be exported from bash, hence env.
        zigbuild) env "BINDGEN_EXTRA_CLANG_ARGS_$t=$headers" \
            cargo zigbuild --locked --release --target "$t.$GLIBC" --bin pvtherm ;;
        cross) cross build --locked --release --target "$t" --bin pvtherm ;;
        none) ;;
        *) die "BUILDER must be zigbuild, cross or none, not $BUILDER" ;;
    esac
}

# Step 3: refuse a binary that needs a glibc newer than $GLIBC.
check_glibc() {
    local t=$1 bin=$2 needed
    [ -f "$bin" ] || die "$bin is missing: build it first (BUILDER=zigbuild or cross)"
    needed=$(glibc_needed "$bin")
    local libs
    libs=$(readelf --dynamic --wide "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
    summary+=("$t: $(stat -c %s "$bin") bytes, needs GLIBC_$needed (limit $GLIBC), libraries: $libs")
    version_le "$needed" "$GLIBC" \
        || die "$bin needs GLIBC_$needed, newer than $GLIBC: it would not start on bullseye or JetPack 5"
}

# Step 4: the .deb and the tarball of target $1; the .deb's path in DEB_PATH.
package_target() {
    local t=$1 arch name deb tarball stage
    arch=$(deb_arch "$t")
    deb=$OUT/pvtherm_${VERSION}-1_${arch}.deb
    name=pvtherm-$VERSION-linux-$arch
    tarball=$OUT/$name.tar.gz
    # Variant glibc231 (Cargo.toml): Depends on libc6 >= 2.31, the glibc the
    # binary was linked against (checked above), not the build machine's.
    cargo deb --no-build --no-strip --variant glibc231 --target "$t" --output "$deb"
    # The tarball holds exactly the package's files, laid out as it installs them.
    stage=$TOOLS/stage-$arch
    rm -rf "$stage"
    mkdir -p "$stage/$name"
    dpkg-deb -x "$deb" "$stage/$name"
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        --format=gnu -C "$stage" -cf - "$name" | gzip -9n >"$tarball"
    rm -rf "$stage"
    DEB_PATH=$deb
}

# binfmt_misc entry for target $1's qemu, registered from qemu-user-static's
# /usr/lib/binfmt.d file if the machine has none (a container or a VM without
# systemd-binfmt). Returns 1 if chroot cannot run the target's programs.
ensure_binfmt() {
    local name conf
    name=$(qemu_for "$1" | sed 's/-static$//')
    conf=/usr/lib/binfmt.d/$name.conf
    grep -qx enabled "/proc/sys/fs/binfmt_misc/$name" 2>/dev/null && return 0
    [ -e /proc/sys/fs/binfmt_misc/register ] \
        || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || return 1
    [ -f "$conf" ] || return 1
    $SUDO sh -c "cat '$conf' > /proc/sys/fs/binfmt_misc/register" 2>/dev/null || return 1
    grep -qx enabled "/proc/sys/fs/binfmt_misc/$name"
}

# True if anything is mounted at or below directory $1 (never delete it then).
has_mounts() { awk -v d="$1" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; }

# The $SUITE root file system for target $1, made by debootstrap once and kept
# under target/release-tools/rootfs ($2: chroot, or qemu-L when the target's
# programs cannot run through binfmt_misc). Does nothing if it is there.
base_rootfs() {
    local arch base
    arch=$(deb_arch "$1")
    base=$TOOLS/rootfs/$SUITE-$arch
    [ -x "$base/usr/bin/dpkg" ] && return 0
    $SUDO rm -rf "$base"
    if [ "$2" = chroot ]; then
        $SUDO debootstrap --variant=minbase --include=adduser --arch="$arch" "$SUITE" "$base" "$MIRROR" >&2
    else
        # Unpacked only: the second stage would need to run the target's programs.
        $SUDO debootstrap --foreign --variant=minbase --arch="$arch" "$SUITE" "$base" "$MIRROR" >&2
    fi
}

# How target $1's programs run here: chroot (binfmt_misc) or qemu-L.
run_mode() { if ensure_binfmt "$1"; then echo chroot; else echo qemu-L; fi; }

# Starts base_rootfs for every target in the background, so that debootstrap's
# downloads overlap the builds instead of following them; ROOTFS_JOBS holds
# "target:pid" pairs for wait_rootfs.
ROOTFS_JOBS=()
start_rootfs() {
    local t
    for t in $TARGETS; do
        ( start=$EPOCHREALTIME
          if [ -x "$TOOLS/rootfs/$SUITE-$(deb_arch "$t")/usr/bin/dpkg" ]; then
              echo "kept from an earlier run"
          else
              base_rootfs "$t" "$(run_mode "$t")"
              echo "debootstrap took $(since "$start") s"
          fi ) >"$PROOF/$(deb_arch "$t")-debootstrap.log" 2>&1 &
        ROOTFS_JOBS+=("$t:$!")
    done
}

# Waits for target $1's background debootstrap; stops the script if it failed.
wait_rootfs() {
    local job log
    log=$PROOF/$(deb_arch "$1")-debootstrap.log
    for job in "${ROOTFS_JOBS[@]}"; do
        [ "${job%%:*}" = "$1" ] || continue
        wait "${job#*:}" || die "debootstrap of the $SUITE $(deb_arch "$1") root file system failed: see $log"
        summary+=("$1: root file system (in the background): $(tail -1 "$log")")
    done
}

# A fresh copy of target $1's root file system (base_rootfs, mode $2); prints its path.
fresh_rootfs() {
    local arch base work
    arch=$(deb_arch "$1")
    base=$TOOLS/rootfs/$SUITE-$arch
    work=$TOOLS/rootfs/$SUITE-$arch-work
    base_rootfs "$1" "$2"
    has_mounts "$work" && die "something is still mounted under $work: unmount it first"
    $SUDO rm -rf "$work"
    $SUDO cp -a "$base" "$work"
    echo "$work"
}

# The x86_64 reference a target is held to. tract's armv7 NEON kernels round
# the product and the sum separately (vmla); its x86_64 and aarch64 kernels fuse
# them (FMA). One rounding more moves f32 results by ~1e-5 and, where a float
# layer feeds an int8 one (the classifier's first convolution), can move a
# quantised activation by one step: int8 defect scores then differ by ~2e-3.
# x86_64 with FMA off (TRACT_CPU_ISA=-fma) does the same arithmetic as armv7
# and gives its numbers to ~1e-7, so armv7 is held to that reference.
reference_for() {
    case $1 in
        armv7*) echo nofma ;;
        *) echo fma ;;
    esac
}

# Compares the JSON of precision $2 from target $1 with x86_64's, into the
# summary: numbers within RTOL/ATOL of the reference of the same arithmetic
# (reference_for), and, for armv7, the same modules and decisions as x86_64
# with FMA (numbers only reported).
compare_with_reference() {
    local t=$1 p=$2 got=$3 report what="x86_64"
    local ref=x86_64-$p.json
    if [ "$(reference_for "$t")" = nofma ]; then
        ref=x86_64-nofma-$p.json
        what="x86_64 without FMA (TRACT_CPU_ISA=-fma)"
    fi
    if report=$(python3 "$ROOT/cross/compare_detections.py" "$PROOF/$ref" "$got" "$RTOL" "$ATOL"); then
        summary+=("$t: detect $p: same as $what:$(echo "$report" | tr -s ' \n' ' ')")
    else
        summary+=("$t: detect $p: DIFFERS from $what:$(echo "$report" | sed -n 1,5p | tr -s ' \n' ' ')")
        status=1
    fi
    [ "$ref" = "x86_64-$p.json" ] && return 0
    if report=$(python3 "$ROOT/cross/compare_detections.py" "$PROOF/x86_64-$p.json" "$got" inf inf); then
        summary+=("$t: detect $p: same modules and decisions as x86_64 with FMA:$(echo "$report" | tr -s ' \n' ' ')")
    else
        summary+=("$t: detect $p: modules or decisions DIFFER from x86_64 with FMA:$(echo "$report" | sed -n 1,5p | tr -s ' \n' ' ')")
        status=1
    fi
}

# Runs "$@" with its output appended to $LOG after a "$ LABEL" line; on failure
# records "TARGET: LABEL FAILED" in the summary and returns 1.
logged() {
    local label=$1
    shift
    echo "\$ $label" >>"$LOG"
    if "$@" >>"$LOG" 2>&1; then
        return 0
    fi
    summary+=("$T: $label FAILED (see $LOG)")
    status=1
    return 1
}

# Step 5 for target $1 and its package $2: install, check the configuration,
# detect, purge, inside a root file system of the target's architecture.
prove_target() {
    local t=$1 deb=$2 arch qemu rootfs p start knob=""
    arch=$(deb_arch "$t")
    qemu=$(qemu_for "$t")
    # qemu-user shows the host's /proc/cpuinfo, where tract's armv7 probe finds
    # no NEON; every supported board (Raspberry Pi 2 and newer) has it, so the
    # NEON kernels a Pi runs are forced on.
    [ "$arch" = armhf ] && knob="TRACT_CPU_ARM32_NEON=true"
    T=$t
    LOG=$PROOF/$arch-rootfs.log
    : >"$LOG"
    local mode
    mode=$(run_mode "$t")
    wait_rootfs "$t"
    rootfs=$(fresh_rootfs "$t" "$mode")
    summary+=("$t: package Depends: $(dpkg-deb -f "$deb" Depends)")
    # The fixtures at the same relative paths as in the reference run.
    $SUDO mkdir -p "$rootfs/srv/pvtherm-proof/tests/fixtures/pv/images"
    $SUDO cp "${IMAGES[@]}" "$rootfs/srv/pvtherm-proof/tests/fixtures/pv/images/"
    if [ "$mode" = qemu-L ]; then
        # No binfmt_misc: the package's files unpacked into the root file system,
        # its glibc given to qemu with -L. The maintainer scripts do not run.
        $SUDO dpkg-deb -x "$deb" "$rootfs"
        summary+=("$t: NOT installed with dpkg (no binfmt_misc here): files unpacked into Debian $SUITE $arch, run with $qemu -L")
        if logged "check-config" "$qemu" -L "$rootfs" "$rootfs/usr/bin/pvtherm" check-config "$rootfs/etc/pvtherm/pvtherm.toml"; then
            summary+=("$t: check-config: $(grep -m1 ': OK$' "$LOG")")
        fi
        for p in $PRECISIONS; do
            start=$EPOCHREALTIME
            if (cd "$rootfs/srv/pvtherm-proof" && env $knob "$qemu" -L "$rootfs" "$rootfs/usr/bin/pvtherm" \
                detect --precision "$p" tests/fixtures/pv/images/*.jpg --json) >"$PROOF/$arch-$p.json" 2>>"$LOG"; then
                summary+=("$t: detect $p on ${#IMAGES[@]} images under $qemu: $(since "$start") s")
                compare_with_reference "$t" "$p" "$PROOF/$arch-$p.json"
            else
                summary+=("$t: detect $p FAILED (see $LOG)"); status=1
            fi
        done
        return 0
    fi

    local libc
    libc=$($SUDO chroot "$rootfs" ldd --version | sed -n 1p)
    summary+=("$t: root file system: Debian $SUITE $arch, $libc; programs run by $qemu through binfmt_misc")
    $SUDO cp "$deb" "$rootfs/tmp/pvtherm.deb"
    $SUDO mount -t proc proc "$rootfs/proc"
    # shellcheck disable=SC2064 # the path is known now
    trap "$SUDO umount '$rootfs/proc' 2>/dev/null || true" EXIT
    if logged "dpkg -i pvtherm.deb" $SUDO chroot "$rootfs" dpkg -i /tmp/pvtherm.deb; then
        summary+=("$t: dpkg -i: OK ($(grep -c '^Setting up pvtherm' "$LOG") package set up)")
        logged "id pvtherm" $SUDO chroot "$rootfs" id pvtherm \
            && summary+=("$t: user: $(tail -1 "$LOG")")
        logged "pvtherm check-config /etc/pvtherm/pvtherm.toml" \
            $SUDO chroot "$rootfs" pvtherm check-config /etc/pvtherm/pvtherm.toml \
            && summary+=("$t: check-config: $(grep -m1 ': OK$' "$LOG")")
        for p in $PRECISIONS; do
            start=$EPOCHREALTIME
            echo "\$ (as pvtherm) $knob pvtherm detect --precision $p tests/fixtures/pv/images/*.jpg --json" >>"$LOG"
            if $SUDO chroot --userspec=pvtherm:pvtherm "$rootfs" sh -c \
                "cd /srv/pvtherm-proof && $knob pvtherm detect --precision $p tests/fixtures/pv/images/*.jpg --json" \
                >"$PROOF/$arch-$p.json" 2>>"$LOG"; then
                summary+=("$t: detect $p on ${#IMAGES[@]} images as user pvtherm${knob:+ ($knob)}: $(since "$start") s under qemu")
                compare_with_reference "$t" "$p" "$PROOF/$arch-$p.json"
            else
                summary+=("$t: detect $p FAILED (see $LOG)"); status=1
            fi
        done
        if logged "dpkg --purge pvtherm" $SUDO chroot "$rootfs" dpkg --purge pvtherm; then
            if [ -e "$rootfs/usr/bin/pvtherm" ] || [ -e "$rootfs/etc/pvtherm" ]; then
                summary+=("$t: dpkg --purge left /usr/bin/pvtherm or /etc/pvtherm behind"); status=1
            else
                summary+=("$t: dpkg --purge: removed, /usr/bin/pvtherm and /etc/pvtherm gone")
            fi
        fi
    fi
    $SUDO umount "$rootfs/proc"
    trap - EXIT
}

# The x86_64 reference detections, one JSON per precision, from REF_BIN if set
# (an x86_64 pvtherm built from the same tree), else from a $REF_PROFILE build.
reference() {
    local bin=${REF_BIN:-} p
    if [ -z "$bin" ]; then
        cargo build --locked --profile "$REF_PROFILE" --bin pvtherm
        bin=$TARGET_DIR/$REF_PROFILE/pvtherm
        [ "$REF_PROFILE" = dev ] && bin=$TARGET_DIR/debug/pvtherm
    fi
    summary+=("x86_64 reference: $bin ($("$bin" --version)), with FMA and without (TRACT_CPU_ISA=-fma)")
    for p in $PRECISIONS; do
        "$bin" detect --precision "$p" "${IMAGES[@]}" --json >"$PROOF/x86_64-$p.json"
        TRACT_CPU_ISA=-fma "$bin" detect --precision "$p" "${IMAGES[@]}" --json >"$PROOF/x86_64-nofma-$p.json"
    done
}

summary+=("source: $(git describe --always --dirty 2>/dev/null || echo 'not a git checkout'), version $VERSION, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH")
timed "tools" install_tools
[ "$PROVE" = 1 ] && start_rootfs
debs=()
for t in $TARGETS; do
    timed "$t: build ($BUILDER)" build_target "$t"
    check_glibc "$t" "$TARGET_DIR/$t/release/pvtherm"
    timed "$t: package" package_target "$t"
    debs+=("$DEB_PATH")
done
(cd "$OUT" && LC_ALL=C sha256sum -- *.deb *.tar.gz >SHA256SUMS)
say "artefacts in $OUT"
cat "$OUT/SHA256SUMS"

if [ "$PROVE" = 1 ]; then
    timed "x86_64 reference detect ($REF_PROFILE build)" reference
    i=0
    for t in $TARGETS; do
        timed "$t: proof in Debian $SUITE $(deb_arch "$t")" prove_target "$t" "${debs[$i]}"
        i=$((i + 1))
    done
fi

summary+=("time: total $(since "$RUN_START") s")
say "summary"
printf '   %s\n' "${summary[@]}" | tee "$PROOF/SUMMARY.txt"
exit $status
