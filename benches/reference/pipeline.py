#!/usr/bin/env python3
"""Reference pipeline: what a user would write instead of pvtherm, in Python.

Benchmark-only code. The same per-frame work as `pvtherm run` with a
replay source, written the way a competent Python user would write it with the
usual libraries (numpy, Pillow, onnxruntime, paho-mqtt):

1. decode the FLIR R-JPEG's raw 16-bit thermal image **in process**: walk the
   JPEG segments, join the `FLIR\\0` APP1 chunks, read the FFF record directory,
   decode the RawData record (an embedded 16-bit TIFF/PNG, via Pillow) and the
   CameraInfo record (Planck constants). No exiftool subprocess per frame: that
   is what many scripts do, but it costs ~100 ms of CPU per frame and would make
   the comparison meaningless;
2. normalise and resize with `pvtherm_train.preprocess` (the model contract);
3. run the detector with onnxruntime and decode + NMS with `pvtherm_train.decode`;
4. crop every module (`preprocess.crop_module`) and run the classifier on it,
   one crop at a time like pvtherm (no batching: the exported classifier has a
   fixed batch of 1);
5. per-module temperatures: pixels whose centre lies inside the quadrilateral,
   raw -> degrees C with the standard FLIR formula (Thermimage raw2temp, numpy),
   min / max / mean / median / hot spot; delta-T against the median of the
   healthy modules' means; IEC TS 62446-3 style severity class;
6. render (Pillow): a JPEG thumbnail for every defective module (ironbow
   palette, box + 25 % margin, long side 112 px, outline) and, every
   `--snapshot-interval` seconds, the annotated overview of the frame;
7. serialise JSON (detections per frame, one defect message per defective
   module, each thumbnail right after its JSON) and publish everything with
   QoS 1 to an MQTT broker (paho-mqtt), waiting for every PUBACK before exiting.

What pvtherm does and this script does not (so the comparison favours the
script): tracking across frames with `events` messages and their thumbnails, the
durable SQLite outbox (every message written and fsync'ed before it is
published, deleted on PUBACK), stats messages, journald logging.

Run (the benchmark driver benches/pipeline.sh does this):

    .venv/bin/python benches/reference/pipeline.py --frames DIR --port 1883

Prints one JSON summary line on stdout when done.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import math
import os
import resource
import struct
import sys
import time
from pathlib import Path

T_START = time.time()  # before the heavy imports: start-up includes them

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "models" / "training"))
from pvtherm_train import preprocess  # noqa: E402  (the model contract: reused, not copied)
from pvtherm_train.decode import decode  # noqa: E402

KELVIN = 273.15

# --------------------------------------------------------------------------------------
# 1. R-JPEG decoding (FLIR APP1 -> FFF -> RawData + CameraInfo)
# --------------------------------------------------------------------------------------


def flir_app1(jpeg: bytes) -> bytes:
    """Concatenated payloads of the `FLIR\\0` APP1 segments, in chunk order."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    pos, chunks = 2, {}
    while pos + 4 <= len(jpeg):
        if jpeg[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        while jpeg[pos] == 0xFF:
            pos += 1
        marker = jpeg[pos]
        pos += 1
        if marker in (0xDA, 0xD9):  # start of scan / end of image: FLIR data comes before
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        (length,) = struct.unpack_from(">H", jpeg, pos)
        payload = jpeg[pos + 2:pos + length]
        if marker == 0xE1 and payload[:5] == b"FLIR\0":
            chunks[payload[6]] = payload[8:]
        pos += length
    if not chunks:
        raise ValueError("no FLIR APP1 data (not a radiometric R-JPEG)")
    return b"".join(chunks[i] for i in sorted(chunks))


def parse_fff(fff: bytes) -> tuple[np.ndarray, dict]:
    """(raw uint16 image (H, W), Planck/object constants) of an FFF container."""
    for order in (">", "<"):
        if 100 <= struct.unpack_from(order + "I", fff, 0x14)[0] <= 199:
            break
    else:
        raise ValueError("unsupported FFF version")
    dir_off, dir_count = struct.unpack_from(order + "II", fff, 0x18)
    records = {}
    for i in range(dir_count):
        e = dir_off + 0x20 * i
        (rtype,) = struct.unpack_from(order + "H", fff, e)
        off, length = struct.unpack_from(order + "II", fff, e + 0x0C)
        if rtype in (0x01, 0x20) and rtype not in records:
            records[rtype] = fff[off:off + length]

    def rec_order(rec: bytes) -> str:  # a record may use the other byte order
        swap = struct.unpack_from(order + "H", rec, 0)[0] >= 0x100
        return ("<" if order == ">" else ">") if swap else order

    info = records[0x20]
    o = rec_order(info)

    def f(off):
        return struct.unpack_from(o + "f", info, off)[0]

    hum = f(0x3C)
    planck = dict(
        emissivity=f(0x20), object_distance=f(0x24), reflected_c=f(0x28) - KELVIN,
        atmospheric_c=f(0x2C) - KELVIN, ir_window_c=f(0x30) - KELVIN, ir_window_trans=f(0x34),
        humidity=hum / 100 if hum > 2 else hum, r1=f(0x58), b=f(0x5C), f=f(0x60),
        alpha1=f(0x70), alpha2=f(0x74), beta1=f(0x78), beta2=f(0x7C), x=f(0x80),
        o=float(struct.unpack_from(o + "i", info, 0x308)[0]), r2=f(0x30C))

    raw_rec = records[0x01]
    ro = rec_order(raw_rec)
    w, h = struct.unpack_from(ro + "HH", raw_rec, 2)
    body = raw_rec[0x20:]
    if body[:4] in (b"II*\0", b"MM\0*"):
        raw = preprocess.read_raw_tiff(io.BytesIO(body))
    elif body[:8] == b"\x89PNG\r\n\x1a\n":
        raw = np.array(Image.open(io.BytesIO(body))).astype(np.uint16)
        # FLIR usually writes PNG samples little-endian: keep the smoother order.
        sw = raw.byteswap()
        rough = lambda a: np.abs(np.diff(a.astype(np.int32), axis=1)).sum()  # noqa: E731
        raw = raw if rough(raw) < rough(sw) else sw
    else:
        raw = np.frombuffer(body, dtype=ro + "u2", count=w * h).reshape(h, w).astype(np.uint16)
    if raw.shape != (h, w):
        raise ValueError(f"RawData says {w}x{h}, image is {raw.shape[1]}x{raw.shape[0]}")
    return raw, planck


def load_rjpeg(path: Path) -> tuple[np.ndarray, dict]:
    return parse_fff(flir_app1(path.read_bytes()))


def raw2temp(raw: np.ndarray, p: dict) -> np.ndarray:
    """Degrees C of raw values (numpy), the FLIR formula as in Thermimage raw2temp
    (same constants and assumptions as tests/scripts/planck_check.py and src/flir.rs)."""
    e, irt = p["emissivity"], p["ir_window_trans"]
    t = p["atmospheric_c"]
    h2o = p["humidity"] * math.exp(1.5587 + 0.06939 * t - 0.00027816 * t * t + 0.00000068455 * t ** 3)
    d, s = math.sqrt(p["object_distance"] / 2), math.sqrt(h2o)
    tau = p["x"] * math.exp(-d * (p["alpha1"] + p["beta1"] * s)) + (1 - p["x"]) * math.exp(
        -d * (p["alpha2"] + p["beta2"] * s))

    def bb(tc):
        return p["r1"] / (p["r2"] * (math.exp(p["b"] / (tc + KELVIN)) - p["f"])) - p["o"]

    offset = ((1 - e) / e * bb(p["reflected_c"]) + (1 - tau) / e / tau * bb(p["atmospheric_c"])
              + (1 - irt) / e / tau / irt * bb(p["ir_window_c"])
              + (1 - tau) / e / tau / irt / tau * bb(p["atmospheric_c"]))
    obj = raw.astype(np.float64) / (e * tau * irt * tau) - offset
    with np.errstate(invalid="ignore", divide="ignore"):
        return p["b"] / np.log(p["r1"] / (p["r2"] * (obj + p["o"])) + p["f"]) - KELVIN


# --------------------------------------------------------------------------------------
# 5. Per-module temperatures, delta-T, severity
# --------------------------------------------------------------------------------------

CLASS_FLOOR = {"Offline-Module": 2, "Diode": 2, "Diode-Multi": 2}
SEVERITY_LABEL = {1: "observe", 2: "anomaly", 3: "safety"}


def inside_quad(quad: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd test of points (xs, ys) against a 4-corner polygon, vectorised."""
    inside = np.zeros(np.broadcast(xs, ys).shape, bool)
    j = 3
    for i in range(4):
        (ax, ay), (bx, by) = quad[i], quad[j]
        if ay != by:
            cross = ((ay > ys) != (by > ys)) & (xs < (bx - ax) * (ys - ay) / (by - ay) + ax)
            inside ^= cross
        j = i
    return inside


def module_temperature(raw: np.ndarray, planck: dict, quad: np.ndarray) -> dict | None:
    h, w = raw.shape
    x0, y0 = np.floor(np.clip(quad.min(axis=0), 0, [w, h])).astype(int)
    x1, y1 = np.ceil(np.clip(quad.max(axis=0), 0, [w, h])).astype(int)
    if x1 <= x0 or y1 <= y0:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1]
    mask = inside_quad(quad, xs + 0.5, ys + 0.5)
    if not mask.any():
        return None
    region = raw[y0:y1, x0:x1]
    samples = region[mask]
    temps = raw2temp(samples, planck)
    temps = temps[np.isfinite(temps)]
    if temps.size == 0:
        return None
    hy, hx = np.unravel_index(np.argmax(np.where(mask, region, 0)), region.shape)
    return {"min": float(temps.min()), "max": float(temps.max()), "mean": float(temps.mean()),
            "median": float(np.median(temps)), "hotspot": {"x": x0 + hx + 0.5, "y": y0 + hy + 0.5},
            "pixels": int(samples.size), "unit": "celsius"}


def severity(delta_k: float | None, defective: bool, anomaly: str) -> dict | None:
    cls = None
    if delta_k is not None and math.isfinite(delta_k):
        cls = 3 if delta_k > 20 else 2 if delta_k >= 10 else 1
    if defective and anomaly in CLASS_FLOOR:
        cls = max(cls or 0, CLASS_FLOOR[anomaly])
    return None if cls is None else {"class": cls, "label": SEVERITY_LABEL[cls]}


# --------------------------------------------------------------------------------------
# 6. Rendering (ironbow palette, overview, thumbnails)
# --------------------------------------------------------------------------------------

_IRONBOW = [(0.00, (0, 0, 10)), (0.15, (40, 0, 110)), (0.30, (120, 0, 150)), (0.45, (190, 20, 120)),
            (0.60, (230, 70, 40)), (0.75, (250, 140, 0)), (0.90, (255, 210, 40)), (1.00, (255, 255, 230))]
_pos = np.array([p for p, _ in _IRONBOW])
_t = np.arange(256) / 255.0
PALETTE = np.stack([np.interp(_t, _pos, [c[k] for _, c in _IRONBOW]) for k in range(3)], axis=1).round().astype(np.uint8)
HEALTHY, DEFECT = (0, 230, 0), (255, 0, 255)


def thermal(raw: np.ndarray) -> Image.Image:
    lo, hi = np.percentile(raw, [1.0, 99.5])
    hi = max(hi, lo + 1)
    idx = np.clip((raw.astype(np.float32) - lo) / (hi - lo) * 255 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(PALETTE[idx], "RGB")


def outline(draw: ImageDraw.ImageDraw, quad: np.ndarray, color, width: int) -> None:
    pts = [tuple(map(float, p)) for p in quad]
    draw.line(pts + [pts[0]], fill=color, width=width)


def overview(raw: np.ndarray, modules: list[dict]) -> Image.Image:
    img = thermal(raw)
    draw = ImageDraw.Draw(img)
    for m in sorted(modules, key=lambda m: m["defective"]):
        outline(draw, m["_quad"], DEFECT if m["defective"] else HEALTHY, 2)
        if m["defective"]:
            label = f"{m['defect_score']:.2f}"
            if m.get("severity"):
                label += f" S{m['severity']['class']}"
            if m.get("delta_t") is not None:
                label += f" {m['delta_t']:+.0f}K"
            x0, y0 = m["bbox"]["x0"], m["bbox"]["y0"]
            draw.text((max(x0, 0), y0 - 12 if y0 >= 12 else m["bbox"]["y1"] + 2), label, fill=DEFECT)
    return img


def thumbnail(raw: np.ndarray, quad: np.ndarray, margin: float = 0.25, size: int = 112) -> Image.Image | None:
    h, w = raw.shape
    (bx0, by0), (bx1, by1) = quad.min(axis=0), quad.max(axis=0)
    mx, my = (bx1 - bx0) * margin, (by1 - by0) * margin
    x0, y0 = int(np.clip(np.floor(bx0 - mx), 0, w)), int(np.clip(np.floor(by0 - my), 0, h))
    x1, y1 = int(np.clip(np.ceil(bx1 + mx), 0, w)), int(np.clip(np.ceil(by1 + my), 0, h))
    if x1 <= x0 or y1 <= y0:
        return None
    img = thermal(raw[y0:y1, x0:x1])
    s = size / max(img.width, img.height)
    tw, th = max(1, round(img.width * s)), max(1, round(img.height * s))
    sx, sy = tw / img.width, th / img.height
    img = img.resize((tw, th), Image.BILINEAR)
    outline(ImageDraw.Draw(img), (quad - [x0, y0]) * [sx, sy], DEFECT, 2)
    return img


def jpeg(img: Image.Image, ident: str, quality: int = 80) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, comment=f"pvtherm-id={ident}".encode())
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Models:
    def __init__(self, models_dir: Path, precision: str, threads: int):
        so = ort.SessionOptions()
        if threads > 0:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        prov = ["CPUExecutionProvider"]
        self.det = ort.InferenceSession(str(models_dir / f"pvtherm-detector-{precision}.onnx"), so, providers=prov)
        self.cls = ort.InferenceSession(str(models_dir / f"pvtherm-classifier-{precision}.onnx"), so, providers=prov)
        dm = self.det.get_modelmeta().custom_metadata_map
        cm = self.cls.get_modelmeta().custom_metadata_map
        self.score_threshold = float(dm.get("pvtherm.score_threshold", 0.3))
        self.defect_threshold = float(cm.get("pvtherm.defect_threshold", 0.5))
        self.classes = cm["pvtherm.classes"].split(",")
        self.info = {"name": dm.get("pvtherm.name", "pvtherm-detector"), "version": dm.get("pvtherm.version", "?"),
                     "detector": f"pvtherm-detector-{precision}.onnx",
                     "classifier": f"pvtherm-classifier-{precision}.onnx"}

    def infer(self, raw: np.ndarray, in_h: int = 512, in_w: int = 640) -> list[dict]:
        h, w = raw.shape
        x = preprocess.model_input(raw, in_h, in_w)
        maps = self.det.run(None, {"image": x[None, None]})[0][0]
        scores, quads, _ = decode(maps, self.score_threshold)
        quads = quads * [w / in_w, h / in_h]
        out = []
        for score, quad in zip(scores, quads):
            box = np.concatenate([np.clip(quad.min(axis=0), 0, [w, h]), np.clip(quad.max(axis=0), 0, [w, h])])
            if (box[2] - box[0]) * (box[3] - box[1]) <= 0:
                continue
            crop = preprocess.crop_module(raw, quad)
            logits = self.cls.run(None, {"crop": crop[None, None]})[0].reshape(-1)
            p = 1 / (1 + math.exp(-float(logits[12])))
            defective = p >= self.defect_threshold
            best = int(np.argmax(logits[1:12]) + 1) if defective else int(np.argmax(logits[:12]))
            out.append({"quad": [{"x": float(a), "y": float(b)} for a, b in quad],
                        "bbox": dict(zip(("x0", "y0", "x1", "y1"), map(float, box))),
                        "score": float(score), "defective": bool(defective), "defect_score": p,
                        "anomaly_class": self.classes[best], "_quad": quad})
        return out


def analyse(raw: np.ndarray, planck: dict, modules: list[dict]) -> float | None:
    for m in modules:
        m["temperature"] = module_temperature(raw, planck, m["_quad"])
    means = [m["temperature"]["mean"] for m in modules if m["temperature"] and not m["defective"]]
    if len(means) < 3:
        means = [m["temperature"]["mean"] for m in modules if m["temperature"]]
    ref = float(np.median(means)) if means else None
    for m in modules:
        t = m["temperature"]
        m["delta_t"] = t["max"] - ref if t and ref is not None else None
        m["severity"] = severity(m["delta_t"], m["defective"], m["anomaly_class"])
    return ref


def public(index: int, m: dict) -> dict:
    d = {k: v for k, v in m.items() if not k.startswith("_") and v is not None}
    return {"index": index, **d}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", required=True, type=Path, help="folder of FLIR R-JPEGs, played in name order")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--device", default="reference", help="device id (topic <prefix>/<device>/...)")
    ap.add_argument("--prefix", default="pvtherm")
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--precision", default="int8", choices=["int8", "f32"])
    ap.add_argument("--threads", type=int, default=1,
                    help="onnxruntime intra_op_num_threads (0 = onnxruntime's default: all cores)")
    ap.add_argument("--snapshot-interval", type=float, default=5.0, help="seconds between snapshots (0 = never)")
    args = ap.parse_args(argv)

    topic = lambda t: f"{args.prefix}/{args.device}/{t}"  # noqa: E731
    files = sorted(p for p in args.frames.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    models = Models(args.models, args.precision, args.threads)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ref-{args.device}")
    client.max_inflight_messages_set(32)
    client.max_queued_messages_set(0)
    client.will_set(topic("availability"), "offline", qos=1, retain=True)
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    pending = [client.publish(topic("availability"), "online", qos=1, retain=True)]
    t_first_publish = time.time() - T_START
    t_first_detections = None

    # CPU of the main thread per stage (thread_time), printed in the summary; the
    # rest of the process CPU is start-up and the paho network thread.
    stages = dict.fromkeys(("decode", "model", "analyse", "render", "serialise_publish"), 0.0)
    clock = [time.thread_time()]

    def lap(stage):
        now_cpu = time.thread_time()
        stages[stage] += now_cpu - clock[0]
        clock[0] = now_cpu

    run_id = f"{int(T_START * 1000):x}"
    last_snapshot = None
    n_modules = n_defects = 0
    for seq, path in enumerate(files):
        lap("serialise_publish")
        raw, planck = load_rjpeg(path)
        lap("decode")
        captured = now_rfc3339()
        t0 = time.perf_counter()
        modules = models.infer(raw)
        latency_ms = (time.perf_counter() - t0) * 1e3
        lap("model")
        ref = analyse(raw, planck, modules)
        lap("analyse")
        h, w = raw.shape
        frame = {"sequence": seq, "captured_at": captured, "width": w, "height": h, "origin": str(path),
                 "radiometric": True}
        mid = f"{args.device}-{run_id}-{seq}"
        defects = [(i, m) for i, m in enumerate(modules) if m["defective"]]
        n_modules += len(modules)
        n_defects += len(defects)
        if modules:
            msg = {"schema": 1, "message_id": mid, "device": args.device, "frame": frame, "model": models.info,
                   "latency_ms": latency_ms, "unit": "celsius", "reference_temp": ref,
                   "module_count": len(modules), "defect_count": len(defects),
                   "modules": [public(i, m) for i, m in enumerate(modules)]}
            pending.append(client.publish(topic("detections"), json.dumps(msg), qos=1))
            if t_first_detections is None:
                t_first_detections = time.time() - T_START
        for i, m in defects:
            did = f"{mid}-m{i}"
            lap("serialise_publish")
            img = thumbnail(raw, m["_quad"])
            thumb = jpeg(img, did) if img is not None else None
            lap("render")
            msg = {"schema": 1, "message_id": did, "detections_id": mid, "device": args.device, "frame": frame,
                   "unit": "celsius", "module": public(i, m)}
            if thumb is not None:
                msg["thumbnail"] = {"topic": topic("defects/thumbnail"), "bytes": len(thumb)}
            pending.append(client.publish(topic("defects"), json.dumps(msg), qos=1))
            if thumb is not None:
                pending.append(client.publish(topic("defects/thumbnail"), thumb, qos=1))
        now = time.monotonic()
        if args.snapshot_interval > 0 and (last_snapshot is None or now - last_snapshot >= args.snapshot_interval):
            last_snapshot = now
            lap("serialise_publish")
            snap = jpeg(overview(raw, modules), mid)
            lap("render")
            pending.append(client.publish(topic("snapshot"), snap, qos=1, retain=True))
        # Drop acknowledged handles so memory does not grow with the run.
        pending = [p for p in pending if not p.is_published()]

    lap("serialise_publish")
    for p in pending:
        p.wait_for_publish(timeout=30)
    client.publish(topic("availability"), "offline", qos=1, retain=True).wait_for_publish(timeout=10)
    client.disconnect()
    client.loop_stop()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "frames": len(files), "modules": n_modules, "defects": n_defects,
        "wall_s": time.time() - T_START, "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss,
        "first_publish_s": t_first_publish, "first_detections_s": t_first_detections,
        "threads": args.threads, "precision": args.precision, "pid": os.getpid(),
        "stage_cpu_ms_per_frame": {k: round(v / max(len(files), 1) * 1e3, 2) for k, v in stages.items()},
    }))


if __name__ == "__main__":
    main()
