#!/usr/bin/env python3
"""Writes N realistic application log lines of about 200 bytes to PATH (deterministic, seeded).

Mix: ~80% INFO request lines, ~12% WARN, ~4% ERROR followed by 2 stack-trace lines ("\tat ..."), each line with a
request id and a sequence number `seq=N` (0-based, unique per line) so a sink can count losses and duplicates.
    bench/scenarios/loggen.py 2000000 /tmp/app.log
"""
import random
import sys

n, path = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(42)
paths = ["/api/v1/orders", "/api/v1/users/profile", "/api/v1/cart/items", "/healthz", "/api/v1/search", "/login"]
users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
frames = ["com.example.orders.OrderService.place(OrderService.java:{})", "com.example.db.Pool.acquire(Pool.java:{})",
          "org.eclipse.jetty.server.HttpChannel.handle(HttpChannel.java:{})"]
out = []
seq = 0
ms = 0
while seq < n:
    ms += rnd.randint(0, 3)
    ts = "2026-11-28T%02d:%02d:%02d.%03dZ" % ((ms // 3600000) % 24, (ms // 60000) % 60, (ms // 1000) % 60, ms % 1000)
    rid = "%016x" % rnd.getrandbits(64)
    r = rnd.random()
    worker = rnd.randint(1, 16)
    if r < 0.80:
        line = "%s INFO  [worker-%02d] req=%s seq=%d GET %s?page=%d user=%s status=200 bytes=%d duration_ms=%d" % (
            ts, worker, rid, seq, rnd.choice(paths), rnd.randint(1, 50), rnd.choice(users), rnd.randint(200, 90000), rnd.randint(1, 900))
    elif r < 0.96:
        line = "%s WARN  [worker-%02d] req=%s seq=%d slow query on orders_by_customer took %d ms (threshold 500 ms) user=%s retry=%d" % (
            ts, worker, rid, seq, rnd.randint(500, 5000), rnd.choice(users), rnd.randint(0, 3))
    else:
        line = "%s ERROR [worker-%02d] req=%s seq=%d failed to place order %d for user=%s: java.sql.SQLTransientConnectionException: pool exhausted" % (
            ts, worker, rid, seq, rnd.randint(10000, 99999), rnd.choice(users))
    want = rnd.randint(185, 235)
    extras = iter(("client=10.%d.%d.%d" % (rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(1, 254)),
                   "span=%016x" % rnd.getrandbits(64), "region=eu-west-%d" % rnd.randint(1, 3), "host=app-%02d" % rnd.randint(1, 40),
                   "ua=Mozilla/5.0", "tenant=t%04d" % rnd.randint(1, 9999), "pool=%d/%d" % (rnd.randint(0, 64), 64)))
    for extra in extras:
        if len(line) + len(extra) + 1 > want:
            break
        line += " " + extra
    out.append(line)
    seq += 1
    if r >= 0.96:
        for f in rnd.sample(frames, 2):
            if seq >= n:
                break
            out.append("\tat " + f.format(rnd.randint(10, 900)) + " seq=%d" % seq)
            seq += 1
    if len(out) >= 100000:
        with open(path, "a") as fh:
            fh.write("\n".join(out) + "\n")
        out = []
if out:
    with open(path, "a") as fh:
        fh.write("\n".join(out) + "\n")
