# Retention enforced by the worker while clients append.
#
# Claims proven here:
# - With rules set (ret-: max_count 5; keep-: under the longer prefix
#   keep-all-, no limit reached), the worker removes the events over the
#   count in passes of small transactions (maintenance_batch_size 20) while
#   four pgbench clients append to those streams; every append succeeds
#   (retention never makes an append fail or wait beyond row locks).
# - Its progress shows in eventstore.maintenance_log while the load runs
#   (a retention row with a count).
# - When the load ends, each ret- stream keeps exactly its last 5 events,
#   contiguous revisions up to its revision (a stream loses events from its
#   start only); the keep-all- streams keep all of theirs.
# - Every removed event left its place in removed_log_places exactly once
#   and is gone from the log; the retention rows' counts add up to them; a
#   consumer following from a removed event's position resumes in place.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventstoreTest qw(:DEFAULT compare_lists);

my $node = start_node('retention_worker', q(
pg_eventstore.databases = 'postgres'
pg_eventstore.poll_interval = '100ms'
pg_eventstore.retention_interval = '1s'
pg_eventstore.maintenance_batch_size = 20
));

sql(q{
	CREATE EXTENSION pg_eventstore;
	SELECT eventstore.set_retention('ret-', max_count => 5);
	SELECT eventstore.set_retention('keep-', max_count => 5);
	SELECT eventstore.set_retention('keep-all-', max_count => 1000000);
});

my $script = $node->basedir . '/append.sql';
PostgreSQL::Test::Utils::append_to_file($script, q{
\set s random(1, 20)
SELECT eventstore.append_event('ret-' || :s, 'T', '{}');
\set k random(1, 3)
SELECT eventstore.append_event('keep-all-' || :k, 'T', '{}');
});

my ($out, $err) = ('', '');
my $load = start_pgbench($script, 4, 8, \$out, \$err);
ok(poll_sql(q{SELECT EXISTS (SELECT FROM eventstore.maintenance_log
                             WHERE action = 'retention' AND events > 0)}),
	'while the clients append, the worker records retention passes with their counts');
ok($load->finish, 'every append succeeded') or diag "pgbench: $out\n$err";
my ($done) = $out =~ /number of transactions actually processed: (\d+)/;
note "pgbench: $done transactions";
like($out, qr/number of failed transactions: 0 /, 'pgbench reports no failed transaction');

ok(poll_sql(q{
	SELECT bool_and(n = least(5, s.revision + 1) AND lo = s.revision - n + 1)
	FROM eventstore.streams s
	CROSS JOIN LATERAL (SELECT count(*) AS n, min(revision) AS lo FROM eventstore.events e
	                    WHERE e.stream_id = s.stream_id) l
	WHERE s.stream_id LIKE 'ret-%'}),
	'then each ret- stream keeps exactly its last 5 events, contiguous up to its revision');
is(sql(q{
	SELECT bool_and(n = s.revision + 1)
	FROM eventstore.streams s
	CROSS JOIN LATERAL (SELECT count(*) AS n FROM eventstore.events e
	                    WHERE e.stream_id = s.stream_id) l
	WHERE s.stream_id LIKE 'keep-all-%'}), 't',
	'the keep-all- streams, under the longest prefix, keep every event');

my $appended_ret = sql(q{SELECT sum(revision + 1) FROM eventstore.streams WHERE stream_id LIKE 'ret-%'});
my $live_ret = sql(q{SELECT count(*) FROM eventstore.events WHERE stream_id LIKE 'ret-%'});
is(sql('SELECT count(*) FROM eventstore.removed_log_places'), $appended_ret - $live_ret,
	'every removed event left its place in removed_log_places');
is(sql(q{SELECT count(*) FROM eventstore.removed_log_places r
         JOIN eventstore.events e USING (global_position)}), '0',
	'none of them is still in the log');
ok(poll_sql(q{
	SELECT (SELECT sum(events) FROM eventstore.maintenance_log WHERE action = 'retention')
	       = (SELECT count(*) FROM eventstore.removed_log_places)
	   AND NOT EXISTS (SELECT FROM eventstore.maintenance_log
	                   WHERE action = 'retention' AND finished_at IS NULL)}),
	'the retention rows of maintenance_log are finished and their counts add up to the removed events');

my $first_removed = sql('SELECT min(global_position) FROM eventstore.removed_log_places');
my @after = read_all_after('postgres', $first_removed);
my @want = split /\n/, sql(qq{
	SELECT global_position FROM eventstore.events
	WHERE (transaction_id, global_position) >
	      (SELECT transaction_id, global_position FROM eventstore.removed_log_places
	       WHERE global_position = $first_removed)
	ORDER BY transaction_id, global_position});
is(compare_lists(\@after, \@want), 'missed=0 doubled=0 extra=0 order=same',
	'a consumer following from a removed event resumes at its place');

$node->stop;
done_testing();
