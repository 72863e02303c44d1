#!/usr/bin/env bash
# Set everything up on a Debian 12 machine and run the pg_eventstore demo: a
# private PostgreSQL cluster inside the checkout (tmp/demo) with the library
# preloaded and its background worker on, a shopping-cart workload appended
# by several concurrent clients, projections kept inline and by the worker
# (with a blue/green version and a rebuild under load, their status printed
# while they run), a new version checked, promoted behind a stable view
# and rolled back, a handler's side effect done once through rebuilds, and
# the streams and the global log shown.
#
#   scripts/demo.sh          set up, (re)start the cluster, run the demo
#   scripts/demo.sh stop     stop the demo cluster
#
# Works as root (PostgreSQL then runs as "postgres") and as a normal user
# with sudo.  DEMO_PORT (default 5488), DEMO_CLIENTS (4), DEMO_SECONDS (12).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

PORT=${DEMO_PORT:-5488}
CLIENTS=${DEMO_CLIENTS:-4}
SECONDS_TO_RUN=${DEMO_SECONDS:-12}
CHECKOUT=$(pwd)

install_dependencies

# The cluster lives in tmp/demo inside the checkout.  As root it belongs to
# "postgres"; if that user cannot reach the checkout (say, under /root), the
# cluster goes to /tmp/pg_eventstore-demo instead.
if [ "$(id -u)" -eq 0 ]; then
	DEMO_DIR=$CHECKOUT/tmp/demo
	if ! runuser -u postgres -- test -x "$CHECKOUT"; then
		DEMO_DIR=/tmp/pg_eventstore-demo
		echo "== postgres cannot reach $CHECKOUT: the demo cluster goes to $DEMO_DIR"
	fi
	mkdir -p "$DEMO_DIR"
	chown postgres: "$DEMO_DIR"
	PSQL_AS="runuser -u postgres -- "
	# from the cluster's directory: postgres may not be able to enter ours
	run() { (cd "$DEMO_DIR" && runuser -u postgres -- env PATH="$PATH" "$@"); }
else
	DEMO_DIR=$CHECKOUT/tmp/demo
	mkdir -p "$DEMO_DIR"
	PSQL_AS=""
	run() { "$@"; }
fi
DATA=$DEMO_DIR/data
# SQL files are read by this shell and sent on standard input, for the same
# reason.
psql_demo() { run psql -X -q -P pager=off -h "$DEMO_DIR" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }

stop_cluster() {
	if [ -f "$DATA/postmaster.pid" ]; then
		run pg_ctl -D "$DATA" -m fast -w stop >/dev/null || true
	fi
}

if [ "${1:-}" = "stop" ]; then
	stop_cluster
	echo "demo cluster stopped"
	exit 0
fi

echo "== building and installing pg_eventstore"
make -s PG_CONFIG="$PG_CONFIG" >/dev/null
as_root env PATH="$PATH" make -s install PG_CONFIG="$PG_CONFIG" >/dev/null

echo "== starting a private cluster in $DATA (port $PORT)"
stop_cluster
rm -rf "$DATA"
run initdb -D "$DATA" -A trust >/dev/null
cat >>"$DATA/postgresql.conf" <<CONF
# pg_eventstore demo
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DEMO_DIR'
shared_preload_libraries = 'pg_eventstore'
pg_eventstore.databases = 'postgres'
pg_eventstore.rebuild_throttle = 4000   # events/s, so the rebuilds show progress
CONF
run pg_ctl -D "$DATA" -l "$DEMO_DIR/server.log" -w start >/dev/null

psql_demo -c "CREATE EXTENSION pg_eventstore"
psql_demo <demo/workload.sql
psql_demo <demo/projections.sql

status() {
	psql_demo -P footer=off -c "SELECT name, version, mode, status, checkpoint, head,
		lag_events, skips_pending AS skips, worker_pid,
		round(events_per_second::numeric, 1) AS events_per_s
		FROM eventstore.projection_status ORDER BY name, version"
}

echo "== $CLIENTS clients handling shopping-cart commands for $SECONDS_TO_RUN s"
echo "SELECT demo.handle_command((1 + floor(random() * 3000))::int);" >"$DEMO_DIR/command.sql"
chmod a+r "$DEMO_DIR/command.sql"
run pgbench -n -h "$DEMO_DIR" -p "$PORT" -c "$CLIENTS" -j 2 -T "$SECONDS_TO_RUN" \
	-f "$DEMO_DIR/command.sql" postgres >"$DEMO_DIR/pgbench.out" 2>&1 &
workload=$!
third=$((SECONDS_TO_RUN / 3))
sleep "$third"
echo "== after ${third} s: projections as the worker keeps them"
status
echo "== blue/green: sku-sales version 2 builds from the start while version 1 serves"
psql_demo -c "SELECT eventstore.create_projection('sku-sales', 'demo.apply_sku_sales_v2',
	ARRAY['ItemAdded', 'ItemRemoved'], version => 2,
	on_reset => 'TRUNCATE demo.sku_sales_v2')"
psql_demo -P footer=off -c "SELECT eventstore.current_version('sku-sales') AS serving_version"
echo "== rebuilding the inline cart-summary and checkout-mails under load: appends record skips meanwhile"
psql_demo -c "SELECT eventstore.rebuild_projection('cart-summary')"
psql_demo -c "SELECT eventstore.rebuild_projection('checkout-mails')"
for _ in 1 2 3; do
	sleep 1
	status
done
wait "$workload"
grep -E "^(number of transactions actually processed|tps)" "$DEMO_DIR/pgbench.out"

# Wait (up to 60 s) until the query $1 returns t.
wait_until() {
	for _ in $(seq 1 120); do
		[ "$(psql_demo -At -c "$1")" = t ] && return 0
		sleep 0.5
	done
	echo "== gave up waiting for: $1" >&2
	return 1
}
all_at_head="SELECT count(*) = 0 FROM eventstore.projection_status
	WHERE status <> 'active' OR lag_events > 0 OR skips_pending > 0"

echo "== the workload stopped; waiting for the projections to reach the head"
wait_until "$all_at_head"
status
psql_demo -P footer=off -c "SELECT eventstore.current_version('sku-sales') AS serving_version"

# A consumer reading the stable view in a loop through every promotion
# below, a connection a read: every read must succeed.
rm -f "$DEMO_DIR/reader.stop"
(
	reads=0 failed=0
	while [ ! -e "$DEMO_DIR/reader.stop" ]; do
		if psql_demo -At -c "SELECT count(*), sum(units) FROM demo.sales" >/dev/null 2>>"$DEMO_DIR/reader.err"; then
			reads=$((reads + 1))
		else
			failed=$((failed + 1))
		fi
	done
	echo "$reads $failed" >"$DEMO_DIR/reader.out"
) &
reader=$!

psql_demo <demo/promotion.sql
echo "== waiting for version 2's rebuild to reach the head"
wait_until "$all_at_head"
psql_demo <demo/promotion_2.sql
echo "== waiting for version 3 to build and promote itself"
wait_until "SELECT eventstore.current_version('sku-sales') = 3"
psql_demo <demo/promotion_3.sql

touch "$DEMO_DIR/reader.stop"
wait "$reader"
read -r reads failed <"$DEMO_DIR/reader.out"
echo "== a consumer read demo.sales $reads times during the promotions; $failed of them failed"
if [ "$failed" != 0 ]; then
	head -3 "$DEMO_DIR/reader.err"
	exit 1
fi

psql_demo <demo/show.sql

cat <<MSG

== the demo cluster is still running; connect with
   ${PSQL_AS}psql -h $DEMO_DIR -p $PORT -d postgres
   and try: SELECT * FROM eventstore.read_stream('cart-7');
== stop it with
   scripts/demo.sh stop
MSG
