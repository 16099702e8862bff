#!/usr/bin/env python3
"""Compares two `pvtherm detect --json` outputs (a reference run, usually x86_64,
and a run on another architecture or build): same structure, same module counts,
numbers within RTOL/ATOL. Prints a summary; exit status 1 on a mismatch.

Used by cross/build-and-compare.sh and cross/release.sh, so every cross build is
judged by the same rule:

    cross/compare_detections.py REF.json GOT.json [RTOL [ATOL]]

RTOL = ATOL = inf checks only structure, module counts and decisions (booleans)
and reports how far the numbers are apart.

Kernels that do the same arithmetic give the same results to ~1e-7 (x86_64 and
aarch64 fuse multiply and add; armv7's NEON kernels do not, like x86_64 with
TRACT_CPU_ISA=-fma). Across the two kinds f32 differs by ~1e-5 and int8 defect
scores by ~2e-3: a float layer feeding an int8 one moves a quantised value by
one step.
"""
import json, math, re, sys

if len(sys.argv) not in (3, 4, 5):
    sys.exit(__doc__)
ref_path, got_path = sys.argv[1], sys.argv[2]
rtol = float(sys.argv[3]) if len(sys.argv) > 3 else 0.001
atol = float(sys.argv[4]) if len(sys.argv) > 4 else 0.001
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
