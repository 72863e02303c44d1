#!/usr/bin/env bash
# What reading eventstore.projection_status costs on a large log, caught up
# and while rebuilding, against the view of an older revision on the same
# data, in one run on a private PostgreSQL 15 cluster; prints a markdown
# table.  See test/bench/README.md.
#
#   test/bench/status.sh [--quick]
#
# The log: STATUS_EVENTS events over 10,000 streams, one in ten Deposited.
# Three projections: 'caught', async on Deposited, run to the end (caught
# up, lag 0); 'behind', async on every type, created on the empty log and
# run for STATUS_BEHIND events (active, a backlog of the rest);
# 'rebuilding', on every type, created on the loaded log and run for
# STATUS_BEHIND events (its first replay, status rebuilding, part way).  Each view is
# read STATUS_READS times, alternating, in one session (a PL/pgSQL loop
# fetching every row and column, after one read unmeasured), with JIT as
# the server's default (on); the table gives the median per read.  The
# older view (STATUS_OLD, default 66d372b: an exact count over the backlog)
# is created from that revision's sql/pg_eventstore.sql as
# bench.projection_status_old, reading the same tables.  Also: the lag each
# shows, and whether the plan of each read was JIT-compiled.
#
# Environment: STATUS_EVENTS (1000000), STATUS_BEHIND (300000),
# STATUS_READS (9), STATUS_OLD (66d372b), STATUS_PORT (5493),
# STATUS_WORKDIR (/tmp/pg_eventstore-statusbench), STATUS_KEEP=1 (keep the
# cluster directory), STATUS_TIME_LIMIT (seconds after the build, 1800).
# --quick: 200,000 events, 60,000 behind, 5 reads.
#
# Exit status: 0 when the run completed and the new view's lag is within
# 1% of the exact count (exact where it says so); 1 otherwise; 2 on a
# set-up error; 143 when stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${STATUS_EVENTS:=200000}" "${STATUS_BEHIND:=60000}" "${STATUS_READS:=5}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac
EVENTS=${STATUS_EVENTS:-1000000}
BEHIND=${STATUS_BEHIND:-300000}
READS=${STATUS_READS:-9}
OLD=${STATUS_OLD:-66d372b}
PORT=${STATUS_PORT:-5493}
TIME_LIMIT=${STATUS_TIME_LIMIT:-1800}
STREAMS=10000
for v in "$EVENTS" "$BEHIND" "$READS" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
[ $((EVENTS % (STREAMS * 10))) -eq 0 ] && [ "$BEHIND" -lt "$EVENTS" ] ||
	{ echo "STATUS_EVENTS must be a multiple of 100,000 and more than STATUS_BEHIND" >&2; exit 2; }

# The older view, renamed, from its revision (before the work copy, which
# has no .git).
OLD_VIEW=$(mktemp)
trap 'rm -f "$OLD_VIEW"' EXIT
git show "$OLD:sql/pg_eventstore.sql" |
	awk '/^CREATE VIEW eventstore.projection_status AS/ { on = 1 } on { print } on && /;[ \t]*$/ { exit }' |
	sed 's/^CREATE VIEW eventstore.projection_status AS/CREATE VIEW bench.projection_status_old AS/' >"$OLD_VIEW"
grep -q 'bench.projection_status_old' "$OLD_VIEW" ||
	{ echo "no projection_status in $OLD:sql/pg_eventstore.sql" >&2; exit 2; }
OLD_SQL=$(cat "$OLD_VIEW")
rm -f "$OLD_VIEW"
trap - EXIT

. test/bench/cluster.sh
bench_prepare_cluster statusbench "${STATUS_KEEP:-0}" "${STATUS_WORKDIR:-/tmp/pg_eventstore-statusbench}" "$TIME_LIMIT" ""
bench_configure "pg_eventstore projection_status benchmark" pg_eventstore <<EOF
autovacuum = off
# no workers: the projections stay where run_projection leaves them
pg_eventstore.databases = ''
jit = on
EOF
bench_start_cluster
psql_run() {
	timeout 1200 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}

echo "== loading $EVENTS events"
psql_run -o /dev/null <<'EOF'
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;
CREATE FUNCTION bench.noop(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
-- created on the empty log: active from the start
SELECT eventstore.create_projection('caught', 'bench.noop', ARRAY['Deposited']);
SELECT eventstore.create_projection('behind', 'bench.noop');
EOF
per=$((EVENTS / STREAMS / 10))
for ((round = 0; round < per; round++)); do
	psql_run -o /dev/null -c "
		SELECT count(eventstore.append_to_stream('acct-' || s,
			(SELECT jsonb_agg(jsonb_build_object(
				'type', CASE WHEN (s + i) % 10 = 0 THEN 'Deposited' ELSE 'Noted' END,
				'data', jsonb_build_object('amount', i)))
			 FROM generate_series(1, 10) i)))
		FROM generate_series(1, $STREAMS) s"
done
echo "== projections: caught up, behind by $((EVENTS - BEHIND)), rebuilding at $BEHIND of $EVENTS"
psql_run -o /dev/null <<EOF
VACUUM ANALYZE;
SELECT eventstore.run_projection('caught');
SELECT eventstore.run_projection('behind', max_events => $BEHIND);
-- created on the loaded log: its first replay is a rebuild
SELECT eventstore.create_projection('rebuilding', 'bench.noop');
SELECT eventstore.run_projection('rebuilding', max_events => $BEHIND);
$OLD_SQL
-- Median, least and most milliseconds of n reads of each view, alternating
-- (every row and column fetched), after one unmeasured read of each.
CREATE FUNCTION bench.read_times(views text[], n integer)
RETURNS TABLE (view_name text, median_ms double precision, min_ms double precision,
			   max_ms double precision)
LANGUAGE plpgsql AS \$\$
DECLARE
	r record;
	t0 timestamptz;
	v text;
	times double precision[] := '{}';
	names text[] := '{}';
BEGIN
	FOREACH v IN ARRAY views LOOP
		FOR r IN EXECUTE 'SELECT * FROM ' || v LOOP END LOOP;
	END LOOP;
	FOR i IN 1 .. n LOOP
		FOREACH v IN ARRAY views LOOP
			t0 := clock_timestamp();
			FOR r IN EXECUTE 'SELECT * FROM ' || v LOOP END LOOP;
			times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
			names := names || v;
		END LOOP;
	END LOOP;
	RETURN QUERY SELECT x.name, percentile_cont(0.5) WITHIN GROUP (ORDER BY x.ms),
						min(x.ms), max(x.ms)
				 FROM unnest(names, times) AS x(name, ms) GROUP BY x.name;
END
\$\$;
CREATE TABLE bench.exact AS
SELECT p.name, count(e.*) FILTER (WHERE p.event_types IS NULL OR e.event_type = ANY (p.event_types)) AS lag
FROM eventstore.projections p
	LEFT JOIN eventstore.events e
		ON (e.transaction_id, e.global_position) > (p.transaction_id, p."position")
GROUP BY p.name;
EOF
psql_value() { psql_run -At "$@"; }
[ "$(psql_value -c "SELECT string_agg(name || ' ' || status, ', ' ORDER BY name) FROM eventstore.projections")" = \
	"behind active, caught active, rebuilding rebuilding" ] ||
	{ echo "the projections are not in the states measured" >&2; exit 1; }

# JIT used by a read of the view with one projection (EXPLAIN ANALYZE).
jit_of() {
	psql_value -c "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM $1 WHERE name = '$2'" |
		python3 -c 'import json, sys; j = json.load(sys.stdin)[0].get("JIT"); print("no" if j is None else "yes, %.0f ms" % j["Timing"]["Total"])'
}

ROWS=()
FAILED=0
for state in caught behind rebuilding; do
	echo "== reading both views, projection '$state' only, $READS rounds"
	psql_run -o /dev/null -c "
		CREATE OR REPLACE VIEW bench.new_$state AS SELECT * FROM eventstore.projection_status WHERE name = '$state';
		CREATE OR REPLACE VIEW bench.old_$state AS SELECT * FROM bench.projection_status_old WHERE name = '$state';"
	times=$(psql_value -F ' ' -c "SELECT view_name, round(median_ms::numeric, 2), round(min_ms::numeric, 2), round(max_ms::numeric, 2)
		FROM bench.read_times(ARRAY['bench.old_$state', 'bench.new_$state'], $READS) ORDER BY view_name DESC")
	old_t=$(awk '$1 ~ /old/ { print $2 " (" $3 " .. " $4 ")" }' <<<"$times")
	new_t=$(awk '$1 ~ /new/ { print $2 " (" $3 " .. " $4 ")" }' <<<"$times")
	lags=$(psql_value -F ' ' -c "SELECT o.lag_events, n.lag_events, n.lag_exact, x.lag,
			COALESCE(round(n.rebuild_progress::numeric, 3)::text, '-'), COALESCE(date_trunc('second', n.rebuild_time_left)::text, '-')
		FROM bench.old_$state o, bench.new_$state n, bench.exact x WHERE x.name = '$state'")
	read -r old_lag new_lag new_exact exact progress time_left <<<"$lags"
	ok=$(awk -v n="$new_lag" -v x="$exact" -v e="$new_exact" 'BEGIN { d = n - x; if (d < 0) d = -d; print ((e == "t" && d == 0) || (e == "f" && d <= 0.01 * x)) ? "ok" : "OFF" }')
	[ "$ok" = ok ] || FAILED=1
	ROWS+=("| $state | $old_t | $(jit_of "bench.projection_status_old" "$state") | $new_t | $(jit_of eventstore.projection_status "$state") | $exact | $old_lag | $new_lag ($([ "$new_exact" = t ] && echo exact || echo estimate), $ok) | $progress | $time_left |")
done

echo
echo "Reading projection_status, one projection's row, on a log of $EVENTS events (10,000 streams):" \
	"milliseconds per read, median of $READS alternating reads (least .. most), JIT on"
echo
echo "| projection | old view ($OLD), ms | old: JIT | new view, ms | new: JIT | exact lag | old lag_events | new lag_events | rebuild_progress | rebuild_time_left |"
echo "|---|---:|---|---:|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "$(bench_machine); total run time $(($(date +%s) - START_TIME)) s"
exit $FAILED
