# shellcheck shell=bash
# Shell helpers shared by the scripts in cross/ (sourced, not run): messages,
# timing and what each supported ARM target is called by gcc, qemu and dpkg, so
# build-and-compare.sh and release.sh cannot disagree about a target.

# A progress line.
say() { printf '== %s\n' "$*"; }
# Seconds since $1 (an $EPOCHREALTIME value), one decimal.
since() { awk -v s="$1" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.1f", e - s }'; }
# The error, then exit 2 (a setup problem, not a failed comparison). The calling
# script sets SCRIPT to its name.
die() { printf '%s: %s\n' "${SCRIPT:-cross}" "$*" >&2; exit 2; }

# gcc triple prefix (Debian's cross toolchains and their /usr/<prefix> sysroot)
# for a Rust target triple.
gnu_prefix() {
    case $1 in
        aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
        armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
        *) die "unsupported target $1 (aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf)" ;;
    esac
}
# The qemu-user binary that runs the target's programs on an x86_64 host.
qemu_for() {
    case $1 in
        aarch64-unknown-linux-gnu) echo qemu-aarch64-static ;;
        armv7-unknown-linux-gnueabihf) echo qemu-arm-static ;;
        *) die "unsupported target $1" ;;
    esac
}
# The Debian architecture (dpkg, debootstrap, package names) of a target.
deb_arch() {
    case $1 in
        aarch64-unknown-linux-gnu) echo arm64 ;;
        armv7-unknown-linux-gnueabihf) echo armhf ;;
        *) die "unsupported target $1" ;;
    esac
}
# Newest GLIBC_x.y symbol version an ELF file needs (empty if none): the oldest
# glibc it can run on. readelf reads any architecture's ELF.
glibc_needed() {
    readelf --dyn-syms --wide "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -1
}
# True if version $1 <= version $2 (dotted numbers).
version_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | sed -n 1p)" = "$1" ]; }
