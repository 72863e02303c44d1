# Shared by the TAP tests in test/t (the Makefile puts this folder on
# prove's path): a node with the library preloaded, statements and sessions
# that fail the test on an error and time out instead of hanging, and the
# helpers more than one test needs.  The helpers work on the node that
# start_node started last, or the one use_node named since.
package EventstoreTest;

use strict;
use warnings;
use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

our @EXPORT = qw(start_node init_node use_node sql sql_in sql_error poll_sql
  session workers start_pgbench read_all_after read_model_check
  drain_followers receiver_faults crash_and_wait note_time_taken);
# On request only (006_standby.pl has a compare_lists of its own).
our @EXPORT_OK = qw(compare_lists);

my $started = time;
my $node;

# A new node with pg_eventstore preloaded, autovacuum off (no stray
# transaction holds the log back) and these settings, started.  Any further
# arguments go to PostgreSQL::Test::Cluster's init (allows_streaming => 1,
# say, for a primary).
sub start_node
{
	my ($name, $settings, %init) = @_;
	init_node($name, $settings, %init);
	$node->start;
	return $node;
}

# The same node, initialized but not started (the new cluster of a
# pg_upgrade, say).
sub init_node
{
	my ($name, $settings, %init) = @_;
	$node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'pg_eventstore'
autovacuum = off
$settings));
	return $node;
}

# Point the helpers at another node (a standby promoted to primary, say).
sub use_node
{
	($node) = @_;
	return $node;
}

# Statements in a new session on the database postgres, failing the test
# on an error or a hang; returns their output.
sub sql
{
	my ($sql) = @_;
	return sql_in('postgres', $sql);
}

# The same on another database.
sub sql_in
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql,
		timeout => $PostgreSQL::Test::Utils::timeout_default);
}

# The error that statements raise on a database (postgres unless told
# otherwise), as a hash of its sqlstate, message, detail and hint (the last
# two undef when it has none); undef when they raise none.  Fails the test
# on a hang.
sub sql_error
{
	my ($sql, $db) = @_;
	my ($stdout, $stderr) = ('', '');
	$node->psql($db // 'postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$stdout, stderr => \$stderr,
		timeout => $PostgreSQL::Test::Utils::timeout_default);
	my ($sqlstate, $message) = $stderr =~ /ERROR:  (\w{5}): (.*)$/m
	  or return undef;
	my ($detail) = $stderr =~ /^DETAIL:  (.*)$/m;
	my ($hint) = $stderr =~ /^HINT:  (.*)$/m;
	return { sqlstate => $sqlstate, message => $message,
		detail => $detail, hint => $hint };
}

# Run statements again and again until they return `expected` ('t' unless
# told otherwise), on the database postgres; false if they never do within
# PostgreSQL::Test::Utils's timeout_default.
sub poll_sql
{
	my ($sql, $expected) = @_;
	return $node->poll_query_until('postgres', $sql, $expected // 't');
}

# A session that stays open (a PostgreSQL::Test::BackgroundPsql), on the
# database postgres unless told otherwise; each query times out.
sub session
{
	my ($db) = @_;
	return $node->background_psql($db // 'postgres',
		timeout => $PostgreSQL::Test::Utils::timeout_default);
}

# pgbench started in the background on the database postgres: a custom
# script file (no vacuum, no pgbench tables), $clients clients on two
# threads, for $seconds seconds; its stdout and stderr go to the scalars
# $out and $err refer to.  Returns the IPC::Run harness: finish it (true
# when pgbench succeeded).
sub start_pgbench
{
	my ($script, $clients, $seconds, $out, $err) = @_;
	return IPC::Run::start(
		[
			'pgbench', '-n', '-h', $node->host, '-p', $node->port,
			'-c', $clients, '-j', '2', '-T', $seconds,
			'-f', $script, 'postgres'
		],
		'>', $out, '2>', $err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default + $seconds));
}

# The pids of the workers connected to a database (to any database when
# none is named), comma-separated.
sub workers
{
	my ($db) = @_;
	my $of_db = defined $db ? "AND datname = '$db'" : '';
	return sql(qq(
		SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '')
		FROM pg_stat_activity
		WHERE backend_type = 'pg_eventstore worker' $of_db));
}

# The positions read_all returns on a database after a cursor (0: from the
# start), page after page of 100 until one comes back empty, in the order
# returned: what a consumer that follows the log from that cursor gets.
sub read_all_after
{
	my ($db, $cursor) = @_;
	my @got;
	while (1)
	{
		my @page = split /\n/, sql_in($db,
			"SELECT global_position FROM eventstore.read_all($cursor, 100)");
		last unless @page;
		push @got, @page;
		$cursor = $page[-1];
	}
	return @got;
}

# A query for a read model that logs every event it applies as a row
# (projection, global_position) of es_w.applied, so that a lost or doubled
# event shows: "lost=L doubled=D extra=X", the events of the types that
# the projection did not apply, applied more than once, or applied but not
# of its types.
sub read_model_check
{
	my ($name, $types) = @_;
	return qq{
		SELECT format('lost=%s doubled=%s extra=%s',
		  (SELECT count(*) FROM eventstore.events e
		   WHERE e.event_type = ANY ($types)
		     AND NOT EXISTS (SELECT FROM es_w.applied a
		                     WHERE a.projection = '$name'
		                       AND a.global_position = e.global_position)),
		  (SELECT count(*) FROM (SELECT FROM es_w.applied
		                         WHERE projection = '$name'
		                         GROUP BY global_position HAVING count(*) > 1) d),
		  (SELECT count(*) FROM es_w.applied a
		   WHERE a.projection = '$name'
		     AND NOT EXISTS (SELECT FROM eventstore.events e
		                     WHERE e.global_position = a.global_position
		                       AND e.event_type = ANY ($types))))};
}

# The end of a load that followers and an async projection followed: wait
# until the read horizon passes every event, call the statement $consume
# (a sprintf format taking a receiver's id) for each id in @$ids until it
# returns 0, and wait until the worker has applied the projection named
# $projection up to the log's last event.  Two tests.
sub drain_followers
{
	my ($consume, $ids, $projection) = @_;
	ok( $node->poll_query_until('postgres', q(
			SELECT eventstore.log_horizon() > (SELECT max(transaction_id) FROM eventstore.events))),
		"drain: the read horizon passes every event");
	for my $id (@$ids)
	{
		1 while sql(sprintf($consume, $id)) > 0;
	}
	ok( $node->poll_query_until('postgres', qq(
			SELECT status = 'active' AND lag_events = 0
			       AND checkpoint = (SELECT global_position FROM eventstore.events
			                         ORDER BY transaction_id DESC, global_position DESC LIMIT 1)
			FROM eventstore.projection_status WHERE name = '$projection')),
		'drain: the worker applied the projection up to the last event');
	return;
}

# What a receiver of the log got wrong, with $ctes a WITH clause defining
# got (receiver, n: the order received, pos, stream_id, revision) and part
# (receiver, pos: the events it should get): the events it received, those
# of its part it never received (missed), those it received twice
# (doubled) and those it received after a later revision of their stream.
sub receiver_faults
{
	my ($ctes, $r) = @_;
	return split /\|/, sql(qq{
		$ctes
		SELECT format('%s|%s|%s|%s',
		  (SELECT count(*) FROM got WHERE receiver = '$r'),
		  (SELECT count(*) FROM part p WHERE p.receiver = '$r'
		     AND NOT EXISTS (SELECT FROM got g WHERE g.receiver = '$r' AND g.pos = p.pos)),
		  (SELECT count(*) - count(DISTINCT pos) FROM got WHERE receiver = '$r'),
		  (SELECT count(*)
		   FROM (SELECT revision,
		                max(revision) OVER (PARTITION BY stream_id ORDER BY n
		                                    ROWS BETWEEN UNBOUNDED PRECEDING
		                                         AND 1 PRECEDING) AS later_seen
		         FROM got WHERE receiver = '$r') x
		   WHERE later_seen > revision))});
}

# Kill a server process with SIGKILL and wait until the postmaster has
# restarted every process and accepts connections again.  Returns where the
# server log stood before the kill, for the caller's own checks.
sub crash_and_wait
{
	my ($pid) = @_;
	my $offset = -s $node->logfile;
	kill 'KILL', $pid or die "could not kill $pid: $!";
	$node->wait_for_log(qr/all server processes terminated; reinitializing/,
		$offset);
	$node->wait_for_log(qr/database system is ready to accept connections/,
		$offset);
	return $offset;
}

# "missed=M doubled=D extra=X order=same" for a list received against the
# list wanted (items compared as strings); order names the first index
# where the two lists differ.
sub compare_lists
{
	my ($got, $want) = @_;
	my (%wanted, %seen);
	$wanted{$_} = 1 for @$want;
	$seen{$_}++ for @$got;
	my $missed = grep { !$seen{$_} } @$want;
	my $doubled = grep { $_ > 1 } values %seen;
	my $extra = grep { !$wanted{$_} } keys %seen;
	my $order = 'same';
	for my $i (0 .. ($#$got > $#$want ? $#$got : $#$want))
	{
		if (($got->[$i] // '') ne ($want->[$i] // ''))
		{
			$order = "differs at $i";
			last;
		}
	}
	return "missed=$missed doubled=$doubled extra=$extra order=$order";
}

# How long the test took, as a note.
sub note_time_taken
{
	note sprintf('took %.1f s', time - $started);
	return;
}

1;
