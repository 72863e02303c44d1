# The background worker across crashes and immediate shutdowns, and the
# rebuild throttle.
#
# Claims proven here (each read model logs every application of an event,
# so a lost or a doubled event shows against eventstore.events):
# - A worker killed with SIGKILL in the middle of a batch of an async
#   projection (inside its handler, after earlier batches committed) makes
#   the server restart every process; the launcher comes back and starts
#   new workers, which resume from the checkpoint: the read model ends
#   equal to the set-based answer, nothing lost, nothing doubled.
# - The same for a worker killed in the middle of a rebuild of an inline
#   projection (on_reset run, events appended meanwhile recorded as skips):
#   after the restart the rebuild goes on, the projection turns active, the
#   skips are drained, and the read model is exact.
# - An immediate shutdown in the middle of a batch, then a start: the same.
# - rebuild_throttle = 200 (events per second) makes a worker's rebuild of
#   1000 events take at least ~4 s, and at any moment it has applied at
#   most 200 per second since it began plus a bucket of one second's worth;
#   with 0 (after a reload) the same rebuild goes in full batches, none cut
#   short by the throttle.  The times are noted; the bounds on them are
#   lower bounds or scale with the time measured, so a slow machine cannot
#   fail them.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use EventstoreTest;

my $node = start_node('worker_crash', q(
restart_after_crash = on
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 2
pg_eventstore.batch_size = 50
pg_eventstore.poll_interval = '200ms'   # the wake-up at commit is 002's concern
pg_eventstore.retry_interval = '200ms'
));

# A projection whose handler sleeps es_w.knobs.delay seconds per event (so
# that a kill lands inside a batch) and logs each event it applies.
sub logging_projection
{
	my ($name, $types, $mode) = @_;
	sql(qq{
		INSERT INTO es_w.knobs VALUES ('$name', 0);
		CREATE FUNCTION es_w.h_$name(e eventstore.events) RETURNS void
		LANGUAGE sql AS \$\$
			SELECT pg_sleep(delay) FROM es_w.knobs WHERE projection = '$name';
			INSERT INTO es_w.applied VALUES ('$name', e.global_position);
		\$\$;
		SELECT eventstore.create_projection('$name', 'es_w.h_$name', $types, '$mode',
			on_reset => \$r\$DELETE FROM es_w.applied WHERE projection = '$name'\$r\$);});
	return;
}

sub set_delay
{
	my ($name, $delay) = @_;
	sql("UPDATE es_w.knobs SET delay = $delay WHERE projection = '$name'");
	return;
}

# Wait until the projection is active, at the head, and its read model is
# the set-based answer.
sub converges
{
	my ($name, $types, $what) = @_;
	my $check = read_model_check($name, $types);
	$node->poll_query_until('postgres', qq(
		SELECT status = 'active' AND skips_pending = 0
		       AND ($check) = 'lost=0 doubled=0 extra=0'
		FROM eventstore.projection_status WHERE name = '$name'));
	is( sql(qq(SELECT format('%s|%s|', status, skips_pending) || ($check)
	           FROM eventstore.projection_status WHERE name = '$name')),
		'active|0|lost=0 doubled=0 extra=0', $what);
	return;
}

# Append n events of a type to a stream, in one transaction.
sub append
{
	my ($stream, $type, $n) = @_;
	sql(qq(SELECT eventstore.append_to_stream('$stream',
		(SELECT jsonb_agg(jsonb_build_object('type', '$type', 'data', jsonb_build_object('i', i)))
		 FROM generate_series(1, $n) i))));
	return;
}

# Wait until the worker is inside the handler of the projection (state
# active, in pg_sleep, doing what `doing` says) after at least `done` events
# committed; returns its pid.
sub worker_inside
{
	my ($name, $doing, $done) = @_;
	my $query = qq(
		SELECT pid FROM pg_stat_activity
		WHERE backend_type = 'pg_eventstore worker' AND state = 'active'
		  AND wait_event = 'PgSleep'
		  AND query = 'pg_eventstore: $doing projection $name version 1'
		  AND (SELECT count(*) FROM es_w.applied WHERE projection = '$name') >= $done);
	# the pid from the very query that saw it inside (a second look could
	# fall between two events)
	my $pid = '';
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while ($pid eq '' && time < $deadline)
	{
		$pid = sql($query);
		usleep(20_000) if $pid eq '';
	}
	isnt($pid, '', "$name: the worker is $doing, inside the handler, after $done events");
	return $pid;
}

# Kill a worker with SIGKILL and wait for the server to be back.
sub crash
{
	my ($pid, $what) = @_;
	my $offset = crash_and_wait($pid);
	ok( $node->log_contains(
			qr/background worker "pg_eventstore worker[^"]*" \(PID $pid\) was terminated by signal 9/,
			$offset),
		"$what: the server restarted because the worker was killed");
	return;
}

my $applied_count = sub {
	my ($name) = @_;
	return sql("SELECT count(*) FROM es_w.applied WHERE projection = '$name'");
};

sql(q(
	CREATE EXTENSION pg_eventstore;
	CREATE SCHEMA es_w;
	CREATE TABLE es_w.knobs (projection text PRIMARY KEY, delay float8 NOT NULL);
	CREATE TABLE es_w.applied (projection text NOT NULL,
	                           global_position bigint NOT NULL);));
ok($node->poll_query_until('postgres',
		q(SELECT count(*) = 2 FROM pg_stat_activity
		  WHERE backend_type = 'pg_eventstore worker')),
	'startup: two workers');

# --- SIGKILL in the middle of a batch -------------------------------------

logging_projection('slow', q(ARRAY['Item']), 'async');
set_delay('slow', 0.01);
append('cart-1', 'Item', 300);
{
	my $workers_before = workers();
	my $pid = worker_inside('slow', 'applying', 50);
	my $at_kill = $applied_count->('slow');
	note "slow: killing worker $pid with $at_kill events committed";
	cmp_ok($at_kill, '<', 300, 'slow: the kill comes before the last batch');
	crash($pid, 'batch');
	ok($node->poll_query_until('postgres',
			qq(SELECT count(*) = 2 AND bool_and(pid NOT IN ($workers_before))
			   FROM pg_stat_activity WHERE backend_type = 'pg_eventstore worker')),
		'batch: the launcher is back and starts two new workers');
	converges('slow', q(ARRAY['Item']),
		'batch: after the restart the read model has every event once');
	is(sql(q(SELECT checkpoint = head FROM eventstore.projection_status WHERE name = 'slow')),
		't', 'batch: the checkpoint is at the head');
}

# --- SIGKILL in the middle of a rebuild of an inline projection ----------

logging_projection('inl', q(ARRAY['Item']), 'inline');
# created over a non-empty log: the worker backfills it first
converges('inl', q(ARRAY['Item']), 'rebuild: the inline projection is backfilled');
append('cart-2', 'Item', 20);
is($applied_count->('inl'), '320', 'rebuild: and applies appends inline');
set_delay('inl', 0.01);
sql(q(SELECT eventstore.rebuild_projection('inl')));
{
	my $pid = worker_inside('inl', 'rebuilding', 50);
	# appended while it rebuilds: recorded as skips, to be drained
	append('cart-3', 'Item', 5);
	append('cart-4', 'Item', 5);
	is( sql(q(SELECT format('%s|%s', status, skips_pending)
	          FROM eventstore.projection_status WHERE name = 'inl')),
		'rebuilding|10', 'rebuild: appends meanwhile are recorded as skips');
	my $at_kill = $applied_count->('inl');
	note "inl: killing worker $pid with $at_kill events replayed";
	cmp_ok($at_kill, '<', 300, 'rebuild: the kill comes before the end of the replay');
	crash($pid, 'rebuild');
	is(sql(q(SELECT status FROM eventstore.projection_status WHERE name = 'inl')),
		'rebuilding', 'rebuild: the projection is still rebuilding after the restart');
	converges('inl', q(ARRAY['Item']),
		'rebuild: the rebuild goes on, drains the skips, and the read model is exact');
	is( sql(q(SELECT count(*) FROM eventstore.projection_skips s
	          JOIN eventstore.projections p USING (projection_id)
	          WHERE p.name = 'inl' AND s.drained_at IS NOT NULL)),
		'10', 'rebuild: the ten skips are drained');
	converges('slow', q(ARRAY['Item']), 'rebuild: the async projection is exact too');
}
set_delay('inl', 0);

# --- An immediate shutdown in the middle of a batch -----------------------

append('cart-5', 'Item', 200);
{
	my $pid = worker_inside('slow', 'applying', 350);
	my $at_stop = $applied_count->('slow');
	note "slow: immediate shutdown with $at_stop events committed";
	cmp_ok($at_stop, '<', 530, 'immediate: the shutdown comes before the last batch');
	$node->stop('immediate');
	$node->start;
	converges('slow', q(ARRAY['Item']),
		'immediate: after the start the read model has every event once');
	converges('inl', q(ARRAY['Item']), 'immediate: the inline projection is exact too');
}

# --- rebuild_throttle -------------------------------------------------------

sql(q(ALTER SYSTEM SET pg_eventstore.rebuild_throttle = 200; SELECT pg_reload_conf();));
ok($node->poll_query_until('postgres', 'SHOW pg_eventstore.rebuild_throttle', '200'),
	'throttle: rebuild_throttle = 200');
append('bulk', 'Bulk', 1000);
{
	my $t0 = time;
	# created over a non-empty log: a rebuild from the start
	logging_projection('thr', q(ARRAY['Bulk']), 'async');
	usleep(2_000_000);
	my $midway_at = time - $t0;
	my $midway = $applied_count->('thr');
	ok($node->poll_query_until('postgres',
			q(SELECT status = 'active' FROM eventstore.projection_status WHERE name = 'thr')),
		'throttle: the rebuild completes');
	my $took = time - $t0;
	note sprintf('throttle: 1000 events at 200/s took %.2f s, %d after %.2f s',
		$took, $midway, $midway_at);
	cmp_ok($took, '>=', 3.8, 'throttle: 1000 events at 200/s take at least ~4 s');
	# a bucket of 200, then 200 a second; a batch (50) of slack
	cmp_ok($midway, '<=', 200 + 200 * $midway_at + 50,
		'throttle: midway, at most 200 events a second since the start (and a bucket of 200)');
	converges('thr', q(ARRAY['Bulk']), 'throttle: the read model is exact');

	sql(q(ALTER SYSTEM SET pg_eventstore.rebuild_throttle = 0; SELECT pg_reload_conf();));
	usleep(200_000);
	$t0 = time;
	sql(q(SELECT eventstore.rebuild_projection('thr')));
	ok($node->poll_query_until('postgres',
			q(SELECT status = 'active' FROM eventstore.projection_status WHERE name = 'thr')),
		'throttle: unthrottled, the rebuild completes');
	$took = time - $t0;
	# each batch commits on its own: the transactions that wrote the rows
	my $batches = sql(q(SELECT count(DISTINCT xmin::text) FROM es_w.applied
		WHERE projection = 'thr'));
	note sprintf('throttle: 1000 events unthrottled took %.2f s in %d batches', $took, $batches);
	is($batches, '20',
		'throttle: unthrottled it goes in full batches (20 of 50), none cut short by the throttle');
	converges('thr', q(ARRAY['Bulk']), 'throttle: the read model is exact again');
}

$node->stop;
note_time_taken();
done_testing();
