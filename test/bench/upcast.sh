#!/usr/bin/env bash
# Benchmark the upcasting of a projection's events, in one run, on a
# private PostgreSQL 15 cluster; prints a markdown table.  See
# test/bench/README.md.
#
#   test/bench/upcast.sh [--quick]
#
# Two databases hold the same log of UPCAST_EVENTS events of one type over
# 10,000 streams (appended 100 per stream with append_to_stream): in "v1"
# the events were stored at version 1 ({"amount": n}) and the type then
# given version 2 (an SQL upcaster renaming "amount" to "value") and
# version 3 (an SQL upcaster adding "currency": "EUR"); in "v3" the three
# versions were registered first and the events stored at version 3
# ({"value": n, "currency": "EUR"}), so they need no upcasting.  In each,
# a projection is built from the start (create_projection, then
# run_projection over the whole log, batch_size 1000), through a batch
# handler (SQL: one row per batch, the sum of the batch's values) and
# through a per-event handler (PL/pgSQL: reads the value); the sides
# interleaved in each round (rebuild_projection, then run_projection),
# median seconds kept.  The batch read models of the two databases must
# agree (the sum of the values, which only upcast events have), or the
# benchmark fails.  The per-event cost of upcasting: (seconds at v1 -
# seconds at v3) / events.  The worker is off; synchronous_commit is off.
#
# Environment: UPCAST_EVENTS (1000000; a multiple of 10,000, the streams),
# UPCAST_ROUNDS (3), UPCAST_PORT (5495),
# UPCAST_WORKDIR (the root's work copy, /tmp/pg_eventstore-upcastbench),
# UPCAST_KEEP=1 (keep the cluster directory), UPCAST_TIME_LIMIT (seconds
# after the build before a watchdog stops the run, 3600).  --quick: 20,000
# events, 1 round.
#
# Exit status: 0 when every run succeeded and the read models agree; 1
# otherwise; 2 on a set-up error; 143 when stopped by the watchdog or
# SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${UPCAST_EVENTS:=20000}" "${UPCAST_ROUNDS:=1}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

EVENTS=${UPCAST_EVENTS:-1000000}
ROUNDS=${UPCAST_ROUNDS:-3}
PORT=${UPCAST_PORT:-5495}
TIME_LIMIT=${UPCAST_TIME_LIMIT:-3600}
STREAMS=10000
for v in "$EVENTS" "$ROUNDS" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
[ $((EVENTS % STREAMS)) -eq 0 ] || { echo "UPCAST_EVENTS must be a multiple of $STREAMS" >&2; exit 2; }
PER_STREAM=$((EVENTS / STREAMS))

. test/bench/cluster.sh
bench_prepare_cluster upcastbench "${UPCAST_KEEP:-0}" "${UPCAST_WORKDIR:-/tmp/pg_eventstore-upcastbench}" "$TIME_LIMIT" ""
bench_configure "pg_eventstore upcasting benchmark" pg_eventstore <<EOF
autovacuum = off
pg_eventstore.databases = ''
synchronous_commit = off
EOF
bench_start_cluster

psql_db() {
	local db=$1
	shift
	timeout 3600 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d "$db" "$@"
}
value_in() { psql_db "$1" -At -c "$2"; }

# the schemas and handlers of both databases; $1: v1 or v3
setup_sql() {
	cat <<'EOF'
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;
CREATE FUNCTION bench.to_v2(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
	RETURN (d - 'amount') || jsonb_build_object('value', d -> 'amount');
CREATE FUNCTION bench.to_v3(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
	RETURN jsonb_build_object('currency', 'EUR') || d;
CREATE TABLE bench.batch_sums (projection text, total numeric, events bigint);
CREATE FUNCTION bench.sum_batch(es eventstore.events[]) RETURNS void LANGUAGE sql AS $$
	INSERT INTO bench.batch_sums
	SELECT 'batch', sum(((e).data ->> 'value')::numeric), count(*) FROM unnest(es) e
$$;
CREATE FUNCTION bench.read_event(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	v numeric;
BEGIN
	v := (e.data ->> 'value')::numeric;
	IF v IS NULL THEN
		RAISE EXCEPTION 'an event without a value: %', e.data;
	END IF;
END $$;
SELECT eventstore.register_event_schema('Deposited', 1,
	'{"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}}');
EOF
}
V2_V3_SQL="
SELECT eventstore.register_event_schema('Deposited', 2,
	'{\"type\": \"object\", \"required\": [\"value\"], \"additionalProperties\": false,
	  \"properties\": {\"value\": {\"type\": \"number\"}}}', 'bench.to_v2(jsonb)');
SELECT eventstore.register_event_schema('Deposited', 3,
	'{\"type\": \"object\", \"required\": [\"value\", \"currency\"], \"additionalProperties\": false,
	  \"properties\": {\"value\": {\"type\": \"number\"}, \"currency\": {\"type\": \"string\"}}}',
	'bench.to_v3(jsonb)');"

# load <db> <data expression of i and s>: PER_STREAM events to each stream,
# in two sessions
load() {
	local db=$1 data=$2 k pids=()
	for k in 0 1; do
		psql_db "$db" -o /dev/null -c "
SELECT count(eventstore.append_to_stream('acct-' || s, b.events))
FROM generate_series($((k * STREAMS / 2 + 1)), $(((k + 1) * STREAMS / 2))) s
CROSS JOIN LATERAL (
	SELECT jsonb_agg(jsonb_build_object('type', 'Deposited', 'data', $data) ORDER BY i) AS events
	FROM generate_series(1, $PER_STREAM) i) b" &
		pids+=($!)
	done
	for k in "${pids[@]}"; do wait "$k"; done
}

echo "== setting up two databases of $EVENTS events: v1 (stored at version 1) and v3 (stored at version 3)"
AMOUNT="((s * 7919 + i * 104729) % 100000) * 0.01"
LOAD_START=$EPOCHREALTIME
for db in v1 v3; do
	psql_db postgres -c "CREATE DATABASE $db"
	setup_sql | psql_db "$db" -o /dev/null
done
psql_db v3 -o /dev/null -c "$V2_V3_SQL"
load v1 "jsonb_build_object('amount', $AMOUNT)"
load v3 "jsonb_build_object('value', $AMOUNT, 'currency', 'EUR')"
psql_db v1 -o /dev/null -c "$V2_V3_SQL"
for db in v1 v3; do
	psql_db "$db" -o /dev/null -c 'VACUUM (ANALYZE) eventstore.events, eventstore.streams' -c CHECKPOINT
	read -r n versions <<<"$(value_in "$db" "SELECT count(*), string_agg(DISTINCT schema_version::text, ',') FROM eventstore.events" | tr '|' ' ')"
	[ "$n" -eq "$EVENTS" ] || { echo "database $db has $n events" >&2; exit 2; }
	echo "   $db: $n events stored at version $versions"
	psql_db "$db" -o /dev/null <<'EOF'
SELECT eventstore.create_projection('batch', 'bench.sum_batch', on_reset => 'TRUNCATE bench.batch_sums');
SELECT eventstore.create_projection('per_event', 'bench.read_event');
EOF
done
echo "   loaded in $(awk -v a="$LOAD_START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"

trap - ERR
ANY_FAILED=0
declare -A SECS

# build <db> <projection> <round>: rebuild it (not in round 1: just
# created) and run it over the whole log; prints the seconds
build() {
	local db=$1 p=$2 r=$3 out
	out=$(psql_db "$db" -At <<EOF
SET pg_eventstore.batch_size = 1000;
$([ "$r" -gt 1 ] && echo "SELECT eventstore.rebuild_projection('$p') \\g /dev/null")
SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset
SELECT eventstore.run_projection('$p') AS applied \\gset
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3) || ' ' || :applied;
EOF
	) || { echo "   the build of $p in $db failed" >&2; ANY_FAILED=1; echo 0; return; }
	read -r secs applied <<<"$out"
	[ "$applied" = "$EVENTS" ] || { echo "   $p in $db applied $applied events" >&2; ANY_FAILED=1; }
	echo "$secs"
}
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			  printf "%.2f\n", m }'
}

echo "== $ROUNDS round(s) of builds from the start"
for ((r = 1; r <= ROUNDS; r++)); do
	line="   round $r:"
	for p in batch per_event; do
		# the order of the sides alternates
		sides="v1 v3"
		[ $((r % 2)) -eq 1 ] || sides="v3 v1"
		for db in $sides; do
			s=$(build "$db" "$p" "$r")
			SECS[$db,$p]="${SECS[$db,$p]:-} $s"
			line="$line $p@$db $s s,"
		done
	done
	echo "${line%,}"
done

# the batch read models agree: the upcast events carry the same values
sum_v1=$(value_in v1 "SELECT sum(total) || ' ' || sum(events) FROM bench.batch_sums")
sum_v3=$(value_in v3 "SELECT sum(total) || ' ' || sum(events) FROM bench.batch_sums")
if [ "$sum_v1" != "$sum_v3" ]; then
	echo "   the batch read models differ: v1 $sum_v1, v3 $sum_v3" >&2
	ANY_FAILED=1
fi

echo
echo "Build from the start of a projection over $(sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$EVENTS") events stored at version 1 and upcast to version 3 (two SQL upcasters)," \
	"against the same build over the events stored at version 3 (no upcasting); batch_size 1000, median of $ROUNDS round(s); the read models agree: $([ "$sum_v1" = "$sum_v3" ] && echo yes || echo NO)."
echo
echo "| handler | stored at v3: s | stored at v1, upcast: s | events/s at v3 | events/s upcast | upcasting per event |"
echo "|---|---:|---:|---:|---:|---:|"
# shellcheck disable=SC2086 # the lists are words
for p in batch per_event; do
	a=$(median ${SECS[v3,$p]}) b=$(median ${SECS[v1,$p]})
	awk -v l="$p" -v a="$a" -v b="$b" -v n="$EVENTS" 'BEGIN {
		printf "| %s | %.2f | %.2f | %.0f | %.0f | %.2f us (+%.0f%%) |\n", (l == "batch") ? "batch (SQL, `eventstore.events[]`)" : "per event (PL/pgSQL)",
			   a, b, (a > 0) ? n / a : 0, (b > 0) ? n / b : 0, (b - a) * 1e6 / n, (a > 0) ? 100 * (b - a) / a : 0 }'
done
echo
ELAPSED=$(($(date +%s) - START_TIME))
echo "$(bench_machine); total run time ${ELAPSED} s"
if [ "$ANY_FAILED" -ne 0 ]; then
	echo "FAILED: see above" >&2
	exit 1
fi
exit 0
