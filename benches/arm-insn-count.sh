#!/usr/bin/env bash
# ARM boards by instruction count: runs an aarch64 pvtherm under qemu-user
# with `-cpu cortex-a76` (Raspberry Pi 5, Jetson Orin's A78AE alike: FEAT_DotProd)
# and `-cpu cortex-a72` (Raspberry Pi 4: no dot product), counts the guest
# instructions of one detector run (and of the other model stages) with the
# TCG plugin in benches/qemu-plugin/insncount.c, and tells which tract-linalg
# matrix kernels ran. Results and how to read them: BENCHMARKS.md, section
# "ARM boards, by instruction count under qemu".
#
#   benches/arm-insn-count.sh path/to/aarch64/pvtherm
#   CPUS="cortex-a76 cortex-a72" PRECISIONS="f32 int8" ITERS=3 benches/arm-insn-count.sh BIN   # the defaults
#
# Needs: qemu-user (the dynamic build: qemu-user-static cannot load plugins),
# the aarch64 glibc (libc6-arm64-cross: SYSROOT, default /usr/aarch64-linux-gnu),
# a C compiler (CC, default cc), python3, and QEMU's plugin header
# qemu-plugin.h of the installed QEMU version (QEMU_PLUGIN_H=path/to/it;
# otherwise it is looked for in /usr/include, then taken from the Debian
# source package with `apt-get source --download-only qemu`, which needs a
# deb-src line). Writes into OUT (default target/arm-insn-count).
#
# How a detector run is taken apart from start-up and model loading: QEMU
# 7.2's qemu-user maps no vDSO, so every Instant::now() is a clock_gettime
# system call; the plugin prints the thread's instruction count at each one.
# `pvtherm bench` calls Instant::now() around every timed call, so the count
# between two such marks is one call of one stage (its `timing` loop: two
# untimed warm-ups, then ITERS timed calls).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-${PVTHERM_AARCH64:-}}
IMAGE=${IMAGE:-tests/fixtures/pv/images/001R.jpg}
CPUS=${CPUS:-cortex-a76 cortex-a72}
PRECISIONS=${PRECISIONS:-f32 int8}
ITERS=${ITERS:-3}
QEMU=${QEMU:-qemu-aarch64}
SYSROOT=${SYSROOT:-/usr/aarch64-linux-gnu}
CC=${CC:-cc}
OUT=${OUT:-target/arm-insn-count}

die() { echo "arm-insn-count: $*" >&2; exit 2; }

[ -n "$BIN" ] || die "no binary: pass the aarch64 pvtherm (e.g. cargo zigbuild --release --target aarch64-unknown-linux-gnu) as the first argument or PVTHERM_AARCH64"
[ -x "$BIN" ] || die "$BIN is not an executable file"
# ELF header: e_machine (offset 18, little-endian) 0xb7 = AArch64.
[ "$(od -An -tx1 -j18 -N2 "$BIN" | tr -d ' \n')" = "b700" ] || die "$BIN is not an aarch64 ELF binary"
[ "$ITERS" -ge 2 ] 2>/dev/null || die "ITERS=$ITERS: need at least 2 (the timed calls must agree with each other)"
command -v "$QEMU" >/dev/null || die "$QEMU not found: apt-get install qemu-user"
command -v python3 >/dev/null || die "python3 not found"
command -v "$CC" >/dev/null || die "no C compiler ($CC) for the plugin: apt-get install gcc"
[ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] || die "no aarch64 glibc in $SYSROOT: apt-get install libc6-arm64-cross (or set SYSROOT)"
case "$("$QEMU" -plugin /nonexistent.so /bin/true 2>&1 || true)" in
    *"Could not load plugin"*) ;;
    *) die "$QEMU cannot load TCG plugins (qemu-user-static cannot: install the dynamic qemu-user)" ;;
esac
mkdir -p "$OUT"

# --- QEMU's plugin header, of the installed version ---------------------------
qemu_version=$("$QEMU" --version | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p;q')
header=${QEMU_PLUGIN_H:-}
if [ -z "$header" ]; then
    for h in /usr/include/qemu-plugin.h /usr/include/qemu/qemu-plugin.h "$OUT/qemu-src/qemu-plugin.h"; do
        [ -e "$h" ] && { header=$h; break; }
    done
fi
if [ -z "$header" ]; then
    echo "arm-insn-count: fetching qemu-plugin.h from the Debian source of qemu $qemu_version" >&2
    mkdir -p "$OUT/qemu-src"
    (cd "$OUT/qemu-src" && apt-get source --download-only qemu >/dev/null 2>&1) ||
        die "no qemu-plugin.h: 'apt-get source qemu' failed (add a deb-src line to /etc/apt/sources.list.d/, or set QEMU_PLUGIN_H to the header of QEMU $qemu_version)"
    tarball=$(ls "$OUT"/qemu-src/qemu_*.orig.tar.* | head -1)
    tar -xf "$tarball" -C "$OUT/qemu-src" --wildcards '*/include/qemu/qemu-plugin.h'
    mv "$OUT"/qemu-src/qemu-*/include/qemu/qemu-plugin.h "$OUT/qemu-src/qemu-plugin.h"
    header=$OUT/qemu-src/qemu-plugin.h
fi
plugin=$OUT/insncount.so
"$CC" -O2 -Wall -Wextra -Wno-unused-parameter -shared -fPIC -fvisibility=hidden \
    -I"$(dirname "$header")" -o "$plugin" benches/qemu-plugin/insncount.c

# --- one bench process per CPU model and precision ----------------------------
# qemu-user 7.2 hands the guest the host's /proc/cpuinfo (no "CPU part", no
# "Features"), so tract would see an unknown part; give it the board's part
# number as tract reads it on the board. The dot product itself comes from
# AT_HWCAP, which qemu sets from the emulated CPU model.
cpu_part() {
    case $1 in
        cortex-a76) echo 0xd0b ;; cortex-a72) echo 0xd08 ;; cortex-a57) echo 0xd07 ;;
        cortex-a53) echo 0xd03 ;; neoverse-n1) echo 0xd0c ;; *) echo "" ;;
    esac
}
# bench NAME CPU PRECISION PLUGIN-ARGS: one `pvtherm bench` under qemu.
bench() {
    local name=$1 cpu=$2 precision=$3 args=$4 start
    start=$(date +%s)
    TRACT_CPU_AARCH64_OVERRIDE_CPU_PART=$(cpu_part "$cpu") \
        "$QEMU" -cpu "$cpu" -L "$SYSROOT" -plugin "$plugin,$args" \
        "$BIN" bench --precision "$precision" --iterations "$ITERS" --json "$IMAGE" \
        >"$OUT/$name.json" 2>"$OUT/$name.stderr" ||
        die "$name failed: see $OUT/$name.stderr"
    echo "arm-insn-count: $name took $(( $(date +%s) - start )) s under qemu" >&2
}

# The analysis: mode `window` prints the marks around the detector's timed
# calls (for the second run), mode `report` the tables.
analyse=$OUT/analyse.py
cat >"$analyse" <<'PY'
"""Takes the marks of each run apart into stage calls (mode `window`: the marks
around the detector's timed calls, for the second run; mode `report`: the
tables)."""
import json
import re
import struct
import sys

mode, out, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
TINY = 20_000  # instructions between two timed calls of a stage (the loop itself)


def load(path):
    """The main thread's marks (count, {class: count}), the hot blocks
    (vaddr, insns, executed, {class: n}, disassembly), the total and where
    the code was loaded."""
    marks, blocks, total, code = [], [], None, None
    for line in open(path):
        f = line.split()
        if f[0] == "mark" and f[1] == "0":
            marks.append((int(f[3]), {k: int(v) for k, v in (x.split("=") for x in f[4:])}))
        elif f[0] == "total":
            total = int(f[1])
        elif f[0] == "code":
            code = int(f[1], 16)
        elif f[0] == "block":
            head, _, disas = line.partition(" | ")
            h = head.split()
            blocks.append((int(h[1], 16), int(h[2]), int(h[4]), dict(x.split("=") for x in h[5:]), disas.strip()))
    return marks, blocks, total, code


def chains(marks):
    """Every run of `iters` timed calls: marks start, end, start, end, ... with
    tiny gaps between the calls and calls within 1 % of each other."""
    d = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    found, i = [], 0
    while i + 2 * iters - 1 <= len(d):
        works = d[i:i + 2 * iters:2]
        gaps = d[i + 1:i + 2 * iters - 1:2]
        if all(g < TINY for g in gaps) and min(works) > TINY and max(works) <= 1.01 * min(works):
            found.append((i, works))
            i += 2 * iters - 1
        else:
            i += 1
    return d, found


def stages(name):
    """Detector, classifier and models calls: the 2nd, 3rd and 4th runs of
    timed calls (after the image decode's), checked: the interval before the
    detector's calls is its 2 warm-up calls."""
    marks = load(f"{out}/{name}.marks")[0]
    d, found = chains(marks)
    if not marks:
        sys.exit(f"{name}: no clock_gettime marks: this QEMU maps a vDSO (8.1 and later do), so "
                 "Instant::now() makes no system call; use QEMU 7.2 (Debian 12's qemu-user)")
    if len(found) < 4:
        sys.exit(f"{name}: found {len(found)} runs of {iters} timed calls in {len(marks)} marks, "
                 "want decode, detector, classifier, models: has `pvtherm bench` changed its stage order?")
    di, dw = found[1]
    warm = d[di - 1] / (2 * min(dw))
    if not 0.99 < warm < 1.02:
        sys.exit(f"{name}: the interval before the detector calls is {warm:.3f}x two calls, not 1: "
                 "the stage order of `pvtherm bench` has changed")
    return marks, d, found[1:4]


if mode == "window":
    # Block counts while vCPU 0 has passed di+1 .. di+2*iters-1 marks: the
    # detector's timed calls and the tiny gaps between them.
    _, _, [(di, _), _, _] = stages(sys.argv[4])
    print(f"{di + 1}:{di + 2 * iters}")
    sys.exit(0)

binary, runs = sys.argv[4], sys.argv[5:]


def exec_vaddr(path):
    """p_vaddr of the ELF's first executable PT_LOAD (what qemu reports as the
    start of code, less the load bias)."""
    with open(path, "rb") as f:
        elf = f.read(1 << 16)
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    loads = [struct.unpack_from("<IIQQ", elf, phoff + i * phentsize) for i in range(phnum)]
    return min(v for typ, flags, _, v in loads if typ == 1 and flags & 1)


def kernel_of(disas, cls):
    """Which tract-linalg arm64simd kernel a hot block belongs to, by its inner
    loop (vendor/tract-linalg/arm64/arm64simd/*.S.j2). Capstone 4 (QEMU 7.2's
    disassembler) prints SDOT as .byte: the plugin's class count finds it."""
    if int(cls.get("sdot", 0)) >= 8:
        return "arm64simd_mmm_i32_8x8_dot"
    if "smlal2 v17.4s, v0.8h, v4.h[0]" in disas:
        return "arm64simd_mmm_i32_8x8"
    if re.search(r"smlal2? v\d+\.4s, v10\.[48]h, v9\.h\[0\]|v15\.h\[0\]", disas):
        return "arm64simd_mmm_i32_64x1"
    if "fmla v24.4s, v0.4s, v5.s[0]" in disas:
        return "arm64simd_mmm_f32_8x8"
    if "fmla v19.4s, v3.4s, v4.s[0]" in disas:
        return "arm64simd_mmm_f32_16x4"
    if re.search(r"fmla v\d+\.4s, v\d+\.4s, v8\.s\[0\]", disas):
        return "arm64simd_mmm_f32_64x1"
    return None


elf_code = exec_vaddr(binary)
rows = {}
for name in runs:
    marks, d, [(di, dw), (ci, cw), (mi, mw)] = stages(name)
    # Whole frame (Inspector::inspect times its models itself): per call, the
    # marks outer start, inner start, inner end, outer end.
    whole = None
    for j in range(mi + 2 * iters - 1, len(d) - 4 * iters + 2):
        w = [d[j + 4 * k] + d[j + 4 * k + 1] + d[j + 4 * k + 2] for k in range(iters)]
        if (all(d[j + 4 * k] < TINY for k in range(iters))
                and all(d[j + 4 * k + 3] < TINY for k in range(iters - 1))
                and all(abs(d[j + 4 * k + 1] / min(mw) - 1) < 0.01 for k in range(iters))
                and max(w) <= 1.01 * min(w)):
            whole = sorted(w)[iters // 2]
            break
    a, b = marks[di + 2 * (iters // 2)][1], marks[di + 2 * (iters // 2) + 1][1]
    _, blocks, total, _ = load(f"{out}/{name}.marks")
    kernels = {}
    for _, _, executed, cls, disas in blocks:
        k = kernel_of(disas, cls)
        if k:
            kernels[k] = kernels.get(k, 0) + executed
    # The hot blocks of the detector's timed calls, per call.
    _, dblocks, _, code = load(f"{out}/{name}.detector.marks")
    hot = [{"at": f"0x{v - code + elf_code:x}", "insns": n, "per_call": ex / iters,
            "kernel": kernel_of(disas, cls) or "", "classes": cls}
           for v, n, ex, cls, disas in dblocks]
    rows[name] = {
        "detector": sorted(dw)[iters // 2],
        "detector_spread": (max(dw) - min(dw)) / min(dw),
        "detector_classes": {k: b[k] - a[k] for k in b},
        "classifier": sorted(cw)[iters // 2],
        "models": sorted(mw)[iters // 2],
        "whole": whole,
        "total": total,
        "kernels": sorted(kernels.items(), key=lambda kv: -kv[1]),
        "detector_hot_blocks": hot,
    }

with open(f"{out}/summary.json", "w") as f:
    json.dump(rows, f, indent=1)


def g(n):
    return "n/a" if n is None else f"{n / 1e9:.3f} G" if n >= 1e8 else f"{n / 1e6:.2f} M"


print(f"\nper call, median of {iters} timed calls; instructions of the main thread (all of the work: one thread).")
print("MAC loops: blocks with >= 8 SDOT/SMLAL/MLA/FMLA (the matrix kernels' inner loops); kernels: over the whole run\n")
print("| run | detector | in MAC loops | rest | SDOT / SMLAL / FMLA | classifier, 1 module | models: detector + classifiers | whole frame | kernels (share of the hot MAC blocks' instructions) |")
print("|---|---|---|---|---|---|---|---|---|")
for name, r in rows.items():
    c = r["detector_classes"]
    hot = sum(v for _, v in r["kernels"]) or 1
    ks = ", ".join(f"{k} {100 * v / hot:.0f} %" for k, v in r["kernels"])
    mac = c.get("macblk", 0)
    print(f"| {name} | {g(r['detector'])} | {g(mac)} | {g(r['detector'] - mac)} | "
          f"{g(c.get('sdot', 0))} / {g(c.get('smlal', 0))} / {g(c.get('fmla', 0))} | "
          f"{g(r['classifier'])} | {g(r['models'])} | {g(r['whole'])} | {ks} |")
print()
for cpu in dict.fromkeys(n.rsplit("-", 1)[0] for n in rows):
    a, b = rows.get(f"{cpu}-int8"), rows.get(f"{cpu}-f32")
    if a and b:
        ratios = [f"{k} {a[k] / b[k]:.2f}" for k in ("detector", "classifier", "models", "whole") if a[k] and b[k]]
        print(f"{cpu}: int8/f32 " + ", ".join(ratios))
print(f"\nhottest blocks of one detector call (ELF addresses of {binary}: "
      "objdump -d --start-address=ADDR), instructions per call")
for name, r in rows.items():
    top = ", ".join(f"{h['at']} {h['insns']} insns {g(h['per_call'])}{' ' + h['kernel'] if h['kernel'] else ''}"
                    for h in r["detector_hot_blocks"][:6])
    print(f"- {name}: {top}")
PY

runs=()
for cpu in $CPUS; do
    for precision in $PRECISIONS; do
        name=$cpu-$precision
        echo "arm-insn-count: $name (pvtherm bench --precision $precision --iterations $ITERS under $QEMU -cpu $cpu)" >&2
        # First the counts at every mark, then, with the marks of the
        # detector's timed calls known (the sequence is deterministic), the
        # hot blocks of those calls alone.
        bench "$name" "$cpu" "$precision" "out=$OUT/$name.marks,top=40"
        window=$(python3 "$analyse" window "$OUT" "$ITERS" "$name")
        bench "$name" "$cpu" "$precision" "out=$OUT/$name.detector.marks,top=40,window=$window"
        runs+=("$name")
    done
done
python3 "$analyse" report "$OUT" "$ITERS" "$BIN" "${runs[@]}"
