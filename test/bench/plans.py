"""The plans benchmark's driver (see plans.sh): a stale session planned on a
small log against a fresh one, on the grown log."""
import argparse
import random
import statistics
import time
import uuid

import psycopg

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", required=True)
ap.add_argument("--small", type=int, required=True)
ap.add_argument("--events", type=int, required=True)
ap.add_argument("--calls", type=int, required=True)
ap.add_argument("--rounds", type=int, required=True)
args = ap.parse_args()


def connect():
    return psycopg.connect(host=args.host, port=args.port, dbname="postgres",
                           autocommit=True)


def append_with_id(cur, stream):
    cur.execute("SELECT eventstore.append_event(%s, 'Probe', '{}', NULL, NULL, %s)",
                (stream, uuid.uuid4()))


def read_stream(cur, n):
    cur.execute("SELECT count(*) FROM eventstore.read_stream(%s)",
                ("big-%d" % random.randrange(n),))
    assert cur.fetchone()[0] == 100


def read_all(cur, last):
    cur.execute("SELECT count(*) FROM eventstore.read_all(%s, 100)",
                (random.randrange(1, last),))
    cur.fetchone()


stale = connect()
with stale.cursor() as cur:
    cur.execute("SELECT count(*) FROM generate_series(1, %s::int) i,"
                " LATERAL eventstore.append_event('small-' || i %% 10, 'Small', '{}')",
                (args.small,))
    append_with_id(cur, "stale")
    cur.execute("SELECT count(*) FROM eventstore.read_stream('small-1')")
    cur.execute("SELECT count(*) FROM eventstore.read_all(NULL, 100)")

streams = args.events // 100
started = time.monotonic()
with connect() as loader, loader.cursor() as cur:
    for first in range(0, streams, 100):
        cur.execute("SELECT count(*) FROM generate_series(%s::int, %s::int) s,"
                    " LATERAL eventstore.append_to_stream('big-' || s,"
                    "   (SELECT jsonb_agg(jsonb_build_object('type', 'Big',"
                    "      'data', jsonb_build_object('n', r)))"
                    "    FROM generate_series(1, 100) r))",
                    (first, min(first + 99, streams - 1)))
    cur.execute("SELECT max(global_position) FROM eventstore.events")
    last = cur.fetchone()[0]
print("grew the log to %d events in %.0f s" % (args.small + 1 + streams * 100,
                                               time.monotonic() - started))

fresh = connect()
sessions = {"stale": stale, "fresh": fresh}
statements = {
    "append_event with an explicit id": lambda cur, who: append_with_id(cur, who),
    "read_stream, 100 events": lambda cur, who: read_stream(cur, streams),
    "read_all, a page of 100": lambda cur, who: read_all(cur, last),
}
# one call of each first: the fresh session makes its plans now, on the
# large log (the stale one made its own on the small log)
for who, conn in sessions.items():
    with conn.cursor() as cur:
        for run in statements.values():
            run(cur, who)
times = {(s, w): [] for s in statements for w in sessions}
for r in range(args.rounds):
    order = list(sessions) if r % 2 == 0 else list(reversed(list(sessions)))
    for name, run in statements.items():
        for who in order:
            with sessions[who].cursor() as cur:
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    run(cur, who)
                times[(name, who)].append((time.perf_counter() - t0) / args.calls * 1000)

print()
print("| statement, on %d events | stale session, ms per call | fresh session, ms per call"
      " | stale / fresh |" % (args.small + 1 + streams * 100))
print("|---|---:|---:|---:|")
for name in statements:
    st = statistics.median(times[(name, "stale")])
    fr = statistics.median(times[(name, "fresh")])
    print("| %s | %.3f | %.3f | %.2f |" % (name, st, fr, st / fr))
print()
print("(medians of %d rounds of %d calls each, alternating which session goes first)"
      % (args.rounds, args.calls))
