#!/usr/bin/env python3
"""Independent check of pvtherm's FLIR raw -> degrees C conversion.

Reads the Planck / object / atmosphere constants and the RawThermalImage of
FLIR R-JPEG or FFF files with exiftool (nothing else but the Python standard
library), and prints raw value and temperature for a few pixels, using the
standard FLIR formula as written in Thermimage's raw2temp (Tattersall) and the
exiftool forum thread it cites, with the atmosphere as FLIR Tools models it:
one path over the whole object distance between object and IR window
(raw2temp's default splits it into two half-distance paths, one on each side
of the window, which reads up to 0.9 K differently at 50 m).

The output is the golden file tests/fixtures/planck_golden.tsv, which the Rust
test `tests/radiometric.rs` compares against, so CI does not need exiftool:

    python3 tests/scripts/planck_check.py tests/fixtures/pv/images/*.jpg \
        tests/fixtures/fff/frame_000000_le.fff > tests/fixtures/planck_golden.tsv

Columns: file name, x, y, raw value, degrees C (6 decimals).
"""

import json
import math
import os
import struct
import subprocess
import sys


def exiftool_json(path):
    """All FLIR tags of `path` as numbers (exiftool -n)."""
    out = subprocess.run(
        ["exiftool", "-j", "-n", "-FLIR:all", path],
        check=True, capture_output=True,
    ).stdout
    tags = json.loads(out)[0]
    # exiftool -j quotes some numbers (e.g. "-0.00227600010111928"): make them floats
    for k, v in tags.items():
        if isinstance(v, str):
            try:
                tags[k] = float(v)
            except ValueError:
                pass
    return tags


def raw_image(path, width, height):
    """The RawThermalImage as a list of rows of ints.

    exiftool wraps uncompressed little-endian FLIR raw data in a minimal TIFF
    header; the pixel data is the last width*height*2 bytes of that blob.
    """
    blob = subprocess.run(
        ["exiftool", "-b", "-RawThermalImage", path],
        check=True, capture_output=True,
    ).stdout
    if blob[:4] not in (b"II*\0", b"MM\0*"):
        raise SystemExit(f"{path}: RawThermalImage is not TIFF (PNG is not handled here)")
    n = width * height
    data = blob[len(blob) - 2 * n:]
    fmt = ("<" if blob[:2] == b"II" else ">") + f"{n}H"
    flat = struct.unpack(fmt, data)
    return [flat[r * width:(r + 1) * width] for r in range(height)]


def raw_to_celsius(raw, t):
    """raw2temp with the constants of exiftool tag dict `t`, single-path atmosphere."""
    e = t["Emissivity"]
    od = t["ObjectDistance"]
    rtemp = t["ReflectedApparentTemperature"]
    atemp = t["AtmosphericTemperature"]
    irwtemp = t["IRWindowTemperature"]
    irt = t["IRWindowTransmission"]
    rh = t["RelativeHumidity"] * 100.0  # exiftool -n gives 0..1
    r1, b, f, o, r2 = (t["PlanckR1"], t["PlanckB"], t["PlanckF"], t["PlanckO"], t["PlanckR2"])
    a1, a2 = t["AtmosphericTransAlpha1"], t["AtmosphericTransAlpha2"]
    b1, b2 = t["AtmosphericTransBeta1"], t["AtmosphericTransBeta2"]
    x = t["AtmosphericTransX"]

    emiss_wind = 1.0 - irt
    refl_wind = 0.0
    h2o = (rh / 100.0) * math.exp(
        1.5587 + 0.06939 * atemp - 0.00027816 * atemp ** 2 + 0.00000068455 * atemp ** 3
    )
    tau1 = x * math.exp(-math.sqrt(od) * (a1 + b1 * math.sqrt(h2o))) + (1.0 - x) * math.exp(
        -math.sqrt(od) * (a2 + b2 * math.sqrt(h2o))
    )
    # No atmosphere between the window and the camera.
    tau2 = 1.0

    def blackbody(tc):
        return r1 / (r2 * (math.exp(b / (tc + 273.15)) - f)) - o

    raw_refl1_attn = (1.0 - e) / e * blackbody(rtemp)
    raw_atm1_attn = (1.0 - tau1) / e / tau1 * blackbody(atemp)
    raw_wind_attn = emiss_wind / e / tau1 / irt * blackbody(irwtemp)
    raw_refl2_attn = refl_wind / e / tau1 / irt * blackbody(rtemp)
    raw_atm2_attn = (1.0 - tau2) / e / tau1 / irt / tau2 * blackbody(atemp)
    raw_obj = (
        raw / e / tau1 / irt / tau2
        - raw_atm1_attn - raw_atm2_attn - raw_wind_attn - raw_refl1_attn - raw_refl2_attn
    )
    return b / math.log(r1 / (r2 * (raw_obj + o)) + f) - 273.15


def positions(rows, width, height):
    """Fixed sample pixels plus the coldest and the hottest pixel."""
    pts = [(0, 0), (width // 2, height // 2), (width - 1, height - 1),
           (width // 4, height // 3), (3 * width // 4, 2 * height // 3)]
    flat = [(v, xx, yy) for yy, row in enumerate(rows) for xx, v in enumerate(row)]
    _, x0, y0 = min(flat)
    _, x1, y1 = max(flat)
    return pts + [(x0, y0), (x1, y1)]


def main(paths):
    print("# file\tx\ty\traw\tcelsius  (tests/scripts/planck_check.py, exiftool + raw2temp, single-path atmosphere)")
    for path in paths:
        tags = exiftool_json(path)
        w, h = tags["RawThermalImageWidth"], tags["RawThermalImageHeight"]
        rows = raw_image(path, w, h)
        for x, y in positions(rows, w, h):
            raw = rows[y][x]
            print(f"{os.path.basename(path)}\t{x}\t{y}\t{raw}\t{raw_to_celsius(raw, tags):.6f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
