# Processor claims and checkpoints across session ends, backend crashes and
# immediate shutdowns.
#
# Claims proven here:
# - A claim held by a session whose backend is killed (SIGKILL, so
#   PostgreSQL restarts every backend) is free once the server is back:
#   eventstore.processors shows the dead owner as 'stale' (its instance and
#   pid) and the next claim succeeds.  The crash also frees claims of other
#   sessions.  A checkpoint committed before the crash is kept; one stored
#   by a transaction still open at the crash (an update of an existing row,
#   and the first store of another processor) is not.
# - A holder that disconnects cleanly frees its claim at once, without a
#   restart: once its backend is gone the next claim succeeds at the first
#   try.  Its row shows it 'stale' (it never released).
# - An immediate shutdown and restart keeps committed checkpoints, loses an
#   uncommitted one, and frees every claim.
# - A claim made in a transaction that rolls back is given back at once:
#   another session can claim the processor, and the first can claim it again
#   and release it.
#
# Every wait is bounded: statements, sessions and polls time out after
# PostgreSQL::Test::Utils's timeout_default (180 s, or
# PG_TEST_TIMEOUT_DEFAULT), a bound for a hang, not a slow machine.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventstoreTest;

my $node = start_node('claims', 'restart_after_crash = on');

# End a session whose backend may already be gone.
sub quit_dead
{
	my ($s) = @_;
	eval { $s->quit; };
	return;
}

# The row of eventstore.processors, as "owner_instance|status|owner_pid".
sub owner
{
	my ($processor, $partition) = @_;
	$partition //= 'default';
	return sql(qq(SELECT concat_ws('|', coalesce(owner_instance, '-'), status,
	                            coalesce(owner_pid::text, '-'))
	            FROM eventstore.processors
	            WHERE processor_id = '$processor' AND partition = '$partition'));
}

# Wait until the backend with this pid has ended.
sub wait_gone
{
	my ($pid) = @_;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
		"backend $pid has ended");
}

sql(q(CREATE EXTENSION pg_eventstore;
    SELECT eventstore.append_to_stream('order-1',
        (SELECT jsonb_agg(jsonb_build_object('type', t))
         FROM unnest(ARRAY['A', 'B', 'C', 'D', 'E']) AS t));));

# --- A holder's backend killed with SIGKILL --------------------------------

my $holder = session();
my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
is($holder->query_safe("SELECT eventstore.claim_processor('proj', 'inst-a')"),
	't', 'crash: the holder claims the processor');
is($holder->query_safe("SELECT eventstore.store_checkpoint('proj', 2, NULL)"),
	'stored', 'crash: the holder commits checkpoint 2');

# Another instance holds another processor: the crash takes it down too.
my $bystander = session();
is($bystander->query_safe("SELECT eventstore.claim_processor('other', 'inst-z')"),
	't', 'crash: a bystander claims another processor');

# Stored in a transaction left open at the crash.
$holder->query_safe('BEGIN');
is($holder->query_safe("SELECT eventstore.store_checkpoint('proj', 4, 2)"),
	'stored', 'crash: the holder stores checkpoint 4 in an open transaction');
is($holder->query_safe("SELECT eventstore.store_checkpoint('fresh', 3, NULL)"),
	'stored', 'crash: and a first checkpoint of another processor');

is(sql("SELECT eventstore.claim_processor('proj', 'inst-b')"),
	'f', 'crash: a second instance cannot claim the held processor');
is(owner('proj'), "inst-a|running|$holder_pid",
	'crash: processors shows the holder running');

my $log_offset = crash_and_wait($holder_pid);
ok($node->poll_query_until('postgres', 'SELECT true'),
	'crash: the server accepts connections again');
ok( $node->log_contains(
		qr/server process \(PID $holder_pid\) was terminated by signal 9/,
		$log_offset),
	'crash: the server restarted because the holder was killed');
quit_dead($holder);
quit_dead($bystander);

is(owner('proj'), "inst-a|stale|$holder_pid",
	'crash: processors shows the dead holder stale');
is(sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 17747"),
	'0', 'crash: no claim survives the restart');
is(sql("SELECT eventstore.read_checkpoint('proj')"),
	'2', 'crash: the committed checkpoint is kept, the uncommitted one lost');
is(sql("SELECT count(*) FROM eventstore.checkpoints WHERE processor_id = 'fresh'"),
	'0', 'crash: the uncommitted first checkpoint left no row');
is( sql(qq(SELECT eventstore.claim_processor('proj', 'inst-b');
         SELECT concat_ws('|', owner_instance, status, owner_pid = pg_backend_pid())
         FROM eventstore.processors WHERE processor_id = 'proj')),
	"t\ninst-b|running|t",
	'crash: the next claim succeeds and processors shows its owner running');
is(sql("SELECT eventstore.claim_processor('other', 'inst-y')"),
	't', "crash: the bystander's claim is free too");

# --- A holder that disconnects cleanly --------------------------------------

my $start_time = sql('SELECT pg_postmaster_start_time()');
$holder = session();
$holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
is($holder->query_safe("SELECT eventstore.claim_processor('proj', 'inst-c')"),
	't', 'disconnect: the holder claims the processor');
is(sql("SELECT eventstore.claim_processor('proj', 'inst-d')"),
	'f', 'disconnect: a second instance cannot claim it');
$holder->quit;
wait_gone($holder_pid);
is(owner('proj'), "inst-c|stale|$holder_pid",
	'disconnect: processors shows the holder stale (it never released)');
is(sql("SELECT eventstore.claim_processor('proj', 'inst-d')"),
	't', 'disconnect: the next claim succeeds at the first try');
is(sql('SELECT pg_postmaster_start_time()'), $start_time,
	'disconnect: without a restart');

# --- An immediate shutdown ------------------------------------------------

my $h1 = session();
my $h2 = session();
my $h1_pid = $h1->query_safe('SELECT pg_backend_pid()');
my $h2_pid = $h2->query_safe('SELECT pg_backend_pid()');
is($h1->query_safe("SELECT eventstore.claim_processor('proj', 'inst-e')"),
	't', 'immediate: one instance claims partition default');
is($h2->query_safe("SELECT eventstore.claim_processor('proj', 'inst-f', 'p1')"),
	't', 'immediate: another claims partition p1');
is($h2->query_safe("SELECT eventstore.store_checkpoint('proj', 5, NULL, 'p1')"),
	'stored', 'immediate: p1 commits checkpoint 5');
$h1->query_safe('BEGIN');
is($h1->query_safe("SELECT eventstore.store_checkpoint('proj', 3, 2)"),
	'stored', 'immediate: default stores checkpoint 3 in an open transaction');

$node->stop('immediate');
quit_dead($h1);
quit_dead($h2);
$node->start;

is(owner('proj'), "inst-e|stale|$h1_pid",
	'immediate: processors shows the default owner stale');
is(owner('proj', 'p1'), "inst-f|stale|$h2_pid",
	'immediate: and the p1 owner stale');
is( sql(q(SELECT string_agg(partition || '=' || coalesce("position"::text, '-'), ',' ORDER BY partition)
        FROM eventstore.checkpoints WHERE processor_id = 'proj')),
	'default=2,p1=5',
	'immediate: committed checkpoints are kept, the uncommitted one lost');
is( sql(qq(SELECT eventstore.claim_processor('proj', 'inst-g');
         SELECT eventstore.claim_processor('proj', 'inst-g', 'p1');
         SELECT eventstore.claim_processor('other', 'inst-g');)),
	"t\nt\nt", 'immediate: every claim is free after the restart');

# --- A claim in a rolled-back transaction ---------------------------------

{
	my $s = session();
	$s->query_safe('BEGIN');
	is($s->query_safe("SELECT eventstore.claim_processor('proj', 'inst-h')"),
		't', 'rollback: the claim succeeds inside the transaction');
	$s->query_safe('ROLLBACK');
	is(sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 17747"),
		'0', 'rollback: the claim is given back with the transaction');
	is($s->query_safe("SELECT eventstore.claim_processor('proj', 'inst-h')"),
		't', 'rollback: the same instance claims again');
	is(sql("SELECT eventstore.claim_processor('proj', 'inst-i')"),
		'f', 'rollback: while it holds it again, another instance cannot');
	is($s->query_safe("SELECT eventstore.release_processor('proj', 'inst-h')"),
		't', 'rollback: the re-claim is released');
	is(sql("SELECT eventstore.claim_processor('proj', 'inst-i')"),
		't', 'rollback: after its release another instance claims it');
	$s->quit;
}

$node->stop;
note_time_taken();
done_testing();
