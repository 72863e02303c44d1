#!/usr/bin/env bash
# Set everything up on a Debian 12 machine and run the pg_eventstore demo: a
# private PostgreSQL cluster inside the checkout (tmp/demo) with the library
# preloaded and its background worker on, a shopping-cart workload appended
# by several concurrent clients, projections kept inline and by the worker
# (with a blue/green version and a rebuild under load, their status printed
# while they run), and the streams and the global log shown.
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
psql_demo() { run psql -X -q -h "$DEMO_DIR" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }

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
echo "== rebuilding the inline cart-summary under load: appends record skips meanwhile"
psql_demo -c "SELECT eventstore.rebuild_projection('cart-summary')"
for _ in 1 2 3; do
	sleep 1
	status
done
wait "$workload"
grep -E "^(number of transactions actually processed|tps)" "$DEMO_DIR/pgbench.out"

echo "== the workload stopped; waiting for the projections to reach the head"
for _ in $(seq 1 60); do
	pending=$(psql_demo -At -c "SELECT count(*) FROM eventstore.projection_status
		WHERE status <> 'active' OR lag_events > 0 OR skips_pending > 0")
	[ "$pending" = 0 ] && break
	sleep 0.5
done
status
psql_demo -P footer=off -c "SELECT eventstore.current_version('sku-sales') AS serving_version"

psql_demo <demo/show.sql

cat <<MSG

== the demo cluster is still running; connect with
   ${PSQL_AS}psql -h $DEMO_DIR -p $PORT -d postgres
   and try: SELECT * FROM eventstore.read_stream('cart-7');
== stop it with
   scripts/demo.sh stop
MSG
