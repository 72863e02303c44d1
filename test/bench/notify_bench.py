#!/usr/bin/python3
"""The client side of test/bench/notify.sh: the latency from an append's
commit to a LISTENing client's notification of it.  Needs Debian's
python3-psycopg (psycopg 3).

    notify_bench.py --host DIR --port N --out FILE --tmpdir DIR
                    [--rounds 3] [--seconds 15] [--rate 1000] [--clients 4]

K appender processes (one connection each, autocommit) append single
events on an open-loop schedule of --rate events/s in all, and note when
each append's commit returned (time.time()).  Rounds alternate two sides,
the same appends each:
    worker: plain appends; the worker's NOTIFY eventstore_events, whose
            payload is the readable head, covers every append at or before
            the head in log order (transaction_id, global_position): an
            append's latency is the receipt of the first notification whose
            head is at or after it - its commit returned.
    direct: the baseline, what the worker avoids: each append sends
            pg_notify('notify_bench', position) in its own transaction,
            delivered at its commit (taking the global notify lock there);
            latency = its notification received - its commit returned.
            pg_eventstore.notify is off meanwhile: nothing wakes the worker.
The worker's CPU time over each round (from /proc) is the push's cost.
An append no notification covers 5 s after the last one counts as
infinitely late.  Writes the rounds as JSON to --out, prints a line per
round and the markdown table.
"""
import argparse
import json
import math
import multiprocessing
import os
import select
import statistics
import time

import psycopg

from worker_bench import OtherLoad, percentile

QUERIES = {
    "worker": "SELECT last_position FROM eventstore.append_event(%s, 'Probe', %s::jsonb)",
    "direct": ("SELECT a.last_position FROM eventstore.append_event(%s, 'Probe', %s::jsonb) a,"
               " pg_notify('notify_bench', a.last_position::text)"),
}
CHANNELS = {"worker": "eventstore_events", "direct": "notify_bench"}


def connect(args):
    return psycopg.connect(host=args.host, port=args.port, dbname="postgres",
                           autocommit=True)


def appender(args, side, k, start, total, path):
    """Append events k, k + clients, ... of the round, event i due at
    start + i / rate; write "position committed" per event."""
    conn = connect(args)
    conn.prepare_threshold = 0
    cur = conn.cursor()
    cur.execute("SELECT 1")
    rows = []
    for i in range(k, total, args.clients):
        due = start + i / args.rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
        cur.execute(QUERIES[side], (f"n-{k}-{i % 100}", f'{{"seq": {i}}}'))
        pos = cur.fetchone()[0]
        rows.append(f"{pos} {time.time():.6f}\n")
    conn.close()
    with open(path, "w") as f:
        f.writelines(rows)


def worker_cpu(control):
    """Seconds of CPU the database's workers have used so far."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for (pid,) in control.execute("SELECT pid FROM pg_stat_activity"
                                  " WHERE backend_type = 'pg_eventstore worker'").fetchall():
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        total += int(st[11]) + int(st[12])  # utime, stime
    return total / hz


def one_round(args, rnd, side, listener, control):
    total = int(args.rate * args.seconds)
    start = time.time() + 0.5
    ctx = multiprocessing.get_context("fork")
    paths = [os.path.join(args.tmpdir, f"n-{rnd}-{k}.txt") for k in range(args.clients)]
    procs = [ctx.Process(target=appender, args=(args, side, k, start, total, paths[k]))
             for k in range(args.clients)]
    load = OtherLoad(control)
    load.start()
    cpu0, t0 = worker_cpu(control), time.time()
    for p in procs:
        p.start()
    received = []               # (payload position, time), in order of receipt
    pg = listener.pgconn
    drain_until = None
    while True:
        ready, _, _ = select.select([listener.fileno()], [], [], 0.05)
        if ready:
            pg.consume_input()
            t = time.time()
            while (n := pg.notifies()) is not None:
                if n.relname.decode() == CHANNELS[side]:
                    received.append((int(n.extra), t))
        if drain_until is None:
            if not any(p.is_alive() for p in procs):
                drain_until = time.time() + 5
        elif time.time() > drain_until:
            break
    for p in procs:
        p.join()
    other_load = load.stop()
    worker_share = 100.0 * (worker_cpu(control) - cpu0) / (time.time() - t0)
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit("an appender failed")
    appends = []
    for path in paths:
        with open(path) as f:
            appends += [(int(a), float(b)) for a, b in (line.split() for line in f)]
        os.unlink(path)
    # every position's place in log order
    wanted = list({a[0] for a in appends} | {r[0] for r in received})
    key = {pos: (int(x), pos) for pos, x in control.execute(
        "SELECT global_position, transaction_id::text FROM eventstore.events"
        " WHERE global_position = ANY (%s)", (wanted,)).fetchall()}
    lat = []
    if side == "direct":
        seen = {}
        for pos, t in received:
            seen.setdefault(pos, t)
        lat = [seen[pos] - committed if pos in seen else math.inf for pos, committed in appends]
    else:
        # the heads only move forward: a sweep over the appends in log order
        heads = sorted(((key[pos], t) for pos, t in received), key=lambda h: h[1])
        order = sorted(appends, key=lambda a: key[a[0]])
        i = 0
        for head, t in heads:
            while i < len(order) and key[order[i][0]] <= head:
                lat.append(t - order[i][1])
                i += 1
        lat += [math.inf] * (len(order) - i)
    lat.sort()
    last = max(a[1] for a in appends)
    ms = lambda v: v * 1000.0
    result = {
        "round": rnd, "side": side, "appends": len(appends),
        "rate": len(appends) / (last - start),
        "p50": ms(percentile(lat, 50)), "p99": ms(percentile(lat, 99)),
        "max": ms(lat[-1]), "notifications": len(received),
        "missing": sum(1 for v in lat if v == math.inf), "other_load": other_load,
        "worker_cpu": worker_share,
    }
    print(f"   round {rnd} ({side}): {result['appends']} appends at {result['rate']:.0f}/s;"
          f" commit -> notified p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms,"
          f" max {result['max']:.2f} ms; {result['notifications']} notifications,"
          f" {result['missing']} appends not covered; the worker used"
          f" {worker_share:.0f}% of a core; other processes"
          f" {other_load:.0f}% of the CPU", flush=True)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tmpdir", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    listener = connect(args)
    for channel in CHANNELS.values():
        listener.execute(f"LISTEN {channel}")
    control = connect(args)
    rounds = []
    for rnd in range(1, args.rounds + 1):
        for side in ("worker", "direct") if rnd % 2 else ("direct", "worker"):
            # the baseline without the push: nothing wakes the worker then
            control.execute("ALTER SYSTEM SET pg_eventstore.notify = "
                            + ("on" if side == "worker" else "off"))
            control.execute("SELECT pg_reload_conf()")
            time.sleep(1)
            rounds.append(one_round(args, rnd, side, listener, control))
    with open(args.out, "w") as f:
        json.dump(rounds, f)
    print()
    print("| commit returned to the appending client -> LISTENing client notified,"
          f" at {args.rate:.0f} appends/s ({args.clients} clients) | p50 ms | p99 ms |"
          " notifications per append | worker CPU, % of a core | rounds (p50 / p99) |")
    print("|---|---:|---:|---:|---:|---|")
    med = {}
    for side, title in (("worker", "the worker's `NOTIFY eventstore_events` (the readable head)"),
                        ("direct", "baseline: `pg_notify` in each append's own transaction")):
        rs = [r for r in rounds if r["side"] == side]
        p50 = statistics.median(r["p50"] for r in rs)
        p99 = statistics.median(r["p99"] for r in rs)
        med[side] = (p50, p99)
        per = sum(r["notifications"] for r in rs) / sum(r["appends"] for r in rs)
        detail = ", ".join(f"{r['p50']:.2f} / {r['p99']:.2f}" for r in rs)
        cpu = statistics.median(r["worker_cpu"] for r in rs)
        print(f"| {title} | {p50:.2f} | {p99:.2f} | {per:.2f} | {cpu:.0f} | {detail} |")
    # A difference, not a ratio: the baseline's notification is delivered at
    # its commit, often before the appender has read the reply, so its
    # latency is near zero or below it.
    print(f"| worker - baseline | {med['worker'][0] - med['direct'][0]:+.2f} |"
          f" {med['worker'][1] - med['direct'][1]:+.2f} | | | |")
    return 1 if any(r["missing"] for r in rounds) else 0


if __name__ == "__main__":
    raise SystemExit(main())
