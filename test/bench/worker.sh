#!/usr/bin/env bash
# Benchmark the background worker, in one run, on a private PostgreSQL 15
# cluster; prints a markdown table.  See test/bench/README.md.
#
#   test/bench/worker.sh [--quick]
#
#   1. latency: appends of single events at a steady rate (open loop, in
#      autocommit), an async projection per event on them; from each
#      append's commit to its projection being visible to other sessions
#      (the handler's pg_notify, delivered when the worker's batch commits),
#      p50 and p99, with poll_interval = 60 s so only the wake at commit
#      counts.  Targets: p50 <= 2 ms, p99 <= 20 ms.
#   2. catch-up: the worker replaying a backlog of WORKER_EVENTS events
#      (after a rebuild) against run_projection over the same backlog, same
#      handler, same batch_size: in one call (all batches in one
#      transaction), and in a client loop of one call per batch (a
#      transaction per batch, as the worker; workers paused), in rotating
#      order.  Targets: worker / run_projection >= 0.90, and no rebuild
#      waiting for the poll (a lost wake-up).
#
# Environment: WORKER_LAT_RATE (appends/s, 1000), WORKER_LAT_SECONDS (per
# round, 20), WORKER_LAT_ROUNDS (3), WORKER_LAT_CLIENTS (appending
# connections sharing the rate, 4), WORKER_EVENTS (catch-up backlog,
# 200000), WORKER_STREAMS (its streams, 1000), WORKER_CU_ROUNDS (6),
# WORKER_BATCH_SIZE (pg_eventstore.batch_size of both sides, 1000),
# WORKER_MAX_WORKERS (pg_eventstore.max_workers, 2), WORKER_POLL_INTERVAL
# (pg_eventstore.poll_interval, 60s), WORKER_PORT (5492), WORKER_WORKDIR
# (the root's work copy, /tmp/pg_eventstore-workerbench), WORKER_KEEP=1
# (keep the cluster directory), WORKER_STRICT=1 (exit 3 when a target is
# missed), WORKER_TIME_LIMIT (seconds after the build before a watchdog
# stops the run, 600), WORKER_PYTHON (/usr/bin/python3).  --quick: 2
# latency rounds of 5 s, a backlog of 50,000 events, 3 catch-up rounds.
#
# Exit status: 0 when every event was applied and every read model is
# right; 1 when not, or a run failed, or the server logged an ERROR; 3 with
# WORKER_STRICT=1 when a target is missed; 2 on a set-up error; 143 when
# stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${WORKER_LAT_SECONDS:=5}" "${WORKER_LAT_ROUNDS:=2}"
	: "${WORKER_EVENTS:=50000}" "${WORKER_CU_ROUNDS:=3}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

LAT_RATE=${WORKER_LAT_RATE:-1000}
LAT_SECONDS=${WORKER_LAT_SECONDS:-20}
LAT_ROUNDS=${WORKER_LAT_ROUNDS:-3}
LAT_CLIENTS=${WORKER_LAT_CLIENTS:-4}
EVENTS=${WORKER_EVENTS:-200000}
STREAMS=${WORKER_STREAMS:-1000}
CU_ROUNDS=${WORKER_CU_ROUNDS:-6}
BATCH_SIZE=${WORKER_BATCH_SIZE:-1000}
MAX_WORKERS=${WORKER_MAX_WORKERS:-2}
POLL_INTERVAL=${WORKER_POLL_INTERVAL:-60s}
PORT=${WORKER_PORT:-5492}
PYTHON=${WORKER_PYTHON:-/usr/bin/python3}
TIME_LIMIT=${WORKER_TIME_LIMIT:-600}
LOAD_BATCH=10

for v in "$LAT_RATE" "$LAT_SECONDS" "$LAT_ROUNDS" "$LAT_CLIENTS" "$EVENTS" "$STREAMS" \
	"$CU_ROUNDS" "$BATCH_SIZE" "$MAX_WORKERS" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
[ $((EVENTS % LOAD_BATCH)) -eq 0 ] ||
	{ echo "WORKER_EVENTS must be a multiple of $LOAD_BATCH" >&2; exit 2; }
[[ $POLL_INTERVAL =~ ^[1-9][0-9]*(ms|s|min)?$ ]] ||
	{ echo "WORKER_POLL_INTERVAL: a duration such as 60s or 500ms" >&2; exit 2; }

. test/bench/cluster.sh
bench_prepare_cluster workerbench "${WORKER_KEEP:-0}" "${WORKER_WORKDIR:-/tmp/pg_eventstore-workerbench}" "$TIME_LIMIT" "$PYTHON"
# As test/bench/run.sh: durable commits (fsync and synchronous_commit on,
# for the appends and for the worker's batches alike), checkpoints kept out
# of the measurements.  The workers serve this cluster's database postgres;
# poll_interval is long so that only the wake at commit brings an event to
# its projection quickly.
bench_configure "pg_eventstore worker benchmark" pg_eventstore <<EOF
# the appends' commit timestamps: the latency's upper bound
track_commit_timestamp = on
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = $MAX_WORKERS
pg_eventstore.batch_size = $BATCH_SIZE
pg_eventstore.poll_interval = '$POLL_INTERVAL'
pg_eventstore.rebuild_throttle = 0
EOF
bench_start_cluster

psql_run() {
	timeout 300 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}
psql_value() { psql_run -At "$@"; }
bench_py() {
	timeout "$1" $RUN "$PYTHON" "$WORKDIR/test/bench/worker_bench.py" "${@:2}"
}

# Wait until the projection $1 is caught up and active (the worker
# replays a projection created over a non-empty log).
wait_active() {
	local i
	for ((i = 0; i < 1200; i++)); do
		[ "$(psql_value -c "SELECT status FROM eventstore.projections WHERE name = '$1'")" != active ] ||
			return 0
		sleep 0.1
	done
	echo "projection $1 did not become active" >&2
	return 1
}

echo "== creating the extension, the read models and a backlog of $EVENTS events"
psql_run -o /dev/null <<EOF
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;

-- 1. Latency: per event, when the worker applied it, and a notification
-- that PostgreSQL delivers when the worker's batch transaction commits.
CREATE TABLE bench.lat (global_position bigint PRIMARY KEY,
						applied_at timestamptz NOT NULL);
CREATE FUNCTION bench.lat_apply(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO bench.lat VALUES (e.global_position, clock_timestamp());
	PERFORM pg_notify('worker_bench', e.global_position::text);
END
\$\$;

-- 2. Catch-up: a per-stream read model, one upsert per event.
CREATE TABLE bench.cu_rm (stream_id text PRIMARY KEY, events bigint NOT NULL,
						  qty bigint NOT NULL, last_position bigint NOT NULL);
CREATE FUNCTION bench.cu_apply(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO bench.cu_rm AS r
	VALUES (e.stream_id, 1, (e.data->>'qty')::bigint, e.global_position)
	ON CONFLICT (stream_id) DO UPDATE
	SET events = r.events + 1, qty = r.qty + excluded.qty,
		last_position = excluded.last_position;
END
\$\$;

-- The backlog: $EVENTS ItemAdded events over $STREAMS streams, $LOAD_BATCH
-- per append and one append per transaction, as a log written by many
-- transactions is.
SET synchronous_commit = off;
DO \$\$
BEGIN
	FOR b IN 0 .. $EVENTS / $LOAD_BATCH - 1 LOOP
		PERFORM eventstore.append_to_stream('cu-' || b % $STREAMS,
			(SELECT jsonb_agg(jsonb_build_object('type', 'ItemAdded',
				'data', jsonb_build_object('sku', 'A' || i, 'qty', 1 + i % 3, 'price', 1999)))
			 FROM generate_series(1, $LOAD_BATCH) i));
		COMMIT;
	END LOOP;
END
\$\$;
RESET synchronous_commit;
VACUUM (ANALYZE) eventstore.events, eventstore.streams;
CHECKPOINT;

-- Created over the backlog, it starts rebuilding: the worker's first
-- replay, not measured, warms up.
SELECT eventstore.create_projection('catchup', 'bench.cu_apply'::regproc,
	ARRAY['ItemAdded'], 'async', on_reset => 'TRUNCATE bench.cu_rm');
EOF
wait_active catchup

LOG_OFFSET=$(stat -c %s "$LOG")
STATUS=0

echo "== 2. catch-up: $CU_ROUNDS round(s), worker vs run_projection (one call, and per batch)" \
	"over $EVENTS events, batch_size $BATCH_SIZE"
bench_py 1200 catchup --host "$CLUSTER" --port "$PORT" --out "$OUT/catchup.json" \
	--events "$EVENTS" --rounds "$CU_ROUNDS" --batch-size "$BATCH_SIZE" || STATUS=1

# The catch-up projection stopped, so that the worker's turns serve the
# latency projection alone; created over the log, that one replays it
# (no event of its type) before it is active.
psql_run -o /dev/null <<'EOF'
SELECT eventstore.stop_projection('catchup');
SELECT eventstore.create_projection('latency', 'bench.lat_apply'::regproc,
	ARRAY['LatencyProbe'], 'async');
EOF
wait_active latency
psql_run -c CHECKPOINT

echo "== 1. latency: $LAT_ROUNDS round(s) of $LAT_SECONDS s at $LAT_RATE appends/s" \
	"($LAT_CLIENTS clients), poll_interval $POLL_INTERVAL"
bench_py $((LAT_ROUNDS * (LAT_SECONDS + 30) + 60)) latency --host "$CLUSTER" --port "$PORT" \
	--out "$OUT/latency.json" --tmpdir "$OUT" --rounds "$LAT_ROUNDS" \
	--seconds "$LAT_SECONDS" --rate "$LAT_RATE" --clients "$LAT_CLIENTS" || STATUS=1

ERRORS=$(tail -c +$((LOG_OFFSET + 1)) "$LOG" | grep -c ' ERROR: ' || true)
if [ "$ERRORS" -gt 0 ]; then
	echo "the server logged $ERRORS error(s) during the runs; first ones:" >&2
	tail -c +$((LOG_OFFSET + 1)) "$LOG" | grep ' ERROR: ' | head -3 | sed 's/^/   | /' >&2
	STATUS=1
fi

echo
echo "The background worker: latency at $LAT_RATE appends/s (poll_interval $POLL_INTERVAL," \
	"so only the wake at commit counts) and catch-up throughput against run_projection" \
	"(batch_size $BATCH_SIZE, $MAX_WORKERS workers)"
echo
REPORT_RC=0
[ -s "$OUT/latency.json" ] && [ -s "$OUT/catchup.json" ] &&
	bench_py 60 report --latency "$OUT/latency.json" --catchup "$OUT/catchup.json" ||
	REPORT_RC=$?
[ -s "$OUT/latency.json" ] && [ -s "$OUT/catchup.json" ] || STATUS=1
echo
ELAPSED=$(($(date +%s) - START_TIME))
echo "$(bench_machine); total run time ${ELAPSED} s"

if [ "$STATUS" -ne 0 ]; then
	echo "FAILED: see above" >&2
elif [ "$REPORT_RC" -eq 3 ]; then
	echo "note: a target is missed" >&2
	[ "${WORKER_STRICT:-0}" != 1 ] || STATUS=3
elif [ "$REPORT_RC" -ne 0 ]; then
	STATUS=1
fi
exit $STATUS
