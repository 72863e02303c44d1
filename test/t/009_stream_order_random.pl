# Every stream's order in the global log under a random concurrent load:
# read_all followers, the members of a consumer group and an async
# projection each get exactly their part of the log, each stream in
# revision order.
#
# Claims proven here (every list is compared in full, in order):
# - For 15 s, four writers run random transactions over a few hot streams
#   and many cold ones: appends to two or three streams in one transaction
#   (taking the xid at the first, committing after younger transactions),
#   the outbox pattern (a write of their own table first, so the xid is
#   taken early, a nap, then appends to one or two hot streams after
#   younger transactions did), batches, appends that nap before committing
#   (late commits), and rollbacks.  The log then holds events whose key was
#   raised above their own transaction's id (the stream's previous event had
#   a higher one), events that sort after higher positions, transactions
#   that committed after younger ones, and burned positions: each is counted
#   and must be there, to show the load had what the claim is about.
# - Meanwhile a read_all follower ("all") and the three members of a
#   consumer group ("3:0", "3:1", "3:2": read_all with group_member m and
#   group_size 3), each calling read_all again and again from the position
#   of the last event it received and committing each page, log every event
#   they get; the background worker applies an async projection whose
#   handler logs every event it applies ("projection").
# - Once the load has stopped and everything is drained, for each of them:
#   0 committed events of its part of the log never received (missed), 0
#   received twice (doubled), 0 received after a later revision of the same
#   stream (out of order); and the positions received, in the order
#   received, are exactly the log's (read_all's order, (transaction_id,
#   global_position)) restricted to its part.  The members' parts are
#   disjoint and together the whole log.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default; the
# figures (transactions, events, rollbacks, raised keys, events received
# during the load) are noted, not bounded.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventstoreTest;

# How long the writers and the followers run, in seconds.
my $load_seconds = 15;

my $node = start_node('order', q(
track_commit_timestamp = on
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 1
pg_eventstore.batch_size = 25
pg_eventstore.poll_interval = '200ms'
pg_eventstore.retry_interval = '200ms'
));

# The receivers and what they got; the projection, whose handler logs every
# event it applies; the writers' own table.  consume(receiver, max_count) is
# one read_all call of a receiver from the position of the last event it
# received (NULL at first: from the start), logging what it gets; it returns
# how many events that was.
sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE SCHEMA es_o;
	CREATE TABLE es_o.receivers (id int PRIMARY KEY, receiver text NOT NULL UNIQUE,
	                             member int, size int);
	INSERT INTO es_o.receivers VALUES (0, 'all', NULL, NULL),
		(1, '3:0', 0, 3), (2, '3:1', 1, 3), (3, '3:2', 2, 3);
	CREATE TABLE es_o.received (n bigserial PRIMARY KEY, receiver text NOT NULL,
	                            pos bigint NOT NULL, stream_id text NOT NULL,
	                            revision bigint NOT NULL);
	CREATE TABLE es_o.applied (n bigserial PRIMARY KEY, pos bigint NOT NULL,
	                           stream_id text NOT NULL, revision bigint NOT NULL);
	CREATE TABLE es_o.outbox (n int NOT NULL);
	CREATE FUNCTION es_o.consume(id int, max_count int) RETURNS bigint
	LANGUAGE sql AS $$
		WITH got AS (
			INSERT INTO es_o.received (receiver, pos, stream_id, revision)
			SELECT c.receiver, e.global_position, e.stream_id, e.revision
			FROM es_o.receivers c,
			     eventstore.read_all((SELECT r.pos FROM es_o.received r
			                          WHERE r.receiver = c.receiver
			                          ORDER BY r.n DESC LIMIT 1),
			                         max_count, NULL, c.member, c.size)
			     WITH ORDINALITY AS e
			WHERE c.id = consume.id
			ORDER BY e.ordinality
			RETURNING 1)
		SELECT count(*) FROM got
	$$;
	CREATE FUNCTION es_o.apply(e eventstore.events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO es_o.applied (pos, stream_id, revision)
		VALUES (e.global_position, e.stream_id, e.revision);
	END $$;
	SELECT eventstore.create_projection('order', 'es_o.apply');
});
my @receivers = ('all', '3:0', '3:1', '3:2', 'projection');

# --- The load ---------------------------------------------------------------

# Six hot streams h-1 .. h-6, cold ones c-1 .. c-200.  Of the transactions,
# 30% append to two or three hot streams (a nap between), 20% are outboxes
# (their own table first, a nap, then one or two hot streams), 10% append a
# batch of three, 10% append and nap before committing, 30% append one
# event, to a hot stream or a cold one; 10% of them all roll back.  Streams
# are taken in ascending order within a transaction: no deadlock.
my $writers_script = $node->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file($writers_script, <<'EOF');
\set a random(1, 4)
\set b :a + random(1, 6 - :a)
\set c random(1, 200)
\set kind random(1, 10)
\set three random(0, 1)
\set rb random(1, 10)
BEGIN;
\if :kind <= 3
SELECT eventstore.append_event('h-' || :a, 'Multi', '{}');
SELECT pg_sleep(random() * 0.01);
SELECT eventstore.append_event('h-' || :b, 'Multi', '{}');
\if :three
SELECT eventstore.append_event('h-6', 'Multi', '{}');
\endif
\elif :kind <= 5
INSERT INTO es_o.outbox VALUES (:a);
SELECT pg_sleep(random() * 0.02);
SELECT eventstore.append_event('h-' || :a, 'Outbox', '{}');
\if :three
SELECT eventstore.append_event('h-' || :b, 'Outbox', '{}');
\endif
\elif :kind = 6
SELECT eventstore.append_to_stream('h-' || :b, '[{"type": "Batch"}, {"type": "Batch"}, {"type": "Batch"}]');
\elif :kind = 7
SELECT eventstore.append_event('h-' || :a, 'Late', '{}');
SELECT pg_sleep(random() * 0.02);
\elif :kind = 8
SELECT eventstore.append_event('h-' || :b, 'Single', '{}');
\else
SELECT eventstore.append_event('c-' || :c, 'Single', '{}');
\endif
\if :rb = 1
ROLLBACK;
\else
COMMIT;
\endif
EOF

# Each follower client is one receiver (pgbench's client_id 0 .. 3), paging
# by 50 with a short nap between pages; each page commits.
my $followers_script = $node->basedir . '/followers.sql';
PostgreSQL::Test::Utils::append_to_file($followers_script, <<'EOF');
SELECT es_o.consume(:client_id, 50);
\sleep 5 ms
EOF

my ($w_out, $w_err, $f_out, $f_err) = ('', '', '', '');
my $writers = start_pgbench($writers_script, 4, $load_seconds, \$w_out, \$w_err);
my $followers = start_pgbench($followers_script, 4, $load_seconds, \$f_out, \$f_err);
ok($writers->finish, 'load: the writers ran without an error')
  or diag "pgbench (writers): $w_out\n$w_err";
ok($followers->finish, 'load: the followers ran without an error')
  or diag "pgbench (followers): $f_out\n$f_err";
my ($transactions) = $w_out =~ /number of transactions actually processed: (\d+)/;
my ($pages) = $f_out =~ /number of transactions actually processed: (\d+)/;
my $received_under_load = sql('SELECT count(*) FROM es_o.received');
note sprintf('load: %s writer transactions, %s follower pages, %d events received by the four followers in %d s',
	$transactions // '?', $pages // '?', $received_under_load, $load_seconds);
cmp_ok($received_under_load, '>', 0, 'load: the followers received events during the load');

# --- Drain ------------------------------------------------------------------

# Every event below the read horizon, then each receiver reads until it
# gets nothing more and the projection's checkpoint is the log's last event.
drain_followers('SELECT es_o.consume(%d, 1000)', [ 0 .. 3 ], 'order');

# --- What the load had ------------------------------------------------------

# Events keyed above their own transaction's id (this cluster's offset
# added; a fresh cluster, so xmin's epoch is 0), events sorting after a
# higher position, transactions committed after a younger one, positions
# burned by rollbacks.
my ($events, $streams, $raised, $inverted, $late, $burned, $rollbacks) = split /\|/, sql(q{
	WITH o AS (SELECT xid_offset FROM eventstore.log_incarnations
	           WHERE system_identifier = (SELECT system_identifier FROM pg_control_system())),
	     t AS (SELECT DISTINCT xmin::text::bigint AS x,
	                  pg_xact_commit_timestamp(xmin) AS at
	           FROM eventstore.events),
	     c AS (SELECT at, min(at) OVER (ORDER BY x DESC ROWS BETWEEN UNBOUNDED PRECEDING
	                                                 AND 1 PRECEDING) AS younger
	           FROM t),
	     p AS (SELECT global_position AS pos,
	                  lag(global_position) OVER (ORDER BY transaction_id, global_position) AS prev
	           FROM eventstore.events)
	SELECT format('%s|%s|%s|%s|%s|%s|%s',
	  (SELECT count(*) FROM eventstore.events),
	  (SELECT count(DISTINCT stream_id) FROM eventstore.events),
	  (SELECT count(*) FROM eventstore.events, o
	   WHERE transaction_id::text::numeric > xmin::text::numeric + o.xid_offset),
	  (SELECT count(*) FROM p WHERE pos < prev),
	  (SELECT count(*) FROM c WHERE at > younger),
	  (SELECT max(global_position) - count(*) FROM eventstore.events),
	  (SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()))});
note "load: $events events in $streams streams; $raised keyed above their own transaction's id; "
  . "$inverted sort after a higher position; $late transactions committed after a younger one; "
  . "$burned positions burned; $rollbacks rollbacks in pg_stat_database";
cmp_ok($raised, '>', 0, "load: some events were keyed above their own transaction's id");
cmp_ok($inverted, '>', 0, 'load: log order is not position order');
cmp_ok($late, '>', 0, 'load: some transactions committed after younger ones');
cmp_ok($burned, '>', 0, 'load: rollbacks burned positions');

# --- Each receiver: its part of the log, in order, once ---------------------

# What a receiver got (n: the order received) and its part of the log.
my $got_and_part = q{
	WITH got AS (SELECT receiver, n, pos, stream_id, revision FROM es_o.received
	             UNION ALL
	             SELECT 'projection', n, pos, stream_id, revision FROM es_o.applied),
	     part AS (SELECT c.receiver, e.global_position AS pos, e.transaction_id
	              FROM (SELECT receiver, member, size FROM es_o.receivers
	                    UNION ALL SELECT 'projection', NULL, NULL) c
	              JOIN eventstore.events e
	                ON c.size IS NULL
	                   OR eventstore.stream_partition(e.stream_id, c.size) = c.member)
};
for my $r (@receivers)
{
	my ($received, $missed, $doubled, $out_of_order) =
	  receiver_faults($got_and_part, $r);
	note "$r: $received events received";
	is($missed, 0, "$r: no committed event of its part missed");
	is($doubled, 0, "$r: no event received twice");
	is($out_of_order, 0, "$r: no event received after a later revision of its stream");
	my ($got, $want) = split /\|/, sql(qq{
		$got_and_part
		SELECT format('%s|%s',
		  (SELECT string_agg(pos::text, ',' ORDER BY n) FROM got WHERE receiver = '$r'),
		  (SELECT string_agg(pos::text, ',' ORDER BY transaction_id, pos)
		   FROM part WHERE receiver = '$r'))});
	is($got, $want, "$r: received exactly its part of the log, in log order");
}

# The members' parts: disjoint, and the whole log together.
is( sql(q{
		SELECT format('%s|%s', count(*), count(DISTINCT pos)) FROM es_o.received
		WHERE receiver <> 'all'}),
	"$events|$events",
	'group: the three members received every event of the log once between them');

note_time_taken();
done_testing();
