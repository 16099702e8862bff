#!/usr/bin/env python3
"""Frame time of the daemon with the live page open against without it.

One daemon replays the fixture frames (tests/fixtures/pv/images) in a loop
as fast as the pipeline takes them (`[source.replay] fps = 0`; the f32
models, so every run times the same pair), publishing to its own local
mosquitto, with `[http] enabled`. While it runs, phases alternate: no client
at all, then a real headless Chromium showing /live (which polls
/api/v1/status every 2 s and fetches each new snapshot, made every second
here), then no client, ... in pairs whose order flips each time, so load
from anything else on the machine falls on both sides alike.

Each phase is judged from the daemon's own `stats` messages received inside
it: frame time = wall time between the phase's first and last message /
frames processed between them (decode, models, rendering, outbox: the whole
frame); daemon CPU per frame = the daemon's CPU time (every thread, the web
server's too) over the same span / those frames; the web server's share =
the CPU time of its thread (`pvtherm-http`, which runs the whole HTTP
runtime) / the daemon's: the direct cost of serving the page, which other
load on the machine does not blur; and model time = the median of the
messages' inference p50. The browser runs on the same machine, so its own
CPU counts against the pipeline: an upper bound of what a page opened from
another computer costs.

    benches/web-open.py                      # 8 pairs of 15 s phases
    benches/web-open.py --pairs 7 --phase-s 30 --json out.json
    PVTHERM=target/debug/pvtherm benches/web-open.py

Needs a built pvtherm (PVTHERM, else target/release/pvtherm, else
target/debug/pvtherm), mosquitto, mosquitto_sub and chromium. Standard
library only. Results and how to read them: BENCHMARKS.md, "Web page open".
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "pv" / "images"
DEVICE = "web-bench"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    """Waits until something accepts on `port`; fails when `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} never listened on {port}")


def pick_pvtherm() -> str:
    """PVTHERM, else the release build, else the debug build (with a note)."""
    if os.environ.get("PVTHERM"):
        return os.environ["PVTHERM"]
    for build in ("release", "debug"):
        exe = REPO / "target" / build / "pvtherm"
        if exe.is_file():
            return str(exe)
    raise SystemExit("no pvtherm binary: run 'cargo build' first (or set PVTHERM=...)")


def cpu_seconds(stat: Path) -> float:
    """User + system CPU time in a /proc `stat` file (a process: all its
    threads; a task: that thread)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_schedstat(pid: int, name: str) -> Path | None:
    """The /proc `schedstat` file (nanoseconds on a CPU) of the thread of
    `pid` called `name`: finer than `stat`'s clock ticks, which a thread
    that works for microseconds at a time never reaches."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == name:
            return task / "schedstat"
    return None


class Stats:
    """Collects the daemon's `stats` messages with their arrival times, and
    at each the CPU time of the daemon and of its web server's thread
    (`pvtherm-http`: the whole HTTP runtime); set `pid` once it runs."""

    def __init__(self, port: int):
        self.messages: list[tuple[float, dict, tuple[float, float]]] = []
        self.pid: int | None = None
        self.http_stat: Path | None = None
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
             "-t", f"pvtherm/{DEVICE}/stats"],
            stdout=subprocess.PIPE, text=True, bufsize=1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            cpu = (float("nan"), float("nan"))
            try:
                if self.pid:
                    self.http_stat = self.http_stat or thread_schedstat(self.pid, "pvtherm-http")
                    http = (int(self.http_stat.read_text().split()[0]) / 1e9
                            if self.http_stat else float("nan"))
                    cpu = (cpu_seconds(Path(f"/proc/{self.pid}/stat")), http)
            except OSError:  # the daemon has just exited
                pass
            self.messages.append((time.monotonic(), msg, cpu))

    def wait_count(self, n: int, timeout: float) -> None:
        """Waits until `n` messages arrived."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(self.messages)} stats messages after {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class DevTools:
    """The smallest WebSocket client DevTools needs (RFC 6455: masked text
    frames out, unmasked frames in), so the script needs no packages."""

    def __init__(self, ws_url: str):
        rest = ws_url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise SystemExit(f"DevTools refused the websocket: {head!r}")
        self.next_id = 1

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise SystemExit("DevTools closed the websocket")
            data += chunk
        return data

    def _recv_message(self) -> str:
        parts = b""
        while True:
            b0, b1 = self._recv_exact(2)
            size = b1 & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._recv_exact(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._recv_exact(8))[0]
            parts += self._recv_exact(size)
            if b0 & 0x80:
                return parts.decode()

    def eval(self, expression: str):
        """The value of a JavaScript expression in the page."""
        call_id = self.next_id
        self.next_id += 1
        payload = json.dumps({"id": call_id, "method": "Runtime.evaluate",
                              "params": {"expression": expression, "returnByValue": True}}).encode()
        mask = os.urandom(4)
        size = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | size]) if size < 126
                                  else bytes([0x80 | 126]) + struct.pack(">H", size))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while True:
            reply = json.loads(self._recv_message())
            if reply.get("id") == call_id:
                return reply.get("result", {}).get("result", {}).get("value")

    def close(self) -> None:
        self.sock.close()


class Browser:
    """Headless Chromium on the live page, with the page's request counter."""

    def __init__(self, chromium: str, url: str, profile: Path):
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--remote-debugging-port=0", "--window-size=900,1400",
             f"--user-data-dir={profile}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        for line in self.proc.stderr:
            if "ws://127.0.0.1:" in line:
                port = int(line.split("ws://127.0.0.1:", 1)[1].split("/", 1)[0])
                break
        if port is None:
            raise SystemExit("chromium did not print its DevTools address")
        # Keep reading its log, so a full pipe never stalls it.
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        deadline = time.monotonic() + 20
        while True:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
            page = next((t for t in targets if t["type"] == "page" and "webSocketDebuggerUrl" in t), None)
            if page:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"no page target in chromium: {targets}")
            time.sleep(0.1)
        self.devtools = DevTools(page["webSocketDebuggerUrl"])

    def wait_until_shown(self, timeout: float) -> None:
        """Waits until the page shows the live snapshot and the camera online."""
        deadline = time.monotonic() + timeout
        shown = ("document.getElementById('snapshot').naturalWidth > 0 && "
                 "document.getElementById('health').textContent.includes('online')")
        while self.devtools.eval(shown) is not True:
            if time.monotonic() > deadline:
                raise SystemExit("the live page never showed the snapshot")
            time.sleep(0.2)

    def api_requests(self) -> int:
        """How many requests the page has made to /api so far."""
        return self.devtools.eval(
            "performance.getEntriesByType('resource').filter(e => e.name.includes('/api/')).length")

    def close(self) -> None:
        self.devtools.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def config_text(work: Path, broker: int, http: int, stats_s: float) -> str:
    """The daemon's configuration: a looping replay at full speed."""
    return f"""[device]
id = "{DEVICE}"
[model]
precision = "f32"
[source]
kind = "replay"
[source.replay]
path = "{FIXTURES}"
fps = 0
loop = true
[output]
snapshot_interval = "1s"
stats_interval = "{stats_s}s"
[mqtt]
host = "127.0.0.1"
port = {broker}
[outbox]
path = "{work / 'outbox.sqlite'}"
[http]
enabled = true
listen = "127.0.0.1:{http}"
"""


def phase_numbers(messages: list[tuple[float, dict, tuple[float, float]]], start: float,
                  end: float) -> dict | None:
    """Frame time, daemon CPU per frame, the web server's share of it and
    model time from the stats messages whose windows lie inside [start, end]."""
    inside = [(t, m, cpu) for (t, m, cpu), (prev, _, _) in zip(messages[1:], messages[:-1])
              if prev >= start and t <= end]
    if len(inside) < 2:
        return None
    (t0, first, (cpu0, http0)), (t1, last, (cpu1, http1)) = inside[0], inside[-1]
    frames = last["frames_processed"] - first["frames_processed"]
    if frames <= 0:
        return None
    return {
        "frame_ms": 1000 * (t1 - t0) / frames,
        "cpu_ms": 1000 * (cpu1 - cpu0) / frames,
        "http_cpu_pct": 100 * (http1 - http0) / (cpu1 - cpu0),
        "http_cpu_ms": 1000 * (http1 - http0),
        "model_ms": statistics.median(m["inference"]["p50_ms"] for _, m, _ in inside[1:]),
        "frames": frames,
        "windows": len(inside) - 1,
    }


def spread(values: list[float], digits: int = 1) -> str:
    """`median [min-max]`."""
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=8, help="phase pairs (no client, page open)")
    parser.add_argument("--phase-s", type=float, default=15, help="measured seconds per phase")
    parser.add_argument("--settle-s", type=float, default=4,
                        help="seconds after a phase's set-up before it is measured")
    parser.add_argument("--stats-s", type=float, default=2, help="[output] stats_interval, seconds")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                        help="the browser to open /live in (default: chromium on PATH)")
    parser.add_argument("--json", type=Path, help="also write every phase's numbers here")
    args = parser.parse_args()
    for tool in ("mosquitto", "mosquitto_sub"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install mosquitto mosquitto-clients)")
    if not args.chromium:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    pvtherm = pick_pvtherm()
    version = subprocess.run([pvtherm, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"pvtherm: {pvtherm} ({version}); load average: {os.getloadavg()[0]:.2f}")

    work = Path(tempfile.mkdtemp(prefix="pvtherm-web-open-"))
    broker_port, http_port = free_port(), free_port()
    (work / "mosquitto.conf").write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\n")
    (work / "pvtherm.toml").write_text(config_text(work, broker_port, http_port, args.stats_s))
    procs: list[subprocess.Popen] = []
    browser = None
    try:
        broker = subprocess.Popen(["mosquitto", "-c", str(work / "mosquitto.conf")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(broker)
        wait_for_port(broker_port, broker, "mosquitto")
        stats = Stats(broker_port)
        daemon_log = open(work / "daemon.log", "w")
        daemon = subprocess.Popen([pvtherm, "run", "--config", str(work / "pvtherm.toml")],
                                  stdout=daemon_log, stderr=subprocess.STDOUT)
        procs.append(daemon)
        stats.pid = daemon.pid
        wait_for_port(http_port, daemon, "the daemon")
        # Warm-up: models loaded, a few windows at full speed.
        stats.wait_count(3, timeout=120)
        phases = []
        for pair in range(args.pairs):
            order = ["none", "page"] if pair % 2 == 0 else ["page", "none"]
            for kind in order:
                requests_before = None
                if kind == "page":
                    browser = Browser(args.chromium, f"http://127.0.0.1:{http_port}/live",
                                      work / f"profile-{pair}")
                    browser.wait_until_shown(timeout=60)
                time.sleep(args.settle_s)
                if browser:
                    requests_before = browser.api_requests()
                start = time.monotonic()
                time.sleep(args.phase_s)
                end = time.monotonic()
                requests = browser.api_requests() - requests_before if browser else 0
                if browser:
                    browser.close()
                    browser = None
                # The last window must have arrived before the phase is judged.
                time.sleep(args.stats_s + 0.5)
                numbers = phase_numbers(stats.messages, start, end)
                if numbers is None:
                    raise SystemExit(f"no complete stats window in phase {kind} of pair {pair}")
                numbers.update(kind=kind, pair=pair, api_requests=requests,
                               load=os.getloadavg()[0])
                phases.append(numbers)
                print(f"pair {pair} {kind:4}: frame {numbers['frame_ms']:.1f} ms, daemon CPU "
                      f"{numbers['cpu_ms']:.1f} ms/frame (web server {numbers['http_cpu_ms']:.1f} ms = {numbers['http_cpu_pct']:.3f} %), model p50 "
                      f"{numbers['model_ms']:.1f} ms, {numbers['frames']} frames, "
                      f"{requests} page requests to /api, load {numbers['load']:.2f}", flush=True)
    finally:
        if browser:
            browser.close()
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if "stats" in locals():
            stats.stop()

    def of(kind: str, key: str) -> list[float]:
        return [p[key] for p in phases if p["kind"] == kind]

    def per_pair(key: str) -> list[float]:
        """page / none of `key` within each pair (neighbouring phases)."""
        by = {(p["pair"], p["kind"]): p[key] for p in phases}
        return [by[(i, "page")] / by[(i, "none")] for i in range(args.pairs)]

    ratios, cpu_ratios, model_ratios = per_pair("frame_ms"), per_pair("cpu_ms"), per_pair("model_ms")
    print()
    print(f"{args.pairs} pairs of {args.phase_s:.0f} s phases; median [min-max] over phases")
    print(f"| {'metric':26} | {'no client':20} | {'live page open':20} | {'page/none (per pair)':22} |")
    print(f"|{'-' * 28}|{'-' * 22}|{'-' * 22}|{'-' * 24}|")
    print(f"| {'frame time, ms':26} | {spread(of('none', 'frame_ms')):20} | "
          f"{spread(of('page', 'frame_ms')):20} | {spread(ratios, 3):22} |")
    print(f"| {'daemon CPU per frame, ms':26} | {spread(of('none', 'cpu_ms')):20} | "
          f"{spread(of('page', 'cpu_ms')):20} | {spread(cpu_ratios, 3):22} |")
    print(f"| {'web server share of CPU, %':26} | {spread(of('none', 'http_cpu_pct'), 3):20} | "
          f"{spread(of('page', 'http_cpu_pct'), 3):20} | {'':22} |")
    print(f"| {'model time (p50), ms':26} | {spread(of('none', 'model_ms')):20} | "
          f"{spread(of('page', 'model_ms')):20} | {spread(model_ratios, 3):22} |")
    print(f"| {'page requests to /api':26} | {'0':20} | {spread(of('page', 'api_requests'), 0):20} | {'':22} |")
    ratio = statistics.median(of("page", "frame_ms")) / statistics.median(of("none", "frame_ms"))
    pair_ratio = statistics.median(ratios)
    print(f"\nframe time, page open / no client: {ratio:.3f} (medians), {pair_ratio:.3f} "
          f"(median of the pairs): {'within' if max(ratio, pair_ratio) <= 1.05 else 'NOT within'} "
          "the 5 % goal (slower by at most 5 %)")
    if args.json:
        args.json.write_text(json.dumps({"pvtherm": pvtherm, "version": version,
                                         "phases": phases, "ratio": ratio, "pair_ratio": pair_ratio}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
