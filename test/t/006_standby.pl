# A physical streaming standby: the global log followed there under
# concurrent appends with late commits, no worker while in recovery, writes
# refused, and a promotion after which the workers drive the projections and
# the checkpoints resume.
#
# Claims proven here (every list is compared in full, in order):
# - A follower on a hot standby that calls eventstore.read_all again and
#   again with the global_position of the last event it received gets
#   exactly the primary's log, in log order (transaction_id,
#   global_position): nothing missed, nothing doubled, nothing out of
#   order.  Meanwhile three writers append to random streams on the primary,
#   with transactions that take their xid early and commit after younger
#   ones (an append, a nap, a second append), the outbox pattern (a write of
#   their own first, an append after a nap), batches, and rollbacks; an
#   async projection's worker commits batches on the primary all along.
#   The late commits are counted from the commit timestamps, to show the
#   load had them.
# - No pg_eventstore worker runs on the standby; read_all, read_stream and
#   read_checkpoint work there, and append_event, append_to_stream and
#   store_checkpoint are refused as writes in a read-only transaction
#   (SQLSTATE 25006).
# - A checkpoint stored on the primary before the failover reads the same
#   on the promoted standby, and read_all from it returns exactly the events
#   after it in log order (the checkpoint is chosen where a position taken
#   early sorts after higher ones, so log order and position order differ).
# - After the primary stops (fast) and the standby is promoted, the launcher
#   starts workers there; they apply the async projection's backlog (the
#   events the old primary had not applied: its handler was slowed down) to
#   the set-based answer, nothing lost or doubled, and then new appends on
#   the promoted node, which come last in the log.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default; the
# figures (events appended and received, the late commits, the backlog,
# the time to the first worker) are noted, not bounded.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use EventstoreTest qw(:DEFAULT compare_lists);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;

# How long the writers run, in seconds.
my $load_seconds = 5;

my $primary = start_node('primary', q(
track_commit_timestamp = on
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 2
pg_eventstore.batch_size = 20
pg_eventstore.poll_interval = '200ms'
pg_eventstore.retry_interval = '200ms'
), allows_streaming => 1);

# The log, in log order, as a list of global_positions.
sub log_order
{
	my ($node) = @_;
	return split /\n/, $node->safe_psql('postgres', q(
		SELECT global_position FROM eventstore.events
		ORDER BY transaction_id, global_position), timeout => $timeout);
}

# Follow the log from a cursor through a session: read_all pages of 100,
# each from the last position received, until a page comes back empty.
# Returns the positions received, in order.
sub drain
{
	my ($session, $cursor) = @_;
	my @got;
	while (1)
	{
		my @page = split /\n/, $session->query_safe(
			"SELECT global_position FROM eventstore.read_all($cursor, 100)");
		last unless @page;
		push @got, @page;
		$cursor = $page[-1];
	}
	return @got;
}

# The SQLSTATE and message of a statement expected to fail on a node.
sub error_of
{
	my ($node, $sql) = @_;
	my ($stdout, $stderr);
	$node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout, stderr => \$stderr,
		timeout => $timeout);
	my ($error) = $stderr =~ /ERROR:  (\w{5}: .*)$/m;
	return $error // "no error: $stderr";
}

# --- The primary and its standby -------------------------------------------

# A projection whose handler sleeps es_w.knobs.delay seconds per event and
# logs each event it applies in es_w.applied, so that a lost or doubled
# event shows; es_w.outbox is the writers' own table.
sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE SCHEMA es_w;
	CREATE TABLE es_w.applied (projection text NOT NULL,
	                           global_position bigint NOT NULL);
	CREATE TABLE es_w.knobs (projection text PRIMARY KEY, delay float8 NOT NULL);
	CREATE TABLE es_w.outbox (n integer NOT NULL);
	INSERT INTO es_w.knobs VALUES ('ticks', 0.01);
	CREATE FUNCTION es_w.h_ticks(e eventstore.events) RETURNS void
	LANGUAGE sql AS $$
		SELECT pg_sleep(delay) FROM es_w.knobs WHERE projection = 'ticks';
		INSERT INTO es_w.applied VALUES ('ticks', e.global_position);
	$$;
	SELECT eventstore.create_projection('ticks', 'es_w.h_ticks', ARRAY['Tick', 'Tock']);
});
my $types = q(ARRAY['Tick', 'Tock']);
ok($primary->poll_query_until('postgres', q(
		SELECT count(*) = 2 FROM pg_stat_activity
		WHERE backend_type = 'pg_eventstore worker')),
	'primary: two workers');

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'standby: in recovery, streaming from the primary');

# --- Concurrent appends on the primary, followed on the standby ------------

# Each transaction appends to random streams: 30% take their xid and a
# position early, nap, append to a second stream and commit after younger
# transactions (a late commit); 10% write their own table first and append
# after a nap (xid early, position late); 10% append a batch of three; 10%
# of them all roll back.  A second stream's number is always higher than the
# first's, so the writers lock streams in one order and never deadlock.
my $script = $primary->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file($script, <<'EOF');
\set a random(1, 30)
\set b :a + random(1, 30)
\set kind random(1, 10)
\set rb random(1, 10)
BEGIN;
\if :kind <= 3
SELECT eventstore.append_event('s-' || :a, 'Tick', '{"k": "early"}');
SELECT pg_sleep(random() * 0.03);
SELECT eventstore.append_event('s-' || :b, 'Tock', '{}');
\elif :kind = 4
INSERT INTO es_w.outbox VALUES (:a);
SELECT pg_sleep(random() * 0.03);
SELECT eventstore.append_event('s-' || :a, 'Tick', '{"k": "outbox"}');
\elif :kind = 5
SELECT eventstore.append_to_stream('s-' || :a, '[{"type": "Batch"}, {"type": "Tick"}, {"type": "Batch"}]');
\else
SELECT eventstore.append_event('s-' || :a, 'Tick', '{}');
\endif
\if :rb = 1
ROLLBACK;
\else
COMMIT;
\endif
EOF

my $follower = $standby->background_psql('postgres', timeout => $timeout);
my ($pgbench_out, $pgbench_err) = ('', '');
my $writers = IPC::Run::start(
	[
		'pgbench', '-n', '-h', $primary->host, '-p', $primary->port,
		'-c', '3', '-j', '3', '-T', $load_seconds, '-f', $script, 'postgres'
	],
	'>', \$pgbench_out, '2>', \$pgbench_err,
	IPC::Run::timeout($timeout));

# The follower pages through read_all on the standby while the writers run.
my @got;
my $cursor = 0;
my $pages = 0;
my $deadline = time + $timeout;
while ($writers->pumpable && time < $deadline)
{
	$writers->pump_nb;
	my @page = split /\n/, $follower->query_safe(
		"SELECT global_position FROM eventstore.read_all($cursor, 100)");
	$pages++;
	push @got, @page;
	$cursor = $page[-1] if @page;
	usleep(10_000) if @page < 100;
}
my $received_under_load = scalar @got;
ok($writers->finish, 'load: the writers ran without an error')
  or diag "pgbench: $pgbench_out\n$pgbench_err";
my ($transactions) = $pgbench_out =~ /number of transactions actually processed: (\d+)/;
note "pgbench: " . ($transactions // '?') . " transactions in $load_seconds s";

# Every event below the primary's read horizon, then the standby replayed
# that far: the follower drains to the end.
ok( $primary->poll_query_until('postgres', q(
		SELECT eventstore.log_horizon()
		       > (SELECT max(transaction_id) FROM eventstore.events))),
	"load: the primary's read horizon passes every event");
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
push @got, drain($follower, $cursor);

my @want = log_order($primary);
note sprintf('standby follower: %d events in the log, %d received (%d during the load, in %d pages)',
	scalar @want, scalar @got, $received_under_load, $pages);
is(compare_lists(\@got, \@want), 'missed=0 doubled=0 extra=0 order=same',
	'follower: the standby follower received exactly the log, in log order');
cmp_ok($received_under_load, '>', 0, 'follower: it received events during the load');

# The load had what the claim is about: transactions that committed after
# younger ones, positions taken early that sort after higher ones, and
# rollbacks (positions burned).
my ($late, $inverted, $burned) = split /\|/, sql(q{
	WITH t AS (SELECT DISTINCT transaction_id AS x,
	                  pg_xact_commit_timestamp(xid(transaction_id)) AS at
	           FROM eventstore.events),
	     c AS (SELECT at, min(at) OVER (ORDER BY x DESC ROWS BETWEEN UNBOUNDED PRECEDING
	                                                 AND 1 PRECEDING) AS younger
	           FROM t),
	     o AS (SELECT global_position AS p,
	                  lag(global_position) OVER (ORDER BY transaction_id, global_position) AS prev
	           FROM eventstore.events)
	SELECT format('%s|%s|%s',
	              (SELECT count(*) FROM c WHERE at > younger),
	              (SELECT count(*) FROM o WHERE p < prev),
	              (SELECT max(global_position) - count(*) FROM eventstore.events))});
note "load: $late transactions committed after a younger one; "
  . "$inverted events sort after a higher position; $burned positions burned";
cmp_ok($late, '>', 0, 'load: some transactions committed after younger ones');
cmp_ok($inverted, '>', 0, 'load: log order is not position order');
cmp_ok($burned, '>', 0, 'load: rollbacks burned positions');
is( sql(q(SELECT format('%s|%s', count(DISTINCT event_type), count(DISTINCT stream_id) > 10)
	FROM eventstore.events)),
	'3|t', 'load: three event types over many streams');

# --- The standby: no worker, read-only -------------------------------------

# The standby has been up for the whole load (seconds, against a
# retry_interval of 200 ms).
is( $standby->safe_psql('postgres', q(
		SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'pg_eventstore worker')),
	'0', 'standby: no pg_eventstore worker runs in recovery');
is( $standby->safe_psql('postgres', q(
		SELECT string_agg(revision::text, ',' ORDER BY revision)
		FROM eventstore.read_stream('s-1'))),
	sql(q(SELECT string_agg(revision::text, ',' ORDER BY revision)
		FROM eventstore.events WHERE stream_id = 's-1')),
	'standby: read_stream returns the stream');
like(error_of($standby, q(SELECT eventstore.append_event('s-1', 'Tick', '{}'))),
	qr/^25006: cannot execute append_event in a read-only transaction$/,
	'standby: append_event is refused with SQLSTATE 25006 (read-only transaction)');
like(error_of($standby, q(SELECT eventstore.append_to_stream('new', '[{"type": "Tick"}]'))),
	qr/^25006: cannot execute append_to_stream in a read-only transaction$/,
	'standby: append_to_stream is refused with SQLSTATE 25006');
like(error_of($standby, qq(SELECT eventstore.store_checkpoint('p', $want[0], NULL))),
	qr/^25006: cannot execute store_checkpoint in a read-only transaction$/,
	'standby: store_checkpoint is refused with SQLSTATE 25006');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM eventstore.events'),
	scalar @want, 'standby: and nothing was written');

# --- A checkpoint, then the failover ---------------------------------------

# The checkpoint: the event nearest the middle of the log whose position is
# higher than the next one's, so that events after it in log order have
# lower positions.
my $at = int(@want / 2);
for my $d (0 .. $#want)
{
	my ($i) = grep { $_ >= 0 && $_ < $#want && $want[$_] > $want[ $_ + 1 ] }
	  ($at + $d, $at - $d);
	if (defined $i)
	{
		$at = $i;
		last;
	}
}
my $checkpoint = $want[$at];
my $below = grep { $_ < $checkpoint } @want[ $at + 1 .. $#want ];
note "checkpoint at $checkpoint (log index $at of " . scalar(@want)
  . "), followed by $below lower positions";
cmp_ok($below, '>', 0, 'checkpoint: events after it in log order have lower positions');
is(sql("SELECT eventstore.store_checkpoint('relay', $checkpoint, NULL)"),
	'stored', 'checkpoint: stored on the primary');

# More events, a bulk the slowed projection cannot have applied before the
# primary stops.
sql(q(SELECT eventstore.append_to_stream('bulk',
	(SELECT jsonb_agg(jsonb_build_object('type', 'Tick')) FROM generate_series(1, 200)))));
my @final = log_order($primary);
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
is($standby->safe_psql('postgres', q(SELECT eventstore.read_checkpoint('relay'))),
	$checkpoint, 'checkpoint: read_checkpoint on the standby');

$primary->stop('fast');
my $backlog = $standby->safe_psql('postgres', qq(
	SELECT (SELECT count(*) FROM eventstore.events WHERE event_type = ANY ($types))
	     - (SELECT count(*) FROM es_w.applied WHERE projection = 'ticks')));
note "failover: the projection's backlog is $backlog events";
cmp_ok($backlog, '>', 0, 'failover: the old primary left the projection behind the log');

my $promoted_at = time;
$standby->promote;
use_node($standby);
is(sql('SELECT pg_is_in_recovery()'), 'f', 'promotion: the standby is a primary');
ok($standby->poll_query_until('postgres', q(
		SELECT count(*) > 0 FROM pg_stat_activity
		WHERE backend_type = 'pg_eventstore worker')),
	'promotion: the launcher starts workers');
note sprintf('promotion: first worker %.2f s after promote', time - $promoted_at);

is(compare_lists([ log_order($standby) ], \@final),
	'missed=0 doubled=0 extra=0 order=same',
	'promotion: the log is the old primary\'s, in the same order');
is(sql(q(SELECT eventstore.read_checkpoint('relay'))), $checkpoint,
	'promotion: read_checkpoint returns the checkpoint stored on the old primary');
{
	my $s = session();
	my @after = drain($s, $checkpoint);
	note sprintf('checkpoint: %d events after it', scalar @after);
	is(compare_lists(\@after, [ @final[ $at + 1 .. $#final ] ]),
		'missed=0 doubled=0 extra=0 order=same',
		'promotion: read_all from the checkpoint returns exactly the events after it');
	$s->quit;
}

# The workers of the promoted node apply the backlog, quickly now.
sql(q(UPDATE es_w.knobs SET delay = 0));
my $check = read_model_check('ticks', $types);
$standby->poll_query_until('postgres', $check, 'lost=0 doubled=0 extra=0');
is(sql($check), 'lost=0 doubled=0 extra=0',
	'promotion: the workers apply the backlog to the set-based answer');

# New appends on the promoted node come last and are applied by its workers.
my @new = split /\n/, sql(q(
	SELECT last_position FROM eventstore.append_event('s-1', 'Tick', '{"k": "new"}');
	SELECT last_position FROM eventstore.append_event('s-2', 'Tock', '{"k": "new"}');
	SELECT last_position FROM eventstore.append_event('fresh', 'Tick', '{"k": "new"}');));
{
	my $s = session();
	is(join(',', drain($s, $final[-1])), join(',', @new),
		'promotion: new appends come after the whole old log');
	$s->quit;
}
$standby->poll_query_until('postgres', $check, 'lost=0 doubled=0 extra=0');
is(sql($check), 'lost=0 doubled=0 extra=0',
	'promotion: the workers apply new appends');
is( sql(qq(SELECT count(*) FROM es_w.applied
	WHERE projection = 'ticks' AND global_position IN (@{[ join ',', @new ]}))),
	'3', 'promotion: each new event once');
my $driver = sql(q(SELECT worker_pid FROM eventstore.projection_status WHERE name = 'ticks'));
ok((grep { $_ eq $driver } split /,/, workers()),
	'promotion: projection_status names one of the promoted node\'s workers');

$follower->quit;
$standby->stop;
note_time_taken();
done_testing();
