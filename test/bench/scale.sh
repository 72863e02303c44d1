#!/usr/bin/env bash
# Do the costs stay flat as the log grows?  Two logs in one private
# PostgreSQL 15 cluster, SCALE_SMALL (1,000,000) and SCALE_LARGE
# (10,000,000) events, each in its own database, measured side by side in
# one run; prints a markdown table of large against small.  See
# test/bench/README.md.
#
#   test/bench/scale.sh [--quick]
#
# Each log: 10,000 streams, loaded by bench_load_deposits (cluster.sh)
# through append_to_stream, set-based, 10 events per stream and call, in
# rounds over every stream, so a stream's events are spread over the log;
# one event in 100 of each stream is a Withdrawn, the rest Deposited.
# Measured on each log:
#   - append throughput: pgbench, append_event of one Deposited to a random
#     one of the 10,000 streams, 1 and 4 clients;
#   - read_all page: pgbench, read_all of 1,000 events after a random
#     position, and of 100 Withdrawn (the 1% type) after a random position;
#   - replay throughput: a projection of every type with a batch handler
#     (one set-based upsert per batch, the read model of projections.sh),
#     created over the loaded log, so it is rebuilt from the start, by
#     calls of run_projection(max_events => SCALE_CHUNK) in a loop, each its
#     own transaction, as the worker commits batch by batch; then the same
#     for a projection of the 1% type only (the sparse replay);
#   - projection_status and processors (and eventstore.metrics where it
#     exists) during that rebuild: a second session reads each every 0.2 s,
#     every row and column, until the rebuild is done; median and most, in
#     milliseconds, JIT as the server's default (on).
# The pgbench rows run both logs SCALE_ROUNDS times, interleaved (small
# first in odd rounds, large first in even ones); a row's ratio is the
# median of the rounds' ratios (large / small).  The replays and the status
# reads cannot be interleaved: each log's rebuild runs alone, small first.
# The read models are checked against the set-based answer.
#
# Environment: SCALE_SMALL (1000000), SCALE_LARGE (10000000), SCALE_SECONDS
# (per pgbench run, 5), SCALE_ROUNDS (3), SCALE_CHUNK (50000), SCALE_PORT
# (5495), SCALE_WORKDIR (the root's work copy, /tmp/pg_eventstore-scalebench),
# SCALE_KEEP=1 (keep the cluster directory), SCALE_TIME_LIMIT (seconds after
# the build before a watchdog stops the run, 5400).  --quick: 100,000 and
# 1,000,000 events, 3 s per run, 2 rounds.
#
# Exit status: 0 when the run completed and every read model matched; 1 when
# one did not or a call failed; 3 with SCALE_STRICT=1 when a target is
# missed (>= 0.90 for throughputs, status under 50 ms); 2 on a set-up error;
# 143 when stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${SCALE_SMALL:=100000}" "${SCALE_LARGE:=1000000}" "${SCALE_SECONDS:=3}" "${SCALE_ROUNDS:=2}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac
SMALL=${SCALE_SMALL:-1000000}
LARGE=${SCALE_LARGE:-10000000}
SECONDS_PER_RUN=${SCALE_SECONDS:-5}
ROUNDS=${SCALE_ROUNDS:-3}
CHUNK=${SCALE_CHUNK:-50000}
PORT=${SCALE_PORT:-5495}
TIME_LIMIT=${SCALE_TIME_LIMIT:-5400}
STREAMS=10000
for v in "$SMALL" "$LARGE" "$SECONDS_PER_RUN" "$ROUNDS" "$CHUNK" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
[ $((SMALL % (STREAMS * 10))) -eq 0 ] && [ $((LARGE % (STREAMS * 10))) -eq 0 ] ||
	{ echo "SCALE_SMALL and SCALE_LARGE must be multiples of 100,000" >&2; exit 2; }

. test/bench/cluster.sh
bench_prepare_cluster scalebench "${SCALE_KEEP:-0}" "${SCALE_WORKDIR:-/tmp/pg_eventstore-scalebench}" "$TIME_LIMIT" ""
SCRIPTS=$CLUSTER/scripts
$RUN mkdir -p "$SCRIPTS"
bench_configure "pg_eventstore scale benchmark" pg_eventstore <<EOF
# Explicit VACUUMs only: an autovacuum of one log would land in the middle
# of some measurement of the other.
autovacuum = off
# No background workers: run_projection drives the rebuilds, so what is
# timed is their work.
pg_eventstore.databases = ''
jit = on
EOF
bench_start_cluster

DB=postgres
psql_run() {
	timeout 3600 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d "$DB" "$@"
}
psql_value() { psql_run -At "$@"; }
fmt() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
declare -A EVENTS=([small]=$SMALL [large]=$LARGE)

# --- the logs --------------------------------------------------------------
for size in small large; do
	psql_run -o /dev/null -c "CREATE DATABASE $size"
	DB=$size
	psql_run -o /dev/null <<'EOF'
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;
-- The read model of projections.sh: per stream, its events and the sum of
-- their amounts; one for the projection of every type, one for the 1%.
CREATE TABLE bench.rm_all (stream_id text PRIMARY KEY, events bigint NOT NULL,
						   amount numeric NOT NULL);
CREATE TABLE bench.rm_withdrawn (LIKE bench.rm_all INCLUDING ALL);
CREATE FUNCTION bench.apply_all(es eventstore.events[]) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO bench.rm_all AS r (stream_id, events, amount)
	SELECT e.stream_id, count(*), sum((e.data->>'amount')::numeric)
	FROM unnest(es) e GROUP BY e.stream_id
	ON CONFLICT (stream_id) DO UPDATE
	SET events = r.events + excluded.events, amount = r.amount + excluded.amount
$$;
CREATE FUNCTION bench.apply_withdrawn(es eventstore.events[]) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO bench.rm_withdrawn AS r (stream_id, events, amount)
	SELECT e.stream_id, count(*), sum((e.data->>'amount')::numeric)
	FROM unnest(es) e GROUP BY e.stream_id
	ON CONFLICT (stream_id) DO UPDATE
	SET events = r.events + excluded.events, amount = r.amount + excluded.amount
$$;
-- The milliseconds of one read of a view, every row and column fetched.
CREATE FUNCTION bench.read_ms(view_name text) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	t0 timestamptz := clock_timestamp();
BEGIN
	FOR r IN EXECUTE 'SELECT * FROM ' || view_name LOOP END LOOP;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END
$$;
CREATE TABLE bench.status_reads (view_name text, ms double precision);
-- Read the views every 0.2 s, each round in a transaction of its own, from
-- the start of the projection's rebuild until it is active (or for at most
-- max_seconds), as a monitoring system polls; the times are written at the
-- end, so that the watcher takes no transaction id meanwhile.  (Without
-- the COMMIT the procedure is one transaction, whose snapshot holds back
-- every prune and vacuum: the read model's dead versions pile up for the
-- whole rebuild, and a rebuild over 10,000,000 events ran at 0.4 of its
-- pace over 1,000,000.)
CREATE PROCEDURE bench.watch(projection text, max_seconds integer)
LANGUAGE plpgsql AS $$
DECLARE
	views text[] := ARRAY['eventstore.projection_status', 'eventstore.processors'];
	v text;
	t_end timestamptz := clock_timestamp() + make_interval(secs => max_seconds);
	state text;
	names text[] := '{}';
	times double precision[] := '{}';
BEGIN
	IF to_regclass('eventstore.metrics') IS NOT NULL THEN
		views := views || 'eventstore.metrics'::text;
	END IF;
	WHILE clock_timestamp() < t_end LOOP
		SELECT s.status INTO state FROM eventstore.projection_status s
		WHERE s.name = projection;
		EXIT WHEN state <> 'rebuilding';
		IF state = 'rebuilding' THEN
			FOREACH v IN ARRAY views LOOP
				names := names || v;
				times := times || bench.read_ms(v);
			END LOOP;
		END IF;
		COMMIT;
		PERFORM pg_sleep(0.2);
	END LOOP;
	INSERT INTO bench.status_reads SELECT * FROM unnest(names, times);
END
$$;
EOF
	bench_load_deposits "$STREAMS" $((EVENTS[$size] / STREAMS)) 10 1
	read -r n max_position mb <<<"$(psql_value -F ' ' -c "SELECT count(*), max(global_position),
		pg_total_relation_size('eventstore.events') / 1048576 FROM eventstore.events")"
	[ "$n" = "${EVENTS[$size]}" ] && [ "$max_position" = "$n" ] ||
		{ echo "the $size log has $n events up to position $max_position" >&2; exit 2; }
	echo "   loaded in $LOAD_SECONDS s; eventstore.events with its indexes: $mb MB"
	# 100 processors with checkpoints, for eventstore.processors to show
	psql_run -o /dev/null -c "SELECT count(eventstore.store_checkpoint('processor-' || i, i * 1000, NULL))
		FROM generate_series(1, 100) i"
done

# --- pgbench rows ----------------------------------------------------------
cat <<'EOF' | $RUN tee "$SCRIPTS/append.sql" >/dev/null
\set s random(1, 10000)
SELECT eventstore.append_event('acct-' || :s, 'Deposited', '{"amount": 12.34}');
EOF
for size in small large; do
	cat <<EOF | $RUN tee "$SCRIPTS/read_all_$size.sql" >/dev/null
\set p random(1, ${EVENTS[$size]} - 20000)
SELECT * FROM eventstore.read_all(:p, 1000);
EOF
	cat <<EOF | $RUN tee "$SCRIPTS/read_sparse_$size.sql" >/dev/null
\set p random(1, ${EVENTS[$size]} / 2)
SELECT * FROM eventstore.read_all(:p, 100, '{Withdrawn}');
EOF
done

ANY_FAILED=0
ANY_MISSED=0
ROWS=()
# pgbench_tps DB SCRIPT CLIENTS: one run's tps (0 and ANY_FAILED=1 when a
# call failed)
pgbench_tps() {
	local out=$OUT/pgbench-$1-$2-$3-$RANDOM.txt tps failed
	timeout $((SECONDS_PER_RUN + 60)) $RUN pgbench -n -M prepared -T "$SECONDS_PER_RUN" \
		-c "$3" -j $(($3 < 2 ? $3 : 2)) -h "$CLUSTER" -p "$PORT" -f "$SCRIPTS/$2.sql" "$1" \
		>"$out" 2>&1 || true
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
	if [ -z "$tps" ] || [ "${failed:-0}" != 0 ] || grep -q 'aborted in command' "$out"; then
		echo "   pgbench failed: $out" >&2
		tail -3 "$out" | sed 's/^/   | /' >&2
		ANY_FAILED=1
		tps=0
	fi
	echo "$tps"
}
# verdict RATIO KIND: against the target, >= 0.90 for a throughput
verdict() {
	if awk -v r="$1" 'BEGIN { exit !(r + 0 >= 0.9) }'; then echo ok; else ANY_MISSED=1; echo "below 0.90"; fi
}
# pgbench_row LABEL SCRIPT_SMALL SCRIPT_LARGE CLIENTS
pgbench_row() {
	local label=$1 clients=$4 round size order t
	local -a small=() large=() ratios=()
	for ((round = 1; round <= ROUNDS; round++)); do
		order="small large"
		[ $((round % 2)) -eq 1 ] || order="large small"
		for size in $order; do
			t=$(pgbench_tps "$size" "$([ "$size" = small ] && echo "$2" || echo "$3")" "$clients")
			printf '   %s, %d client(s), round %d, %s log: %.1f tps\n' "$label" "$clients" "$round" "$size" "$t"
			if [ "$size" = small ]; then small+=("$t"); else large+=("$t"); fi
		done
		ratios+=("$(awk -v l="${large[-1]}" -v s="${small[-1]}" 'BEGIN { print (s > 0) ? l / s : 0 }')")
	done
	t=$(printf '%.2f' "$(median "${ratios[@]}")")
	ROWS+=("$(printf '| %s, %d client(s) | %.0f tps | %.0f tps | %s | >= 0.90: %s |' "$label" "$clients" \
		"$(median "${small[@]}")" "$(median "${large[@]}")" "$t" "$(verdict "$t")")")
}

echo "== pgbench: $SECONDS_PER_RUN s per run, $ROUNDS round(s) per log, interleaved"
pgbench_row "read_all, a page of 1,000 events" read_all_small read_all_large 1
pgbench_row "read_all with event_types => '{Withdrawn}' (1% of the log), a page of 100" read_sparse_small read_sparse_large 1
for c in 1 4; do
	pgbench_row "append_event, one event to a random one of 10,000 streams" append append "$c"
done

# --- rebuilds ----------------------------------------------------------------
declare -A REPLAY_SECS REPLAY_N STATUS_ROWS SPARSE MISSED
# rebuild SIZE NAME HANDLER TYPES: create the projection over the loaded
# log and run its rebuild to the head in calls of run_projection
# (max_events => CHUNK), each its own transaction; prints the seconds taken.
rebuild() {
	psql_value -c "SELECT eventstore.create_projection('$2', '$3', $4)" >/dev/null
	psql_value <<EOF
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
DO \$\$
BEGIN
	LOOP
		EXIT WHEN eventstore.run_projection('$2', max_events => $CHUNK) = 0;
		COMMIT;
	END LOOP;
END
\$\$;
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 2);
EOF
}
for size in small large; do
	DB=$size
	psql_run -c 'VACUUM (ANALYZE)' -c CHECKPOINT
	n=$(psql_value -c "SELECT count(*) FROM eventstore.events")
	echo "== $size log ($n events): rebuilding a projection of every type, reading the status meanwhile"
	psql_run -c 'TRUNCATE bench.status_reads'
	# the status reads start with the rebuild and end when it is active
	DB=$size psql_run -c "CALL bench.watch('all', 3000)" &
	watcher=$!
	blocks() { psql_value -F ' ' -c "SELECT blks_read, blks_hit FROM pg_stat_database WHERE datname = current_database()"; }
	read -r read0 hit0 <<<"$(blocks)"
	secs=$(rebuild "$size" all bench.apply_all NULL)
	read -r read1 hit1 <<<"$(blocks)"
	wait "$watcher"
	REPLAY_SECS[$size,all]=$secs
	# the share of the blocks read that were not in shared_buffers
	MISSED[$size]=$(awk -v r=$((read1 - read0)) -v h=$((hit1 - hit0)) 'BEGIN { printf "%.1f%%", (r + h > 0) ? 100 * r / (r + h) : 0 }')
	echo "   $secs s, $(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }') events/s; ${MISSED[$size]} of the blocks read were not in shared_buffers"
	nw=$(psql_value -c "SELECT count(*) FROM eventstore.events WHERE event_type = 'Withdrawn'")
	echo "== $size log: rebuilding a projection of the Withdrawn events ($nw)"
	secs=$(rebuild "$size" withdrawn bench.apply_withdrawn "'{Withdrawn}'")
	REPLAY_SECS[$size,withdrawn]=$secs
	echo "   $secs s"
	REPLAY_N[$size]=$n
	for v in eventstore.projection_status eventstore.processors eventstore.metrics; do
		STATUS_ROWS[$size,$v]=$(psql_value -F ' ' -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
			round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 2),
			round(max(ms)::numeric, 2), count(*) FROM bench.status_reads WHERE view_name = '$v' HAVING count(*) > 0")
	done
	bad=$(psql_value -c "
		SELECT (SELECT count(*) FROM bench.rm_all x FULL JOIN
				(SELECT stream_id, count(*) AS events, sum((data->>'amount')::numeric) AS amount
				 FROM eventstore.events GROUP BY stream_id) y USING (stream_id)
				WHERE x.events IS DISTINCT FROM y.events OR x.amount IS DISTINCT FROM y.amount)
			 + (SELECT count(*) FROM bench.rm_withdrawn x FULL JOIN
				(SELECT stream_id, count(*) AS events, sum((data->>'amount')::numeric) AS amount
				 FROM eventstore.events WHERE event_type = 'Withdrawn' GROUP BY stream_id) y USING (stream_id)
				WHERE x.events IS DISTINCT FROM y.events OR x.amount IS DISTINCT FROM y.amount)")
	[ "$bad" = 0 ] || { echo "   the $size log's read models differ from the set-based answer on $bad stream(s)" >&2; ANY_FAILED=1; }
	if [ "$(psql_value -c "SELECT string_agg(name || ' ' || status, ', ' ORDER BY name) FROM eventstore.projections")" != \
		"all active, withdrawn active" ]; then
		echo "   the $size log's projections are not active at the head" >&2
		ANY_FAILED=1
	fi
done

declare -A RATE
for size in small large; do
	RATE[$size]=$(awk -v n="${REPLAY_N[$size]}" -v s="${REPLAY_SECS[$size,all]}" 'BEGIN { printf "%.0f", n / s }')
done
t=$(awk -v l="${RATE[large]}" -v s="${RATE[small]}" 'BEGIN { printf "%.2f", l / s }')
ROWS+=("| replay throughput: rebuild of a projection of every type, batch handler (one upsert a batch), in calls of run_projection(max_events => $(fmt "$CHUNK")) | $(fmt "${RATE[small]}") events/s (${MISSED[small]} of blocks read outside shared_buffers) | $(fmt "${RATE[large]}") events/s (${MISSED[large]}) | $t | >= 0.90: $(verdict "$t") |")
for size in small large; do
	SPARSE[$size]=$(awk -v w="${REPLAY_SECS[$size,withdrawn]}" -v a="${REPLAY_SECS[$size,all]}" 'BEGIN { printf "%.3f", w / a }')
done
ROWS+=("| sparse replay: rebuild of a projection of Withdrawn only (1% of the log), against the rebuild of every type | ${REPLAY_SECS[small,withdrawn]} s, $(printf '%s' "${SPARSE[small]}") x | ${REPLAY_SECS[large,withdrawn]} s, $(printf '%s' "${SPARSE[large]}") x | - | <= 0.05 x: $(awk -v a="${SPARSE[small]}" -v b="${SPARSE[large]}" 'BEGIN { print (a <= 0.05 && b <= 0.05) ? "ok" : "missed" }') |")
awk -v a="${SPARSE[small]}" -v b="${SPARSE[large]}" 'BEGIN { exit !(a <= 0.05 && b <= 0.05) }' || ANY_MISSED=1
for v in eventstore.projection_status eventstore.processors eventstore.metrics; do
	[ -n "${STATUS_ROWS[small,$v]}" ] || [ -n "${STATUS_ROWS[large,$v]}" ] || continue
	read -r s_med s_p90 s_max s_n <<<"${STATUS_ROWS[small,$v]:-- - - 0}"
	read -r l_med l_p90 l_max l_n <<<"${STATUS_ROWS[large,$v]:-- - - 0}"
	ok=$(awk -v a="$s_max" -v b="$l_max" 'BEGIN { print (a + 0 < 50 && b + 0 < 50) ? "ok" : "missed" }')
	[ "$ok" = ok ] || ANY_MISSED=1
	ROWS+=("| \`$v\` during that rebuild, ms per read: median (90th percentile, most; reads) | $s_med ($s_p90, $s_max; $s_n) | $l_med ($l_p90, $l_max; $l_n) | - | every read < 50 ms: $ok |")
done

echo
echo "Scale: a log of $(fmt "$LARGE") events against one of $(fmt "$SMALL") (10,000 streams each, 1% Withdrawn), in one cluster;" \
	"pgbench rows: median of $ROUNDS interleaved rounds of $SECONDS_PER_RUN s, ratio = median of the rounds' large / small"
echo
echo "| measure | $(fmt "$SMALL") events | $(fmt "$LARGE") events | ratio | target |"
echo "|---|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "$(bench_machine); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total run time $(($(date +%s) - START_TIME)) s"
[ "$ANY_FAILED" = 0 ] || exit 1
[ "${SCALE_STRICT:-0}" != 1 ] || [ "$ANY_MISSED" = 0 ] || exit 3
exit 0
