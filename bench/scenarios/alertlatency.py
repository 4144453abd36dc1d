#!/usr/bin/env python3
"""Alert latency driver and webhook receiver for bench/scenarios/alertlatency.sh.

One process: an HTTP receiver on 127.0.0.1:PORT that records the arrival time of every firing notification, and a
driver that fires alerts by writing `bench_alert{n="N"} 1` into a *.prom file (write a temporary file, then rename it
into place; t0 is taken just before the rename) that Fleet's textfile collector and node_exporter's textfile collector
both read. Latency = arrival at the receiver - t0, same clock, same host.

Receiver paths:
  POST /fleet          Fleet's generic webhook (one JSON object per notification): system = labels.agent_id
  POST /am/NAME        Alertmanager's webhook (a group of alerts): system = NAME
Only the first "firing" message per (system, n) counts; later ones are counted as repeats; resolved ones are counted.

Usage: alertlatency.py --dir D --port P --systems a,b --alerts N [--first K] [--gap 0.5,1.5] [--inflight 1]
                       [--timeout S] [--warmup-timeout S] [--out FILE] [--label NAME]
With --inflight 1 the next alert is fired only after every system delivered the previous one (or it timed out) and its
value went back to 0; the random gap is waited after that. With --inflight K > 1 (used for the slow default settings)
up to K alerts are in flight at once, fired a random gap apart. Each series goes back to 0 as soon as every system
has delivered it. Alert n=0 is a warm-up (JIT, connections, first scrape) and is not counted.
Exit status 1 if any alert never arrived at some system.
"""
import argparse
import json
import math
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Condition()
arrivals = {}  # (system, n) -> first firing arrival (epoch seconds)
repeats = {}   # system -> repeated firing messages
resolved = {}  # system -> resolved messages
unknown = []   # bodies we could not attribute


def record(system, n, state, at):
    with lock:
        if state == "firing":
            if (system, n) in arrivals:
                repeats[system] = repeats.get(system, 0) + 1
            else:
                arrivals[(system, n)] = at
        elif state == "resolved":
            resolved[system] = resolved.get(system, 0) + 1
        lock.notify_all()


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        at = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        try:
            doc = json.loads(body)
            if self.path == "/fleet":
                labels = doc.get("labels") or {}
                if "n" in labels:
                    record(labels.get("agent_id", "fleet"), int(labels["n"]), doc.get("state"), at)
            elif self.path.startswith("/am/"):
                system = self.path[len("/am/"):]
                for alert in doc.get("alerts", []):
                    labels = alert.get("labels") or {}
                    if "n" in labels:
                        record(system, int(labels["n"]), alert.get("status"), at)
            else:
                unknown.append(self.path)
        except (ValueError, TypeError) as e:
            unknown.append(f"{self.path}: {e}")

    def log_message(self, *args):
        pass


class Series:
    """The *.prom file: every series fired so far, written whole and renamed into place."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "bench.prom")
        self.tmp = os.path.join(directory, ".bench.prom.tmp")
        self.values = {}
        self.mutex = threading.Lock()

    def set(self, n, value):
        """Sets series n and publishes the file; returns t0, the time just before the rename."""
        with self.mutex:
            self.values[n] = value
            text = "# TYPE bench_alert gauge\n" + "".join(f'bench_alert{{n="{k}"}} {v}\n' for k, v in sorted(self.values.items()))
            with open(self.tmp, "w") as f:
                f.write(text)
            t0 = time.time()
            os.rename(self.tmp, self.path)
            return t0


def percentile(sorted_values, p):
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--systems", required=True)
    ap.add_argument("--alerts", type=int, default=100)
    ap.add_argument("--first", type=int, default=1, help="n of the first counted alert (series names differ per pass)")
    ap.add_argument("--gap", default="0.5,1.5")
    ap.add_argument("--inflight", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--warmup-timeout", type=float, default=300)
    ap.add_argument("--out", default=None)
    ap.add_argument("--label", default="")
    ap.add_argument("--receiver-only", action="store_true", help="serve until killed (for manual checks)")
    a = ap.parse_args()
    systems = a.systems.split(",")
    gap_lo, gap_hi = (float(x) for x in a.gap.split(","))

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if a.receiver_only:
        threading.Event().wait()

    series = Series(a.dir)
    fired = {}  # n -> t0

    def delivered_everywhere(n):
        return all((s, n) in arrivals for s in systems)

    # Warm-up: alert n = first - 1 must reach every system once before the clock counts.
    warm = a.first - 1
    t0 = series.set(warm, 1)
    with lock:
        if not lock.wait_for(lambda: delivered_everywhere(warm), timeout=a.warmup_timeout):
            missing = [s for s in systems if (s, warm) not in arrivals]
            print(f"warm-up alert n={warm} never arrived at: {', '.join(missing)} (waited {a.warmup_timeout:.0f} s)", file=sys.stderr)
            return 1
    print(f"[{a.label}] warm-up alert n={warm} arrived: " + ", ".join(f"{s} {arrivals[(s, warm)] - t0:.2f} s" for s in systems), flush=True)
    series.set(warm, 0)
    time.sleep(random.uniform(gap_lo, gap_hi))

    start = time.time()
    open_ = set()
    deadline_of = {}
    numbers = list(range(a.first, a.first + a.alerts))
    i = 0
    next_fire_at = time.time()
    while i < len(numbers) or open_:
        with lock:
            now = time.time()
            done = [n for n in open_ if delivered_everywhere(n) or now > deadline_of[n]]
        # Every system delivered it (or it timed out): back to 0, so the alert resolves.
        for n in done:
            series.set(n, 0)
            open_.discard(n)
        if done and a.inflight == 1:
            next_fire_at = time.time() + random.uniform(gap_lo, gap_hi)
        if i < len(numbers) and len(open_) < a.inflight and time.time() >= next_fire_at:
            n = numbers[i]
            i += 1
            fired[n] = series.set(n, 1)
            open_.add(n)
            deadline_of[n] = fired[n] + a.timeout
            if a.inflight > 1:
                next_fire_at = fired[n] + random.uniform(gap_lo, gap_hi)
            if len(fired) % 10 == 0:
                print(f"[{a.label}] {len(fired)}/{a.alerts} fired, {time.time() - start:.0f} s", flush=True)
            continue
        with lock:
            lock.wait(timeout=0.02)
    time.sleep(2)  # late repeats and resolved messages

    rows = []
    status = 0
    report = []
    for s in systems:
        lat = sorted(arrivals[(s, n)] - fired[n] for n in fired if (s, n) in arrivals)
        missing = [n for n in fired if (s, n) not in arrivals]
        for n in fired:
            if (s, n) in arrivals:
                rows.append((a.label, s, n, fired[n], arrivals[(s, n)], arrivals[(s, n)] - fired[n]))
        if missing:
            status = 1
            print(f"[{a.label}] {s}: {len(missing)} alert(s) NEVER ARRIVED within {a.timeout:.0f} s: n={missing[:20]}", file=sys.stderr)
        report.append(f"[{a.label}] {s:<22} alerts {len(lat):>3}/{len(fired)}  p50 {percentile(lat, 50):6.2f} s  p90 {percentile(lat, 90):6.2f} s"
                      f"  p99 {percentile(lat, 99):6.2f} s  max {max(lat) if lat else float('nan'):6.2f} s  min {min(lat) if lat else float('nan'):5.2f} s"
                      f"  mean {sum(lat) / len(lat) if lat else float('nan'):6.2f} s  repeats {repeats.get(s, 0)}  resolved {resolved.get(s, 0)}")
    print("\n".join(report), flush=True)
    if unknown:
        print(f"[{a.label}] unattributed requests: {unknown[:5]}", file=sys.stderr)
    if a.out:
        with open(a.out, "a") as f:
            for r in rows:
                f.write("%s\t%s\t%d\t%.6f\t%.6f\t%.6f\n" % r)
    server.shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
