# Push and metrics for outside consumers (SPEC section 9): the worker's
# NOTIFY eventstore_events with the readable head, and the example
# postgres_exporter queries in scripts/postgres_exporter.yml.
#
# Claims proven here:
# - A client that LISTENs on eventstore_events is notified after an
#   append, with the append's last position (the readable head) as
#   payload, long before the 1 h poll_interval: the append wakes the worker
#   at commit.
# - While a transaction that took its xid before the append still runs,
#   the append is not readable: no notification names it (checked after
#   the worker's turn that followed the append, and after a while of its
#   10 ms checks of the holder), eventstore_log_readable_position stays at
#   the previous head while eventstore_log_head_position has moved, and
#   eventstore_log_held_seconds is above 0.  When the holder commits (it
#   appended nothing, so nothing wakes the worker), a notification names
#   the append.
# - With pg_eventstore.notify off (reloaded) no notification comes after
#   an append; on again, the next append is notified.
# - A worker ended with SIGTERM is replaced by the launcher, and the
#   listener, still connected, is notified of the next append.
# - Every query of scripts/postgres_exporter.yml runs as a role granted
#   SELECT on eventstore.metrics only, returns the columns its entry lists
#   (labels as text, the values double precision, one row per projection
#   or processor), and each value column <entry>_<column> is a metric of
#   the view of the type the entry says (counter, gauge); together they
#   cover every metric the view has.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default; the
# waits for a notification that must not come last a second each.
use strict;
use warnings;
use CPAN::Meta::YAML;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use EventstoreTest;

my $node = start_node('push', q(
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 1
pg_eventstore.poll_interval = '1h'
pg_eventstore.retry_interval = '200ms'
pg_eventstore.notify = on
));
sql('CREATE EXTENSION pg_eventstore');
ok(poll_sql(q(SELECT count(*) = 1 FROM pg_stat_activity
			  WHERE backend_type = 'pg_eventstore worker')),
	'the worker runs');

my $listener = session();
# it lives through the whole test: each query gets its own timeout
$listener->set_query_timer_restart();
$listener->query_safe('LISTEN eventstore_events');
my @received;

# The payloads received since the last call, in order.
sub take_notifications
{
	my $out = $listener->query_safe('SELECT 1');
	my @new = $out =~ /Asynchronous notification "eventstore_events" with payload "(\d+)"/g;
	push @received, @new;
	return @new;
}

# Wait until a notification names $position (true), or $seconds pass
# (false; timeout_default when not given).
sub notified_of
{
	my ($position, $seconds) = @_;
	my $until = time + ($seconds // $PostgreSQL::Test::Utils::timeout_default);
	while (time < $until)
	{
		return 1 if grep { $_ eq $position } take_notifications();
		usleep(20_000);
	}
	return 0;
}

# The time now, on the server.
sub server_now
{
	return sql('SELECT clock_timestamp()');
}

# Wait until the worker has finished a turn after $since.
sub worker_turn_done
{
	my ($since) = @_;
	return poll_sql(qq(SELECT bool_and(state = 'idle' AND state_change > '$since')
					   FROM pg_stat_activity WHERE backend_type = 'pg_eventstore worker'));
}

sub append
{
	my ($stream) = @_;
	return sql("SELECT last_position FROM eventstore.append_event('$stream', 'Opened', '{}')");
}

sub metric
{
	my ($name) = @_;
	return sql("SELECT value FROM eventstore.metrics WHERE name = '$name'");
}

# 1. an append, notified
my $started = time;
my $first = append('s-1');
ok(notified_of($first), "a LISTENing client is notified of an append, with its position ($first)");
note sprintf('notified %.0f ms after the append returned (poll_interval 1 h)', (time - $started) * 1000);
my $second = sql(q(SELECT last_position FROM eventstore.append_to_stream('s-2',
	'[{"type": "Opened"}, {"type": "Added"}, {"type": "Added"}]')));
ok(notified_of($second), "a batch: its last position is the head ($second)");

# 2. held back by an older transaction
my $holder = session();
$holder->query_safe('BEGIN; SELECT pg_current_xact_id()');
my $since = server_now();
my $held = append('s-3');
ok(worker_turn_done($since), 'the worker had a turn after the append');
usleep(1_000_000);
take_notifications();
ok(!grep({ $_ eq $held } @received), 'no notification names an append that an older transaction holds back');
is(metric('eventstore_log_readable_position'), $second, 'the readable head stays where it was');
is(metric('eventstore_log_head_position'), $held, 'while the head of the log has moved');
ok(metric('eventstore_log_held_seconds') > 0, 'and eventstore_log_held_seconds says how long it is held');
is(sql("SELECT count(*) FROM eventstore.read_all($second)"), '0', '(read_all returns nothing after it either)');
$holder->query_safe('COMMIT');
ok(notified_of($held), "when the holder commits, having appended nothing, the append is notified ($held)");
is(metric('eventstore_log_held_seconds'), '0', 'and nothing is held');
$holder->quit;

# 3. off, then on again
$since = server_now();
sql(q(ALTER SYSTEM SET pg_eventstore.notify = off; SELECT pg_reload_conf()));
ok(poll_sql(q(SELECT setting = 'off' FROM pg_settings WHERE name = 'pg_eventstore.notify')), 'notify off');
ok(worker_turn_done($since), 'the worker had a turn after the reload');
my $quiet = append('s-4');
ok(!notified_of($quiet, 1), 'with pg_eventstore.notify off, no notification');
$since = server_now();
sql(q(ALTER SYSTEM SET pg_eventstore.notify = on; SELECT pg_reload_conf()));
ok(poll_sql(q(SELECT setting = 'on' FROM pg_settings WHERE name = 'pg_eventstore.notify')), 'notify on');
ok(worker_turn_done($since), 'the worker had a turn after the reload');
my $loud = append('s-4');
ok(notified_of($loud), "on again: the next append is notified ($loud)");

# 4. a new worker goes on
my $old = workers('postgres');
sql("SELECT pg_terminate_backend($old)");
ok(poll_sql(qq(SELECT count(*) = 1 FROM pg_stat_activity
			   WHERE backend_type = 'pg_eventstore worker' AND pid <> $old)),
	'the launcher replaces a worker ended with SIGTERM');
my $after = append('s-5');
ok(notified_of($after), "the new worker notifies the next append ($after)");
$listener->quit;

# 5. the postgres_exporter queries
my $file = 'scripts/postgres_exporter.yml';
my $yaml = CPAN::Meta::YAML->read($file) or die CPAN::Meta::YAML->errstr;
my $entries = $yaml->[0];
sql(q{
	CREATE ROLE exporter LOGIN;
	GRANT SELECT ON eventstore.metrics TO exporter;
	CREATE FUNCTION public.noop(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
	SELECT eventstore.create_projection('one', 'public.noop');
	SELECT eventstore.create_projection('two', 'public.noop', mode => 'inline');
	SELECT eventstore.store_checkpoint('mailer', 1, NULL);
	SELECT eventstore.store_checkpoint('mailer', 1, NULL, '1');
});
my %types = map { split /\|/ } split /\n/,
  sql('SELECT DISTINCT name || $$|$$ || type FROM eventstore.metrics');
my %covered;
my %rows = (eventstore => 1, eventstore_projection => 2, eventstore_processor => 2);
for my $entry (sort keys %$entries)
{
	my $query = $entries->{$entry}{query};
	my @listed = map { (keys %$_)[0] } @{ $entries->{$entry}{metrics} };
	my %usage = map { my ($c) = keys %$_; ($c => $_->{$c}{usage}) } @{ $entries->{$entry}{metrics} };
	my ($out, $err) = ('', '');
	$node->psql('postgres', "CREATE TEMP VIEW q AS $query;
		SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = 'q'::regclass AND attnum > 0;
		SELECT count(*) FROM q;",
		stdout => \$out, stderr => \$err, extra_params => ['-U', 'exporter']);
	is($err, '', "$entry: its query runs as a role granted the view only");
	my ($columns, $count) = split /\n/, $out;
	is($columns, join(',', map { "$_:" . ($usage{$_} eq 'LABEL' ? 'text' : 'double precision') } @listed),
		"$entry: it returns the columns listed, in order (labels text, values double precision)");
	is($count, $rows{$entry}, "$entry: one row per labelled set ($rows{$entry})");
	for my $column (grep { $usage{$_} ne 'LABEL' } @listed)
	{
		my $name = "${entry}_$column";
		is($types{$name} // 'missing', lc $usage{$column}, "$name: a $usage{$column} of the view");
		$covered{$name} = 1;
	}
}
is(join(',', grep { !$covered{$_} } sort keys %types), '', 'the file covers every metric of the view');

note_time_taken();
done_testing();
