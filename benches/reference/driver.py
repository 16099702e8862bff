#!/usr/bin/env python3
"""Whole-pipeline benchmark driver: pvtherm against the Python reference.

Benchmark-only code. Run through benches/pipeline.sh, or directly:

    .venv/bin/python benches/reference/driver.py --pvtherm target/release/pvtherm \
        [--dataset ../shared/datasets/pv-thermography] [--python .venv/bin/python]

Paths are relative to the repository root: --dataset defaults to
../shared/datasets/pv-thermography (a folder beside the repository), --python
(the interpreter that runs the reference) to .venv/bin/python when it exists,
else the interpreter running this script. What it does:

1. makes a folder of the same N frames for both sides (default 100: the 92
   R-JPEGs of pv-thermography dataset_1 then dataset_2's, as symlinks named
   000_*.jpg ... so both play them in the same order; without the data set the
   5 fixtures of tests/fixtures/pv/images are cycled);
2. starts its own mosquitto on a free loopback port (generated config, no
   persistence) and one subscriber (paho-mqtt, QoS 1) that timestamps every
   message;
3. runs, interleaved (A B, B A, A B, ...) so that machine load hits both alike:
   `pvtherm run --config <generated>` (replay source, loop false: it exits after
   the last frame, everything published; at --pvtherm-fps 0 a replay waits
   for the model, so nothing is dropped) and
   `python benches/reference/pipeline.py`, each `--runs` times over N frames and
   `--startup-runs` times over 1 frame (start-up cost);
4. measures each child with wait4(2) (getrusage of the child: user+system CPU
   of all its threads, peak RSS) and wall time from spawn to exit; start-up
   time = first message the subscriber sees minus spawn time;
5. prints one table: median [min-max] per side and the ratio pvtherm/reference;
   writes every raw number to --out (JSON).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parents[2]
# Defaults, relative to the repository root (see the module docstring).
DATASET = REPO.parent / "shared" / "datasets" / "pv-thermography"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PREFIX = "bench"


def make_frames(out: Path, n: int, dataset: Path) -> str:
    """Folder of n frames as ordered symlinks; returns a description of the source."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pool = []
    for sub in ("dataset_1", "dataset_2"):
        d = dataset / sub / "images"
        if d.is_dir():
            pool += sorted(p for p in d.iterdir() if p.suffix.lower() == ".jpg")
    what = f"{dataset} (dataset_1 then dataset_2, {len(pool)} R-JPEGs, cycled)"
    if not pool:
        pool = sorted((REPO / "tests/fixtures/pv/images").glob("*.jpg"))
        what = "tests/fixtures/pv/images (5 R-JPEGs, cycled)"
    for i in range(n):
        src = pool[i % len(pool)]
        (out / f"{i:03d}_{src.name}").symlink_to(src)
    return what


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, work: Path):
        self.port = free_port()
        conf = work / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 "max_queued_messages 0", "max_inflight_messages 0", "message_size_limit 0"]
        if os.geteuid() == 0:
            lines.insert(0, "user root")
        conf.write_text("\n".join(lines) + "\n")
        self.log = open(work / "mosquitto.log", "w")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"mosquitto did not start on port {self.port}; see {work / 'mosquitto.log'}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Subscriber:
    """Timestamps every message under bench/<device>/#, per device."""

    def __init__(self, port: int):
        self.lock = threading.Lock()
        self.devices: dict[str, dict] = {}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(f"{PREFIX}/#", qos=1)
        self.c.loop_start()
        time.sleep(0.3)

    def _on_message(self, _c, _u, msg):
        t = time.time()
        parts = msg.topic.split("/", 2)
        if len(parts) < 3 or msg.retain:  # retained leftovers of an earlier run: not this run's
            return
        dev, sub = parts[1], parts[2]
        with self.lock:
            d = self.devices.setdefault(dev, {"first": t, "first_detections": None, "count": {}, "bytes": 0,
                                              "latency_ms": [], "last": t, "stats": None, "modules": 0,
                                              "defect_msgs": 0})
            d["last"] = t
            d["count"][sub] = d["count"].get(sub, 0) + 1
            d["bytes"] += len(msg.payload)
            if sub == "detections":
                if d["first_detections"] is None:
                    d["first_detections"] = t
                j = json.loads(msg.payload)
                d["latency_ms"].append(j.get("latency_ms"))
                d.setdefault("latency_modules", []).append(j.get("module_count", 0))
                d["modules"] += j.get("module_count", 0)
            elif sub == "stats":
                d["stats"] = json.loads(msg.payload)

    def get(self, dev: str) -> dict | None:
        with self.lock:
            return json.loads(json.dumps(self.devices.get(dev)))

    def stop(self):
        self.c.loop_stop()
        self.c.disconnect()


def pvtherm_config(path: Path, device: str, frames: Path, port: int, outbox: Path, precision: str,
                   fps: float, models: Path) -> None:
    path.write_text(f"""# generated by benches/reference/driver.py
[device]
id = "{device}"
topic_prefix = "{PREFIX}"

[source]
kind = "replay"

[source.replay]
path = "{frames}"
fps = {fps}
loop = false

[pipeline]
frame_summary = true

[output]
snapshot_interval = "5s"
thumbnails = true

[model]
# The same files as the reference (not the models built into the binary, which
# may be older than models/).
detector = "{models}/pvtherm-detector-{precision}.onnx"
classifier = "{models}/pvtherm-classifier-{precision}.onnx"

[broker]
enabled = false

[mqtt]
host = "127.0.0.1"
port = {port}

[outbox]
path = "{outbox}"
""")


def run_one(side: str, args, sub: Subscriber, frames: Path, n: int, tag: str, work: Path) -> dict:
    device = f"{side}-{tag}"
    log = open(work / f"{device}.log", "w")
    if side == "pvtherm":
        cfg = work / f"{device}.toml"
        outbox = work / f"{device}-outbox.sqlite"
        pvtherm_config(cfg, device, frames, args.port, outbox, args.precision, args.fps if n > 1 else 0.0,
                       args.models)
        cmd = [str(args.pvtherm), "run", "--config", str(cfg)]
    else:
        cmd = [str(args.python), str(REPO / "benches/reference/pipeline.py"), "--frames", str(frames),
               "--port", str(args.port), "--device", device, "--prefix", PREFIX, "--models", str(args.models),
               "--precision", args.precision, "--threads", str(args.threads)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.time() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Every message was acknowledged by the broker before exit; give the
    # subscriber a moment to see the last ones.
    time.sleep(0.5)
    d = sub.get(device) or {}
    r = {
        "side": side, "frames_in": n, "tag": tag, "rc": proc.returncode, "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
        "maxrss_mb": ru.ru_maxrss / 1024, "cmd": cmd,
        "first_msg_s": d["first"] - t0 if d else None,
        "first_detections_s": d["first_detections"] - t0 if d.get("first_detections") else None,
        "messages": sum(d.get("count", {}).values()), "by_topic": d.get("count", {}), "bytes": d.get("bytes", 0),
        "frames_published": d.get("count", {}).get("detections", 0), "modules": d.get("modules", 0),
        "latency_ms": d.get("latency_ms", []), "latency_modules": d.get("latency_modules", []),
    }
    # Model time per frame = a + b x modules (least squares over the frames):
    # a ~ normalise + detector + decode, b ~ crop + classifier per module.
    lat, mods = r["latency_ms"], r["latency_modules"]
    if len(lat) >= 5 and len(set(mods)) > 1:
        b, a = __import__("numpy").polyfit(mods, lat, 1)
        r["model_fit_ms"] = {"per_frame": a, "per_module": b}
    if side == "reference":  # its own summary line (CPU per stage of the main thread)
        try:
            r["self_report"] = json.loads((work / f"{device}.log").read_text().strip().splitlines()[-1])
        except (ValueError, IndexError):
            pass
    st = d.get("stats")
    if st:
        r["stats"] = {k: st.get(k) for k in ("frames_captured", "frames_processed", "frames_dropped",
                                             "frames_skipped", "defects_detected", "events")}
    if r.get("stats", {}).get("frames_dropped"):
        print(f"  !! {device} dropped {r['stats']['frames_dropped']} frames (pace it: --pvtherm-fps auto)",
              file=sys.stderr)
    if proc.returncode != 0:
        print(f"  !! {device} exited with {proc.returncode}; see {work / (device + '.log')}", file=sys.stderr)
    return r


def med(xs):
    xs = [x for x in xs if x is not None]
    return (statistics.median(xs), min(xs), max(xs)) if xs else None


def fmt(m, digits):
    if m is None:
        return "n/a"
    return f"{m[0]:.{digits}f} [{m[1]:.{digits}f}-{m[2]:.{digits}f}]"


def summarise(results: list[dict], n: int) -> list[tuple]:
    rows = []

    def by(side, frames):
        return [r for r in results if r["side"] == side and r["frames_in"] == frames and r["rc"] == 0]

    def metric(name, fn, digits, frames=n, better="lower"):
        vals = {s: med([fn(r) for r in by(s, frames)]) for s in ("pvtherm", "reference")}
        a, b = vals["pvtherm"], vals["reference"]
        ratio = a[0] / b[0] if a and b and b[0] else None
        rows.append((name, fmt(a, digits), fmt(b, digits), f"{ratio:.2f}" if ratio is not None else "n/a", better))

    metric("frames processed (detections published)", lambda r: r["frames_published"], 0, better="=")
    metric("frames dropped (pvtherm stats message)", lambda r: r.get("stats", {}).get("frames_dropped", 0), 0,
           better="=")
    metric("process CPU, s (user+sys)", lambda r: r["cpu_s"], 2)
    metric("frames per CPU-second", lambda r: r["frames_published"] / r["cpu_s"], 2, better="higher")
    metric("wall time, s", lambda r: r["wall_s"], 2)
    metric("peak RSS, MB", lambda r: r["maxrss_mb"], 1)
    metric("first message (any topic), s", lambda r: r["first_msg_s"], 3)
    metric("first detections message, s", lambda r: r["first_detections_s"], 3)
    metric("model time per frame (latency_ms), ms", lambda r: statistics.median(r["latency_ms"]) if r["latency_ms"] else None, 1)
    metric("  fit: detector part (a), ms", lambda r: r.get("model_fit_ms", {}).get("per_frame"), 1)
    metric("  fit: per module (b), ms", lambda r: r.get("model_fit_ms", {}).get("per_module"), 2)
    metric("messages published", lambda r: r["messages"], 0, better="=")
    metric("start-up run (1 frame): CPU, s", lambda r: r["cpu_s"], 3, frames=1)
    # Marginal CPU per frame: (CPU of an N-frame run - median CPU of the 1-frame runs) / (N - 1).
    for side in ("pvtherm", "reference"):
        one = med([r["cpu_s"] for r in by(side, 1)])
        for r in by(side, n):
            done = max(r["frames_published"], 1)
            r["marginal_cpu_ms"] = (r["cpu_s"] - one[0]) / max(done - 1, 1) * 1e3 if one else None
    metric("marginal CPU per frame, ms", lambda r: r.get("marginal_cpu_ms"), 1)
    return rows


def print_table(rows, out=sys.stdout):
    head = ("metric", "pvtherm", "reference (Python)", "pvtherm/reference", "better")
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
    print(line(head), file=out)
    print("|" + "|".join("-" * (x + 2) for x in w) + "|", file=out)
    for r in rows:
        print(line(r), file=out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pvtherm", type=Path, required=True, help="the pvtherm binary")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5, help="N-frame runs per side")
    ap.add_argument("--startup-runs", type=int, default=3, help="1-frame runs per side")
    ap.add_argument("--precision", default="int8", choices=["int8", "f32"])
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra_op threads of the reference")
    ap.add_argument("--pvtherm-fps", default="0",
                    help="replay rate of pvtherm's N-frame runs: 0 = as fast as the model takes them (default: "
                         "the replay waits for the model, no frame is dropped), a number, or "
                         "auto = 1000 / (1.6 x the model time of the 1-frame runs + 30 ms)")
    ap.add_argument("--dataset", type=Path, default=DATASET,
                    help="the pv-thermography data set (dataset_1/, dataset_2/); default "
                         "../shared/datasets/pv-thermography beside the repository; without it the "
                         "5 fixtures of tests/fixtures/pv/images are cycled")
    ap.add_argument("--python", type=Path, default=VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable),
                    help="Python with numpy, pillow, onnxruntime and paho-mqtt that runs the reference; "
                         "default .venv/bin/python in the repository when it exists, else this interpreter")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pvtherm-bench")
    ap.add_argument("--out", type=Path, help="raw results JSON (default WORK/results.json)")
    ap.add_argument("--only", choices=["pvtherm", "reference"], help="run one side only (development)")
    args = ap.parse_args(argv)

    args.work.mkdir(parents=True, exist_ok=True)
    frames = args.work / f"frames-{args.frames}"
    source = make_frames(frames, args.frames, args.dataset)
    one = args.work / "frames-1"
    make_frames(one, 1, args.dataset)
    # A snapshot of models/ for this benchmark: both sides load the same files even
    # if the models are re-exported meanwhile.
    args.models = args.work / "models"
    if args.models.exists():
        shutil.rmtree(args.models)
    shutil.copytree(REPO / "models", args.models, ignore=shutil.ignore_patterns("training"))
    broker = Broker(args.work)
    args.port = broker.port
    sub = Subscriber(broker.port)
    sides = [args.only] if args.only else ["pvtherm", "reference"]
    print(f"frames: {args.frames} from {source}; broker 127.0.0.1:{broker.port}; pvtherm {args.pvtherm}; "
          f"reference onnxruntime threads={args.threads}; precision {args.precision}", flush=True)
    results = []
    stamp = f"{int(time.time()) % 100000}"
    try:
        plan = [(1, one, args.startup_runs), (args.frames, frames, args.runs)]
        args.fps = 0.0
        for n, folder, runs in plan:
            if n > 1 and "pvtherm" in sides:
                if args.pvtherm_fps == "auto":
                    lat = [x for r in results if r["side"] == "pvtherm" for x in r["latency_ms"] if x]
                    args.fps = round(1000 / (1.6 * statistics.median(lat) + 30), 2) if lat else 0.0
                else:
                    args.fps = float(args.pvtherm_fps)
                print(f"pvtherm replay fps for the {n}-frame runs: {args.fps}", flush=True)
            for i in range(runs):
                order = sides if i % 2 == 0 else sides[::-1]
                for side in order:
                    r = run_one(side, args, sub, folder, n, f"{stamp}-n{n}-r{i}", args.work)
                    results.append(r)
                    extra = f" stats={r['stats']}" if r.get("stats") else ""
                    print(f"  {side:9} n={n:3} run {i}: rc={r['rc']} cpu={r['cpu_s']:.2f}s wall={r['wall_s']:.2f}s "
                          f"rss={r['maxrss_mb']:.0f}MB first={r['first_msg_s']}s "
                          f"frames={r['frames_published']} msgs={r['messages']}{extra}", flush=True)
    finally:
        sub.stop()
        broker.stop()
    rows = summarise(results, args.frames)
    print()
    print_table(rows)
    out = args.out or args.work / "results.json"
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(args.models.glob("*.onnx"))}
    out.write_text(json.dumps({"frames": args.frames, "source": source, "threads": args.threads, "models_md5": md5,
                               "pvtherm_fps": args.fps,
                               "precision": args.precision, "pvtherm": str(args.pvtherm),
                               "results": results, "table": rows}, indent=1))
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
