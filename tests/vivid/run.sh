#!/usr/bin/env bash
# pvtherm's V4L2 tests against a real kernel driver.
#
# Boots Debian's own x86_64 kernel under qemu (TCG: -accel kvm hangs on the
# build machines) with a busybox initrd holding the `vivid` virtual video
# driver and the host-built `pvtherm` binary, runs tests/vivid/guest.sh inside,
# and checks what it printed on the serial console. Exit status 0 = all passed.
#
# Usage: tests/vivid/run.sh            (builds target/debug/pvtherm first)
#        PVTHERM_BIN=path tests/vivid/run.sh   (use an already built binary)
# Needs: qemu-system-x86 busybox-static cpio (apt), and once apt access to
# download linux-image-<version>-amd64 (cached under target/vivid-cache).
# See tests/vivid/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/vivid
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CACHE=$TARGET_DIR/vivid-cache
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pvtherm-vivid.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

say() { printf 'vivid: %s\n' "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

for tool in qemu-system-x86_64 cpio gzip strings; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install -y qemu-system-x86 busybox-static cpio binutils"
done
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] && ! ldd "$BUSYBOX" >/dev/null 2>&1 || die "need a static busybox: apt-get install -y busybox-static"

# --- 1. the binary under test (dev profile; dependencies are opt-level 3) ---
BIN=${PVTHERM_BIN:-}
if [ -z "$BIN" ]; then
    say "building pvtherm"
    (cd "$ROOT" && cargo build --bin pvtherm)
    BIN=$TARGET_DIR/debug/pvtherm
fi
[ -x "$BIN" ] || die "$BIN is not an executable"

# --- 2. the kernel: vmlinuz and the module closure of vivid, cached --------
KPKG=${VIVID_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')}
[ -n "$KPKG" ] || die "cannot find the kernel package (apt-cache depends linux-image-amd64); set VIVID_KERNEL_PKG=linux-image-<version>-amd64"
KVER=${KPKG#linux-image-}
KDIR=$CACHE/$KVER
if [ ! -f "$KDIR/ready" ]; then
    say "fetching $KPKG (once; cached in $KDIR)"
    rm -rf "$KDIR" && mkdir -p "$KDIR/modules" "$WORK/deb" "$WORK/root"
    (cd "$WORK/deb" && apt-get download "$KPKG" >&2)
    dpkg-deb -x "$WORK"/deb/*.deb "$WORK/root"
    cp "$WORK/root/boot/vmlinuz-$KVER" "$KDIR/vmlinuz"
    MODROOT=$WORK/root/lib/modules/$KVER/kernel
    # vivid and what it depends on, dependencies first (insmod order).
    order=()
    add_module() {
        local name=$1 ko dep
        for dep in "${order[@]}"; do [ "$dep" = "$name" ] && return 0; done
        ko=$(find "$MODROOT" -name "$name.ko" -o -name "${name//-/_}.ko" | head -n 1)
        [ -n "$ko" ] || die "module $name not in $KPKG (only uncompressed .ko are handled)"
        for dep in $(strings "$ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
            add_module "$dep"
        done
        cp "$ko" "$KDIR/modules/$name.ko"
        order+=("$name")
    }
    add_module vivid
    printf '%s\n' "${order[@]}" >"$KDIR/modules/order"
    touch "$KDIR/ready"
    rm -rf "$WORK/root" "$WORK/deb"
fi

# --- 3. the initrd ----------------------------------------------------------
INITRD=$WORK/initrd
mkdir -p "$INITRD"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$BUSYBOX" "$INITRD/bin/busybox"
# Stripped: the debug binary is ~200 MB, mostly debug info the VM never needs.
strip -o "$INITRD/bin/pvtherm" "$BIN" 2>/dev/null || cp "$BIN" "$INITRD/bin/pvtherm"
# The binary's shared libraries (and the dynamic loader) at their host paths.
for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
    mkdir -p "$INITRD$(dirname "$lib")"
    cp -L "$lib" "$INITRD$lib"
done
cp "$KDIR"/modules/* "$INITRD/lib/modules/"
cp "$HERE/init.sh" "$INITRD/init"
cp "$HERE/guest.sh" "$INITRD/bin/guest.sh"
chmod +x "$INITRD/init" "$INITRD/bin/guest.sh"
(cd "$INITRD" && find . | cpio -o -H newc --quiet | gzip -1 >"$WORK/initrd.gz")

# --- 4. boot and run ----------------------------------------------------------
LOG=$TARGET_DIR/vivid-console.log
say "booting $KVER under qemu TCG (console: $LOG)"
start=$(date +%s)
timeout "${VIVID_TIMEOUT:-600}" qemu-system-x86_64 -accel tcg -m 1024 -smp 1 \
    -nographic -no-reboot -monitor none -serial stdio \
    -kernel "$KDIR/vmlinuz" -initrd "$WORK/initrd.gz" \
    -append "console=ttyS0 loglevel=3 panic=-1 quiet" </dev/null | tr -d '\r' >"$LOG" || true
say "VM finished in $(($(date +%s) - start)) s"

# --- 5. check what the guest reported -------------------------------------------
# The guest prints each step as
#   ==== BEGIN <name>
#   ...output...
#   ==== END <name> rc=<status>
# and "==== ALL DONE" at the end (see guest.sh).
grep -q '^==== ALL DONE' "$LOG" || { tail -n 40 "$LOG" >&2; die "the guest did not finish (timeout, kernel panic or crash); see $LOG"; }

section() { awk -v n="$1" '$0 == "==== BEGIN " n {on=1; next} on && index($0, "==== END " n " ") == 1 {exit} on' "$LOG"; }
status() { sed -n "s/^==== END $1 rc=\([0-9]*\)$/\1/p" "$LOG"; }
failures=0
check() { # check <description> <command...>
    local what=$1; shift
    if "$@"; then say "ok   $what"; else say "FAIL $what"; failures=$((failures + 1)); fi
}
# (no grep -q: it would close the pipe early, and pipefail would report that)
has() { section "$1" | grep -E -- "$2" >/dev/null; }
rc_is() { [ "$(status "$1")" = "$2" ]; }
count_is() { [ "$(section "$1" | grep -cE -- "$2")" -ge "$3" ]; }

# Which module/driver loaded, for the log.
section modules >&2 || true

# cameras --json lists the device with the formats pvtherm uses.
check "cameras --json exits 0" rc_is cameras-json 0
check "cameras lists /dev/video0 (vivid)" has cameras-json '"driver": "vivid"'
for f in Y16 GREY YUYV; do
    check "cameras lists $f" has cameras-json "\"fourcc\": \"$f\""
done
check "cameras marks the device usable, auto picks Y16" has cameras-json '"auto_choice": "Y16 320x180"'
check "cameras marks Y16 radiometric" has cameras-json '"usage": "radiometric Y16'
check "cameras text output" has cameras-text 'pvtherm: usable'

# Pixel values of vivid's 75% colour bars as pvtherm reads them (measured once;
# the pattern is deterministic): white, yellow, green, black.
GREY_WHITE=190 GREY_YELLOW=176 GREY_GREEN=136 GREY_BLACK=0        # full range
YUYV_WHITE=179 YUYV_YELLOW=160 YUYV_GREEN=111 YUYV_BLACK=16       # limited range (16..235)
Y16_WHITE=48640 Y16_YELLOW=45056 Y16_GREEN=34816 Y16_BLACK=0  # the GREY values << 8

# Captures: sizes and vivid's deterministic 75% colour bars (320 px: 8 bars of
# 40 px; spots in the middle of bars 1 (white), 2 (yellow), 4 (green) and 8
# (black), row 170, below the text overlay vivid draws across rows ~60-130).
check "GREY capture exits 0" rc_is capture-grey 0
check "GREY frames are 320x180 8-bit" count_is capture-grey '^frame [0-9]+ 320x180 8-bit' 3
check "GREY colour bar luma" has capture-grey "spot 20,170=$GREY_WHITE spot 60,170=$GREY_YELLOW spot 140,170=$GREY_GREEN spot 300,170=$GREY_BLACK"
check "GREY raw file is 57600 bytes" has capture-grey-files '57600 .*frame-[0-9]+\.320x180\.gray'
check "YUYV capture exits 0" rc_is capture-yuyv 0
check "YUYV frames are 320x180 8-bit" count_is capture-yuyv '^frame [0-9]+ 320x180 8-bit' 3
check "YUYV colour bar luma" has capture-yuyv "spot 20,170=$YUYV_WHITE spot 60,170=$YUYV_YELLOW spot 140,170=$YUYV_GREEN spot 300,170=$YUYV_BLACK"
check "Y16 capture exits 0" rc_is capture-y16 0
check "Y16 frames are 320x180 16-bit" count_is capture-y16 '^frame [0-9]+ 320x180 16-bit' 3
check "Y16 colour bar values" has capture-y16 "spot 20,170=$Y16_WHITE spot 60,170=$Y16_YELLOW spot 140,170=$Y16_GREEN spot 300,170=$Y16_BLACK"
check "Y16 raw file is 115200 bytes" has capture-y16-files '115200 .*frame-[0-9]+\.320x180\.y16'
check "Y16 PGM preview written" has capture-y16-files 'frame-[0-9]+\.pgm'
check "capture of a missing format fails with the offers listed" has capture-missing 'cannot deliver TC001.*it offers: .*Y16 320x180'
check "... and exits non-zero" rc_is capture-missing 1

# Unplug (driver unbound) and replug (bound again): reported and survived.
check "reconnect capture exits 0" rc_is reconnect 0
check "camera reported offline" has reconnect '^camera offline: '
check "camera reported online again" has reconnect '^camera online$'
check "frames before the unplug" has reconnect '^frame '
check "offline reported once, online once" has reconnect 'camera lost 1 time\(s\), back 1 time\(s\)'

# The full model pass on a vivid frame (colour bars hold no PV modules: the
# point is that the captured frame runs through the whole stack).
check "detect on a vivid Y16 frame exits 0" rc_is pipeline 0
check "detect reports the 320x180 frame" has pipeline '"width": 320'
check "detect reports a module count" has pipeline '"module_count": [0-9]+'

if [ "$failures" -ne 0 ]; then
    die "$failures check(s) failed; console log: $LOG"
fi
say "all checks passed"
