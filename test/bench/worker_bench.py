#!/usr/bin/python3
"""The client side of test/bench/worker.sh: the background worker's latency
and catch-up throughput.  Needs Debian's python3-psycopg (psycopg 3).

    worker_bench.py latency --host DIR --port N --out FILE [--rounds 3]
                            [--seconds 15] [--rate 1000] [--clients 4]
    worker_bench.py catchup --host DIR --port N --out FILE --events N
                            [--rounds 3] [--batch-size 1000] [--nudge 1]
    worker_bench.py report  --latency FILE --catchup FILE [...]

latency: K appender processes (one connection each, autocommit) append
single LatencyProbe events on an open-loop schedule of --rate events/s in
all, and note when each append's commit returned (time.time()).  The
projection's handler inserts (global_position, clock_timestamp()) into
bench.lat and sends pg_notify('worker_bench', global_position): PostgreSQL
delivers a notification only when the worker's batch transaction has
committed, so the moment this process receives it is the moment the
event's projection became visible to other sessions (plus the delivery,
tens of microseconds).  Per event:
    commit -> visible  = notification received - append's commit returned
    commit -> handler  = applied_at (server clock) - append's commit returned
(time.time() and clock_timestamp() read the same wall clock of this
machine.)  An event whose notification has not arrived 5 s after the last
append counts as infinitely late.

catchup: the same backlog of --events events applied three ways, in an
order rotating each round:
    worker: rebuild_projection('catchup') commits (waking the worker), and
            the worker replays the log batch by batch; time = caught_up_at
            (server clock, set by the batch that reaches the head) - the
            moment the rebuild's commit returned.
    run_projection: in one transaction, rebuild_projection('catchup') then
            run_projection('catchup') with the same batch_size; time = the
            run_projection call (the worker only sees the projection again
            once it is caught up and active, at commit).
    loop:   run_projection('catchup', NULL, batch_size) from this client
            until the backlog is done, a transaction per batch as the worker
            does, the workers paused (pg_eventstore.databases = '' and a
            reload).
A rebuild the worker has not started after --nudge seconds lost its
wake-up: it is counted, the worker woken by a reload (SIGHUP sets its
latch) and timed from then on.
Each side must leave the read model with --events events counted.

Each subcommand writes its results as JSON to --out and prints a line per
round; report prints the markdown table.
"""
import argparse
import json
import math
import multiprocessing
import os
import select
import statistics
import sys
import time

import psycopg

CHANNEL = "worker_bench"


def connect(args, autocommit=True):
    return psycopg.connect(host=args.host, port=args.port, dbname=args.dbname,
                           autocommit=autocommit)


# --- latency ----------------------------------------------------------------

def appender(args, k, start, total, path):
    """Append events k, k + clients, ... of the round, event i due at
    start + i / rate; write "position due sent committed" per event."""
    conn = connect(args)
    conn.prepare_threshold = 0
    cur = conn.cursor()
    query = ("SELECT last_position FROM eventstore.append_event("
             "%s, 'LatencyProbe', %s::jsonb)")
    # one prepared-statement round trip before the clock starts
    cur.execute("SELECT 1")
    rows = []
    for i in range(k, total, args.clients):
        due = start + i / args.rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
        sent = time.time()
        cur.execute(query, (f"lat-{k}-{i % 100}", f'{{"seq": {i}}}'))
        pos = cur.fetchone()[0]
        committed = time.time()
        rows.append(f"{pos} {due:.6f} {sent:.6f} {committed:.6f}\n")
    conn.close()
    with open(path, "w") as f:
        f.writelines(rows)


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class OtherLoad:
    """CPU time used on this machine by processes other than this cluster
    and this script, as a share of all cores, between start() and stop():
    how much the rest of a shared machine disturbed a round."""

    def __init__(self, conn):
        self.postmaster = int(self._stat(conn.execute("SELECT pg_backend_pid()").fetchone()[0])[1])
        self.hz = os.sysconf("SC_CLK_TCK")
        self.ncpu = os.cpu_count()

    @staticmethod
    def _stat(pid):
        """(state fields after the command) of /proc/pid/stat, from ppid on."""
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[1:]

    def _own(self):
        """Jiffies of the cluster and of this script, reaped children included."""
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                st = self._stat(pid)
            except (OSError, IndexError):
                continue
            ppid = int(st[0])
            mine = int(pid) in (self.postmaster, os.getpid())
            if mine or ppid in (self.postmaster, os.getpid()):
                total += int(st[10]) + int(st[11])  # utime, stime
                if mine:
                    total += int(st[12]) + int(st[13])  # cutime, cstime
        return total

    @staticmethod
    def _busy():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # all but idle, iowait

    def start(self):
        self.t0, self.busy0, self.own0 = time.time(), self._busy(), self._own()

    def stop(self):
        """The other processes' share of the machine's CPU, in %."""
        elapsed = time.time() - self.t0
        other = (self._busy() - self.busy0) - (self._own() - self.own0)
        return max(0.0, 100.0 * other / self.hz / (elapsed * self.ncpu))


def latency_round(args, rnd, listener, control):
    total = int(args.rate * args.seconds)
    start = time.time() + 0.5
    ctx = multiprocessing.get_context("fork")
    paths = [os.path.join(args.tmpdir, f"lat-{rnd}-{k}.txt") for k in range(args.clients)]
    procs = [ctx.Process(target=appender, args=(args, k, start, total, paths[k]))
             for k in range(args.clients)]
    load = OtherLoad(control)
    load.start()
    for p in procs:
        p.start()

    pg = listener.pgconn
    fd = listener.fileno()
    visible = {}
    drain_until = None
    while True:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            pg.consume_input()
            t = time.time()
            while True:
                n = pg.notifies()
                if n is None:
                    break
                visible[int(n.extra)] = t
        if drain_until is None:
            if not any(p.is_alive() for p in procs):
                drain_until = time.time() + args.drain
        elif len(visible) >= total or time.time() > drain_until:
            break
    for p in procs:
        p.join()
    other_load = load.stop()
    failed_appenders = [p.exitcode for p in procs if p.exitcode != 0]
    if failed_appenders:
        raise SystemExit(f"an appender failed (exit codes {failed_appenders})")

    events = []
    for path in paths:
        with open(path) as f:
            for line in f:
                pos, due, sent, committed = line.split()
                events.append((int(pos), float(due), float(sent), float(committed)))
        os.unlink(path)
    positions = [e[0] for e in events]
    applied = dict(control.execute(
        "SELECT global_position, extract(epoch FROM applied_at)::float8"
        " FROM bench.lat WHERE global_position = ANY (%s)", (positions,)).fetchall())

    # The appends' commit records' timestamps (track_commit_timestamp),
    # taken before the commit's WAL flush: an upper bound's start.
    commit_ts = dict(control.execute(
        "SELECT global_position,"
        " extract(epoch FROM pg_xact_commit_timestamp(transaction_id::xid))::float8"
        " FROM eventstore.events WHERE global_position = ANY (%s)", (positions,)).fetchall())

    vis, vis_ts, hnd, rtt, behind = [], [], [], [], []
    missing = 0
    for pos, due, sent, committed in events:
        if commit_ts.get(pos) is not None:
            vis_ts.append(visible[pos] - commit_ts[pos] if pos in visible else math.inf)
        rtt.append(committed - sent)
        behind.append(sent - due)
        if pos in visible:
            vis.append(visible[pos] - committed)
        else:
            vis.append(math.inf)
            missing += 1
        hnd.append(applied[pos] - committed if pos in applied else math.inf)
    for values in (vis, vis_ts, hnd, rtt, behind):
        values.sort()
    first_due = min(e[1] for e in events)
    last_commit = max(e[3] for e in events)
    ms = lambda v: v * 1000.0
    result = {
        "round": rnd,
        "events": len(events),
        "rate": len(events) / (last_commit - first_due),
        "visible_p50": ms(percentile(vis, 50)),
        "visible_p99": ms(percentile(vis, 99)),
        "visible_max": ms(vis[-1]),
        "visible_min": ms(vis[0]),
        "from_ts_p50": ms(percentile(vis_ts, 50)),
        "from_ts_p99": ms(percentile(vis_ts, 99)),
        "handler_p50": ms(percentile(hnd, 50)),
        "handler_p99": ms(percentile(hnd, 99)),
        "append_p50": ms(percentile(rtt, 50)),
        "append_p99": ms(percentile(rtt, 99)),
        "behind_p99": ms(percentile(behind, 99)),
        "missing": missing,
        "other_load": other_load,
        "not_applied": sum(1 for e in events if e[0] not in applied),
    }
    print(f"   latency round {rnd}: {result['events']} appends at {result['rate']:.0f}/s;"
          f" commit -> visible p50 {result['visible_p50']:.2f} ms,"
          f" p99 {result['visible_p99']:.2f} ms, max {result['visible_max']:.2f} ms"
          f" (from the commit record: p50 {result['from_ts_p50']:.2f} ms,"
          f" p99 {result['from_ts_p99']:.2f} ms);"
          f" commit -> handler p50 {result['handler_p50']:.2f} ms,"
          f" p99 {result['handler_p99']:.2f} ms; append p50 {result['append_p50']:.2f} ms;"
          f" {missing} not visible; other processes {other_load:.0f}% of the CPU", flush=True)
    return result


def cmd_latency(args):
    listener = connect(args)
    listener.execute(f"LISTEN {CHANNEL}")
    control = connect(args)
    results = []
    for rnd in range(1, args.rounds + 1):
        results.append(latency_round(args, rnd, listener, control))
        time.sleep(args.pause)
    with open(args.out, "w") as f:
        json.dump({"rate": args.rate, "seconds": args.seconds, "clients": args.clients,
                   "rounds": results}, f)
    return 1 if any(r["missing"] or r["not_applied"] for r in results) else 0


# --- catch-up ---------------------------------------------------------------

def read_model_events(conn):
    return conn.execute("SELECT coalesce(sum(events), 0) FROM bench.cu_rm").fetchone()[0]


def catchup_worker(args, conn):
    """Returns (seconds, missed wake-ups).  A rebuild's commit wakes the
    worker; should the worker not have applied a batch after --nudge
    seconds, that wake-up was lost: count it, wake the worker with a
    reload (SIGHUP sets its latch) and time from then on."""
    base = conn.execute("SELECT events_applied FROM eventstore.projections"
                        " WHERE name = 'catchup'").fetchone()[0]
    conn.execute("SELECT eventstore.rebuild_projection('catchup')")
    t0 = time.time()
    missed = 0
    deadline = t0 + args.timeout
    while True:
        row = conn.execute(
            "SELECT caught_up, extract(epoch FROM caught_up_at)::float8, status, events_applied"
            " FROM eventstore.projections WHERE name = 'catchup'").fetchone()
        if row[0]:
            break
        now = time.time()
        if row[2] == "failed" or now > deadline:
            raise SystemExit(f"the worker did not catch up (status {row[2]})")
        if row[3] == base and not missed and now - t0 > args.nudge:
            missed = 1
            print(f"   the worker did not start the rebuild within {args.nudge} s:"
                  " its wake-up was lost; waking it with a reload", flush=True)
            conn.execute("SELECT pg_reload_conf()")
            t0 = time.time()
        time.sleep(args.poll)
    return row[1] - t0, missed


def catchup_run(args, conn):
    with conn.transaction():
        conn.execute(f"SET LOCAL pg_eventstore.batch_size = {int(args.batch_size)}")
        conn.execute("SELECT eventstore.rebuild_projection('catchup')")
        t0 = time.time()
        n = conn.execute("SELECT eventstore.run_projection('catchup')").fetchone()[0]
        t1 = time.time()
    if n != args.events:
        raise SystemExit(f"run_projection applied {n} events, not {args.events}")
    return t1 - t0, 0


def set_workers(conn, on):
    """Pause (databases = '') or resume the workers, and wait for it."""
    if on:
        conn.execute("ALTER SYSTEM RESET pg_eventstore.databases")
    else:
        conn.execute("ALTER SYSTEM SET pg_eventstore.databases = ''")
    conn.execute("SELECT pg_reload_conf()")
    want = args_max_workers if on else 0
    deadline = time.time() + 30
    while True:
        n = conn.execute("SELECT count(*) FROM pg_stat_activity"
                         " WHERE backend_type = 'pg_eventstore worker'").fetchone()[0]
        if n == want:
            return
        if time.time() > deadline:
            raise SystemExit(f"{n} workers running, not {want}, 30 s after the reload")
        time.sleep(0.05)


def catchup_loop(args, conn):
    """run_projection(name, NULL, batch_size) from the client, one
    transaction per batch as the worker does, the workers paused."""
    set_workers(conn, False)
    try:
        conn.execute("SELECT eventstore.rebuild_projection('catchup')")
        conn.execute(f"SET pg_eventstore.batch_size = {int(args.batch_size)}")
        t0 = time.time()
        total = 0
        while True:
            n = conn.execute("SELECT eventstore.run_projection('catchup', NULL, %s)",
                             (args.batch_size,)).fetchone()[0]
            total += n
            if n < args.batch_size:
                break
        t1 = time.time()
        conn.execute("RESET pg_eventstore.batch_size")
    finally:
        set_workers(conn, True)
    if total != args.events:
        raise SystemExit(f"the run_projection loop applied {total} events, not {args.events}")
    return t1 - t0, 0


SIDES = {"worker": catchup_worker, "run": catchup_run, "loop": catchup_loop}


def cmd_catchup(args):
    global args_max_workers
    conn = connect(args)
    args_max_workers = conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE backend_type = 'pg_eventstore worker'").fetchone()[0]
    results = []
    sides = list(SIDES)
    for rnd in range(1, args.rounds + 1):
        k = (rnd - 1) % len(sides)
        order = sides[k:] + sides[:k]
        secs = {}
        missed = 0
        load = OtherLoad(conn)
        load.start()
        for side in order:
            secs[side], m = SIDES[side](args, conn)
            missed += m
            counted = read_model_events(conn)
            if counted != args.events:
                raise SystemExit(f"{side}: the read model counts {counted} events, not {args.events}")
            time.sleep(args.pause)
        r = {"round": rnd, "order": order, "missed_wakes": missed, "other_load": load.stop()}
        for side in sides:
            r[side + "_rate"] = args.events / secs[side]
        r["ratio"] = r["worker_rate"] / r["run_rate"]
        r["ratio_loop"] = r["worker_rate"] / r["loop_rate"]
        results.append(r)
        print(f"   catch-up round {rnd} ({', '.join(order)}): worker {r['worker_rate']:.0f} events/s"
              f" ({secs['worker']:.2f} s), run_projection {r['run_rate']:.0f} events/s"
              f" ({secs['run']:.2f} s), run_projection per batch {r['loop_rate']:.0f} events/s"
              f" ({secs['loop']:.2f} s); worker / run_projection {r['ratio']:.3f},"
              f" worker / per batch {r['ratio_loop']:.3f}; other processes"
              f" {r['other_load']:.0f}% of the CPU", flush=True)
    with open(args.out, "w") as f:
        json.dump({"events": args.events, "batch_size": args.batch_size,
                   "rounds": results}, f)
    return 0


# --- report -----------------------------------------------------------------

def cmd_report(args):
    with open(args.latency) as f:
        lat = json.load(f)
    with open(args.catchup) as f:
        cu = json.load(f)
    L, C = lat["rounds"], cu["rounds"]
    nr = max(len(L), len(C))
    rows = []
    missed = False

    def fmt(v, digits):
        return "never" if math.isinf(v) else f"{v:,.{digits}f}"

    def row(label, values, digits, target="", ok=None, summary=statistics.median):
        nonlocal missed
        cells = [fmt(v, digits) for v in values] + [""] * (nr - len(values))
        med = summary(values)
        verdict = ""
        if ok is not None:
            verdict = "ok" if ok(med) else "missed"
            missed = missed or verdict == "missed"
        rows.append(f"| {label} | " + " | ".join(cells) +
                    f" | {fmt(med, digits)} | {target} | {verdict} |")

    row("1. appends/s (open loop, %d clients, autocommit)" % lat["clients"],
        [r["rate"] for r in L], 0, f"{lat['rate']:,}")
    row("1. append round trip, p50, ms", [r["append_p50"] for r in L], 2)
    row("1. commit returned -> handler ran, p50, ms", [r["handler_p50"] for r in L], 2)
    row("1. commit returned -> handler ran, p99, ms", [r["handler_p99"] for r in L], 2)
    row("**1. commit returned -> visible, p50, ms**", [r["visible_p50"] for r in L], 2,
        "<= 2", lambda v: v <= 2)
    row("**1. commit returned -> visible, p99, ms**", [r["visible_p99"] for r in L], 2,
        "<= 20", lambda v: v <= 20)
    row("1. commit returned -> visible, max, ms", [r["visible_max"] for r in L], 1)
    row("1. commit record -> visible, p50, ms (upper bound)", [r["from_ts_p50"] for r in L], 2)
    row("1. commit record -> visible, p99, ms (upper bound)", [r["from_ts_p99"] for r in L], 2)
    row("1. events not visible 5 s after the last append", [r["missing"] for r in L], 0,
        "0", lambda v: v == 0, summary=sum)
    row("1. other processes' CPU, % of the machine", [r["other_load"] for r in L], 0)
    row(f"2. worker catch-up, events/s ({cu['events']:,} events, batch_size {cu['batch_size']:,})",
        [r["worker_rate"] for r in C], 0)
    row("2. run_projection, one call, events/s", [r["run_rate"] for r in C], 0)
    row("2. run_projection per batch (client loop, workers paused), events/s",
        [r["loop_rate"] for r in C], 0)
    row("**2. worker / run_projection (one call)**", [r["ratio"] for r in C], 2,
        ">= 0.90", lambda v: v >= 0.90)
    row("**2. worker / run_projection per batch**", [r["ratio_loop"] for r in C], 2,
        ">= 0.90", lambda v: v >= 0.90)
    row("2. rebuilds whose wake-up was lost (waited for a reload)",
        [r["missed_wakes"] for r in C], 0, "0", lambda v: v == 0, summary=sum)
    row("2. other processes' CPU, % of the machine", [r["other_load"] for r in C], 0)
    print("| measure | " + " | ".join(f"round {i}" for i in range(1, nr + 1)) +
          " | median (sum for counts) | target | verdict |")
    print("|---|" + "---:|" * nr + "---:|---:|---|")
    print("\n".join(rows))
    return 3 if missed else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("latency", "catchup"):
        s = sub.add_parser(name)
        s.add_argument("--host", required=True)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--dbname", default="postgres")
        s.add_argument("--out", required=True)
        s.add_argument("--rounds", type=int, default=3)
        s.add_argument("--pause", type=float, default=1.0)
    s = sub.choices["latency"]
    s.add_argument("--seconds", type=float, default=15)
    s.add_argument("--rate", type=int, default=1000)
    s.add_argument("--clients", type=int, default=4)
    s.add_argument("--drain", type=float, default=5.0)
    s.add_argument("--tmpdir", default="/tmp")
    s = sub.choices["catchup"]
    s.add_argument("--events", type=int, required=True)
    s.add_argument("--batch-size", type=int, default=1000)
    s.add_argument("--poll", type=float, default=0.01)
    s.add_argument("--timeout", type=float, default=300)
    s.add_argument("--nudge", type=float, default=1.0)
    s = sub.add_parser("report")
    s.add_argument("--latency", required=True)
    s.add_argument("--catchup", required=True)
    args = ap.parse_args()
    rc = {"latency": cmd_latency, "catchup": cmd_catchup, "report": cmd_report}[args.cmd](args)
    sys.exit(rc)


if __name__ == "__main__":
    main()
