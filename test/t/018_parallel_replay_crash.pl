# A replay split in stream-hash partitions (parallel => 2), driven by the
# workers, across a crash of one partition's worker.
#
# Claims proven here (the read model logs every application of an event,
# so a lost or a doubled event shows against eventstore.events; a second,
# order-sensitive read model, a hash chain per stream, shows a stream
# applied out of order):
# - Two workers apply the two partitions of one projection's replay at
#   once: both are inside its handler, each holding one partition's lock.
# - One of them killed with SIGKILL in the middle of its batch makes the
#   server restart every process; the new workers resume every partition
#   from its checkpoint, join them at the head and activate the projection:
#   nothing lost, nothing doubled, and the read model identical to the one
#   a parallel => 1 replay of the same randomized log builds.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use EventstoreTest;

my $node = start_node('parallel_crash', q(
restart_after_crash = on
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 2
pg_eventstore.batch_size = 50
pg_eventstore.poll_interval = '200ms'
pg_eventstore.retry_interval = '200ms'
));

sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE SCHEMA es_w;
	CREATE TABLE es_w.knobs (projection text PRIMARY KEY, delay float8 NOT NULL);
	CREATE TABLE es_w.applied (projection text NOT NULL, global_position bigint NOT NULL);
	CREATE TABLE es_w.chain_ref (stream_id text PRIMARY KEY, chain text NOT NULL, n integer NOT NULL);
	CREATE TABLE es_w.chain_par (LIKE es_w.chain_ref INCLUDING ALL);
	-- sleeps es_w.knobs.delay seconds per event (a kill lands inside a
	-- batch), logs the event and chains it onto its stream's hash
	CREATE FUNCTION es_w.apply(name text, model regclass, e eventstore.events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep(delay) FROM es_w.knobs WHERE projection = name;
		INSERT INTO es_w.applied VALUES (name, e.global_position);
		EXECUTE format($q$INSERT INTO %s AS m VALUES ($1, md5($2), 1)
			ON CONFLICT (stream_id) DO UPDATE SET chain = md5(m.chain || $2), n = m.n + 1$q$, model)
		USING e.stream_id, e.revision || e.data::text;
	END $$;
	CREATE FUNCTION es_w.h_ref(e eventstore.events) RETURNS void
	LANGUAGE sql AS $$ SELECT es_w.apply('ref', 'es_w.chain_ref', e) $$;
	CREATE FUNCTION es_w.h_par(e eventstore.events) RETURNS void
	LANGUAGE sql AS $$ SELECT es_w.apply('par', 'es_w.chain_par', e) $$;
	INSERT INTO es_w.knobs VALUES ('ref', 0), ('par', 0.003);
	-- a randomized log: 2,000 events over 200 streams, in transactions of
	-- 1 to 4 events
	SELECT setseed(0.18);
	DO $d$
	BEGIN
		FOR i IN 1 .. 800 LOOP
			PERFORM eventstore.append_event('s-' || (random() * 199)::int, 'A',
											jsonb_build_object('i', i, 'j', g))
			FROM generate_series(1, 1 + (random() * 3)::int) g;
		END LOOP;
	END $d$;
});
ok($node->poll_query_until('postgres',
		q(SELECT count(*) = 2 FROM pg_stat_activity
		  WHERE backend_type = 'pg_eventstore worker')),
	'startup: two workers');
my $total = sql('SELECT count(*) FROM eventstore.events');
note "the log holds $total events";

sql(q(SELECT eventstore.create_projection('ref', 'es_w.h_ref')));
ok($node->poll_query_until('postgres',
		q(SELECT status = 'active' FROM eventstore.projection_status WHERE name = 'ref')),
	'the parallel => 1 replay is done');

sql(q(SELECT eventstore.create_projection('par', 'es_w.h_par', parallel => 2)));
is(sql(q(SELECT format('%s %s/%s', status, partitions_done, partitions)
         FROM eventstore.projection_status WHERE name = 'par')),
	'rebuilding 0/2', 'the replay is split in two partitions');

# Both workers inside the handler at once, each holding a partition's lock;
# the pid of one of them, from the very query that saw it so.
my $pid = '';
{
	my $query = q(
		SELECT min(a.pid) FROM pg_stat_activity a
		WHERE a.backend_type = 'pg_eventstore worker' AND a.wait_event = 'PgSleep'
		  AND a.query = 'pg_eventstore: rebuilding projection par version 1'
		  AND (SELECT count(*) FROM es_w.applied WHERE projection = 'par') >= 200
		HAVING count(*) = 2
		   AND (SELECT count(DISTINCT l.pid) FROM pg_locks l
				WHERE l.locktype = 'advisory' AND l.objsubid = 20560 AND l.granted
				  AND l.pid IN (SELECT pid FROM pg_stat_activity
								WHERE backend_type = 'pg_eventstore worker')) = 2);
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while ($pid eq '' && time < $deadline)
	{
		$pid = sql($query);
		usleep(20_000) if $pid eq '';
	}
}
isnt($pid, '', 'two workers apply the two partitions at once, each under its partition lock');

my $at_kill = sql(q(SELECT count(*) FROM es_w.applied WHERE projection = 'par'));
note "killing worker $pid with $at_kill events committed";
cmp_ok($at_kill, '<', $total, 'the kill comes before the end of the replay');
my $offset = crash_and_wait($pid);
ok($node->log_contains(
		qr/background worker "pg_eventstore worker[^"]*" \(PID $pid\) was terminated by signal 9/,
		$offset),
	'the server restarted because the worker was killed');
is(sql(q(SELECT format('%s %s', status, partitions)
         FROM eventstore.projection_status WHERE name = 'par')),
	'rebuilding 2', 'after the restart the replay is still split');

sql(q(UPDATE es_w.knobs SET delay = 0 WHERE projection = 'par'));
ok($node->poll_query_until('postgres',
		q(SELECT status = 'active' AND partitions IS NULL AND checkpoint = head
		  FROM eventstore.projection_status WHERE name = 'par')),
	'the workers resume the partitions, join them and activate the projection');
is(sql(read_model_check('par', q(ARRAY['A']))), 'lost=0 doubled=0 extra=0',
	'nothing lost, nothing doubled');
is(sql(q(SELECT identical FROM eventstore.compare_read_models('es_w.chain_ref', 'es_w.chain_par'))),
	't', "the read model is the parallel => 1 replay's");
is(sql(q(SELECT events_applied FROM eventstore.projection_status WHERE name = 'par')),
	$total, 'events_applied counts each event once');

note_time_taken();
done_testing();
