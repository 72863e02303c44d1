# One slow projection does not starve the others served by the same worker:
# a worker applies one batch of each due projection per turn, so a quick
# projection waits for at most one batch of a slow one, never for its whole
# backlog.
#
# Set-up: one worker (max_workers = 1), batches of 20 events, a slow
# projection whose handler sleeps 20 ms per event with a backlog of 1,000
# events (20 s of work), and a quick projection.  An event for the quick
# projection appended meanwhile is applied after at most one slow batch,
# while the slow projection is still far from done.  The wait is counted in
# slow events applied between the append and the application, not in
# seconds (the time is noted: a few tenths of a second).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use EventstoreTest;

my $node = start_node('fairness', q(
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 1
pg_eventstore.batch_size = 20
pg_eventstore.poll_interval = '60s'
));

sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE SCHEMA fair;
	-- seq: the order in which the worker applied the events
	CREATE TABLE fair.applied (projection text NOT NULL, global_position bigint NOT NULL,
	                           seq bigserial);
	CREATE FUNCTION fair.slow(e eventstore.events) RETURNS void LANGUAGE sql AS $$
		SELECT pg_sleep(0.02);
		INSERT INTO fair.applied VALUES ('slow', e.global_position);
	$$;
	CREATE FUNCTION fair.quick(e eventstore.events) RETURNS void LANGUAGE sql AS $$
		INSERT INTO fair.applied VALUES ('quick', e.global_position);
	$$;
	SELECT eventstore.create_projection('slow', 'fair.slow', ARRAY['Slow']);
	SELECT eventstore.create_projection('quick', 'fair.quick', ARRAY['Quick']);
});
is(sql(q(SELECT string_agg(status, ',' ORDER BY name) FROM eventstore.projection_status)),
	'active,active', 'both projections start active over an empty log');

# The slow projection's backlog: 1,000 events, 20 s of handler time.
sql(q{SELECT count(eventstore.append_to_stream('slow-' || s,
	(SELECT jsonb_agg(jsonb_build_object('type', 'Slow')) FROM generate_series(1, 100))))
	FROM generate_series(1, 10) s});
ok($node->poll_query_until('postgres',
		q(SELECT count(*) > 0 FROM fair.applied WHERE projection = 'slow')),
	'the worker is working through the slow backlog');

my $t0 = time;
# the slow events applied by then, counted in the same session right after
# the append's commit
my (undef, $slow_at_append) = split /\n/, sql(q(
	SELECT last_position FROM eventstore.append_event('quick-1', 'Quick', '{}');
	SELECT count(*) FROM fair.applied WHERE projection = 'slow'));
ok($node->poll_query_until('postgres',
		q(SELECT count(*) = 1 FROM fair.applied WHERE projection = 'quick')),
	'the quick projection is applied');
my $took = time - $t0;
my $waited = sql(q(SELECT count(*) FROM fair.applied
	WHERE projection = 'slow'
	  AND seq < (SELECT seq FROM fair.applied WHERE projection = 'quick'))) - $slow_at_append;
note sprintf('quick event applied after %d slow events, %.2f s', $waited, $took);
cmp_ok($waited, '<=', 20,
	'after at most one of the slow batches (20 events), not after the backlog (1,000)');
cmp_ok(sql(q(SELECT count(*) FROM fair.applied WHERE projection = 'slow')), '<', 1000,
	'while the slow projection is still working through its backlog');
is(sql(q(SELECT count(DISTINCT pid) FROM pg_stat_activity
		 WHERE backend_type = 'pg_eventstore worker')), '1', 'with one worker');

$node->stop('immediate');
done_testing();
