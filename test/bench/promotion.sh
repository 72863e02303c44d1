#!/usr/bin/env bash
# Benchmark checked promotion: the time from "a new version reached the
# head" to "the stable view shows it", with and without checks, on a
# private PostgreSQL 15 cluster; prints a markdown table.  See
# test/bench/README.md.
#
#   test/bench/promotion.sh [--quick]
#
# The log of the projection benchmark (test/bench/projections.sh, loaded
# the same way): PROMO_EVENTS Deposited events over PROMO_STREAMS streams;
# the read model, per stream, the count and the sum of the amounts, written
# by a batch handler.  Version 1 is built and promoted behind the view
# bench.accounts.  Each round then builds a new version into a table of
# its own (not timed) and promotes it, four ways in turn:
#   - promote => 'auto', no check: the run_projection call that brings it
#     to the head promotes it; timed inside that transaction, from the
#     version marked active (caught_up_at) to the promotion record written
#     right after the view was replaced (promoted_at), both clock_timestamp
#   - promote => 'auto' with two checks: a compare_read_models parity check
#     against version 1 and an invariant (no stream with a count <= 0 or a
#     negative sum)
#   - promote_projection by hand once it is at the head, no check: the
#     call's wall time as psql's \timing reports it (locks, view, record,
#     commit)
#   - the same with the two checks
# Every promotion is checked: the view must show the new version and its
# rows must equal version 1's (compare_read_models).
#
# Environment: PROMO_EVENTS (log size, 1000000), PROMO_STREAMS (10000),
# PROMO_LOAD_BATCH (events per append_to_stream call of the load, 10),
# PROMO_ROUNDS (rounds of the four ways, median kept, 3), PROMO_PORT (5495),
# PROMO_WORKDIR (the root's work copy, /tmp/pg_eventstore-promobench),
# PROMO_KEEP=1 (keep the cluster directory), PROMO_TIME_LIMIT (seconds after
# the build before a watchdog stops the run, 1500).  --quick: 100,000
# events over 1,000 streams, 1 round.
#
# Exit status: 0 when every promotion showed the right rows; 1 when one did
# not; 2 on a set-up error; 143 when stopped by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

if [ "${1:-}" = --quick ]; then
	: "${PROMO_EVENTS:=100000}" "${PROMO_STREAMS:=1000}" "${PROMO_ROUNDS:=1}"
	shift
fi
case ${1:-} in
	'') ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

EVENTS=${PROMO_EVENTS:-1000000}
STREAMS=${PROMO_STREAMS:-10000}
LOAD_BATCH=${PROMO_LOAD_BATCH:-10}
ROUNDS=${PROMO_ROUNDS:-3}
PORT=${PROMO_PORT:-5495}
TIME_LIMIT=${PROMO_TIME_LIMIT:-1500}
for v in "$EVENTS" "$STREAMS" "$LOAD_BATCH" "$ROUNDS" "$PORT" "$TIME_LIMIT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
PER_STREAM=$((EVENTS / STREAMS))
[ $((PER_STREAM * STREAMS)) -eq "$EVENTS" ] && [ $((PER_STREAM % LOAD_BATCH)) -eq 0 ] ||
	{ echo "PROMO_EVENTS must be PROMO_STREAMS x a multiple of PROMO_LOAD_BATCH" >&2; exit 2; }

. test/bench/cluster.sh
bench_prepare_cluster promobench "${PROMO_KEEP:-0}" "${PROMO_WORKDIR:-/tmp/pg_eventstore-promobench}" "$TIME_LIMIT" ""
bench_configure "pg_eventstore promotion benchmark" pg_eventstore <<EOF
autovacuum = off
# no workers: run_projection builds every version, so nothing else runs
pg_eventstore.databases = ''
pg_eventstore.batch_size = 10000
EOF
bench_start_cluster

psql_run() {
	timeout 900 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}
psql_value() { psql_run -At "$@"; }

echo "== creating the extension and version 1"
psql_run -o /dev/null <<'EOF'
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;
CREATE TABLE bench.accounts_v1 (stream_id text PRIMARY KEY, events bigint NOT NULL,
								amount numeric NOT NULL);
CREATE FUNCTION bench.apply_v1(es eventstore.events[]) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO bench.accounts_v1 AS r (stream_id, events, amount)
	SELECT e.stream_id, count(*), sum((e.data->>'amount')::numeric)
	FROM unnest(es) e GROUP BY e.stream_id
	ON CONFLICT (stream_id) DO UPDATE
	SET events = r.events + excluded.events, amount = r.amount + excluded.amount
$$;
SELECT eventstore.create_projection('accounts', 'bench.apply_v1', ARRAY['Deposited']);
EOF

# --- the log, as test/bench/projections.sh loads it (bench_load_deposits) ---
bench_load_deposits "$STREAMS" "$PER_STREAM" "$LOAD_BATCH"
N_EVENTS=$(psql_value -c 'SELECT count(*) FROM eventstore.events')
[ "$N_EVENTS" -eq "$EVENTS" ] || { echo "the log has $N_EVENTS events" >&2; exit 2; }
echo "   loaded in $LOAD_SECONDS s"

# Bring version $1 to the head, a transaction per call of 200,000 events,
# until it is active and a call finds nothing more to apply.
build() {
	local v=$1 applied status
	while :; do
		applied=$(psql_value -c "SELECT eventstore.run_projection('accounts', $v, 200000)")
		status=$(psql_value -c "SELECT status FROM eventstore.projection_status
			WHERE name = 'accounts' AND version = $v")
		[ "$applied" != 0 ] || [ "$status" != active ] || break
	done
}
build 1
psql_run -o /dev/null <<'EOF'
SELECT eventstore.set_read_model('accounts', 1, 'bench.accounts_v1', 'bench.accounts');
SELECT eventstore.promote_projection('accounts', 1);
VACUUM ANALYZE bench.accounts_v1;
EOF

# A new version $1, promoted $2 (auto or manual), with checks or not ($3).
new_version() {
	local v=$1 promote=$2 checks=$3
	psql_run -o /dev/null <<EOF
CREATE TABLE bench.accounts_v$v (LIKE bench.accounts_v1 INCLUDING ALL);
CREATE FUNCTION bench.apply_v$v(es eventstore.events[]) RETURNS void
LANGUAGE sql AS \$\$
	INSERT INTO bench.accounts_v$v AS r (stream_id, events, amount)
	SELECT e.stream_id, count(*), sum((e.data->>'amount')::numeric)
	FROM unnest(es) e GROUP BY e.stream_id
	ON CONFLICT (stream_id) DO UPDATE
	SET events = r.events + excluded.events, amount = r.amount + excluded.amount
\$\$;
BEGIN;
SELECT eventstore.create_projection('accounts', 'bench.apply_v$v', ARRAY['Deposited'],
									version => $v, promote => '$promote');
SELECT eventstore.set_read_model('accounts', $v, 'bench.accounts_v$v', 'bench.accounts');
$( [ "$checks" = checks ] && cat <<CHECKS
SELECT eventstore.add_projection_check('accounts', $v, 'parity with v1',
	\$q\$SELECT * FROM eventstore.compare_read_models('bench.accounts_v1', 'bench.accounts_v$v')
	  WHERE NOT identical\$q\$);
SELECT eventstore.add_projection_check('accounts', $v, 'counts and sums',
	'SELECT * FROM bench.accounts_v$v WHERE events <= 0 OR amount < 0');
CHECKS
)
COMMIT;
EOF
}

# The promotion of version $1 went through: the view shows its table, with
# version 1's rows; then drop the version before it (not the first).
verify() {
	local v=$1 ok
	ok=$(psql_value -c "SELECT eventstore.current_version('accounts') = $v
		AND pg_get_viewdef('bench.accounts'::regclass) LIKE '%accounts_v$v%'
		AND (SELECT identical FROM eventstore.compare_read_models('bench.accounts_v1', 'bench.accounts'))")
	[ "$ok" = t ] || { echo "   version $v: the view does not show it, or not version 1's rows" >&2; ANY_FAILED=1; }
	if [ "$v" -gt 2 ]; then
		psql_run -o /dev/null -c "SELECT eventstore.drop_projection('accounts', $((v - 1)))" \
			-c "DROP TABLE bench.accounts_v$((v - 1))" -c "DROP FUNCTION bench.apply_v$((v - 1))(eventstore.events[])"
	fi
}

trap - ERR
ANY_FAILED=0
AUTO_NONE=() AUTO_CHECKS=() MANUAL_NONE=() MANUAL_CHECKS=()
V=1
for ((r = 1; r <= ROUNDS; r++)); do
	for way in auto:none auto:checks manual:none manual:checks; do
		promote=${way%%:*} checks=${way##*:}
		V=$((V + 1))
		new_version "$V" "$promote" "$checks"
		if [ "$promote" = auto ]; then
			build "$V"
			ms=$(psql_value -c "SELECT round(extract(epoch FROM pr.promoted_at - p.caught_up_at) * 1000, 3)
				FROM eventstore.projection_promotions pr JOIN eventstore.projections p USING (projection_id)
				WHERE pr.to_version = $V AND pr.automatic")
		else
			build "$V"
			ms=$(psql_run -c '\timing on' -c "SELECT eventstore.promote_projection('accounts', $V)" |
				awk '/^Time:/ { print $2 }')
		fi
		[ -n "$ms" ] || { echo "   version $V ($way): no promotion measured" >&2; ANY_FAILED=1; ms=0; }
		verify "$V"
		case $way in
			auto:none) AUTO_NONE+=("$ms") ;;
			auto:checks) AUTO_CHECKS+=("$ms") ;;
			manual:none) MANUAL_NONE+=("$ms") ;;
			manual:checks) MANUAL_CHECKS+=("$ms") ;;
		esac
		echo "   round $r, version $V, $promote, $checks: $ms ms"
	done
done

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			  printf "%.1f\n", m }'
}
rounds() { local IFS=,; echo "$*" | sed 's/,/, /g'; }
fmt() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }

echo
echo "From a new version at the head of a log of $(fmt "$EVENTS") events ($(fmt "$STREAMS") read model rows) to the view re-pointed; ms, median of $ROUNDS round(s) (the rounds in brackets)."
echo
echo "| promotion | no check | parity (\`compare_read_models\`) and invariant checks |"
echo "|---|---:|---:|"
echo "| \`promote => 'auto'\`: active -> promotion recorded, inside the run's transaction | $(median "${AUTO_NONE[@]}") ($(rounds "${AUTO_NONE[@]}")) | $(median "${AUTO_CHECKS[@]}") ($(rounds "${AUTO_CHECKS[@]}")) |"
echo "| \`promote_projection\` by hand at the head: the call, commit included | $(median "${MANUAL_NONE[@]}") ($(rounds "${MANUAL_NONE[@]}")) | $(median "${MANUAL_CHECKS[@]}") ($(rounds "${MANUAL_CHECKS[@]}")) |"
echo
ELAPSED=$(($(date +%s) - START_TIME))
echo "$(bench_machine); log loaded in $LOAD_SECONDS s; total run time ${ELAPSED} s"
if [ "$ANY_FAILED" -ne 0 ]; then
	echo "FAILED: a promotion did not show the right rows (see above)" >&2
	exit 1
fi
exit 0
