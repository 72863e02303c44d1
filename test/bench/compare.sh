#!/usr/bin/env bash
# Compare the append throughput of two builds of pg_eventstore (two git
# revisions), each in its own private PostgreSQL 15 installation and
# cluster, in interleaved runs of run.sh's append scenarios, each side
# against its own plain-INSERT baseline.  See test/bench/README.md.
#
#   test/bench/compare.sh [--old REV] [--new REV]
#                         [--old-pg-config PATH] [--new-pg-config PATH]
#                         [--seconds N] [--rounds N] [--quick] [--no-callgrind]
#
# Environment (options win): COMPARE_OLD (default HEAD~1), COMPARE_NEW
# (HEAD), COMPARE_OLD_PG_CONFIG and COMPARE_NEW_PG_CONFIG (the pg_config of
# a private installation each side's build is installed into; default: a
# copy of the system's made in the work directory), COMPARE_SECONDS (per
# pgbench run, 3), COMPARE_ROUNDS (5), COMPARE_PORT (55496 for the old side,
# one more for the new), COMPARE_WORKDIR (/tmp/pg_eventstore-compare, removed
# and recreated), COMPARE_KEEP=1 (keep it), COMPARE_CALLGRIND (1 when
# valgrind is installed: also count instructions per append), COMPARE_TIME_LIMIT
# (seconds after the builds before the watchdog stops the run; default
# 30 x rounds x seconds + 600).
#
# Exit status: 0 when every call of every run succeeded; 1 when any call
# failed (or a run did not complete); 2 on a set-up error; 143 when stopped
# by the watchdog or SIGTERM.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

OLD_REV=${COMPARE_OLD:-HEAD~1}
NEW_REV=${COMPARE_NEW:-HEAD}
OLD_PG_CONFIG=${COMPARE_OLD_PG_CONFIG:-}
NEW_PG_CONFIG=${COMPARE_NEW_PG_CONFIG:-}
SECONDS_PER_RUN=${COMPARE_SECONDS:-3}
ROUNDS=${COMPARE_ROUNDS:-5}
BASE_PORT=${COMPARE_PORT:-55496}
WORK=${COMPARE_WORKDIR:-/tmp/pg_eventstore-compare}
CALLGRIND=${COMPARE_CALLGRIND:-$(command -v valgrind >/dev/null && echo 1 || echo 0)}
while [ $# -gt 0 ]; do
	case $1 in
		--old) OLD_REV=$2; shift 2 ;;
		--new) NEW_REV=$2; shift 2 ;;
		--old-pg-config) OLD_PG_CONFIG=$2; shift 2 ;;
		--new-pg-config) NEW_PG_CONFIG=$2; shift 2 ;;
		--seconds|-T) SECONDS_PER_RUN=$2; shift 2 ;;
		--rounds) ROUNDS=$2; shift 2 ;;
		--quick) SECONDS_PER_RUN=2; ROUNDS=1; shift ;;
		--no-callgrind) CALLGRIND=0; shift ;;
		-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
		*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
	esac
done
for v in "$SECONDS_PER_RUN" "$ROUNDS" "$BASE_PORT" "${COMPARE_TIME_LIMIT:-1}"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done
[ "$SECONDS_PER_RUN" -le 60 ] && [ "$ROUNDS" -le 15 ] ||
	{ echo "at most 60 seconds per run and 15 rounds, to keep the run bounded" >&2; exit 2; }
[ "$CALLGRIND" = 0 ] || command -v valgrind >/dev/null ||
	{ echo "COMPARE_CALLGRIND=1 needs valgrind (Debian package valgrind)" >&2; exit 2; }
TIME_LIMIT=${COMPARE_TIME_LIMIT:-$((30 * ROUNDS * SECONDS_PER_RUN + 600))}

declare -A REV PGC BIN RUNAS CLUSTER_OF PORT_OF
REV[old]=$(git rev-parse --short "$OLD_REV^{commit}") ||
	{ echo "not a revision: $OLD_REV" >&2; exit 2; }
REV[new]=$(git rev-parse --short "$NEW_REV^{commit}") ||
	{ echo "not a revision: $NEW_REV" >&2; exit 2; }
PORT_OF[old]=$BASE_PORT
PORT_OF[new]=$((BASE_PORT + 1))
SIDES="old new"

STARTED=""
WATCHDOG=""
trap 'echo "== set-up failed (line $LINENO)" >&2; exit 2' ERR
trap compare_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# On the way out, whatever happens: stop the clusters, remove the work
# directory (its installations too) unless COMPARE_KEEP=1.
compare_cleanup() {
	local rc=$? side
	trap - ERR EXIT INT TERM
	[ -z "$WATCHDOG" ] || kill "$WATCHDOG" 2>/dev/null || true
	for side in $STARTED; do
		timeout 90 ${RUNAS[$side]} pg_ctl stop -D "${CLUSTER_OF[$side]}/data" -m fast -w -t 60 >/dev/null 2>&1 ||
			timeout 30 ${RUNAS[$side]} pg_ctl stop -D "${CLUSTER_OF[$side]}/data" -m immediate -w -t 20 >/dev/null 2>&1 || true
	done
	if [ "${COMPARE_KEEP:-0}" = 1 ]; then
		echo "== kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit $rc
}

install_dependencies
SYSTEM_PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
rm -rf "$WORK"
mkdir -p "$WORK"
[ "$(id -u)" -ne 0 ] || chown postgres: "$WORK"

# A private copy of the system's PostgreSQL installation (Debian's layout,
# which is relocatable: pg_config and the server find their directories
# from where their binary is), so that each side's build has its own.
private_installation() {
	local dir=$1
	mkdir -p "$dir/lib" "$dir/share" "$dir/include"
	cp -a /usr/lib/postgresql "$dir/lib/"
	cp -a /usr/share/postgresql "$dir/share/"
	cp -a /usr/include/postgresql "$dir/include/"
	chmod -R a+rX "$dir"
	echo "$dir/lib/postgresql/$PG_MAJOR/bin/pg_config"
}

# Build each side's revision (the files git has at that commit; a plain
# build, as a user makes one: no assertions) and install it into its
# installation.  The two must be different installations, neither the
# system's, which other work on this machine uses.
for side in $SIDES; do
	pgc=$([ "$side" = old ] && echo "$OLD_PG_CONFIG" || echo "$NEW_PG_CONFIG")
	[ -n "$pgc" ] || pgc=$(private_installation "$WORK/$side/pg")
	[ -x "$pgc" ] || { echo "not an executable pg_config: $pgc" >&2; exit 2; }
	PGC[$side]=$pgc
	BIN[$side]=$("$pgc" --bindir)
	[ "$("$pgc" --pkglibdir)" != "$SYSTEM_PKGLIBDIR" ] ||
		{ echo "$pgc is the system's installation: give each side a private one" >&2; exit 2; }
	if [ "$(id -u)" -eq 0 ]; then
		RUNAS[$side]="runuser -u postgres -- env PATH=${BIN[$side]}:$PATH"
	else
		RUNAS[$side]="env PATH=${BIN[$side]}:$PATH"
	fi
	src=$WORK/$side/src
	mkdir -p "$src"
	git archive --format=tar "${REV[$side]}" | tar -C "$src" -xf -
	[ "$(id -u)" -ne 0 ] || chown -R postgres: "$WORK/$side"
	echo "== building $side (${REV[$side]}) into $("$pgc" --pkglibdir)"
	${RUNAS[$side]} make -s -C "$src" PG_CONFIG="$pgc" >/dev/null
	make -s -C "$src" install PG_CONFIG="$pgc" >/dev/null
done
[ "$("${PGC[old]}" --pkglibdir)" != "$("${PGC[new]}" --pkglibdir)" ] ||
	{ echo "the two sides need two installations" >&2; exit 2; }

(
	trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
	sleep "$TIME_LIMIT" & sleeper=$!
	wait "$sleeper" && echo "== time limit of $TIME_LIMIT s reached, stopping" >&2 && kill -TERM $$
) &
WATCHDOG=$!

. test/bench/cluster.sh
. test/bench/appends.sh

# Point the shared functions (bench_configure, psql_run, pgbench_run) at
# one side's cluster.
use_side() {
	RUN=${RUNAS[$1]}
	CLUSTER=${CLUSTER_OF[$1]}
	PORT=${PORT_OF[$1]}
	DATA=$CLUSTER/data
	LOG=$CLUSTER/server.log
	OUT=$CLUSTER/out
}
psql_run() {
	timeout 300 $RUN psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER" -p "$PORT" -d postgres "$@"
}

# Two clusters with run.sh's settings, both up all along (an idle one
# costs the other nothing that matters), but for two: autovacuum is off, so
# that a vacuum of one cluster's log never lands in a run of the other (the
# tables are append-only but for the streams rows' HOT updates, which prune
# themselves), and max_wal_size is the shared 16GB, not run.sh's 8GB, so
# that no checkpoint comes in the runs (a full run writes about 5GB of WAL
# per cluster).
SCRIPTS=$WORK/scripts
mkdir -p "$SCRIPTS"
[ "$(id -u)" -ne 0 ] || chown postgres: "$SCRIPTS"
for side in $SIDES; do
	CLUSTER_OF[$side]=$WORK/$side/cluster
	use_side "$side"
	$RUN mkdir -p "$CLUSTER" "$OUT"
	chmod 700 "$CLUSTER"
	echo "== starting the $side side's cluster in $CLUSTER (port $PORT)"
	$RUN initdb -D "$DATA" -A trust --encoding=UTF8 --locale=C >/dev/null
	bench_configure "pg_eventstore compare, $side side (${REV[$side]})" pg_eventstore <<EOF
autovacuum = off
EOF
	$RUN pg_ctl start -D "$DATA" -l "$LOG" -w -t 60 >/dev/null
	STARTED="$STARTED $side"
done
bench_append_scripts

for side in $SIDES; do
	use_side "$side"
	echo "== $side: creating the extension, the baseline table and the pre-filled data"
	bench_fill_sql | psql_run -o /dev/null
done

# The steady state between checkpoints, as in run.sh: one CHECKPOINT,
# then every scenario once, unmeasured, on both sides of both clusters.
for side in $SIDES; do
	use_side "$side"
	psql_run -c CHECKPOINT >/dev/null
done
TAG=0
for n in 1 2 3; do
	for side in $SIDES; do
		use_side "$side"
		for kind in base es; do
			TAG=$((TAG + 1))
			pgbench_run "s${n}_$kind" 4 -D tag="$TAG" >/dev/null
		done
	done
done
checkpoints() { psql_run -At -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"; }
declare -A CHECKPOINTS_BEFORE
for side in $SIDES; do
	use_side "$side"
	CHECKPOINTS_BEFORE[$side]=$(checkpoints)
done

# A measured run: pgbench_run, then CPU_US, the server CPU per transaction
# (microseconds).
measured_run() {
	local pm children cpu0
	pm=$(postmaster_pid)
	children=$(ps --ppid "$pm" --no-headers | wc -l)
	cpu0=$(reaped_cpu "$pm")
	pgbench_run "$@"
	wait_reaped "$pm" "$children"
	CPU_US=$(awk -v a="$cpu0" -v b="$(reaped_cpu "$pm")" -v n="$XACTS" 'BEGIN { printf "%.1f", (n > 0) ? (b - a) * 1e6 / n : 0 }')
}

# awk helpers: a / b; the spread of the arguments.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > 0) ? a / b : 0 }'; }
spread() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }'; }
spread0() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f..%.0f", lo, hi }'; }

ROWS=()
CPU_ROWS=()
RAW=()
ANY_FAILED=0

# compare_row <scenario number> <label> <clients>
# ROUNDS rounds of four runs: each side's baseline and extension.  Odd
# rounds run old baseline, old extension, new extension, new baseline; even
# rounds the reverse, so that neither side nor kind always runs first or
# last.  A side's ratio is its extension's tps over its own baseline's in
# the same round; new/old is the ratio of the two sides' ratios in a round
# (the baselines cancel what the machine's load did to that round), and
# raw new/old the extension's tps on each side, without the baselines.
# The server CPU per call of each run gives a second table: each side's
# extension and baseline, and the extension's difference new - old in a
# round.
compare_row() {
	local n=$1 label=$2 clients=$3 round run side kind failed=0
	local -a order
	local -A tps cpu
	local -a r_old=() r_new=() r_cmp=() r_raw=() t_ob=() t_oe=() t_nb=() t_ne=()
	local -a c_ob=() c_oe=() c_nb=() c_ne=() c_diff=()
	for ((round = 1; round <= ROUNDS; round++)); do
		order=(old:base old:es new:es new:base)
		[ $((round % 2)) -eq 1 ] || order=(new:base new:es old:es old:base)
		for run in "${order[@]}"; do
			side=${run%:*}
			kind=${run#*:}
			use_side "$side"
			TAG=$((TAG + 1))
			measured_run "s${n}_$kind" "$clients" -D tag="$TAG"
			tps[$run]=$TPS
			cpu[$run]=$CPU_US
			failed=$((failed + FAILED))
			printf '   scenario %s, %2d clients, round %d, %-4s %-14s %9.1f tps, %7.1f us CPU per call, %d failed\n' \
				"$n" "$clients" "$round" "$side" "$([ "$kind" = es ] && echo pg_eventstore: || echo baseline:)" \
				"$TPS" "$CPU_US" "$FAILED"
		done
		t_ob+=("${tps[old:base]}"); t_oe+=("${tps[old:es]}")
		t_nb+=("${tps[new:base]}"); t_ne+=("${tps[new:es]}")
		r_old+=("$(ratio "${tps[old:es]}" "${tps[old:base]}")")
		r_new+=("$(ratio "${tps[new:es]}" "${tps[new:base]}")")
		r_cmp+=("$(ratio "${r_new[-1]}" "${r_old[-1]}")")
		r_raw+=("$(ratio "${tps[new:es]}" "${tps[old:es]}")")
		c_ob+=("${cpu[old:base]}"); c_oe+=("${cpu[old:es]}")
		c_nb+=("${cpu[new:base]}"); c_ne+=("${cpu[new:es]}")
		c_diff+=("$(awk -v a="${cpu[new:es]}" -v b="${cpu[old:es]}" 'BEGIN { print a - b }')")
		RAW+=("$n $clients $round ${tps[old:base]} ${tps[old:es]} ${tps[new:base]} ${tps[new:es]} ${cpu[old:base]} ${cpu[old:es]} ${cpu[new:base]} ${cpu[new:es]}")
	done
	[ "$failed" -eq 0 ] || ANY_FAILED=1
	ROWS+=("$(printf '| %s | %d | %.0f | %.0f | %.2f (%s) | %.0f | %.0f | %.2f (%s) | %.3f (%s) | %.3f (%s) | %d |' \
		"$label" "$clients" \
		"$(median "${t_ob[@]}")" "$(median "${t_oe[@]}")" "$(median "${r_old[@]}")" "$(spread "${r_old[@]}")" \
		"$(median "${t_nb[@]}")" "$(median "${t_ne[@]}")" "$(median "${r_new[@]}")" "$(spread "${r_new[@]}")" \
		"$(median "${r_cmp[@]}")" "$(spread "${r_cmp[@]}")" \
		"$(median "${r_raw[@]}")" "$(spread "${r_raw[@]}")" "$failed")")
	CPU_ROWS+=("$(printf '| %s | %d | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f | %+.0f (%s) | %+.1f%% |' \
		"$label" "$clients" \
		"$(median "${c_ob[@]}")" "$(median "${c_oe[@]}")" "$(ratio "$(median "${c_oe[@]}")" "$(median "${c_ob[@]}")")" \
		"$(median "${c_nb[@]}")" "$(median "${c_ne[@]}")" "$(ratio "$(median "${c_ne[@]}")" "$(median "${c_nb[@]}")")" \
		"$(median "${c_diff[@]}")" "$(spread0 "${c_diff[@]}")" \
		"$(awk -v d="$(median "${c_diff[@]}")" -v o="$(median "${c_oe[@]}")" 'BEGIN { print (o > 0) ? 100 * d / o : 0 }')")")
}

trap - ERR
echo "== running: $SECONDS_PER_RUN s per pgbench run, $ROUNDS round(s), old ${REV[old]} and new ${REV[new]} interleaved"
for c in 1 4 16; do
	compare_row 1 "append_event, 10,000 streams" "$c"
done
for c in 1 4; do
	compare_row 2 "append_to_stream, 100 events" "$c"
done
compare_row 3 "append_event, 10 hot streams" 8
CHECKPOINT_NOTE=""
for side in $SIDES; do
	use_side "$side"
	c=$(( $(checkpoints) - CHECKPOINTS_BEFORE[$side] ))
	[ "$c" -eq 0 ] || CHECKPOINT_NOTE="$CHECKPOINT_NOTE $side: $c checkpoint(s) during the runs;"
done

# --- instructions per append, with callgrind ---------------------------------
# CPU work, apart from the machine's noise: each side's cluster, stopped,
# serves one session in single-user mode under callgrind, which counts the
# instructions executed until the session ends (proc_exit toggles counting
# off: not the shutdown checkpoint), with full_page_writes off (the steady
# state between checkpoints, as the pgbench runs measure it).  The
# statements are those of the pgbench scripts, prepared once and executed
# K times on the streams in a fixed order; a run of K1 and one of K2
# executions are counted, and (count(K2) - count(K1)) / (K2 - K1) is the
# cost of one, whatever start-up and the first ones cost (caches, plans,
# the new side's first append taking its cluster's row in
# log_incarnations).  Debian's postgres binary has no symbols of its static
# functions, the extension's library has them all.
CG_ROWS=()
CG_FUNCS=()
# The functions of the append path whose inclusive cost per event the
# report gives for both sides: the extension's entry points, what 0e5034b
# added (the incarnation's offset, the subscriber check, the stream's
# previous key and the index scan it makes), and the insert.
CG_WATCH="eventstore_append_event eventstore_append_to_stream AppendBatch
LogWriterOpen LogWriterLockStream LogWriterInsertEvent LogOffsetForWrite
RefuseAppendOnSubscriber ExecBRInsertTriggers StreamOrderedKey StreamEventKey
EventstoreRelid systable_beginscan _bt_first index_fetch_heap systable_endscan
ExecInsertIndexTuples CommitTransactionCommand"
cg_statements() {
	local case=$1 k=$2 i prefix=s1-
	[ "${case#batch}" = "$case" ] || prefix=s2-
	case $case in
		single_es) echo "PREPARE p(text) AS SELECT eventstore.append_event(\$1, 'ItemAdded', '$EVENT_DATA', '$EVENT_META');" ;;
		single_base) echo "PREPARE p(text) AS INSERT INTO bench.baseline (stream_id, revision, event_type, data, metadata) VALUES (\$1, nextval('bench.revision_seq'), 'ItemAdded', '$EVENT_DATA', '$EVENT_META');" ;;
		batch_es) echo "PREPARE p(text) AS SELECT eventstore.append_to_stream(\$1, '$BATCH100');" ;;
		batch_base) echo "PREPARE p(text) AS INSERT INTO bench.baseline (stream_id, revision, event_id, event_type, data, metadata) SELECT \$1, b.base * 100 + i, (b.id_prefix || lpad(to_hex(i), 4, '0'))::uuid, 'ItemAdded', '$EVENT_DATA', '$EVENT_META' FROM (SELECT nextval('bench.batch_seq') AS base, left(eventstore.uuid_v7()::text, 32) AS id_prefix) b, generate_series(0, 99) i;" ;;
	esac
	for ((i = 0; i < k; i++)); do
		echo "EXECUTE p('$prefix$(((i * 7919 + k) % 10000 + 1))');"
	done
}
# Instructions counted by one single-user run of a case (cluster.sh's
# cg_run).
cg_count() {
	cg_statements "$1" "$2" >"$OUT/cg-$1-$2.sql"
	cg_run "$1" "$2"
}
if [ "$CALLGRIND" = 1 ]; then
	echo "== counting instructions per append with callgrind (each cluster stopped, single-user mode)"
	for side in $SIDES; do
		use_side "$side"
		$RUN pg_ctl stop -D "$DATA" -m fast -w -t 60 >/dev/null
		STARTED=${STARTED/ $side/}
	done
	for spec in "single 200 1200 1" "batch 20 120 100"; do
		read -r shape k1 k2 per <<<"$spec"
		declare -A cg=()
		for side in $SIDES; do
			use_side "$side"
			for kind in base es; do
				a=$(cg_count "${shape}_$kind" "$k1") || { ANY_FAILED=1; continue; }
				b=$(cg_count "${shape}_$kind" "$k2") || { ANY_FAILED=1; continue; }
				cg[$side:$kind]=$(awk -v a="$a" -v b="$b" -v k="$((k2 - k1))" -v p="$per" 'BEGIN { printf "%.0f", (b - a) / k / p }')
				echo "   $side $shape ${kind}: ${cg[$side:$kind]} instructions per event"
				[ "$kind" = base ] || cg_per_event "${shape}_es" "$k1" "$k2" "$per" >"$WORK/$side/cg-$shape.txt"
			done
		done
		if [ -s "$WORK/old/cg-$shape.txt" ] && [ -s "$WORK/new/cg-$shape.txt" ]; then
			while read -r f o n; do
				CG_FUNCS+=("$(printf '| %s | %s | %d | %d | %+d |' "$shape" "$f" "$o" "$n" $((n - o)))")
			done < <(LC_ALL=C join -a1 -a2 -e0 -o 0,1.2,2.2 "$WORK/old/cg-$shape.txt" "$WORK/new/cg-$shape.txt" |
				awk -v watch="$CG_WATCH" 'BEGIN { n = split(watch, w, /[ \n]+/); for (i = 1; i <= n; i++) order[w[i]] = i }
					$1 in order { print order[$1], $0 }' | sort -n | cut -d' ' -f2-)
		fi
		if [ -n "${cg[old:es]:-}" ] && [ -n "${cg[new:es]:-}" ] && [ -n "${cg[old:base]:-}" ] && [ -n "${cg[new:base]:-}" ]; then
			CG_ROWS+=("$(awk -v l="$shape" -v ob="${cg[old:base]}" -v oe="${cg[old:es]}" -v nb="${cg[new:base]}" -v ne="${cg[new:es]}" \
				'BEGIN { printf "| %s | %d | %d | %.2f | %d | %d | %.2f | %+d (%+.1f%%) |", l, ob, oe, oe / ob, nb, ne, ne / nb, ne - oe, 100 * (ne - oe) / oe }')")
		fi
		unset cg
	done
fi

# --- the report --------------------------------------------------------------
echo
echo "Appends, old ${REV[old]} against new ${REV[new]}, each side against its own plain-INSERT" \
	"baseline: tps are medians of $ROUNDS interleaved rounds of $SECONDS_PER_RUN s pgbench runs;" \
	"ratio = pg_eventstore / baseline of the same side and round; new/old = new ratio / old ratio of" \
	"the same round; raw = new pg_eventstore tps / old; medians, spread over the rounds in parentheses"
echo
echo "| scenario | clients | old baseline tps | old tps | old ratio | new baseline tps | new tps | new ratio | new/old | raw new/old | failed calls |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Server CPU per call, microseconds (backends' user + system time over the calls they served;" \
	"medians over the rounds; the difference is new - old pg_eventstore in each round, median and spread):"
echo
echo "| scenario | clients | old baseline | old pg_eventstore | old ratio | new baseline | new pg_eventstore | new ratio | new - old, us | new - old, % of old |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${CPU_ROWS[@]}"
echo
echo "Per round (scenario clients round, then old-baseline old-es new-baseline new-es tps, then the same CPU us per call):"
printf '    %s\n' "${RAW[@]}"
if [ ${#CG_ROWS[@]} -gt 0 ]; then
	echo
	echo "Instructions per event (callgrind, one session, inside its queries; the batch: one call of 100 events, per event):"
	echo
	echo "| appends | old baseline | old pg_eventstore | old ratio | new baseline | new pg_eventstore | new ratio | new - old |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	printf '%s\n' "${CG_ROWS[@]}"
	echo
	echo "Where they go: inclusive instructions per event of functions of the append path (0: not called)"
	echo
	echo "| appends | function | old | new | new - old |"
	echo "|---|---|---:|---:|---:|"
	printf '%s\n' "${CG_FUNCS[@]}"
fi
echo
ELAPSED=$(($(date +%s) - START_TIME))
use_side new
REVISION="old ${REV[old]}, new ${REV[new]}"
echo "$(bench_machine); ${CHECKPOINT_NOTE:- no checkpoint during the runs;} total run time ${ELAPSED} s"

if [ "$ANY_FAILED" -ne 0 ]; then
	echo "FAILED: some calls failed (see above)" >&2
	exit 1
fi
exit 0
