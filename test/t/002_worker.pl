# The background workers: wake-up at commit, failing handlers, settings
# applied by a reload, served databases without the extension, dropped and
# recreated, and the refusal to load without shared_preload_libraries.
#
# Claims proven here:
# - A launcher (not in pg_stat_activity: it has no database connection)
#   keeps pg_eventstore.max_workers workers in the served database, shown
#   in pg_stat_activity with backend_type and application_name
#   'pg_eventstore worker'.
# - With poll_interval = 60s an append lands in an async projection long
#   before the next poll would bring it (the append wakes the workers at
#   commit), a projection created over a non-empty log is backfilled as
#   soon (create_projection wakes them too), and so is a rebuild
#   (rebuild_projection wakes them).  The times are noted (milliseconds);
#   the test allows half the poll interval, which only a wake-up explains
#   and which a slow machine does not reach.  projection_status names the
#   worker that applied the events and a non-zero rate.
# - A handler failing under on_error = 'stop' marks its projection failed
#   (with the error and its position), keeps the events before the poison
#   one, and applies nothing more; no worker dies (same pids, no restart)
#   and the other projections, on the same worker too, keep being applied.
# - A worker ended with SIGTERM is replaced by the launcher after
#   retry_interval, without a server restart, and the new one applies.
# - pg_reload_conf: a database added to pg_eventstore.databases gets a
#   worker, the workers are spread anew (one each), and every projection of
#   the first database is still applied by its single worker; a database
#   without the extension keeps an idle worker (same pid, no error) that
#   picks up CREATE EXTENSION and create_projection at once; a new
#   poll_interval is applied at once (the reload wakes the worker) without
#   restarting it; a database
#   removed from the setting loses its worker.
# - A served database dropped WITH (FORCE) loses its worker; once it is
#   created again the launcher starts a worker for it, retrying at the
#   pace of retry_interval (counted against the time it took), and the
#   worker drives the new projections there.
# - Without shared_preload_libraries CREATE EXTENSION fails with SQLSTATE
#   55000, the message and the hint.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use EventstoreTest;

my $node = start_node('worker', q(
restart_after_crash = on
max_worker_processes = 16
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 2
pg_eventstore.poll_interval = '60s'
pg_eventstore.retry_interval = '200ms'
));

# Wait until a database has this many workers; returns their pids.
sub wait_workers
{
	my ($db, $n, $what) = @_;
	ok( $node->poll_query_until('postgres', qq(
			SELECT count(*) = $n FROM pg_stat_activity
			WHERE backend_type = 'pg_eventstore worker' AND datname = '$db')),
		$what);
	return workers($db);
}

# Set pg_eventstore settings in postgresql.conf and reload.
sub reconfigure
{
	my (%settings) = @_;
	while (my ($k, $v) = each %settings)
	{
		sql("ALTER SYSTEM SET pg_eventstore.$k = '$v'");
	}
	sql('SELECT pg_reload_conf()');
	return;
}

# The extension and a read model that logs every application of an event,
# so that a lost or doubled event shows.
sub setup_database
{
	my ($db) = @_;
	sql_in($db, q(
		CREATE EXTENSION pg_eventstore;
		CREATE SCHEMA es_w;
		CREATE TABLE es_w.applied (projection text NOT NULL,
		                           global_position bigint NOT NULL);));
	return;
}

# A projection whose handler logs each event it applies in es_w.applied;
# with $poison, an event whose data has "poison": true raises an error.
sub logging_projection
{
	my ($db, $name, $types, $extra, $poison) = @_;
	my $check = $poison
	  ? q{IF (e.data ->> 'poison')::boolean THEN
	        RAISE EXCEPTION 'poison event at %', e.global_position
	            USING ERRCODE = 'P0042';
	      END IF;}
	  : '';
	$extra //= '';
	sql_in($db, qq{
		CREATE FUNCTION es_w.h_$name(e eventstore.events) RETURNS void
		LANGUAGE plpgsql AS \$\$
		BEGIN
			$check
			INSERT INTO es_w.applied VALUES ('$name', e.global_position);
		END \$\$;
		SELECT eventstore.create_projection('$name', 'es_w.h_$name', $types $extra);});
	return;
}

# Wait until the projection's read model is the set-based answer.
sub converges
{
	my ($db, $name, $types, $what) = @_;
	my $check = read_model_check($name, $types);
	$node->poll_query_until($db, $check, 'lost=0 doubled=0 extra=0');
	is(sql_in($db, $check), 'lost=0 doubled=0 extra=0', $what);
	return;
}

# Half the poll interval (60 s): an event applied, or a rebuild done, this
# soon was brought by a wake-up, not by the next poll.
my $woken_within = 30;

# Seconds until the query returns 't', polled every 5 ms through one
# session (faster than poll_query_until); undef after $limit seconds.
sub seconds_until
{
	my ($session, $query, $since, $limit) = @_;
	while (time - $since < $limit)
	{
		return time - $since if $session->query_safe($query) eq 't';
		usleep(5_000);
	}
	return undef;
}

# The pids of the postmaster's children running a given process title.
sub children_titled
{
	my ($title) = @_;
	my $postmaster = $node->{_pid};
	my @pids;
	foreach my $dir (glob '/proc/[0-9]*')
	{
		my ($pid) = $dir =~ m{(\d+)$};
		open(my $st, '<', "$dir/stat") or next;
		my $stat = <$st>;
		close $st;
		next unless defined $stat && $stat =~ /\) \S+ (\d+)/;
		next unless $1 == $postmaster;
		open(my $cl, '<', "$dir/cmdline") or next;
		my $cmd = <$cl> // '';
		close $cl;
		push @pids, $pid if $cmd =~ /\Q$title\E/;
	}
	return @pids;
}

# --- The launcher and the workers -----------------------------------------

my $pg_workers = wait_workers('postgres', 2,
	'startup: max_workers = 2 workers serve the database postgres');
is( sql(q(
		SELECT string_agg(DISTINCT application_name, ',')
		FROM pg_stat_activity WHERE backend_type = 'pg_eventstore worker')),
	'pg_eventstore worker',
	"startup: the workers' application_name is 'pg_eventstore worker'");
is(sql(q(SELECT count(*) FROM pg_stat_activity
                     WHERE backend_type = 'pg_eventstore launcher')),
	'0', 'startup: the launcher is not in pg_stat_activity');
is(scalar(children_titled('pg_eventstore launcher')),
	1, 'startup: one launcher process runs under the postmaster');

setup_database('postgres');

# --- Wake-up at commit with poll_interval = 60s ----------------------------

is(sql('SHOW pg_eventstore.poll_interval'), '1min',
	'latency: poll_interval is 60s');
logging_projection('postgres', 'fast', q(ARRAY['Tick']));
{
	my $s = session();
	my @took;
	for my $i (1 .. 5)
	{
		my $t0 = time;
		my $pos = $s->query_safe(
			"SELECT last_position FROM eventstore.append_event('clock', 'Tick', '{\"i\": $i}')");
		my $took = seconds_until($s, qq(
			SELECT EXISTS (SELECT FROM es_w.applied
			               WHERE projection = 'fast' AND global_position = $pos)),
			$t0, $woken_within);
		push @took, $took // 99;
		usleep(50_000);
	}
	note 'append to projection: ' . join(', ', map { sprintf '%.3f s', $_ } @took);
	cmp_ok((sort { $b <=> $a } @took)[0], '<', $woken_within,
		"latency: each of 5 appends is projected within $woken_within s (poll_interval 60 s)");

	# A projection created over a non-empty log starts rebuilding: its
	# creation wakes the workers, which backfill it at once.
	sql(q(SELECT eventstore.append_to_stream('clock',
		(SELECT jsonb_agg(jsonb_build_object('type', 'Tick')) FROM generate_series(1, 50)))));
	my $t0 = time;
	logging_projection('postgres', 'late', q(ARRAY['Tick']));
	my $took = seconds_until($s, q(
		SELECT status = 'active' FROM eventstore.projection_status WHERE name = 'late'),
		$t0, $woken_within);
	note sprintf('create_projection to active: %.3f s', $took // 99);
	cmp_ok($took // 99, '<', $woken_within,
		"latency: a projection created over 55 events is backfilled within $woken_within s");
	$s->quit;
}
converges('postgres', 'late', q(ARRAY['Tick']),
	'latency: the backfilled projection applied every Tick once');

# rebuild_projection wakes the workers at commit too: each of 5 rebuilds
# is replayed to the head at once, not at the next poll (60 s).
{
	my $s = session();
	my @took;
	for (1 .. 5)
	{
		my $t0 = time;
		sql(q(SELECT eventstore.rebuild_projection('late')));
		push @took, seconds_until($s, q(
			SELECT status = 'active' FROM eventstore.projection_status
			WHERE name = 'late'), $t0, $woken_within) // 99;
	}
	note 'rebuild_projection to active: '
	  . join(', ', map { sprintf '%.3f s', $_ } @took);
	cmp_ok((sort { $b <=> $a } @took)[0], '<', $woken_within,
		"latency: each of 5 rebuilds is replayed within $woken_within s (poll_interval 60 s)");
	$s->quit;
	# an append wakes the workers for a rebuild the wake-up missed
	sql(q(SELECT eventstore.append_event('clock', 'Tick', '{}')));
}
converges('postgres', 'fast', q(ARRAY['Tick']),
	'latency: the async projection applied every Tick once');
like(
	sql(q(
		SELECT format('%s|%s', worker_pid, events_per_second > 0)
		FROM eventstore.projection_status WHERE name = 'fast')),
	qr/^(\d+)\|t$/,
	'latency: projection_status shows a worker pid and a rate');
my ($fast_pid) = sql(q(SELECT worker_pid FROM eventstore.projection_status WHERE name = 'fast'));
ok((grep { $_ eq $fast_pid } split /,/, $pg_workers),
	'latency: that pid is one of the workers');

# events_per_second is the rate of the last seconds, not a minute's average:
# a projection that applied n events within t seconds of its creation shows
# at least n / (t + 2) events per second (a minute's average showed n / 60).
{
	my $n = 3000;
	sql(qq(SELECT eventstore.append_to_stream('rate-1',
		(SELECT jsonb_agg(jsonb_build_object('type', 'Rate')) FROM generate_series(1, $n)))));
	my $t0 = time;
	logging_projection('postgres', 'rate', q(ARRAY['Rate']));
	my $s = session();
	my $took = seconds_until($s, q(
		SELECT status = 'active' AND lag_events = 0 FROM eventstore.projection_status
		WHERE name = 'rate'), $t0, $woken_within);
	my $rate = $s->query_safe(q(
		SELECT events_per_second FROM eventstore.projection_status WHERE name = 'rate'));
	my $elapsed = time - $t0;
	$s->quit;
	note sprintf('rate: %d events in %.2f s, events_per_second %s', $n, $elapsed, $rate);
  SKIP:
	{
		skip 'the build took longer than the rate window (10 s)', 1
		  if !defined $took || $elapsed > 8;
		cmp_ok($rate, '>=', $n / ($elapsed + 2),
			'latency: events_per_second is the rate of the last seconds');
	}
}

# --- A failing handler (on_error = 'stop') ---------------------------------

my $log_offset = -s $node->logfile;
logging_projection('postgres', 'bad', q(ARRAY['Order']), '', 1);
logging_projection('postgres', 'good_a', q(ARRAY['Order']));
logging_projection('postgres', 'good_b', q(ARRAY['Order']));
is( sql(q(
		SELECT count(DISTINCT projection_id % 2) FROM eventstore.projections
		WHERE name IN ('bad', 'good_a', 'good_b'))),
	'2', 'failure: the projections are spread over both workers');
my $poison = sql(q(
	SELECT first_position + 1 FROM eventstore.append_to_stream('order-1', '[
	  {"type": "Order", "data": {"n": 1}},
	  {"type": "Order", "data": {"poison": true}},
	  {"type": "Order", "data": {"n": 3}}]')));
ok( $node->poll_query_until('postgres', q(
		SELECT status = 'failed' FROM eventstore.projection_status WHERE name = 'bad')),
	'failure: the projection with the failing handler is marked failed');
like( sql(q(
		SELECT format('%s|%s', error_position, last_error)
		FROM eventstore.projection_status WHERE name = 'bad')),
	qr/^$poison\|.*poison event at $poison/,
	'failure: projection_status shows the error and its position');
is( sql(q(
		SELECT string_agg(global_position::text, ',' ORDER BY global_position)
		FROM es_w.applied WHERE projection = 'bad')),
	$poison - 1, 'failure: the event before the poison one is kept');
converges('postgres', 'good_a', q(ARRAY['Order']),
	'failure: another projection applied every event, the poison one too');
converges('postgres', 'good_b', q(ARRAY['Order']),
	'failure: and so did a third one');
sql(q(SELECT eventstore.append_to_stream('order-2', '[
	  {"type": "Order", "data": {"n": 4}}, {"type": "Order", "data": {"n": 5}}]')));
converges('postgres', 'good_a', q(ARRAY['Order']),
	'failure: the other projections keep being applied after the failure');
converges('postgres', 'good_b', q(ARRAY['Order']),
	'failure: on both workers');
is( sql(q(
		SELECT format('%s|%s|%s', status, checkpoint,
		              (SELECT count(*) FROM es_w.applied WHERE projection = 'bad'))
		FROM eventstore.projection_status WHERE name = 'bad')),
	'failed|' . ($poison - 1) . '|1',
	'failure: the failed projection applies nothing more');
is(workers('postgres'), $pg_workers, 'failure: the workers are the same processes');
ok(!$node->log_contains(qr/terminated by signal|exited with exit code/, $log_offset),
	'failure: no worker exited');

# --- A worker ended with SIGTERM ------------------------------------------

$log_offset = -s $node->logfile;
my $victim = (split /,/, $pg_workers)[0];
sql("SELECT pg_terminate_backend($victim)");
ok( $node->poll_query_until('postgres', qq(
		SELECT count(*) = 2 AND bool_and(pid <> $victim) FROM pg_stat_activity
		WHERE backend_type = 'pg_eventstore worker' AND datname = 'postgres')),
	'sigterm: the launcher replaces a worker ended with SIGTERM');
ok(!$node->log_contains(qr/reinitializing/, $log_offset),
	'sigterm: without a server restart');
$pg_workers = workers('postgres');
sql(q(SELECT eventstore.append_event('clock', 'Tick', '{}');
                  SELECT eventstore.append_event('order-3', 'Order', '{}');));
converges('postgres', 'fast', q(ARRAY['Tick']), 'sigterm: the workers apply again');
converges('postgres', 'good_a', q(ARRAY['Order']), 'sigterm: on both workers');
converges('postgres', 'good_b', q(ARRAY['Order']), 'sigterm: on both workers (2)');

# --- Reload: a database added, without the extension ----------------------

sql('CREATE DATABASE noext');
$log_offset = -s $node->logfile;
reconfigure(databases => 'postgres, noext');
my $noext_pid = wait_workers('noext', 1,
	'reload: a worker starts for the added database');
wait_workers('postgres', 1,
	'reload: max_workers = 2 over two databases leaves one for postgres');
$pg_workers = workers('postgres');
sql(q(SELECT eventstore.append_event('clock', 'Tick', '{}');
                  SELECT eventstore.append_event('order-4', 'Order', '{}');));
converges('postgres', 'fast', q(ARRAY['Tick']),
	'reload: the single worker of postgres applies projection fast');
converges('postgres', 'good_a', q(ARRAY['Order']), 'reload: and good_a');
converges('postgres', 'good_b', q(ARRAY['Order']), 'reload: and good_b');

# Without the extension the worker is idle and stays up.
usleep(1_000_000);
is(workers('noext'), $noext_pid, 'no extension: the worker stays up (same pid)');
is( sql(qq(SELECT state FROM pg_stat_activity WHERE pid = $noext_pid)),
	'idle', 'no extension: the worker is idle');
ok(!$node->log_contains(qr/\[$noext_pid\] .*(ERROR|FATAL)/, $log_offset),
	'no extension: the worker logged no error');

# CREATE EXTENSION and create_projection are picked up at once.
{
	setup_database('noext');
	logging_projection('noext', 'here', q(ARRAY['Tick']));
	my $t0 = time;
	sql_in('noext', q(SELECT eventstore.append_event('c', 'Tick', '{}')));
	ok($node->poll_query_until('noext', q(SELECT count(*) = 1 FROM es_w.applied)),
		'no extension: after CREATE EXTENSION the worker applies the projection');
	my $took = time - $t0;
	note sprintf('noext: applied after %.3f s', $took);
	cmp_ok($took, '<', $woken_within,
		"no extension: within $woken_within s (poll_interval 60 s)");
	is(workers('noext'), $noext_pid, 'no extension: by the same worker');
}

# --- Reload: poll_interval ------------------------------------------------

# A worker reports its state at every turn: with nothing to wake it, its
# state_change moves only every poll_interval.  PostgreSQL itself may set an
# idle backend's latch now and then (a shared-invalidation catch-up, say),
# which costs one turn: at 60 s, a second shows at most one or two turns
# where 100 ms shows about ten.
my $state_change = sub {
	return sql("SELECT state_change FROM pg_stat_activity WHERE pid = $noext_pid");
};

# The turns an idle worker takes over one second, as distinct state_change
# values seen every 100 ms.
my $turns = sub {
	my %seen;
	for (1 .. 10)
	{
		$seen{ $state_change->() } = 1;
		usleep(100_000);
	}
	return scalar(keys %seen);
};
usleep(300_000);
cmp_ok($turns->(), '<=', 2, 'poll_interval: at 60 s an idle worker takes (almost) no turn in 1 s');
reconfigure(poll_interval => '100ms');
ok( $node->poll_query_until('noext', "SHOW pg_eventstore.poll_interval", '100ms'),
	'poll_interval: the reload applies 100ms');
usleep(300_000);
cmp_ok($turns->(), '>=', 4,
	'poll_interval: after the reload to 100 ms the idle worker takes turns');
# Once woken by an append, it certainly uses the new interval.
sql_in('noext', q(SELECT eventstore.append_event('c', 'Tick', '{}')));
usleep(300_000);
cmp_ok($turns->(), '>=', 4,
	'poll_interval: after a wake-up the idle worker takes turns every 100 ms');
reconfigure(poll_interval => '60s');
usleep(500_000);
cmp_ok($turns->(), '<=', 2, 'poll_interval: back at 60 s it sleeps again');
is(workers('noext'), $noext_pid, 'poll_interval: the worker was not restarted');

# --- Reload: the database removed -----------------------------------------

reconfigure(databases => 'postgres');
wait_workers('noext', 0, 'reload: the removed database loses its worker');
$pg_workers = wait_workers('postgres', 2, 'reload: postgres has both workers again');
sql('DROP DATABASE noext');

# --- A served database dropped WITH (FORCE) and created again -------------

sql('CREATE DATABASE dropme');
setup_database('dropme');
logging_projection('dropme', 'first', q(ARRAY['Tick']));
reconfigure(databases => 'postgres, dropme', max_workers => 3);
my $dropme_pid = wait_workers('dropme', 1, 'drop: the database gets a worker');
wait_workers('postgres', 2, 'drop: max_workers = 3 leaves two for postgres');
sql_in('dropme', q(SELECT eventstore.append_event('c', 'Tick', '{}')));
converges('dropme', 'first', q(ARRAY['Tick']), 'drop: its worker applies');

$log_offset = -s $node->logfile;
my $dropped_at = time;
sql('DROP DATABASE dropme WITH (FORCE)');
wait_workers('dropme', 0, 'drop: DROP DATABASE WITH (FORCE) ends its worker');
$node->wait_for_log(qr/FATAL:  database "dropme" does not exist/, $log_offset);
pass('drop: the launcher retries, and the worker finds no database');
usleep(1_000_000);
my $log = slurp_file($node->logfile, $log_offset);
my $window = time - $dropped_at;
my $tries = () = $log =~ /FATAL:  database "dropme" does not exist/g;
note sprintf('drop: %d failed starts in %.1f s', $tries, $window);
# paced: one start per retry_interval (200 ms), the first at once; the
# bound allows twice that pace, whatever the time the window took
cmp_ok($tries, '<=', 1 + 2 * $window / 0.2,
	'drop: the retries are paced by retry_interval (200 ms)');

sql('CREATE DATABASE dropme');
my $t0 = time;
my $new_pid = wait_workers('dropme', 1, 'drop: the recreated database gets a worker');
note sprintf('drop: worker back after %.3f s', time - $t0);
isnt($new_pid, $dropme_pid, 'drop: a new worker');
setup_database('dropme');
logging_projection('dropme', 'second', q(ARRAY['Tick']));
sql_in('dropme', q(SELECT eventstore.append_event('c', 'Tick', '{}')));
converges('dropme', 'second', q(ARRAY['Tick']),
	'drop: the new worker picks up the extension and applies');
is(workers('dropme'), $new_pid, 'drop: the same new worker');

# --- The launcher restarted -----------------------------------------------

# A launcher ended with SIGTERM is restarted by the postmaster; the workers
# of the one before exit, and the new launcher starts their successors:
# never two sets of workers at once.
{
	my ($old_launcher) = children_titled('pg_eventstore launcher');
	my $before = sql(q(SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'pg_eventstore worker'));
	my $old_workers = sql(q(SELECT string_agg(pid::text, ',' ORDER BY pid)
		FROM pg_stat_activity WHERE backend_type = 'pg_eventstore worker'));
	kill 'TERM', $old_launcher;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	usleep(100_000)
	  while time < $deadline
	  && !(scalar(children_titled('pg_eventstore launcher')) == 1
		&& (children_titled('pg_eventstore launcher'))[0] != $old_launcher);
	isnt((children_titled('pg_eventstore launcher'))[0], $old_launcher,
		'launcher: restarted after SIGTERM');
	ok( $node->poll_query_until('postgres', qq(
			SELECT count(*) = $before
			       AND NOT (string_agg(pid::text, ',' ORDER BY pid) = '$old_workers')
			FROM pg_stat_activity WHERE backend_type = 'pg_eventstore worker')),
		'launcher: its workers are replaced, as many as before');
	usleep(1_500_000);
	is(sql(q(SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'pg_eventstore worker')), $before,
		'launcher: and no more than before (the old ones exited)');
	sql_in('dropme', q(SELECT eventstore.append_event('c', 'Tick', '{}')));
	converges('dropme', 'second', q(ARRAY['Tick']),
		'launcher: the new workers apply');
}

$node->stop;

# --- Not preloaded --------------------------------------------------------

{
	my $plain = PostgreSQL::Test::Cluster->new('plain');
	$plain->init;
	$plain->start;
	my ($stdout, $stderr);
	$plain->psql('postgres', "\\set VERBOSITY verbose\nCREATE EXTENSION pg_eventstore;",
		stdout => \$stdout, stderr => \$stderr);
	like($stderr,
		qr/ERROR:  55000: pg_eventstore can only be loaded via shared_preload_libraries/,
		'not preloaded: CREATE EXTENSION fails with 55000 and the message');
	like($stderr,
		qr/HINT:  Add pg_eventstore to shared_preload_libraries in postgresql.conf and restart the server\./,
		'not preloaded: with the hint');
	is($plain->safe_psql('postgres',
			q(SELECT count(*) FROM pg_extension WHERE extname = 'pg_eventstore')),
		'0', 'not preloaded: nothing is installed');
	$plain->stop;
}

note_time_taken();
done_testing();
