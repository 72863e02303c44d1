#!/usr/bin/env bash
# Benchmark the push of the readable head, in one run, on a private
# PostgreSQL 15 cluster; prints a markdown table.  See test/bench/README.md.
#
#   test/bench/notify.sh [--quick]
#
# Appends of single events at a steady rate (open loop, in autocommit, 4
# clients), with a client LISTENing on eventstore_events: from each
# append's commit to the first notification whose readable head covers it,
# p50 and p99, against the baseline of a pg_notify sent by each append's
# own transaction (what the worker spares the append path), in alternating
# rounds over the same kind of appends.  poll_interval is 60 s: only the
# wake at commit counts.
#
# Environment: NOTIFY_RATE (appends/s, 1000), NOTIFY_SECONDS (per round,
# 15), NOTIFY_ROUNDS (of each side, 3), NOTIFY_CLIENTS (4), NOTIFY_PORT
# (5495), NOTIFY_WORKDIR (the root's work copy,
# /tmp/pg_eventstore-notifybench), NOTIFY_KEEP=1 (keep the cluster
# directory), NOTIFY_TIME_LIMIT (seconds after the build before a watchdog
# stops the run, 600), NOTIFY_PYTHON (/usr/bin/python3).  --quick: 2
# rounds of 5 s.
#
# Exit status: 0 when every append was notified; 1 when not, or a run
# failed, or the server logged an ERROR; 2 on a set-up error; 143 when
# stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${NOTIFY_SECONDS:=5}" "${NOTIFY_ROUNDS:=2}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

RATE=${NOTIFY_RATE:-1000}
SECONDS_PER_ROUND=${NOTIFY_SECONDS:-15}
ROUNDS=${NOTIFY_ROUNDS:-3}
CLIENTS=${NOTIFY_CLIENTS:-4}
PORT=${NOTIFY_PORT:-5495}
PYTHON=${NOTIFY_PYTHON:-/usr/bin/python3}
TIME_LIMIT=${NOTIFY_TIME_LIMIT:-600}
for v in "$RATE" "$SECONDS_PER_ROUND" "$ROUNDS" "$CLIENTS" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done

. test/bench/cluster.sh
bench_prepare_cluster notifybench "${NOTIFY_KEEP:-0}" "${NOTIFY_WORKDIR:-/tmp/pg_eventstore-notifybench}" "$TIME_LIMIT" "$PYTHON"
# Durable commits, as test/bench/run.sh; one worker serves postgres.
bench_configure "pg_eventstore push benchmark" pg_eventstore <<EOF
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 1
pg_eventstore.poll_interval = '60s'
pg_eventstore.notify = on
EOF
bench_start_cluster

psql_run() {
	timeout 300 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}
psql_run -c 'CREATE EXTENSION pg_eventstore' -c CHECKPOINT
LOG_OFFSET=$(stat -c %s "$LOG")
STATUS=0
LOAD_BEFORE=$(uptime)

echo "== $ROUNDS round(s) of each side, $SECONDS_PER_ROUND s at $RATE appends/s ($CLIENTS clients)"
# a round lasts longer when the appends cannot keep the rate (the baseline's
# serialize on the notify lock through their commits): up to 6 times
timeout $((2 * ROUNDS * (6 * SECONDS_PER_ROUND + 15) + 60)) $RUN "$PYTHON" \
	"$WORKDIR/test/bench/notify_bench.py" --host "$CLUSTER" --port "$PORT" \
	--out "$OUT/notify.json" --tmpdir "$OUT" --rounds "$ROUNDS" \
	--seconds "$SECONDS_PER_ROUND" --rate "$RATE" --clients "$CLIENTS" || STATUS=1

ERRORS=$(tail -c +$((LOG_OFFSET + 1)) "$LOG" | grep -c ' ERROR: ' || true)
if [ "$ERRORS" -gt 0 ]; then
	echo "the server logged $ERRORS error(s) during the runs; first ones:" >&2
	tail -c +$((LOG_OFFSET + 1)) "$LOG" | grep ' ERROR: ' | head -3 | sed 's/^/   | /' >&2
	STATUS=1
fi
echo
echo "uptime before: $LOAD_BEFORE"
echo "uptime after:  $(uptime)"
echo "$(bench_machine); total run time $(($(date +%s) - START_TIME)) s"
[ "$STATUS" -eq 0 ] || echo "FAILED: see above" >&2
exit $STATUS
