# Archival by the worker across a kill -9 of the worker mid-batch, with a
# consumer following the log through it.
#
# Claims proven here:
# - A worker killed with SIGKILL inside an archival batch (held there by a
#   slow row trigger on the archive, so the kill lands mid-transaction)
#   makes the server restart; the new worker resumes the queued
#   archive_events from its last committed batch and finishes it: every
#   old event is in eventstore.events_archive once (the row's count equals
#   the archive's rows), none is in both tables, none is lost (the two
#   tables hold exactly the positions appended).
# - Archival waits for a consumer's stored checkpoint: a consumer that
#   follows the log with read_all and store_checkpoint, before, during and
#   after the archival and the crash (events appended meanwhile too),
#   receives every event once, in log order: nothing missed, nothing
#   doubled.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use EventstoreTest qw(:DEFAULT compare_lists);

my $node = start_node('archive_crash', q(
restart_after_crash = on
pg_eventstore.databases = 'postgres'
pg_eventstore.poll_interval = '100ms'
pg_eventstore.retry_interval = '200ms'
pg_eventstore.maintenance_batch_size = 100
));

# The log: 3,000 old events over 30 streams, then a cutoff, then 300 new.
sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE SCHEMA es_a;
	CREATE TABLE es_a.knob (slow boolean NOT NULL);
	INSERT INTO es_a.knob VALUES (false);
	CREATE FUNCTION es_a.slow() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT slow FROM es_a.knob) THEN PERFORM pg_sleep(0.01); END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER slow BEFORE INSERT ON eventstore.events_archive
		FOR EACH ROW EXECUTE FUNCTION es_a.slow();
});
for my $round (1 .. 10)
{
	sql(q{SELECT count(eventstore.append_to_stream('s-' || s,
		(SELECT jsonb_agg(jsonb_build_object('type', 'old')) FROM generate_series(1, 10))))
		FROM generate_series(1, 30) s});
}
my $cutoff = sql('SELECT clock_timestamp()');
sql(q{SELECT count(eventstore.append_event('s-' || s, 'new', '{}')) FROM generate_series(1, 30) s, generate_series(1, 10)});

# The consumer: one page of read_all after its checkpoint, then the
# checkpoint stored; returns the positions received.
my @received;
my $checkpoint = 'NULL';
sub consume
{
	my @page = split /\n/, sql(qq{
		SELECT global_position FROM eventstore.read_all(
			eventstore.read_checkpoint('follower'), 250)});
	return 0 unless @page;
	push @received, @page;
	sql(qq{SELECT eventstore.store_checkpoint('follower', $page[-1], $checkpoint)});
	$checkpoint = $page[-1];
	return scalar @page;
}
consume() for 1 .. 4;    # 1,000 events received

is(sql("SELECT eventstore.archive_events('$cutoff')"), '3000', 'archive_events queues the 3,000 old events');
ok(poll_sql(q{SELECT events = 1000 AND details->>'waiting_for' = 'processor follower partition default'
              FROM eventstore.maintenance_log WHERE action = 'archive_events'}),
	'the worker moves the 1,000 the consumer has read, then waits for it');

# Into a slow batch, and kill the worker inside it.
sql('UPDATE es_a.knob SET slow = true');
consume() for 1 .. 2;    # 1,500 received
my $pid;
ok(poll_sql(q{SELECT count(*) = 1 FROM pg_stat_activity
              WHERE backend_type = 'pg_eventstore worker'
                AND query = 'pg_eventstore: archiving events' AND wait_event = 'PgSleep'}),
	'the worker is inside an archival batch');
$pid = sql(q{SELECT pid FROM pg_stat_activity
             WHERE backend_type = 'pg_eventstore worker' AND query = 'pg_eventstore: archiving events'});
my $moved_before = sql(q{SELECT events FROM eventstore.maintenance_log WHERE action = 'archive_events'});
crash_and_wait($pid);
sql('UPDATE es_a.knob SET slow = false');
# (one snapshot for both: the restarted worker may commit a batch between
# two statements)
my ($moved_after, $archived) = split /\|/, sql(q{
	SELECT (SELECT events FROM eventstore.maintenance_log WHERE action = 'archive_events')
	       || '|' || (SELECT count(*) FROM eventstore.events_archive)});
cmp_ok($moved_after, '>=', $moved_before, 'the committed batches stand after the crash');
is($archived, $moved_after,
	'the archive holds exactly what the row counts: the batch in flight was rolled back whole');

# New appends, and the consumer goes on until archival is done and it has
# read everything.
sql(q{SELECT count(eventstore.append_event('s-' || s, 'after', '{}')) FROM generate_series(1, 30) s});
for (my $i = 0; $i < 2000; $i++)
{
	my $n = consume();
	last if $n == 0 && sql(q{SELECT finished_at IS NOT NULL FROM eventstore.maintenance_log
	                         WHERE action = 'archive_events'}) eq 't';
	usleep(50_000) if $n == 0;
}
ok(poll_sql(q{SELECT finished_at IS NOT NULL AND events = 3000
              FROM eventstore.maintenance_log WHERE action = 'archive_events'}),
	'the new worker finishes the archival: 3,000 moved');
is(sql('SELECT count(*) FROM eventstore.events_archive'), '3000', 'the archive holds 3,000 events');
is(sql(q{SELECT count(*) FROM eventstore.events_archive a
         WHERE a.created_at < '} . $cutoff . q{' AND a.event_type = 'old'}), '3000',
	'all of them the old ones');
is(sql(q{SELECT count(*) FROM eventstore.events e JOIN eventstore.events_archive a USING (global_position)}),
	'0', 'no event is in both tables');
is(sql(q{SELECT count(*) || ' ' || count(DISTINCT global_position) || ' ' || min(global_position) || ' ' || max(global_position)
         FROM (SELECT global_position FROM eventstore.events
               UNION ALL SELECT global_position FROM eventstore.events_archive) x}),
	'3330 3330 1 3330', 'no event is lost: the log and the archive hold every position appended');

my @want = split /\n/, sql(q{
	SELECT global_position FROM (SELECT transaction_id, global_position FROM eventstore.events
	                             UNION ALL
	                             SELECT transaction_id, global_position FROM eventstore.events_archive) x
	ORDER BY transaction_id, global_position});
is(compare_lists(\@received, \@want), 'missed=0 doubled=0 extra=0 order=same',
	'the consumer received every event once, in log order, through the archival and the crash');

$node->stop;
done_testing();
