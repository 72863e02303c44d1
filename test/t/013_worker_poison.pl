# A handler cannot put the worker in a crash loop.
#
# Claims proven here:
# - A handler that ends the worker's process, by an error it made FATAL
#   (exit_on_error) or by pg_terminate_backend of its own pid (as a crash
#   would), kills one worker, then its successor at the same checkpoint;
#   the next worker marks the projection failed with SE010, naming the
#   checkpoint, and applies nothing more of it; another projection served
#   by the same worker goes on, before and after, and equals the log.
# - A single death (kill -9 of a worker in a batch: 003_worker_crash.pl)
#   loses nothing: the projection resumes there.
# - The natural handler (unqualified names, its schema on the creator's
#   search_path) works from the worker.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventstoreTest;

my $node = start_node('poison', q(
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 1
pg_eventstore.poll_interval = '100ms'
pg_eventstore.retry_interval = '100ms'
));

sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE TABLE seen (projection text, global_position bigint);
	CREATE FUNCTION fatal_error(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM set_config('exit_on_error', 'on', false);
		RAISE EXCEPTION 'poison at %', e.global_position;
	END $$;
	CREATE FUNCTION terminate(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_terminate_backend(pg_backend_pid());
	END $$;
	CREATE FUNCTION record(e eventstore.events) RETURNS void LANGUAGE sql AS $$
		INSERT INTO public.seen VALUES ('ok', e.global_position)
	$$;
	SELECT eventstore.create_projection('p_ok', 'record');
	SELECT eventstore.create_projection('p_fatal', 'fatal_error', ARRAY['Fatal']);
	SELECT eventstore.create_projection('p_kill', 'terminate', ARRAY['Kill']);
});

my $ok_equals_log = q{
	SELECT (SELECT count(*) FROM seen WHERE projection = 'ok')
	     = (SELECT count(*) FROM eventstore.events)
	   AND (SELECT count(DISTINCT global_position) FROM seen WHERE projection = 'ok')
	     = (SELECT count(*) FROM eventstore.events)};

sql(q{SELECT eventstore.append_event('s', 'Fine', '{}')});
ok($node->poll_query_until('postgres', $ok_equals_log), 'p_ok applies the first event');
my $worker = workers('postgres');
like($worker, qr/^\d+$/, 'one worker');

# Handlers that end their worker's process, every time.
for my $case (['p_fatal', 'Fatal', 'an error made FATAL by exit_on_error'],
	['p_kill', 'Kill', 'pg_terminate_backend of its own worker'])
{
	my ($name, $type, $how) = @$case;
	my $log_offset = -s $node->logfile;
	sql(qq{SELECT eventstore.append_event('$name', '$type', '{}')});
	ok($node->poll_query_until('postgres',
			qq{SELECT status = 'failed' FROM eventstore.projection_status WHERE name = '$name'}),
		"$name ($how) fails after ending its workers");
	my $checkpoint = sql(qq{SELECT checkpoint FROM eventstore.projection_status WHERE name = '$name'});
	is(sql(qq{SELECT error_sqlstate || ': ' || last_error FROM eventstore.projections WHERE name = '$name'}),
		"SE010: 2 workers applying its batch after position $checkpoint ended "
		  . '(a FATAL error, a termination or a crash: see the server log)',
		"$name: SE010, naming the checkpoint");
	my $ended = () = slurp_file($node->logfile, $log_offset)
	  =~ /background worker "pg_eventstore worker" \(PID \d+\) exited with exit code 1/g;
	is($ended, 2, "$name: two workers ended, no more");
	isnt(workers('postgres'), $worker, "$name: a new worker serves the database");
	ok($node->poll_query_until('postgres', $ok_equals_log),
		"$name: p_ok was applied meanwhile and equals the log");
	$worker = workers('postgres');
}

# The other projection goes on.
sql(q{SELECT eventstore.append_event('s', 'Fine', '{}'),
             eventstore.append_event('p_kill', 'Kill', '{}'),
             eventstore.append_event('p_fatal', 'Fatal', '{}')});
ok($node->poll_query_until('postgres', $ok_equals_log),
	'p_ok carries on and equals the log');
my $stable = workers('postgres');
sql(q{SELECT eventstore.append_event('s', 'Fine', '{}')});
ok($node->poll_query_until('postgres', $ok_equals_log), 'and goes on');
is(workers('postgres'), $stable, 'no worker died since: the failed projection is left alone');
is(sql(q{SELECT string_agg(format('%s=%s', name, status), ',' ORDER BY name)
	FROM eventstore.projection_status}), 'p_fatal=failed,p_kill=failed,p_ok=active',
	'the failed projections stay failed');

# The natural handler, unqualified names resolved by its creator's
# search_path, works from the worker too (whose own search_path is the
# API's).
sql(q{
	CREATE SCHEMA shop;
	SET search_path = shop, public;
	CREATE TABLE cart_summary (cart_id text PRIMARY KEY, items integer NOT NULL);
	CREATE FUNCTION apply_cart(e eventstore.events) RETURNS void LANGUAGE sql AS $$
		INSERT INTO cart_summary VALUES (e.stream_id, 1)
		ON CONFLICT (cart_id) DO UPDATE SET items = cart_summary.items + 1
	$$;
	SELECT eventstore.create_projection('carts', 'apply_cart', ARRAY['ItemAdded']);
	RESET search_path;
	SELECT eventstore.append_event('cart-1', 'ItemAdded', '{}'),
	       eventstore.append_event('cart-1', 'ItemAdded', '{}');});
ok($node->poll_query_until('postgres',
		q{SELECT items = 2 FROM shop.cart_summary WHERE cart_id = 'cart-1'}),
	'the natural unqualified handler works from the worker');
is(sql(q{SELECT status FROM eventstore.projection_status WHERE name = 'carts'}), 'active',
	'and its projection stays active');

note_time_taken();
done_testing();
