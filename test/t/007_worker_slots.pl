# Worker slots shared fairly: when max_worker_processes is too small for
# every worker pg_eventstore.max_workers asks for, every served database
# gets a worker before any gets a second.
#
# Set-up: max_worker_processes = 3 with no logical replication or parallel
# workers, so the launcher takes one slot and two are left for workers;
# pg_eventstore.max_workers = 4 over two databases wants two each.
#
# Claims proven here:
# - With one database served, it takes both free slots, and the launcher
#   warns that it could not start the other two workers.
# - After a reload adds a second database, the two slots go one to each
#   database (not both to the first), and stay so; an async projection in
#   the second database is applied by its only worker, although the
#   launcher gave that projection (projection_id 1 of two workers) to the
#   second worker, which could not start: a worker's share is worked out
#   from the workers running.
# - After a restart with both databases served from the start, again one
#   worker each.
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventstoreTest;

my $node = start_node('slots', q(
max_worker_processes = 3
max_logical_replication_workers = 0
max_parallel_workers = 0
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 4
pg_eventstore.poll_interval = '1s'
pg_eventstore.retry_interval = '200ms'
));

# How many workers each database has, as "postgres=N second=M".
my $per_database = q{
	SELECT format('postgres=%s second=%s',
	  count(*) FILTER (WHERE datname = 'postgres'),
	  count(*) FILTER (WHERE datname = 'second'))
	FROM pg_stat_activity WHERE backend_type = 'pg_eventstore worker'};

ok($node->poll_query_until('postgres', $per_database, 'postgres=2 second=0'),
	'one served database takes both free worker slots');
ok($node->wait_for_log(qr/could not start a pg_eventstore worker for database "postgres"/),
	'the launcher warns about the workers it could not start');

sql('CREATE DATABASE second');
sql_in('second', q{
	CREATE EXTENSION pg_eventstore;
	CREATE TABLE counted (n bigint NOT NULL);
	INSERT INTO counted VALUES (0);
	CREATE FUNCTION count_event(e eventstore.events) RETURNS void
	LANGUAGE sql AS $$ UPDATE public.counted SET n = n + 1 $$;
	SELECT eventstore.create_projection('counter', 'count_event'::regproc);
});

sql(q{ALTER SYSTEM SET pg_eventstore.databases = 'postgres, second'});
sql('SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', $per_database, 'postgres=1 second=1'),
	'reload: a second database gets one of the two slots, not none');

sql_in('second', q{SELECT eventstore.append_event('s-' || i, 'Counted', '{}')
                   FROM generate_series(1, 25) i});
ok($node->poll_query_until('second', 'SELECT n FROM counted', '25'),
	'reload: the second database\'s worker applies its projection');
# the launcher keeps retrying the second members (retry_interval), and
# they never win a slot from a database's first worker
my $offset = -s $node->logfile;
ok($node->wait_for_log(qr/could not start a pg_eventstore worker for database "second"/,
		$offset),
	'reload: the launcher retried a second worker for the second database');
is(sql($per_database), 'postgres=1 second=1',
	'reload: still one worker each after the launcher retried');

$node->restart;
ok($node->poll_query_until('postgres', $per_database, 'postgres=1 second=1'),
	'restart: both databases served from the start get one worker each');

$node->stop;
done_testing();
