# A crash during a projection's backfill restarts it cleanly.
#
# Claims proven here:
# - The backfill, its checkpoint and the mark that it ran commit together:
#   a session whose run_projection is in the middle of a backfill (half of
#   the events written to the read model, the statement waiting on a lock)
#   killed with SIGKILL leaves nothing of it after crash recovery: the read
#   model as before, the projection rebuilding in phase backfill with its
#   checkpoint at the start.  The next run_projection runs on_reset and the
#   backfill again, and every event is in the read model once.
# - The same when the background worker drives the backfill and is the
#   process killed: after the restart the worker runs the backfill again
#   (on_reset first) and brings the projection to active, every event
#   once; one death alone does not fail the projection.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventstoreTest;

my $node = start_node('backfill_crash', q(
restart_after_crash = on
pg_eventstore.databases = ''
pg_eventstore.poll_interval = '200ms'
pg_eventstore.retry_interval = '200ms'
));

# 1,000 events over 10 streams; a read model of one row per event; a gate
# that makes the backfill wait, half-way through its events, for advisory
# lock 4242 while a session holds it.
sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE TABLE rm (projection text, global_position bigint,
					 PRIMARY KEY (projection, global_position));
	CREATE TABLE resets (projection text, at timestamptz DEFAULT clock_timestamp());
	CREATE FUNCTION gate(n bigint) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		IF n = 500 THEN
			PERFORM pg_advisory_xact_lock_shared(4242);
		END IF;
		RETURN true;
	END $$;
	CREATE FUNCTION apply(e eventstore.events) RETURNS void LANGUAGE sql AS $$
		INSERT INTO rm VALUES ('unused', e.global_position) $$;
	SELECT count(eventstore.append_to_stream('s-' || s,
		(SELECT jsonb_agg(jsonb_build_object('type', 'Added')) FROM generate_series(1, 100))))
	FROM generate_series(1, 10) s;
});

# The projection `name`, whose backfill writes a row per event (the 500th
# in log order waits at the gate) and whose on_reset empties its rows and
# records that it ran.
sub create_projection
{
	my ($name) = @_;
	sql(qq{
		SELECT eventstore.create_projection('$name', 'apply',
			on_reset => \$r\$DELETE FROM rm WHERE projection = '$name';
						  INSERT INTO resets VALUES ('$name')\$r\$,
			backfill => \$b\$INSERT INTO rm
				SELECT '$name', global_position FROM
				  (SELECT global_position, row_number() OVER () AS n
				   FROM eventstore.backfill_events()) e
				WHERE gate(e.n)\$b\$);
	});
	return;
}

# "rows=R lost=L status phase checkpoint backfilled resets=N" of a projection
sub state_of
{
	my ($name) = @_;
	return sql(qq{
		SELECT format('rows=%s lost=%s %s %s %s %s resets=%s',
		  (SELECT count(*) FROM rm WHERE projection = '$name'),
		  (SELECT count(*) FROM eventstore.events e WHERE NOT EXISTS
		    (SELECT FROM rm WHERE projection = '$name' AND global_position = e.global_position)),
		  s.status, s.phase, s.checkpoint,
		  CASE WHEN s.backfilled_at IS NULL THEN 'not-backfilled' ELSE 'backfilled' END,
		  (SELECT count(*) FROM resets WHERE projection = '$name'))
		FROM eventstore.projection_status s WHERE s.name = '$name'});
}

# The pid waiting for the gate's lock, once one is.
sub gate_waiter
{
	ok( poll_sql(q{SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'
				   AND objid = 4242 AND NOT granted)}),
		'the backfill waits at the gate');
	return sql(q{SELECT pid FROM pg_locks WHERE locktype = 'advisory'
				 AND objid = 4242 AND NOT granted});
}

# --- a session's run_projection killed in the middle of a backfill -------
create_projection('by_session');
is(state_of('by_session'), 'rows=0 lost=1000 rebuilding backfill 0 not-backfilled resets=0',
	'created over the log: in phase backfill');
my $gatekeeper = session();
$gatekeeper->query_safe('SELECT pg_advisory_lock(4242)');
my $runner = session();
my $runner_pid = $runner->query_safe('SELECT pg_backend_pid()');
$runner->query_until(qr/started/, q(\echo started
SELECT eventstore.run_projection('by_session');
));
is(gate_waiter(), $runner_pid, '... in the session that runs it');
is(sql(q{SELECT pg_relation_size('rm') > 0}), 't',
	'... having written part of its rows (uncommitted)');
# (the crash ends the gatekeeper's session too, and its lock)
crash_and_wait($runner_pid);
is(state_of('by_session'), 'rows=0 lost=1000 rebuilding backfill 0 not-backfilled resets=0',
	'after the crash nothing of the backfill is left, its checkpoint at the start');
is(sql(q{SELECT eventstore.run_projection('by_session')}), '0',
	'run_projection runs the backfill again');
is(state_of('by_session'), 'rows=1000 lost=0 active live 1000 backfilled resets=1',
	'... on_reset first, then every event once: active at the head');

# --- the worker killed in the middle of a backfill ------------------------
$gatekeeper = session();
$gatekeeper->query_safe('SELECT pg_advisory_lock(4242)');
create_projection('by_worker');
sql(q{ALTER SYSTEM SET pg_eventstore.databases = 'postgres'; SELECT pg_reload_conf()});
my $worker_pid = gate_waiter();
ok((grep { $_ eq $worker_pid } split /,/, workers('postgres')),
	'... in the worker that runs it');
crash_and_wait($worker_pid);
ok(poll_sql(q{SELECT status = 'active' FROM eventstore.projection_status WHERE name = 'by_worker'}),
	'after the restart the worker builds the projection');
is(state_of('by_worker'), 'rows=1000 lost=0 active live 1000 backfilled resets=1',
	'... with its backfill run again from the start, on_reset first: every event once');
like(sql(q{SELECT count(*) FROM eventstore.projection_status WHERE status = 'failed'}), qr/^0$/,
	'one death alone fails no projection');

$node->stop;
note_time_taken();
done_testing();
