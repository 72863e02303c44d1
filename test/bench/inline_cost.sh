#!/usr/bin/env bash
# What an inline projection costs an append, at two revisions, in one run:
# each revision built into its own private PostgreSQL 15 installation and
# cluster; single-event appends with no inline projection for their type and
# with a no-op inline projection (PL/pgSQL, on the appended type), in
# alternating rounds of pgbench on both clusters; then instructions per
# append counted with callgrind, with the inclusive cost of the functions
# of the inline path (StreamHasPendingSkips: the per-stream order check).
# See test/bench/README.md.
#
#   test/bench/inline_cost.sh [--old REV] [--new REV] [--quick]
#
# Environment (options win): INLINE_OLD (66d372b), INLINE_NEW (HEAD),
# INLINE_CLIENTS (4), INLINE_SECONDS (per pgbench run, 3), INLINE_ROUNDS
# (10), INLINE_PORT (55490 for the old side, one more for the new),
# INLINE_WORKDIR (/tmp/pg_eventstore-inline, removed and recreated),
# INLINE_KEEP=1 (keep it), INLINE_CALLGRIND (1 when valgrind is installed).
# INLINE_LOOP_APPENDS (appends per run of the one-session loop, 20000).
# --quick: 3 rounds of 2 s.  synchronous_commit is off for the appends, as
# in projections.sh's (e): the fsync would bury the difference.
#
# Exit status: 0 when every run completed without a failed call; 1
# otherwise; 2 on a set-up error.
set -euo pipefail
START_TIME=$(date +%s)
cd "$(dirname "$0")/../.."
. scripts/common.sh

OLD_REV=${INLINE_OLD:-66d372b}
NEW_REV=${INLINE_NEW:-HEAD}
CLIENTS=${INLINE_CLIENTS:-4}
SECONDS_PER_RUN=${INLINE_SECONDS:-3}
ROUNDS=${INLINE_ROUNDS:-10}
BASE_PORT=${INLINE_PORT:-55490}
WORK=${INLINE_WORKDIR:-/tmp/pg_eventstore-inline}
CALLGRIND=${INLINE_CALLGRIND:-$(command -v valgrind >/dev/null && echo 1 || echo 0)}
STREAMS=10000
while [ $# -gt 0 ]; do
	case $1 in
		--old) OLD_REV=$2; shift 2 ;;
		--new) NEW_REV=$2; shift 2 ;;
		--quick) SECONDS_PER_RUN=2; ROUNDS=3; shift ;;
		-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
		*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
	esac
done
for v in "$CLIENTS" "$SECONDS_PER_RUN" "$ROUNDS" "$BASE_PORT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $v" >&2; exit 2; }
done

declare -A REV PGC RUNAS PORT_OF
REV[old]=$(git rev-parse --short "$OLD_REV^{commit}") || { echo "not a revision: $OLD_REV" >&2; exit 2; }
REV[new]=$(git rev-parse --short "$NEW_REV^{commit}") || { echo "not a revision: $NEW_REV" >&2; exit 2; }
PORT_OF[old]=$BASE_PORT
PORT_OF[new]=$((BASE_PORT + 1))
STARTED=""
cleanup() {
	local rc=$? side
	trap - EXIT
	for side in $STARTED; do
		timeout 60 ${RUNAS[$side]} pg_ctl stop -D "$WORK/$side/data" -m fast -w >/dev/null 2>&1 || true
	done
	[ "${INLINE_KEEP:-0}" = 1 ] && echo "== kept $WORK" || rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT

install_dependencies
rm -rf "$WORK"
mkdir -p "$WORK"
[ "$(id -u)" -ne 0 ] || chown postgres: "$WORK"
for side in old new; do
	dir=$WORK/$side/pg
	mkdir -p "$dir/lib" "$dir/share" "$dir/include"
	cp -a /usr/lib/postgresql "$dir/lib/"
	cp -a /usr/share/postgresql "$dir/share/"
	cp -a /usr/include/postgresql "$dir/include/"
	chmod -R a+rX "$dir"
	PGC[$side]=$dir/lib/postgresql/$PG_MAJOR/bin/pg_config
	bindir=$("${PGC[$side]}" --bindir)
	if [ "$(id -u)" -eq 0 ]; then
		RUNAS[$side]="runuser -u postgres -- env PATH=$bindir:$PATH"
	else
		RUNAS[$side]="env PATH=$bindir:$PATH"
	fi
	mkdir -p "$WORK/$side/src"
	git archive --format=tar "${REV[$side]}" | tar -C "$WORK/$side/src" -xf -
	[ "$(id -u)" -ne 0 ] || chown -R postgres: "$WORK/$side"
	echo "== building $side (${REV[$side]})"
	${RUNAS[$side]} make -s -C "$WORK/$side/src" PG_CONFIG="${PGC[$side]}" >/dev/null
	make -s -C "$WORK/$side/src" install PG_CONFIG="${PGC[$side]}" >/dev/null
	${RUNAS[$side]} initdb -D "$WORK/$side/data" -A trust --encoding=UTF8 --locale=C >/dev/null
	${RUNAS[$side]} tee -a "$WORK/$side/data/postgresql.conf" >/dev/null <<EOF
listen_addresses = ''
port = ${PORT_OF[$side]}
unix_socket_directories = '$WORK/$side'
shared_preload_libraries = 'pg_eventstore'
shared_buffers = 512MB
max_wal_size = 8GB
checkpoint_timeout = 30min
autovacuum = off
pg_eventstore.databases = ''
EOF
	${RUNAS[$side]} pg_ctl start -D "$WORK/$side/data" -l "$WORK/$side/server.log" -w >/dev/null
	STARTED="$STARTED $side"
	${RUNAS[$side]} psql -X -q -v ON_ERROR_STOP=1 -h "$WORK/$side" -p "${PORT_OF[$side]}" -d postgres >/dev/null <<EOF
CREATE EXTENSION pg_eventstore;
CREATE SCHEMA bench;
CREATE FUNCTION bench.noop(e eventstore.events) RETURNS void LANGUAGE plpgsql AS \$\$ BEGIN NULL; END \$\$;
SELECT count(eventstore.append_event('acct-' || s, 'Noted', '{}')) FROM generate_series(1, $STREAMS) s;
SELECT eventstore.create_projection('noop', 'bench.noop', ARRAY['Pinged'], 'inline');
SELECT eventstore.run_projection('noop');
-- n appends of the type, each committed, in one session: its wall and CPU
-- time (utime + stime of the backend, in clock ticks)
CREATE PROCEDURE bench.append_loop(n integer, type text, INOUT wall float8 DEFAULT NULL,
								   INOUT ticks bigint DEFAULT NULL)
LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz := clock_timestamp();
	c0 bigint := (SELECT split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint
				  FROM pg_read_file('/proc/self/stat') s);
BEGIN
	FOR i IN 1 .. n LOOP
		PERFORM eventstore.append_event('acct-' || (1 + (i * 7919) % $STREAMS), type, '{"amount": 1}');
		COMMIT;
	END LOOP;
	wall := extract(epoch FROM clock_timestamp() - t0);
	ticks := (SELECT split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint
			  FROM pg_read_file('/proc/self/stat') s) - c0;
END
\$\$;
VACUUM ANALYZE;
CHECKPOINT;
EOF
	[ "$(${RUNAS[$side]} psql -X -At -h "$WORK/$side" -p "${PORT_OF[$side]}" -d postgres \
		-c "SELECT status || ' ' || mode FROM eventstore.projections")" = "active inline" ] ||
		{ echo "$side: the no-op projection is not active" >&2; exit 2; }
done
SCRIPT=$WORK/append.sql
cat >"$SCRIPT" <<EOF
\set s random(1, $STREAMS)
SELECT eventstore.append_event('acct-' || :s, :type, '{"amount": 1}');
EOF
chmod a+r "$SCRIPT"

ANY_FAILED=0
# append_run SIDE TYPE: TPS of one pgbench run
append_run() {
	local side=$1 type=$2 out=$WORK/$side/pgbench.out rc=0
	timeout $((SECONDS_PER_RUN + 60)) ${RUNAS[$side]} env PGOPTIONS="-c synchronous_commit=off" \
		pgbench -n -M prepared -T "$SECONDS_PER_RUN" -c "$CLIENTS" -j 2 -h "$WORK/$side" \
		-p "${PORT_OF[$side]}" -f "$SCRIPT" -D type="$type" postgres >"$out" 2>&1 || rc=$?
	TPS=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out")
	if [ "$rc" -ne 0 ] || [ -z "$TPS" ] || grep -q 'aborted in command' "$out"; then
		echo "   pgbench failed on $side ($type): $(tail -3 "$out")" >&2
		ANY_FAILED=1
		TPS=0
	fi
}
us() { awk -v t="$1" 'BEGIN { printf "%.2f", (t > 0) ? 1e6 / t : 0 }'; }
# median (and the payloads, unused here)
. test/bench/appends.sh
spread() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f .. %.1f", lo, hi }'; }

echo "== warming up"
for side in old new; do append_run "$side" Noted; append_run "$side" Pinged; done
declare -A W=() V=()
declare -a D_old=() D_new=() U_ow=() U_oo=() U_nw=() U_no=()
echo "== $ROUNDS rounds of 4 runs ($CLIENTS clients, $SECONDS_PER_RUN s each), alternating"
for ((round = 1; round <= ROUNDS; round++)); do
	order="old:Noted old:Pinged new:Pinged new:Noted"
	[ $((round % 2)) -eq 1 ] || order="new:Noted new:Pinged old:Pinged old:Noted"
	for run in $order; do
		append_run "${run%:*}" "${run#*:}"
		W[$run]=$(us "$TPS")
	done
	D_old+=("$(awk -v a="${W[old:Pinged]}" -v b="${W[old:Noted]}" 'BEGIN { print a - b }')")
	D_new+=("$(awk -v a="${W[new:Pinged]}" -v b="${W[new:Noted]}" 'BEGIN { print a - b }')")
	U_oo+=("${W[old:Noted]}"); U_ow+=("${W[old:Pinged]}")
	U_no+=("${W[new:Noted]}"); U_nw+=("${W[new:Pinged]}")
	printf '   round %2d: old %s / %s us, new %s / %s us (without / with)\n' "$round" \
		"${W[old:Noted]}" "${W[old:Pinged]}" "${W[new:Noted]}" "${W[new:Pinged]}"
done

# The same appends from a procedure in one session (no client round trip):
# wall and CPU µs per append of its backend, LOOP_APPENDS per run.
LOOP_APPENDS=${INLINE_LOOP_APPENDS:-20000}
HZ=$(getconf CLK_TCK)
declare -a LW_old=() LW_new=() LC_old=() LC_new=() LU_oo=() LU_ow=() LU_no=() LU_nw=()
loop_run() {
	local side=$1 type=$2 r
	r=$(${RUNAS[$side]} psql -X -At -F ' ' -h "$WORK/$side" -p "${PORT_OF[$side]}" -d postgres \
		-c "SET synchronous_commit = off" -c "CALL bench.append_loop($LOOP_APPENDS, '$type')") ||
		{ echo "   the loop failed on $side ($type)" >&2; ANY_FAILED=1; r="0 0"; }
	read -r LOOP_WALL LOOP_TICKS <<<"$(tail -1 <<<"$r")"
	LOOP_WALL=$(awk -v w="$LOOP_WALL" -v n="$LOOP_APPENDS" 'BEGIN { printf "%.2f", w * 1e6 / n }')
	LOOP_CPU=$(awk -v t="$LOOP_TICKS" -v n="$LOOP_APPENDS" -v hz="$HZ" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
}
echo "== $ROUNDS rounds of 4 loops of $LOOP_APPENDS appends in one session, alternating"
for ((round = 1; round <= ROUNDS; round++)); do
	order="old:Noted old:Pinged new:Pinged new:Noted"
	[ $((round % 2)) -eq 1 ] || order="new:Noted new:Pinged old:Pinged old:Noted"
	for run in $order; do
		loop_run "${run%:*}" "${run#*:}"
		W[$run]=$LOOP_WALL
		V[$run]=$LOOP_CPU
	done
	LW_old+=("$(awk -v a="${W[old:Pinged]}" -v b="${W[old:Noted]}" 'BEGIN { print a - b }')")
	LW_new+=("$(awk -v a="${W[new:Pinged]}" -v b="${W[new:Noted]}" 'BEGIN { print a - b }')")
	LC_old+=("$(awk -v a="${V[old:Pinged]}" -v b="${V[old:Noted]}" 'BEGIN { print a - b }')")
	LC_new+=("$(awk -v a="${V[new:Pinged]}" -v b="${V[new:Noted]}" 'BEGIN { print a - b }')")
	LU_oo+=("${V[old:Noted]}"); LU_ow+=("${V[old:Pinged]}")
	LU_no+=("${V[new:Noted]}"); LU_nw+=("${V[new:Pinged]}")
	printf '   round %2d: CPU old %s / %s us, new %s / %s us (without / with)\n' "$round" \
		"${V[old:Noted]}" "${V[old:Pinged]}" "${V[new:Noted]}" "${V[new:Pinged]}"
done

CG_ROWS=()
if [ "$CALLGRIND" = 1 ]; then
	echo "== callgrind: each cluster stopped, single-user mode, on a copy of its data"
	cg_inclusive() {
		callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$1" 2>/dev/null |
			sed -n 's/^ *\([0-9,]*\) ([ 0-9.]*%) *\([^ ]*\) .*/\1 \2/p' |
			awk '{ gsub(/,/, "", $1); f = $2; sub(/.*:/, "", f); if (f ~ /^[A-Za-z_]/ && !(f in seen)) { seen[f] = 1; print f, $1 } }'
	}
	# cg SIDE TYPE K: total instructions; leaves $WORK/SIDE/cg-TYPE-K.out
	cg() {
		local side=$1 type=$2 k=$3 i run=$WORK/$side/cgdata
		rm -rf "$run"
		cp -a "$WORK/$side/data" "$run"
		{
			echo "PREPARE p(text) AS SELECT eventstore.append_event(\$1, '$type', '{\"amount\": 1}');"
			for ((i = 0; i < k; i++)); do echo "EXECUTE p('acct-$(((i * 7919 + k) % STREAMS + 1))');"; done
		} >"$WORK/$side/cg.sql"
		chmod a+r "$WORK/$side/cg.sql"
		timeout 1200 ${RUNAS[$side]} valgrind --tool=callgrind --toggle-collect=proc_exit --collect-atstart=yes \
			--callgrind-out-file="$WORK/$side/cg-$type-$k.out" postgres --single -D "$run" \
			-c full_page_writes=off postgres <"$WORK/$side/cg.sql" >"$WORK/$side/cg.log" 2>&1
		! grep -q ERROR "$WORK/$side/cg.log" || { echo "   errors under callgrind: $(grep -m1 ERROR "$WORK/$side/cg.log")" >&2; ANY_FAILED=1; }
		sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$WORK/$side/cg-$type-$k.out"
	}
	# per SIDE TYPE FUNCTION: inclusive instructions of FUNCTION per append
	per() {
		local a b
		a=$(cg_inclusive "$WORK/$1/cg-$2-200.out" | awk -v f="$3" '$1 == f { print $2 }')
		b=$(cg_inclusive "$WORK/$1/cg-$2-1200.out" | awk -v f="$3" '$1 == f { print $2 }')
		awk -v a="${a:-0}" -v b="${b:-0}" 'BEGIN { printf "%.0f", (b - a) / 1000 }'
	}
	for side in old new; do
		${RUNAS[$side]} pg_ctl stop -D "$WORK/$side/data" -m fast -w >/dev/null
		STARTED=${STARTED/ $side/}
	done
	declare -A CG=()
	for side in old new; do
		for type in Noted Pinged; do
			a=$(cg "$side" "$type" 200)
			b=$(cg "$side" "$type" 1200)
			CG[$side:$type]=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f", (b - a) / 1000 }')
		done
	done
	for side in old new; do
		CG_ROWS+=("| $side (${REV[$side]}) | ${CG[$side:Noted]} | ${CG[$side:Pinged]} | $((CG[$side:Pinged] - CG[$side:Noted])) | $(per "$side" Pinged ApplyInlineProjections) | $(per "$side" Pinged CallHandler) | $(per "$side" Pinged StreamHasPendingSkips) | $(per "$side" Pinged MissingOwnerCode) | $(per "$side" Pinged ApplyOwnerSettings) |")
	done
fi

echo
echo "Single-event appends to 10,000 streams, $CLIENTS clients, synchronous_commit off: µs per append" \
	"(1 / tps), medians of $ROUNDS alternating rounds of $SECONDS_PER_RUN s; the difference is with - without in each round"
echo
echo "| revision | without an inline projection | with a no-op inline projection | difference: median (spread) | target |"
echo "|---|---:|---:|---:|---|"
for side in old new; do
	if [ "$side" = old ]; then d=("${D_old[@]}"); wo=("${U_oo[@]}"); wi=("${U_ow[@]}")
	else d=("${D_new[@]}"); wo=("${U_no[@]}"); wi=("${U_nw[@]}"); fi
	m=$(median "${d[@]}")
	printf '| %s (%s) | %.1f | %.1f | %.1f (%s) | < 5 µs: %s |\n' "$side" "${REV[$side]}" \
		"$(median "${wo[@]}")" "$(median "${wi[@]}")" "$m" "$(spread "${d[@]}")" \
		"$(awk -v m="$m" 'BEGIN { print (m < 5) ? "met" : "missed" }')"
done
echo
echo "The same from a procedure in one session, $LOOP_APPENDS appends per run, each committed:" \
	"µs per append, medians of $ROUNDS alternating rounds; the difference is with - without in each round"
echo
echo "| revision | CPU without | CPU with | CPU difference: median (spread) | wall difference: median (spread) | target |"
echo "|---|---:|---:|---:|---:|---|"
for side in old new; do
	if [ "$side" = old ]; then c=("${LC_old[@]}"); w=("${LW_old[@]}"); wo=("${LU_oo[@]}"); wi=("${LU_ow[@]}")
	else c=("${LC_new[@]}"); w=("${LW_new[@]}"); wo=("${LU_no[@]}"); wi=("${LU_nw[@]}"); fi
	m=$(median "${c[@]}")
	printf '| %s (%s) | %.1f | %.1f | %.1f (%s) | %.1f (%s) | < 5 µs: %s |\n' "$side" "${REV[$side]}" \
		"$(median "${wo[@]}")" "$(median "${wi[@]}")" "$m" "$(spread "${c[@]}")" \
		"$(median "${w[@]}")" "$(spread "${w[@]}")" \
		"$(awk -v m="$m" 'BEGIN { print (m < 5) ? "met" : "missed" }')"
done
if [ ${#CG_ROWS[@]} -gt 0 ]; then
	echo
	echo "Instructions per append (callgrind, one session, 1,000 appends after 200; inclusive, per append):"
	echo
	echo "| revision | without | with | difference | ApplyInlineProjections | CallHandler | StreamHasPendingSkips | MissingOwnerCode | ApplyOwnerSettings |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	printf '%s\n' "${CG_ROWS[@]}"
fi
echo
echo "PostgreSQL $(postgres --version 2>/dev/null | awk '{ print $3 }'), $(nproc) cores; total run time $(($(date +%s) - START_TIME)) s"
exit $ANY_FAILED
