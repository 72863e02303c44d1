#!/usr/bin/env bash
# Benchmark archival under append load, in one run, on a private
# PostgreSQL 15 cluster with the worker on; prints a markdown table.  See
# test/bench/README.md.
#
#   test/bench/archive.sh [--quick]
#
# The log gets ARCHIVE_EVENTS events (append_to_stream, 100 events per
# call, over 10,000 streams), the first half before a time T and the
# second after it.  Then two runs of ARCHIVE_SECONDS of 4 pgbench clients
# appending one event each to a random one of 10,000 other streams
# (append_event): the first without archival (the baseline), the second
# with archive_events(T) called 5 s in, the worker moving the first half
# to eventstore.events_archive in batches of pg_eventstore.maintenance_batch_size
# (ARCHIVE_BATCH) at most pg_eventstore.maintenance_throttle events a second
# (ARCHIVE_THROTTLE).  From pgbench's per-transaction logs: the appends per
# second and their p99 latency inside the archival's window (from the
# call to the maintenance_log row's finished_at), and in the same window
# of the baseline run; the ratio of the two throughputs (target >= 0.8).
# The archival rate is the events moved over the window.  Table sizes
# (eventstore.events with its indexes and TOAST, events_archive,
# removed_log_places) are taken before, after the archival, after a plain
# VACUUM of the log (timed; it takes no lock appends or readers wait for)
# with pgstattuple's free space, and after appending another
# ARCHIVE_REFILL events, to show the freed space is reused.  autovacuum is
# on, as in production; synchronous_commit is on.
#
# Environment: ARCHIVE_EVENTS (2000000, even), ARCHIVE_SECONDS (330),
# ARCHIVE_BATCH (1000), ARCHIVE_THROTTLE (pg_eventstore.maintenance_throttle,
# 4000 events/s; 0: unlimited), ARCHIVE_REFILL (200000), ARCHIVE_PORT (5497),
# ARCHIVE_WORKDIR (the root's work copy, /tmp/pg_eventstore-archivebench),
# ARCHIVE_KEEP=1 (keep the cluster directory), ARCHIVE_TIME_LIMIT (seconds
# after the build before a watchdog stops the run, 3600).  --quick:
# 100,000 events, 30 s runs, 10,000 refill.
#
# Exit status: 0 when the archival moved exactly the first half and every
# event is in the log or the archive once; 1 otherwise; 2 on a set-up
# error; 143 when stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${ARCHIVE_EVENTS:=100000}" "${ARCHIVE_SECONDS:=30}" "${ARCHIVE_REFILL:=10000}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

EVENTS=${ARCHIVE_EVENTS:-2000000}
SECONDS_PER_RUN=${ARCHIVE_SECONDS:-330}
BATCH=${ARCHIVE_BATCH:-1000}
THROTTLE=${ARCHIVE_THROTTLE:-4000}
REFILL=${ARCHIVE_REFILL:-200000}
PORT=${ARCHIVE_PORT:-5497}
TIME_LIMIT=${ARCHIVE_TIME_LIMIT:-3600}
STREAMS=10000
[[ $THROTTLE =~ ^[0-9]+$ ]] || { echo "not a number: $THROTTLE" >&2; exit 2; }
for v in "$EVENTS" "$SECONDS_PER_RUN" "$BATCH" "$REFILL" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
[ $((EVENTS % (2 * STREAMS))) -eq 0 ] ||
	{ echo "ARCHIVE_EVENTS must be a multiple of $((2 * STREAMS))" >&2; exit 2; }
HALF=$((EVENTS / 2))

. test/bench/cluster.sh
bench_prepare_cluster archivebench "${ARCHIVE_KEEP:-0}" "${ARCHIVE_WORKDIR:-/tmp/pg_eventstore-archivebench}" "$TIME_LIMIT" ""
bench_configure "pg_eventstore archival benchmark" pg_eventstore <<EOF
pg_eventstore.databases = 'postgres'
pg_eventstore.maintenance_batch_size = $BATCH
pg_eventstore.maintenance_throttle = $THROTTLE
pg_eventstore.poll_interval = 200
EOF
bench_start_cluster

psql_run() { timeout 3600 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"; }
value() { psql_run -At -c "$1"; }

psql_run -c "CREATE EXTENSION pg_eventstore" -c "CREATE EXTENSION pgstattuple"

# load HALF events over the streams 'acct-<n>', in calls of up to 100 events
# per stream, split among 4 sessions
load_half() {
	local per_stream=$((HALF / STREAMS)) per_call k pids=() lo hi
	per_call=$((per_stream < 100 ? per_stream : 100))
	for ((k = 0; k < 4; k++)); do
		lo=$((k * STREAMS / 4 + 1))
		hi=$(((k + 1) * STREAMS / 4))
		psql_run -o /dev/null -c "
	SELECT count(eventstore.append_to_stream('acct-' || s,
		(SELECT jsonb_agg(jsonb_build_object('type', 'Deposited',
			'data', jsonb_build_object('amount', (random() * 1000)::int))) FROM generate_series(1, $per_call))))
	FROM generate_series(1, $((per_stream / per_call))) r, generate_series($lo, $hi) s" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
}

echo "== loading $EVENTS events over $STREAMS streams"
load_start=$EPOCHREALTIME
load_half
sleep 1
CUTOFF=$(value "SELECT now()")
sleep 1
load_half
psql_run -c "VACUUM ANALYZE" -c "CHECKPOINT"
LOAD_SECONDS=$(awk -v a="$load_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
[ "$(value "SELECT count(*) FROM eventstore.events WHERE created_at < '$CUTOFF'")" = "$HALF" ] ||
	{ echo "the first half is not before the cutoff" >&2; exit 1; }

sizes() {
	value "SELECT pg_size_pretty(pg_total_relation_size('eventstore.events')) || ' / '
		|| pg_size_pretty(pg_total_relation_size('eventstore.events_archive')) || ' / '
		|| pg_size_pretty(pg_total_relation_size('eventstore.removed_log_places'))"
}
SIZE_BEFORE=$(sizes)
EVENTS_BEFORE=$(value "SELECT count(*) FROM eventstore.events")

cat >"$OUT/append.sql" <<'EOF'
\set s random(1, 10000)
SELECT eventstore.append_event('load-' || :s, 'ItemAdded', '{"sku": "A1", "qty": 2}');
EOF

# pgbench_logged NAME: 4 clients for SECONDS_PER_RUN, a log line per
# transaction in $OUT/NAME.*
pgbench_logged() {
	(cd "$OUT" && timeout $((SECONDS_PER_RUN + 120)) $RUN pgbench -n -M prepared -h "$CLUSTER" -p "$PORT" \
		-c 4 -j 4 -T "$SECONDS_PER_RUN" -f append.sql -l --log-prefix="$1" postgres >"$1.out" 2>&1)
}
# window_stats NAME FROM TO (epoch seconds): "tps p99_ms" of the
# transactions that ended inside the window
window_stats() {
	local lats
	lats=$(cat "$OUT/$1".[0-9]* | awk -v a="$2" -v b="$3" '
		{ t = $5 + $6 / 1e6; if (t >= a && t <= b) print $3 / 1000 }' | sort -n)
	echo "$lats" | awk -v a="$2" -v b="$3" '
		NF { lat[++n] = $1 }
		END { if (n == 0) { print "0 0"; exit }
			  k = int(n * 0.99); if (k < 1) k = 1
			  printf "%.0f %.2f\n", n / (b - a), lat[k] }'
}

echo "== baseline: 4 clients appending for $SECONDS_PER_RUN s, no archival"
base_start=$EPOCHREALTIME
pgbench_logged base

echo "== archival of $HALF events while 4 clients append for $SECONDS_PER_RUN s"
pgbench_logged arch &
bench_pid=$!
sleep 5
arch_start=$EPOCHREALTIME
QUEUED=$(value "SELECT eventstore.archive_events('$CUTOFF')")
arch_end=
while kill -0 "$bench_pid" 2>/dev/null; do
	if [ -z "$arch_end" ] && [ "$(value "SELECT count(*) FROM eventstore.maintenance_log WHERE action = 'archive_events' AND finished_at IS NULL")" = 0 ]; then
		arch_end=$EPOCHREALTIME
	fi
	sleep 0.5
done
wait "$bench_pid"
MOVED=$(value "SELECT events FROM eventstore.maintenance_log WHERE action = 'archive_events' ORDER BY maintenance_id DESC LIMIT 1")
FINISHED=yes
if [ -z "$arch_end" ]; then
	FINISHED="no (still running at the end of the run)"
	arch_end=$EPOCHREALTIME
fi
WINDOW=$(awk -v a="$arch_start" -v b="$arch_end" 'BEGIN { printf "%.1f", b - a }')
RATE=$(awk -v n="$MOVED" -v w="$WINDOW" 'BEGIN { printf "%.0f", n / w }')
read -r ARCH_TPS ARCH_P99 < <(window_stats arch "$arch_start" "$arch_end")
# the same window of the baseline run, counted from its start
b_from=$(awk -v s="$base_start" 'BEGIN { printf "%.6f", s + 5 }')
b_to=$(awk -v f="$b_from" -v w="$WINDOW" 'BEGIN { printf "%.6f", f + w }')
read -r BASE_TPS BASE_P99 < <(window_stats base "$b_from" "$b_to")
RATIO=$(awk -v a="$ARCH_TPS" -v b="$BASE_TPS" 'BEGIN { r = 0; if (b > 0) r = a / b; printf "%.2f", r }')
SIZE_AFTER=$(sizes)

vacuum_start=$EPOCHREALTIME
psql_run -c "VACUUM eventstore.events"
VACUUM_SECONDS=$(awk -v a="$vacuum_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
SIZE_VACUUMED=$(sizes)
FREE=$(value "SELECT round(free_percent) || '% free, ' || round(dead_tuple_percent) || '% dead' FROM pgstattuple('eventstore.events')")
PK_FREE=$(value "SELECT round(avg_leaf_density) || '% leaf density, ' || deleted_pages || ' deleted pages' FROM pgstatindex('eventstore.events_pkey')")

echo "== refilling: $REFILL events"
psql_run -o /dev/null -c "
	SELECT count(eventstore.append_to_stream('refill-' || s,
		(SELECT jsonb_agg(jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('amount', 1)))
		 FROM generate_series(1, 100))))
	FROM generate_series(1, $((REFILL / 100))) s"
SIZE_REFILLED=$(sizes)

# nothing lost, nothing doubled
status=0
LIVE_OLD=$(value "SELECT count(*) FROM eventstore.events WHERE created_at < '$CUTOFF'")
ARCHIVED=$(value "SELECT count(*) FROM eventstore.events_archive")
BOTH=$(value "SELECT count(*) FROM eventstore.events e JOIN eventstore.events_archive a USING (global_position)")
[ "$LIVE_OLD" = 0 ] && [ "$ARCHIVED" = "$HALF" ] && [ "$BOTH" = 0 ] && [ "$MOVED" = "$HALF" ] || {
	echo "archival incomplete or wrong: $LIVE_OLD old events live, $ARCHIVED archived, $BOTH in both, $MOVED counted" >&2
	status=1
}

ELAPSED=$(($(date +%s) - START_TIME))
cat <<EOF

| archival of $HALF of $EVENTS events, 4 clients appending | value |
|---|---|
| events queued / moved | $QUEUED / $MOVED (finished: $FINISHED) |
| archival window | $WINDOW s |
| archival rate | $RATE events/s (batches of $BATCH, maintenance_throttle $THROTTLE) |
| appends/s during archival / same window without | $ARCH_TPS / $BASE_TPS = **$RATIO** (target >= 0.8) |
| p99 append latency during archival / without | $ARCH_P99 ms / $BASE_P99 ms |
| sizes before (events / archive / removed places) | $SIZE_BEFORE |
| after archival | $SIZE_AFTER |
| after VACUUM eventstore.events ($VACUUM_SECONDS s) | $SIZE_VACUUMED; heap $FREE; primary key $PK_FREE |
| after appending $REFILL more events | $SIZE_REFILLED |

Loaded in $LOAD_SECONDS s ($EVENTS_BEFORE events before the runs); uptime at the end: $(uptime | sed 's/.*load average/load average/')
EOF
echo "$(bench_machine); total run time ${ELAPSED} s"
exit $status
