#!/usr/bin/env bash
# Benchmark reading eventstore.metrics on a large log, in one run, on a
# private PostgreSQL 15 cluster; prints a markdown table.  See
# test/bench/README.md.
#
#   test/bench/metrics.sh [--quick]
#
# A log of METRICS_EVENTS events over 10,000 streams (1 in 10 of type
# Deposited), three projections (caught up on Deposited; active, 70% of
# the log behind; rebuilding, 30% done) and two processors (at the head;
# 70% behind); then METRICS_READS alternating reads of eventstore.metrics,
# projection_status, processors (every row fetched) and, as the baseline of
# what the metrics never do, an exact count(*) of the log.  Every estimate
# is checked against the exact count (within 1%).
#
# Environment: METRICS_EVENTS (a multiple of 100,000; 10000000),
# METRICS_READS (9), METRICS_PORT (5494), METRICS_WORKDIR (the root's work
# copy, /tmp/pg_eventstore-metricsbench), METRICS_KEEP=1 (keep the cluster
# directory), METRICS_TIME_LIMIT (seconds after the build before a watchdog
# stops the run, 3600).  --quick: 1,000,000 events, 5 reads.
#
# Exit status: 0 when every estimate is within 1%; 1 when not or a run
# failed; 2 on a set-up error; 143 when stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${METRICS_EVENTS:=1000000}" "${METRICS_READS:=5}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac
EVENTS=${METRICS_EVENTS:-10000000}
READS=${METRICS_READS:-9}
PORT=${METRICS_PORT:-5494}
TIME_LIMIT=${METRICS_TIME_LIMIT:-3600}
STREAMS=10000
for v in "$EVENTS" "$READS" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
[ $((EVENTS % (STREAMS * 10))) -eq 0 ] ||
	{ echo "METRICS_EVENTS must be a multiple of 100,000" >&2; exit 2; }
BEHIND=$((EVENTS * 3 / 10))

. test/bench/cluster.sh
bench_prepare_cluster metricsbench "${METRICS_KEEP:-0}" "${METRICS_WORKDIR:-/tmp/pg_eventstore-metricsbench}" "$TIME_LIMIT" ""
bench_configure "pg_eventstore metrics benchmark" pg_eventstore <<EOF
autovacuum = off
pg_eventstore.databases = ''
EOF
bench_start_cluster
psql_run() {
	timeout 3000 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}
psql_value() { psql_run -At "$@"; }

echo "== loading $EVENTS events"
psql_run -o /dev/null <<'EOF'
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;
CREATE FUNCTION bench.noop(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT eventstore.create_projection('caught', 'bench.noop', ARRAY['Deposited']);
SELECT eventstore.create_projection('behind', 'bench.noop');
EOF
per=$((EVENTS / STREAMS / 10))
for ((round = 0; round < per; round++)); do
	psql_run -o /dev/null -c "
		SET synchronous_commit = off;
		SELECT count(eventstore.append_to_stream('acct-' || s,
			(SELECT jsonb_agg(jsonb_build_object(
				'type', CASE WHEN (s + i) % 10 = 0 THEN 'Deposited' ELSE 'Noted' END,
				'data', jsonb_build_object('amount', i)))
			 FROM generate_series(1, 10) i)))
		FROM generate_series(1, $STREAMS) s"
done
echo "== projections and processors, behind by $((EVENTS - BEHIND)) or at the head"
psql_run -o /dev/null <<EOF
VACUUM ANALYZE;
SELECT eventstore.run_projection('caught');
SELECT eventstore.run_projection('behind', max_events => $BEHIND);
SELECT eventstore.create_projection('rebuilding', 'bench.noop');
SELECT eventstore.run_projection('rebuilding', max_events => $BEHIND);
SELECT eventstore.store_checkpoint('at-head',
	(SELECT global_position FROM eventstore.events ORDER BY transaction_id DESC, global_position DESC LIMIT 1), NULL);
SELECT eventstore.store_checkpoint('lagging',
	(SELECT global_position FROM eventstore.events ORDER BY transaction_id, global_position OFFSET $BEHIND - 1 LIMIT 1), NULL);
-- Median, least and most milliseconds of n reads of each query,
-- alternating (every row fetched), after one unmeasured read of each.
CREATE FUNCTION bench.read_times(queries text[], n integer)
RETURNS TABLE (query text, median_ms double precision, min_ms double precision,
			   max_ms double precision)
LANGUAGE plpgsql AS \$\$
DECLARE
	r record;
	t0 timestamptz;
	q text;
	times double precision[] := '{}';
	names text[] := '{}';
BEGIN
	FOREACH q IN ARRAY queries LOOP
		FOR r IN EXECUTE q LOOP END LOOP;
	END LOOP;
	FOR i IN 1 .. n LOOP
		FOREACH q IN ARRAY queries LOOP
			t0 := clock_timestamp();
			FOR r IN EXECUTE q LOOP END LOOP;
			times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
			names := names || q;
		END LOOP;
	END LOOP;
	RETURN QUERY SELECT x.name, percentile_cont(0.5) WITHIN GROUP (ORDER BY x.ms),
						min(x.ms), max(x.ms)
				 FROM unnest(names, times) AS x(name, ms) GROUP BY x.name;
END
\$\$;
EOF
LOAD_BEFORE=$(uptime)
echo "== $READS alternating reads"
TIMES=$(psql_value -F '|' -c "SELECT query, round(median_ms::numeric, 2), round(min_ms::numeric, 2), round(max_ms::numeric, 2)
	FROM bench.read_times(ARRAY['SELECT * FROM eventstore.metrics', 'SELECT * FROM eventstore.projection_status',
								'SELECT * FROM eventstore.processors', 'SELECT count(*) FROM eventstore.events'], $READS)")
LOAD_AFTER=$(uptime)
# each estimate against its exact count (within 1%)
CHECKS=$(psql_value -F '|' <<'EOF'
WITH m AS (SELECT name, labels, value FROM eventstore.metrics),
exact AS (
	SELECT 'eventstore_events' AS name, '{}'::jsonb AS labels, (SELECT count(*) FROM eventstore.events)::float8 AS exact
	UNION ALL
	SELECT 'eventstore_streams', '{}', (SELECT count(*) FROM eventstore.streams)
	UNION ALL
	SELECT 'eventstore_projection_lag_events',
		   jsonb_build_object('projection', p.name, 'version', p.version::text, 'mode', p.mode),
		   (SELECT count(*) FROM eventstore.events e
			WHERE (e.transaction_id, e.global_position) > (p.transaction_id, p."position")
			  AND (p.event_types IS NULL OR e.event_type = ANY (p.event_types)))
	FROM eventstore.projections p
	UNION ALL
	SELECT 'eventstore_processor_lag_events',
		   jsonb_build_object('processor', c.processor_id, 'partition', c.partition),
		   (SELECT count(*) FROM eventstore.events e
			WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c."position"))
	FROM eventstore.checkpoints c)
SELECT x.name || COALESCE(' ' || NULLIF(COALESCE(x.labels ->> 'projection', x.labels ->> 'processor'), ''), ''),
	   x.exact, m.value, CASE WHEN abs(m.value - x.exact) <= 0.01 * x.exact THEN 'ok' ELSE 'OFF' END
FROM exact x JOIN m USING (name, labels) ORDER BY 1
EOF
)
echo
echo "Reading eventstore.metrics on a log of $EVENTS events (10,000 streams; 3 projections, 2 processors):" \
	"milliseconds per read, median of $READS alternating reads (least .. most)"
echo
echo "| query | ms per read | ratio to the metrics |"
echo "|---|---:|---:|"
metrics_ms=$(awk -F'|' '$1 ~ /metrics/ { print $2 }' <<<"$TIMES")
while IFS='|' read -r q med lo hi; do
	echo "| \`$q\` | $med ($lo .. $hi) | $(awk -v a="$med" -v b="$metrics_ms" 'BEGIN { printf "%.2f", a / b }') |"
done <<<"$TIMES"
echo
echo "| metric | exact | value | within 1% |"
echo "|---|---:|---:|---|"
FAILED=0
while IFS='|' read -r name exact value ok; do
	echo "| $name | $exact | $value | $ok |"
	[ "$ok" = ok ] || FAILED=1
done <<<"$CHECKS"
echo
echo "uptime before the reads: $LOAD_BEFORE"
echo "uptime after:            $LOAD_AFTER"
echo "$(bench_machine); total run time $(($(date +%s) - START_TIME)) s"
exit $FAILED
