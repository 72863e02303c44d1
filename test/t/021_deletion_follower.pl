# Followers of the log through stream deletions and redactions under a
# random concurrent load: each misses and doubles nothing of what remains.
#
# Claims proven here (every list is compared in full, in order):
# - For 15 s, three writers run random transactions over 1,000 streams
#   (appends to two streams in one transaction, batches, late commits,
#   rollbacks) while a deleter, every 40 ms or so, soft-deletes,
#   hard-deletes (with or without the stream's revision as the expected
#   one) or redacts a random stream that exists, or hard-deletes the stream
#   of the event a follower received last.  An append to a stream
#   deleted for good is refused (SE014) and counted; appends to a
#   soft-deleted stream re-create it.
# - Meanwhile a read_all follower ("all") and the two members of a
#   consumer group ("2:0", "2:1"), each calling read_all again and again
#   from the position of the last event it received (also when a deletion
#   has removed that event meanwhile: counted, and must happen) and
#   committing each page, log every event they get; the background worker
#   applies an async projection whose handler logs every event it applies
#   ("projection").
# - Once the load has stopped and everything is drained, for each of them:
#   0 events that remain in its part of the log never received (missed), 0
#   received twice (doubled), 0 received after a later revision of the same
#   stream; and what it received, in the order received, is in log order
#   (each event's place (transaction_id, global_position), in the log or,
#   for the removed ones, in removed_log_places), and is exactly its part
#   of the log as it now is once the events removed after it received them
#   are left out.
# - The log as it now is: no event of a hard-deleted stream remains, every
#   removed event's place is kept (as many as maintenance_log counts
#   removed), read_stream of every soft-deleted stream returns only its
#   revisions after the tombstone, and redacted events keep their place.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default; the
# figures are noted, and each kind of operation must have happened.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventstoreTest;

# How long the writers, the deleter and the followers run, in seconds.
my $load_seconds = 15;

my $node = start_node('deletion', q(
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 1
pg_eventstore.batch_size = 25
pg_eventstore.poll_interval = '200ms'
pg_eventstore.retry_interval = '200ms'
));

# The receivers and what they got (from_removed: the cursor the read
# resumed from named an event the log no longer had), the projection's
# log, and what the writers and the deleter did.
sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE SCHEMA es_d;
	CREATE TABLE es_d.receivers (id int PRIMARY KEY, receiver text NOT NULL UNIQUE,
	                             member int, size int);
	INSERT INTO es_d.receivers VALUES (0, 'all', NULL, NULL), (1, '2:0', 0, 2), (2, '2:1', 1, 2);
	CREATE TABLE es_d.received (n bigserial PRIMARY KEY, receiver text NOT NULL,
	                            pos bigint NOT NULL, stream_id text NOT NULL,
	                            revision bigint NOT NULL, from_removed boolean NOT NULL);
	CREATE TABLE es_d.applied (n bigserial PRIMARY KEY, pos bigint NOT NULL,
	                           stream_id text NOT NULL, revision bigint NOT NULL);
	CREATE TABLE es_d.refused (sqlstate text NOT NULL);
	CREATE FUNCTION es_d.consume(id int, max_count int) RETURNS bigint
	LANGUAGE plpgsql AS $$
	DECLARE
		r es_d.receivers;
		cursor bigint;
		got bigint;
	BEGIN
		SELECT * INTO r FROM es_d.receivers c WHERE c.id = consume.id;
		SELECT x.pos INTO cursor FROM es_d.received x
		WHERE x.receiver = r.receiver ORDER BY x.n DESC LIMIT 1;
		INSERT INTO es_d.received (receiver, pos, stream_id, revision, from_removed)
		SELECT r.receiver, e.global_position, e.stream_id, e.revision,
		       cursor IS NOT NULL
		       AND NOT EXISTS (SELECT FROM eventstore.events l WHERE l.global_position = cursor)
		FROM eventstore.read_all(cursor, max_count, NULL, r.member, r.size) WITH ORDINALITY AS e
		ORDER BY e.ordinality;
		GET DIAGNOSTICS got = ROW_COUNT;
		RETURN got;
	END $$;
	CREATE FUNCTION es_d.apply(e eventstore.events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO es_d.applied (pos, stream_id, revision)
		VALUES (e.global_position, e.stream_id, e.revision);
	END $$;
	SELECT eventstore.create_projection('deletion', 'es_d.apply');
	-- an append that a deletion refused is counted, not an error of the load
	CREATE FUNCTION es_d.append(s text, n int) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM eventstore.append_to_stream(s,
			(SELECT jsonb_agg(jsonb_build_object('type', 'Added', 'data', jsonb_build_object('email', s || '@example.com')))
			 FROM generate_series(1, n)));
	EXCEPTION WHEN SQLSTATE 'SE014' THEN
		INSERT INTO es_d.refused VALUES (SQLSTATE);
	END $$;
	-- one maintenance call on a random stream that exists, or (kind 10) on
	-- the stream of the event a follower received last: where its cursor is
	CREATE FUNCTION es_d.remove(kind int) RETURNS void
	LANGUAGE plpgsql AS $$
	DECLARE
		s text;
	BEGIN
		IF kind = 10 THEN
			SELECT stream_id INTO s FROM es_d.received ORDER BY n DESC LIMIT 1;
		ELSE
			SELECT stream_id INTO s FROM eventstore.streams WHERE hard_deleted IS NOT TRUE
			ORDER BY random() LIMIT 1;
		END IF;
		IF s IS NULL THEN
			RETURN;
		END IF;
		IF kind <= 3 THEN
			PERFORM eventstore.delete_stream(s);
		ELSIF kind <= 6 OR kind = 10 THEN
			PERFORM eventstore.delete_stream(s, true);
		ELSIF kind = 7 THEN
			PERFORM eventstore.delete_stream(s, true, eventstore.stream_revision(s));
		ELSIF kind <= 9 THEN
			PERFORM eventstore.redact_events(s, '{email}', 'load');
		END IF;
	EXCEPTION WHEN SQLSTATE 'SE001' THEN
		-- an append got in between the revision read and the deletion
		INSERT INTO es_d.refused VALUES (SQLSTATE);
	END $$;
});
my @receivers = ('all', '2:0', '2:1', 'projection');

# --- The load ---------------------------------------------------------------

# Of the writers' transactions, 30% append to two streams (in ascending
# order: no deadlock; a nap between), 20% append a batch of three, 10%
# append and nap before committing, 40% append one event; 10% of them all
# roll back.
my $writers_script = $node->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file($writers_script, <<'EOF');
\set a random(1, 1000)
\set b random(1, 1000)
\set kind random(1, 10)
\set rb random(1, 10)
BEGIN;
\if :kind <= 3
SELECT es_d.append('s-' || least(:a, :b), 1);
SELECT pg_sleep(random() * 0.01);
SELECT es_d.append('s-' || greatest(:a, :b), 1);
\elif :kind <= 5
SELECT es_d.append('s-' || :a, 3);
\elif :kind = 6
SELECT es_d.append('s-' || :a, 1);
SELECT pg_sleep(random() * 0.02);
\else
SELECT es_d.append('s-' || :a, 1);
\endif
\if :rb = 1
ROLLBACK;
\else
COMMIT;
\endif
EOF

# The deleter: 30% soft deletions, 50% hard ones (one in five with the
# expected revision, one in five of the stream a follower's cursor is in),
# 20% redactions of the key email.
my $deleter_script = $node->basedir . '/deleter.sql';
PostgreSQL::Test::Utils::append_to_file($deleter_script, <<'EOF');
\set kind random(1, 10)
SELECT es_d.remove(:kind);
\sleep 40 ms
EOF

# Each follower client is one receiver (pgbench's client_id 0 .. 2), paging
# by 20 with a short nap between pages; each page commits.
my $followers_script = $node->basedir . '/followers.sql';
PostgreSQL::Test::Utils::append_to_file($followers_script, <<'EOF');
SELECT es_d.consume(:client_id, 20);
\sleep 5 ms
EOF

my ($w_out, $w_err, $d_out, $d_err, $f_out, $f_err) = ('', '', '', '', '', '');
my $writers = start_pgbench($writers_script, 3, $load_seconds, \$w_out, \$w_err);
my $deleter = start_pgbench($deleter_script, 1, $load_seconds, \$d_out, \$d_err);
my $followers = start_pgbench($followers_script, 3, $load_seconds, \$f_out, \$f_err);
ok($writers->finish, 'load: the writers ran without an error')
  or diag "pgbench (writers): $w_out\n$w_err";
ok($deleter->finish, 'load: the deleter ran without an error')
  or diag "pgbench (deleter): $d_out\n$d_err";
ok($followers->finish, 'load: the followers ran without an error')
  or diag "pgbench (followers): $f_out\n$f_err";
my ($transactions) = $w_out =~ /number of transactions actually processed: (\d+)/;
my ($pages) = $f_out =~ /number of transactions actually processed: (\d+)/;
note sprintf('load: %s writer transactions, %s follower pages, %s events received during the load',
	$transactions // '?', $pages // '?', sql('SELECT count(*) FROM es_d.received'));

# --- Drain ------------------------------------------------------------------

drain_followers('SELECT es_d.consume(%d, 1000)', [ 0 .. 2 ], 'deletion');

# --- What the load had ------------------------------------------------------

my ($events, $soft, $hard, $redactions, $removed, $refused, $from_removed,
	$received_removed) = split /\|/, sql(q{
	SELECT format('%s|%s|%s|%s|%s|%s|%s|%s',
	  (SELECT count(*) FROM eventstore.events),
	  (SELECT count(*) FROM eventstore.maintenance_log
	   WHERE action = 'delete_stream' AND NOT (details->>'hard')::boolean AND events > 0),
	  (SELECT count(*) FROM eventstore.maintenance_log
	   WHERE action = 'delete_stream' AND (details->>'hard')::boolean AND events > 0),
	  (SELECT count(*) FROM eventstore.maintenance_log WHERE action = 'redact_events' AND events > 0),
	  (SELECT count(*) FROM eventstore.removed_log_places),
	  (SELECT count(*) FROM es_d.refused WHERE sqlstate = 'SE014'),
	  (SELECT count(DISTINCT (receiver, pos)) FROM es_d.received WHERE from_removed),
	  (SELECT count(*) FROM es_d.received r
	   WHERE NOT EXISTS (SELECT FROM eventstore.events e WHERE e.global_position = r.pos)))});
note "load: $events events remain; $soft soft deletions, $hard hard ones, $redactions redactions; "
  . "$removed events removed; $refused appends refused (SE014); reads resumed from a removed "
  . "event's position by $from_removed cursors; $received_removed events received then removed";
cmp_ok($soft, '>', 0, 'load: streams were soft-deleted');
cmp_ok($hard, '>', 0, 'load: streams were hard-deleted');
cmp_ok($redactions, '>', 0, 'load: streams were redacted');
cmp_ok($refused, '>', 0, 'load: appends to hard-deleted streams were refused');
cmp_ok($from_removed, '>', 0, "load: followers resumed from a removed event's position");
cmp_ok($received_removed, '>', 0, 'load: followers received events that were removed later');

# --- The log as it now is ---------------------------------------------------

is( sql(q{
		SELECT count(*) FROM eventstore.events e
		JOIN eventstore.streams s USING (stream_id) WHERE s.hard_deleted}),
	'0', 'log: no event of a hard-deleted stream remains');
is( sql(q{
		SELECT format('%s|%s', (SELECT count(*) FROM eventstore.removed_log_places),
		  (SELECT sum(events) FROM eventstore.maintenance_log
		   WHERE action = 'delete_stream' AND (details->>'hard')::boolean))}),
	"$removed|$removed", "log: every removed event's place is kept, as many as maintenance_log counts");
is( sql(q{
		SELECT count(*) FROM eventstore.removed_log_places p
		JOIN eventstore.events e USING (global_position)}),
	'0', 'log: no kept place is an event still in the log');
is( sql(q{
		SELECT count(*) FROM eventstore.streams s,
		     LATERAL eventstore.read_stream(s.stream_id) r
		WHERE s.deleted_revision IS NOT NULL AND r.revision <= s.deleted_revision}),
	'0', 'log: read_stream of a soft-deleted stream returns only its revisions after the tombstone');
is( sql(q{
		SELECT count(*) FROM eventstore.streams s
		WHERE s.hard_deleted IS NOT TRUE
		  AND (SELECT count(*) FROM eventstore.read_stream(s.stream_id))
		      <> s.revision - COALESCE(s.deleted_revision, -1)}),
	'0', 'log: read_stream returns every revision after the tombstone, no holes');

# --- Each receiver: what remains of its part, in order, once ----------------

# What a receiver got (n: the order received), each event's place in log
# order (in the log, or kept for a removed one), and its part of the log.
my $got_and_part = q{
	WITH got AS (SELECT receiver, n, pos, stream_id, revision FROM es_d.received
	             UNION ALL
	             SELECT 'projection', n, pos, stream_id, revision FROM es_d.applied),
	     place AS (SELECT global_position AS pos, transaction_id FROM eventstore.events
	               UNION ALL
	               SELECT global_position, transaction_id FROM eventstore.removed_log_places),
	     part AS (SELECT c.receiver, e.global_position AS pos, e.transaction_id
	              FROM (SELECT receiver, member, size FROM es_d.receivers
	                    UNION ALL SELECT 'projection', NULL, NULL) c
	              JOIN eventstore.events e
	                ON c.size IS NULL
	                   OR eventstore.stream_partition(e.stream_id, c.size) = c.member)
};
for my $r (@receivers)
{
	my ($received, $missed, $doubled, $out_of_order) =
	  receiver_faults($got_and_part, $r);
	my $placeless = sql(qq{
		$got_and_part
		SELECT count(*) FROM got g WHERE g.receiver = '$r'
		  AND NOT EXISTS (SELECT FROM place p WHERE p.pos = g.pos)});
	note "$r: $received events received";
	is($missed, 0, "$r: no event that remains in its part missed");
	is($doubled, 0, "$r: no event received twice");
	is($out_of_order, 0, "$r: no event received after a later revision of its stream");
	is($placeless, 0, "$r: every event received has a place, in the log or kept");
	my ($got, $in_order, $remaining, $want) = split /\|/, sql(qq{
		$got_and_part
		SELECT format('%s|%s|%s|%s',
		  (SELECT string_agg(g.pos::text, ',' ORDER BY g.n) FROM got g WHERE g.receiver = '$r'),
		  (SELECT string_agg(g.pos::text, ',' ORDER BY p.transaction_id, p.pos)
		   FROM got g JOIN place p USING (pos) WHERE g.receiver = '$r'),
		  (SELECT string_agg(g.pos::text, ',' ORDER BY g.n)
		   FROM got g JOIN eventstore.events e ON e.global_position = g.pos
		   WHERE g.receiver = '$r'),
		  (SELECT string_agg(pos::text, ',' ORDER BY transaction_id, pos)
		   FROM part WHERE receiver = '$r'))});
	is($got, $in_order, "$r: received in log order, removed events at their places");
	is($remaining, $want,
		"$r: what remains of what it received is exactly its part of the log, in log order");
}

note_time_taken();
done_testing();
