# projection_status's lag and rebuild progress stay right across a block of
# positions (SPEC section 3, projection_status; README "The log's own
# clock"): a restored copy's first append starts its positions at the next
# multiple of 2^40, so a difference of positions would count the gap.
#
# Set-up: 15,000 events (more than the 10,000 log entries past a checkpoint
# that projection_status counts exactly), two async projections, one on
# every type, one on a type a third of the events have; dumped (pg_dump)
# and restored with psql into a second database of the same cluster, where
# 15,000 more events are appended: their positions start at 2^40.
#
# Claims proven here (on the restored database):
# - The new events are in the block at 2^40 (log_incarnations: 'restored').
# - A projection whose checkpoint is before the block and whose backlog
#   spans it shows lag_events estimated (lag_exact false) at the exact
#   count, for every type; within 5% of it for the one type (estimated
#   from the share of its type in the entries counted).
# - Once run to 100 events short of the head, in the new block: exact, 100.
# - Caught up: 0, exact.
# - A projection created on the restored log is rebuilding; run for a third
#   of the log, its rebuild_progress is a third (within 1%), with a time
#   left; run to the end it is active and shows no progress.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventstoreTest;

my $node = start_node('status_blocks', q(
pg_eventstore.databases = ''
));

# 15,000 events in 1,500 streams, every third of type B.
my $load = q{
	SELECT count(eventstore.append_to_stream('s' || s,
		(SELECT jsonb_agg(jsonb_build_object(
			'type', CASE WHEN (s * 10 + i) % 3 = 0 THEN 'B' ELSE 'A' END, 'data', '{}'::jsonb))
		 FROM generate_series(1, 10) i)))
	FROM generate_series(1, 1500) s};

sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE FUNCTION public.noop(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
	SELECT eventstore.create_projection('every', 'public.noop');
	SELECT eventstore.create_projection('some', 'public.noop', ARRAY['B']);
});
sql($load);
sql(q{SELECT eventstore.run_projection('every', max_events => 1000)});
sql(q{SELECT eventstore.run_projection('some', max_events => 300)});

my $dump = $node->basedir . '/status.sql';
$node->command_ok([ 'pg_dump', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump');
sql('CREATE DATABASE restored');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dump,
		'-d', $node->connstr('restored') ], 'restored with psql');
sql_in('restored', $load);

is(sql_in('restored', q{
	SELECT string_agg(reason || ' ' || (first_position = 2 ^ 40)::text, ', ' ORDER BY first_position)
	FROM eventstore.log_incarnations}),
	'first write false, restored true', 'the new events start a block at 2^40');
is(sql_in('restored', q{SELECT min(global_position) = 2 ^ 40 FROM eventstore.events WHERE global_position > 15000}),
	't', '... their positions are there');

# name: lag_events, lag_exact, and the exact count
my $lag = q{
	SELECT s.lag_events, s.lag_exact,
		   (SELECT count(*) FROM eventstore.events e
			WHERE (e.transaction_id, e.global_position) > (p.transaction_id, p."position")
			  AND (p.event_types IS NULL OR e.event_type = ANY (p.event_types)))
	FROM eventstore.projection_status s JOIN eventstore.projections p USING (name, version)
	WHERE s.name = '%s'};
my ($est, $exact_flag, $exact) = split /\|/, sql_in('restored', sprintf($lag, 'every'));
is("$est $exact_flag", "$exact f", "every type, backlog across the block: the estimate is the count ($exact)");
($est, $exact_flag, $exact) = split /\|/, sql_in('restored', sprintf($lag, 'some'));
is($exact_flag, 'f', 'one type: estimated');
ok(abs($est - $exact) <= 0.05 * $exact, "... within 5% of the count ($est for $exact)");

my $rest = sql_in('restored', q{SELECT count(*) - 1000 - 100 FROM eventstore.events});
sql_in('restored', qq{SELECT eventstore.run_projection('every', max_events => $rest)});
is(sql_in('restored', q{SELECT lag_events || ' ' || lag_exact FROM eventstore.projection_status WHERE name = 'every'}),
	'100 true', '100 short of the head: exact');
sql_in('restored', q{SELECT eventstore.run_projection('every')});
is(sql_in('restored', q{SELECT lag_events || ' ' || lag_exact || ' ' || lag_seconds FROM eventstore.projection_status WHERE name = 'every'}),
	'0 true 0', 'caught up: 0, exact');

sql_in('restored', q{
	SELECT eventstore.create_projection('fresh', 'public.noop');
	SELECT eventstore.run_projection('fresh', max_events => 10000)});
my ($status, $progress, $left) = split /\|/, sql_in('restored', q{
	SELECT status, rebuild_progress, rebuild_time_left IS NOT NULL
	FROM eventstore.projection_status WHERE name = 'fresh'});
is($status, 'rebuilding', 'a projection created on the restored log rebuilds');
ok(abs($progress - 1 / 3) <= 0.01, "... a third of the way after a third of the log ($progress)");
is($left, 't', '... with a time left');
sql_in('restored', q{SELECT eventstore.run_projection('fresh')});
is(sql_in('restored', q{
	SELECT status || ' ' || COALESCE(rebuild_progress::text, 'none') || ' ' || COALESCE(rebuild_time_left::text, 'none')
	FROM eventstore.projection_status WHERE name = 'fresh'}),
	'active none none', 'run to the end: active, no progress shown');

done_testing();
