#!/usr/bin/python3
"""A client-side projector in the style of the usual event-sourcing libraries,
for test/bench/projections.sh (scenario d).

It follows the global log with eventstore.read_all in pages, decodes each
event's JSON data in the client, applies it with one upsert round trip per
event, and stores its checkpoint with eventstore.store_checkpoint in the same
transaction as the page: a page and its checkpoint commit together, so a crash
replays at most the page in flight and never applies an event twice.

    client_projector.py --host DIR --port N --events N [--page 100]
                        [--processor NAME] [--table bench.rm_d]

Stops once it has applied --events events (a multiple of --page) or the log
is exhausted, and prints one line: "<events applied> <seconds> <last position>".
Needs Debian's python3-psycopg (psycopg 3).
"""
import argparse
import json
import sys
import time
from decimal import Decimal
from functools import partial

import psycopg
from psycopg.types.json import set_json_loads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dbname", default="postgres")
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--page", type=int, default=100)
    ap.add_argument("--processor", default="bench-client-projector")
    ap.add_argument("--table", default="bench.rm_d")
    args = ap.parse_args()

    conn = psycopg.connect(host=args.host, port=args.port, dbname=args.dbname,
                           autocommit=True)
    # Amounts as exact decimals, as an accounting read model wants them.
    set_json_loads(partial(json.loads, parse_float=Decimal), conn)
    # Prepare every statement on its first use (a library keeps its
    # statements prepared too): the comparison is about round trips.
    conn.prepare_threshold = 0

    upsert = (f"INSERT INTO {args.table} AS r (stream_id, events, amount)"
              " VALUES (%s, 1, %s)"
              " ON CONFLICT (stream_id) DO UPDATE"
              " SET events = r.events + 1, amount = r.amount + excluded.amount")
    read_page = ("SELECT global_position, stream_id, event_type, data"
                 " FROM eventstore.read_all(%s, %s)")
    store = "SELECT eventstore.store_checkpoint(%s, %s, %s)"

    position = conn.execute("SELECT eventstore.read_checkpoint(%s)",
                            (args.processor,)).fetchone()[0]
    applied = 0
    started = time.monotonic()
    while applied < args.events:
        with conn.transaction():
            rows = conn.execute(read_page, (position, args.page)).fetchall()
            if not rows:
                break
            for global_position, stream_id, event_type, data in rows:
                if event_type == "Deposited":
                    conn.execute(upsert, (stream_id, data["amount"]))
            last = rows[-1][0]
            outcome = conn.execute(store, (args.processor, last, position)).fetchone()[0]
            if outcome != "stored":
                raise SystemExit(f"store_checkpoint returned {outcome!r}, not 'stored'")
        position = last
        applied += len(rows)
    elapsed = time.monotonic() - started
    conn.close()
    print(applied, f"{elapsed:.3f}", position)


if __name__ == "__main__":
    sys.exit(main())
