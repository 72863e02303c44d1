#!/usr/bin/python3
"""Per-append cost with and without an inline projection, measured in one
session, for test/bench/projections.sh (scenario e, second row).

Calls the procedure bench.append_loop(n, type) -- n single-event appends,
each committed on its own, inside the server -- in alternating rounds, once
with the type the inline no-op projection takes and once with a type no
projection takes.  Measures each call's wall time and the CPU time (user +
system) of the server process serving the session, read from /proc: CPU time
is not stretched by other work on the machine as wall time is.

    append_loop.py --host DIR --port N --appends N --rounds N
                   [--with-type Pinged] [--without-type Noted]
                   [--synchronous-commit off]

Prints one line per call: "<round> <with|without> <wall seconds> <cpu seconds>".
"""
import argparse
import os
import sys
import time

import psycopg


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dbname", default="postgres")
    ap.add_argument("--appends", type=int, required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--with-type", default="Pinged")
    ap.add_argument("--without-type", default="Noted")
    ap.add_argument("--synchronous-commit", default="off")
    args = ap.parse_args()

    # autocommit: CALL must not run inside a transaction block to COMMIT
    conn = psycopg.connect(host=args.host, port=args.port, dbname=args.dbname,
                           autocommit=True)
    conn.execute(f"SET synchronous_commit = {args.synchronous_commit}")
    pid = conn.info.backend_pid

    def run(type_):
        cpu0 = cpu_seconds(pid)
        wall0 = time.monotonic()
        conn.execute("CALL bench.append_loop(%s, %s)", (args.appends, type_))
        return time.monotonic() - wall0, cpu_seconds(pid) - cpu0

    # warm-up: plans, caches, the pages at the log's end
    run(args.without_type)
    run(args.with_type)
    for r in range(1, args.rounds + 1):
        states = ["without", "with"] if r % 2 else ["with", "without"]
        for state in states:
            wall, cpu = run(args.with_type if state == "with" else args.without_type)
            print(r, state, f"{wall:.4f}", f"{cpu:.4f}", flush=True)
    conn.close()


if __name__ == "__main__":
    sys.exit(main())
