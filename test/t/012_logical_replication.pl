# Logical replication of the log (SPEC §6): a subscriber set up as the
# README says serves read_all with the same guarantee in its own apply
# order, keeps each stream's row with its events from the initial copy on,
# runs an async projection with its own worker and keeps its own
# checkpoints, and refuses appends.
#
# Claims proven here (every list is compared in full, in order; an event is
# "position stream/revision"):
# - Initial copy.  The publisher has a log of some thousands of events
#   (bulk batches over 20 streams, and random writers with late commits)
#   when the subscription is created, and the writers go on during the
#   copy and the catch-up after it.  A reader on the subscriber polling all
#   along never sees a streams row without every event of its stream up to
#   its revision, nor events beyond a stream's row (one statement, one
#   snapshot, per poll).  At the end the subscriber's events (position,
#   stream, revision, event id) are the publisher's, its streams rows
#   (stream_id, revision) are the publisher's, and read_all from 0 returns
#   exactly the subscriber's log, each stream in revision order.  The
#   replica trigger fired in the table-sync COPY: every event the publisher
#   had before the subscription has one and the same transaction_id on the
#   subscriber (the COPY's transaction), where the publisher has many, the
#   streams rows (not published) are there, and the subscriber has its own
#   incarnation, reason 'subscriber'.
# - A late commit.  On the publisher A takes its xid (writes a table of its
#   own) and appends late; B appends to two streams and commits; a follower
#   on the subscriber reads B's events (the publisher's read_all still
#   holds them back behind A); A appends to a stream of its own and to B's
#   stream (the outbox case) and commits; the follower, going on from its
#   cursor, gets A's two events.  On the publisher A's key is below B's; on
#   the subscriber A's events come after B's, and the shared stream is in
#   revision order on both.
# - A position the publisher issued and the subscriber has not received
#   yet (subscription disabled) is SE008, and arrives once it is enabled.
# - Ten seconds of random load on the publisher (three writers; several
#   streams per transaction, early xids, the outbox pattern, batches,
#   rollbacks, late commits) while the same follower reads read_all on the
#   subscriber continuously: once the subscriber has caught up, what the
#   follower received over the whole test is exactly the subscriber's log
#   in its log order and exactly the publisher's set of events: nothing
#   missed, nothing doubled, every stream in revision order.  The load had
#   late commits and the two nodes' orders differ.
# - An async projection created on the subscriber (its own registry; the
#   subscriber's worker) applies every replicated event of its types once,
#   each stream in revision order (the set-based answer); the publisher has
#   no projection.  store_checkpoint on the subscriber stores the
#   subscriber's own key for the position and the publisher has no
#   checkpoint.
# - append_event and append_to_stream on the subscriber are SE009 with
#   their message; node_role() is 'subscriber' there and 'primary' on the
#   publisher.  set_subscriber_mode(false) is refused (55000, naming the
#   subscription) while a subscription replicates eventstore.events, also
#   a disabled one.  After DROP SUBSCRIPTION and set_subscriber_mode(false)
#   node_role() is 'primary', and an append there works and comes after
#   the whole replicated log, at the first position of the block (2^40)
#   after the publisher's last: never one the publisher issued.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default; the
# figures (events, polls during the copy, late commits) are noted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use EventstoreTest qw(:DEFAULT compare_lists);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;

# How long the writers run before the subscription, during its initial
# copy, and for the load, in seconds.
my ($before_seconds, $copy_seconds, $load_seconds) = (1, 3, 10);

# The publisher runs no worker; the subscriber's serves its database.
my $pub = start_node('publisher', q(
track_commit_timestamp = on
pg_eventstore.databases = ''
), allows_streaming => 'logical');
my $sub = start_node('subscriber', q(
max_worker_processes = 16
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 1
pg_eventstore.batch_size = 50
pg_eventstore.poll_interval = '20ms'
pg_eventstore.retry_interval = '200ms'
));

# Statements on a node, failing the test on an error; their output.
sub on
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql, timeout => $timeout);
}

# "SQLSTATE: message" of the error statements raise on a node.
sub error_on
{
	my ($node, $sql) = @_;
	use_node($node);
	my $error = sql_error($sql);
	return $error ? "$error->{sqlstate}: $error->{message}" : 'no error';
}

# An event as the lists here show it.
my $event = q{format('%s %s/%s', global_position, stream_id, revision)};

# A node's log in its log order, and its events in position order.
sub log_of
{
	my ($node) = @_;
	return split /\n/, on($node, qq{
		SELECT $event FROM eventstore.events ORDER BY transaction_id, global_position});
}

sub set_of
{
	my ($node) = @_;
	return split /\n/, on($node, qq{
		SELECT $event || ' ' || event_id FROM eventstore.events ORDER BY global_position});
}

# The events of a list, as "position stream/revision", ordered by position.
sub by_position
{
	return sort { ($a =~ /^(\d+)/)[0] <=> ($b =~ /^(\d+)/)[0] } @_;
}

# How many events of a list do not follow their stream's previous one
# (revision 0 first, then +1 each).
sub stream_order_breaks
{
	my (%next, $breaks);
	$breaks = 0;
	for (@_)
	{
		my ($stream, $revision) = m{^\d+ (.*)/(\d+)$} or die "not an event: $_";
		$breaks++ if $revision != ($next{$stream} // 0);
		$next{$stream} = $revision + 1;
	}
	return $breaks;
}

# The follower on the subscriber: every event it received, in order.  One
# read_all call from the position of the last one; returns the page.
my $follower = $sub->background_psql('postgres', timeout => $timeout);
$follower->set_query_timer_restart;
my @got;
sub follow
{
	my ($max) = @_;
	my $cursor = @got ? ($got[-1] =~ /^(\d+)/)[0] : 0;
	my @page = split /\n/, $follower->query_safe(
		"SELECT $event FROM eventstore.read_all($cursor, $max)");
	push @got, @page;
	return @page;
}

# Follow until `count` events are received (the subscriber has them all
# and its read horizon passed them).
sub follow_to
{
	my ($count) = @_;
	my $deadline = time + $timeout;
	while (@got < $count && time < $deadline)
	{
		usleep(20_000) if follow(500) == 0;
	}
	return;
}

# Random writers on the publisher (pgbench).  Each transaction appends to
# random streams: 20% take their xid and positions early, nap and append to
# a second stream (a late commit); 10% append to three streams, one a
# batch; 10% write es_t.outbox first and append after a nap (the outbox
# pattern: xid early, position late); 10% append a batch of three; 10% of
# them all roll back.  Streams are locked in increasing number, so the
# writers never deadlock.
my $script = $pub->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file($script, <<'EOF');
\set a random(1, 40)
\set b :a + random(1, 20)
\set c :b + random(1, 20)
\set kind random(1, 10)
\set rb random(1, 10)
BEGIN;
\if :kind <= 2
SELECT eventstore.append_event('w-' || :a, 'Tick', '{"k": "early"}');
SELECT pg_sleep(random() * 0.03);
SELECT eventstore.append_event('w-' || :b, 'Tock', '{}');
\elif :kind = 3
SELECT eventstore.append_event('w-' || :a, 'Tick', '{}');
SELECT eventstore.append_to_stream('w-' || :b, '[{"type": "Tock"}, {"type": "Tick"}]');
SELECT eventstore.append_event('w-' || :c, 'Tick', '{}');
\elif :kind = 4
INSERT INTO es_t.outbox VALUES (:a);
SELECT pg_sleep(random() * 0.03);
SELECT eventstore.append_event('w-' || :a, 'Tick', '{"k": "outbox"}');
\elif :kind = 5
SELECT eventstore.append_to_stream('w-' || :a, '[{"type": "Batch"}, {"type": "Tick"}, {"type": "Batch"}]');
\else
SELECT eventstore.append_event('w-' || :a, 'Tick', '{}');
\endif
\if :rb = 1
ROLLBACK;
\else
COMMIT;
\endif
EOF

# Start the writers for some seconds; returns [handle, \stdout, \stderr].
sub start_writers
{
	my ($seconds) = @_;
	my ($out, $err) = ('', '');
	use_node($pub);
	my $h = start_pgbench($script, 3, $seconds, \$out, \$err);
	return [ $h, \$out, \$err ];
}

sub finish_writers
{
	my ($w, $what) = @_;
	ok($w->[0]->finish, "$what: the writers ran without an error")
	  or diag "pgbench: ${$w->[1]}\n${$w->[2]}";
	my ($n) = ${ $w->[1] } =~ /number of transactions actually processed: (\d+)/;
	note "$what: pgbench ran " . ($n // '?') . ' transactions';
	return;
}

# --- The publisher, with a log ---------------------------------------------

on($pub, q{
	CREATE EXTENSION pg_eventstore;
	SELECT eventstore.create_log_publication();
	CREATE SCHEMA es_t;
	CREATE TABLE es_t.outbox (n integer NOT NULL);
});
is(on($pub, q{
	SELECT format('%s %s %s', pubinsert, pubupdate OR pubdelete OR pubtruncate,
	              (SELECT string_agg(schemaname || '.' || tablename, ',')
	               FROM pg_publication_tables WHERE pubname = p.pubname))
	FROM pg_publication p WHERE pubname = 'eventstore_log'}),
	't f eventstore.events',
	'publisher: create_log_publication publishes the inserts of eventstore.events only');

# Two transactions of 20 streams of 50 events each, then random writers.
for (1 .. 2)
{
	on($pub, q{
		SELECT count(*) FROM generate_series(1, 20) g,
		  eventstore.append_to_stream('bulk-' || g,
		    (SELECT jsonb_agg(jsonb_build_object('type', 'Bulk', 'data', jsonb_build_object('n', i)))
		     FROM generate_series(1, 50) i))});
}
finish_writers(start_writers($before_seconds), 'before the subscription');
my @before = set_of($pub);
note sprintf('publisher: %d events before the subscription', scalar @before);

# --- The subscriber and its initial copy ------------------------------------

# A projection on the subscriber, created before the subscription: it logs
# each event it applies in es_w.applied (n: the order applied), so that a
# lost, doubled or misordered event shows.
my $types = q(ARRAY['Bulk', 'Tick', 'Late']);
on($sub, qq{
	CREATE EXTENSION pg_eventstore;
	SELECT eventstore.set_subscriber_mode(true);
	CREATE SCHEMA es_w;
	CREATE TABLE es_w.applied (n bigserial PRIMARY KEY,
	                           projection text NOT NULL,
	                           global_position bigint NOT NULL,
	                           stream_id text NOT NULL,
	                           revision bigint NOT NULL);
	CREATE FUNCTION es_w.h_relay(e eventstore.events) RETURNS void
	LANGUAGE sql AS \$\$
		INSERT INTO es_w.applied (projection, global_position, stream_id, revision)
		VALUES ('relay', e.global_position, e.stream_id, e.revision);
	\$\$;
	SELECT eventstore.create_projection('relay', 'es_w.h_relay', $types);
});
is(on($sub, 'SELECT eventstore.node_role()'), 'subscriber',
	'subscriber: node_role() is subscriber once set_subscriber_mode(true) ran');

# The reader's poll, one statement: streams rows ahead of their events
# (a revision with no event, or missing events below it), streams rows
# behind their events (or missing), the events, and the table's sync state.
my $poll = q{
	SELECT format('%s %s %s %s',
	  (SELECT count(*) FROM eventstore.streams s
	   WHERE (SELECT count(*) FROM eventstore.events e
	          WHERE e.stream_id = s.stream_id AND e.revision <= s.revision)
	         <> s.revision + 1),
	  (SELECT count(*) FROM (SELECT stream_id, max(revision) AS m
	                         FROM eventstore.events GROUP BY stream_id) e
	   LEFT JOIN eventstore.streams s USING (stream_id)
	   WHERE s.revision IS DISTINCT FROM e.m),
	  (SELECT count(*) FROM eventstore.events),
	  (SELECT coalesce(string_agg(srsubstate::text, ''), '-') FROM pg_subscription_rel))};
my $reader = $sub->background_psql('postgres', timeout => $timeout);
$reader->set_query_timer_restart;
my ($polls, $syncing_polls, $partial_polls, $ahead, $behind) = (0, 0, 0, 0, 0);
my ($first_rows_at, $ready_at);

my $writers = start_writers($copy_seconds);
my $subscribed_at = time;
on($sub, sprintf(q{CREATE SUBSCRIPTION s CONNECTION '%s' PUBLICATION eventstore_log},
	$pub->connstr . ' dbname=postgres'));

# Poll until the writers are done, the table is ready and the subscriber
# has every event of the publisher.
my $final_count;
my $deadline = time + $timeout;
while (time < $deadline)
{
	if (!defined $final_count && !$writers->[0]->pumpable)
	{
		finish_writers($writers, 'during the copy');
		$final_count = on($pub, 'SELECT count(*) FROM eventstore.events');
	}
	$writers->[0]->pump_nb if !defined $final_count;
	my ($ahead_now, $behind_now, $count, $state) = split / /, $reader->query_safe($poll);
	$polls++;
	$ahead += $ahead_now;
	$behind += $behind_now;
	$syncing_polls++ if $state ne 'r';
	$first_rows_at //= time if $count > 0;
	$ready_at //= time if $state eq 'r';
	$partial_polls++ if $count > 0 && (!defined $final_count || $count < $final_count);
	last if defined $final_count && $state eq 'r' && $count == $final_count;
}
$reader->quit;
note sprintf('initial copy: %d polls, %d before the table was ready, %d with part of the log; '
	  . 'first rows %.2f s and ready %.2f s after CREATE SUBSCRIPTION',
	$polls, $syncing_polls, $partial_polls,
	($first_rows_at // time) - $subscribed_at, ($ready_at // time) - $subscribed_at);
is("ahead=$ahead behind=$behind", 'ahead=0 behind=0',
	'initial copy: no poll saw a stream row without its events, nor events beyond their stream row');
SKIP:
{
	# on a loaded machine the copy can end before the first poll returns:
	# the check above then saw only the synced table (said, not failed)
	skip 'the copy ended before the reader\'s first poll: no poll saw it syncing', 1
	  if $syncing_polls == 0 && $polls > 0;
	cmp_ok($syncing_polls, '>', 0, 'initial copy: the reader polled while the table was syncing');
}
cmp_ok($partial_polls, '>', 0, 'initial copy: and while the subscriber had part of the log');

is(compare_lists([ set_of($sub) ], [ set_of($pub) ]),
	'missed=0 doubled=0 extra=0 order=same',
	"initial copy: the subscriber's events are the publisher's (position, stream, revision, id)");
my $streams = q{SELECT string_agg(format('%s/%s', stream_id, revision), ',' ORDER BY stream_id)
	FROM eventstore.streams};
is(on($sub, $streams), on($pub, $streams),
	"initial copy: the subscriber's streams rows are the publisher's");

# The replica trigger ran in the COPY: one key for what was copied, the
# streams rows (not published), an incarnation of the subscriber's own.
my $before_in = join ',', map { /^(\d+)/ } @before;
my $keys_of_before = qq{SELECT count(DISTINCT transaction_id) FROM eventstore.events
	WHERE global_position IN ($before_in)};
is(on($sub, $keys_of_before), '1',
	'initial copy: the events copied have one key on the subscriber, the COPY\'s transaction\'s');
cmp_ok(on($pub, $keys_of_before), '>', 1, 'initial copy: they have many on the publisher');
is(on($sub, q{SELECT string_agg(reason, ',') FROM eventstore.log_incarnations
	WHERE system_identifier = (SELECT system_identifier FROM pg_control_system())}),
	'subscriber', 'initial copy: the subscriber took an incarnation of its own, reason subscriber');

my @copied = set_of($pub);
follow_to(scalar @copied);
is(compare_lists(\@got, [ log_of($sub) ]), 'missed=0 doubled=0 extra=0 order=same',
	"initial copy: read_all from 0 on the subscriber returns the subscriber's log in its order");
is(compare_lists([ by_position(@got) ], [ map { s/ [^ ]+$//r } set_of($pub) ]),
	'missed=0 doubled=0 extra=0 order=same',
	"initial copy: which is the publisher's set of events");
is(stream_order_breaks(@got), 0, 'initial copy: every stream in revision order');

# --- A late commit and the outbox case --------------------------------------

# The end of each node's log (the two orders differ: each node's own).
my $cursor = ($got[-1] =~ /^(\d+)/)[0];
my $pub_cursor = ((log_of($pub))[-1] =~ /^(\d+)/)[0];
my $sa = $pub->background_psql('postgres', timeout => $timeout);
$sa->set_query_timer_restart;
$sa->query_safe('BEGIN');
$sa->query_safe('INSERT INTO es_t.outbox VALUES (0)');
my ($b1, $b2) = split /\n/, on($pub, q{
	BEGIN;
	SELECT last_position FROM eventstore.append_event('late-b', 'Late', '{"by": "B"}');
	SELECT last_position FROM eventstore.append_event('shared', 'Late', '{"by": "B"}');
	COMMIT;});
$pub->wait_for_catchup('s');
my $from = @got;
follow_to($from + 2);
is(join(',', @got[ $from .. $#got ]), "$b1 late-b/0,$b2 shared/0",
	"late commit: the follower on the subscriber reads B's events while A is open on the publisher");
is(on($pub, "SELECT string_agg($event, ',') FROM eventstore.read_all($pub_cursor)"), '',
	'late commit: (the publisher\'s read_all holds them back behind A)');

my $a1 = $sa->query_safe(q{
	SELECT last_position FROM eventstore.append_event('late-a', 'Late', '{"by": "A"}')});
my $a2 = $sa->query_safe(q{
	SELECT last_position FROM eventstore.append_event('shared', 'Late', '{"by": "A"}')});
$sa->query_safe('COMMIT');
$sa->quit;
$pub->wait_for_catchup('s');
$from = @got;
follow_to($from + 2);
is(join(',', @got[ $from .. $#got ]), "$a1 late-a/0,$a2 shared/1",
	"late commit: going on from its cursor, the follower gets A's events, the shared stream's after B's");
is(on($pub, "SELECT string_agg($event, ',') FROM eventstore.read_all($pub_cursor)"),
	"$a1 late-a/0,$b1 late-b/0,$b2 shared/0,$a2 shared/1",
	'late commit: on the publisher A comes first, the shared stream in revision order');
is(on($sub, "SELECT string_agg($event, ',') FROM eventstore.read_all($cursor)"),
	"$b1 late-b/0,$b2 shared/0,$a1 late-a/0,$a2 shared/1",
	'late commit: on the subscriber A comes after B');
my $keys = q{SELECT format('%s %s',
	  (SELECT transaction_id FROM eventstore.events WHERE stream_id = 'late-a')
	  < (SELECT transaction_id FROM eventstore.events WHERE stream_id = 'late-b'),
	  (SELECT string_agg(transaction_id::text, ',' ORDER BY revision)
	   FROM eventstore.events WHERE stream_id = 'shared'))};
my ($a_first, $shared_keys) = split / /, on($pub, $keys);
is($a_first, 't', "late commit: on the publisher A's key is below B's");
is($shared_keys =~ /^(\d+),\1$/ ? 'raised' : $shared_keys, 'raised',
	"late commit: and A's event of the shared stream is raised to B's key there");
is((split / /, on($sub, $keys))[0], 'f', "late commit: on the subscriber A's key is above B's");

# A position the subscriber has not received yet.
on($sub, 'ALTER SUBSCRIPTION s DISABLE');
ok($sub->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM pg_stat_subscription WHERE pid IS NOT NULL}),
	'not yet: the subscription is disabled');
my $c1 = on($pub, q{SELECT last_position FROM eventstore.append_event('late-c', 'Late', '{}')});
is(error_on($sub, "SELECT * FROM eventstore.read_all($c1)"),
	"SE008: position $c1 is not in the event log of this subscriber yet",
	'not yet: a position the publisher issued and the subscriber lacks is SE008');
on($sub, 'ALTER SUBSCRIPTION s ENABLE');
$pub->wait_for_catchup('s');
$from = @got;
follow_to($from + 1);
is(join(',', @got[ $from .. $#got ]), "$c1 late-c/0",
	'not yet: it arrives once the subscription is enabled');

# --- Random load, followed on the subscriber --------------------------------

my $received_before_load = @got;
$writers = start_writers($load_seconds);
my $pages = 0;
$deadline = time + $timeout;
while ($writers->[0]->pumpable && time < $deadline)
{
	$writers->[0]->pump_nb;
	$pages++;
	usleep(10_000) if follow(100) < 100;
}
my $received_under_load = @got - $received_before_load;
finish_writers($writers, 'load');
$pub->wait_for_catchup('s');
my @want = set_of($pub);
follow_to(scalar @want);
note sprintf('load: %d events in the log, %d received by the follower in all, %d during the load in %d pages',
	scalar @want, scalar @got, $received_under_load, $pages);
cmp_ok($received_under_load, '>', 0, 'load: the follower received events during the load');
is(compare_lists([ by_position(@got) ], [ map { s/ [^ ]+$//r } @want ]),
	'missed=0 doubled=0 extra=0 order=same',
	"load: the follower received exactly the publisher's events, nothing missed or doubled");
is(stream_order_breaks(@got), 0, 'load: every stream in revision order');
is(compare_lists(\@got, [ log_of($sub) ]), 'missed=0 doubled=0 extra=0 order=same',
	"load: in the subscriber's log order");
is(compare_lists([ set_of($sub) ], \@want), 'missed=0 doubled=0 extra=0 order=same',
	"load: the subscriber's events are the publisher's");
is(on($sub, $streams), on($pub, $streams), "load: the subscriber's streams rows are the publisher's");

# The load had late commits, so the two nodes order the log differently.
my ($late, $inverted) = split /\|/, on($pub, q{
	WITH t AS (SELECT DISTINCT transaction_id AS x,
	                  pg_xact_commit_timestamp(xid(transaction_id)) AS at
	           FROM eventstore.events),
	     c AS (SELECT at, min(at) OVER (ORDER BY x DESC ROWS BETWEEN UNBOUNDED PRECEDING
	                                                 AND 1 PRECEDING) AS younger
	           FROM t),
	     o AS (SELECT global_position AS p,
	                  lag(global_position) OVER (ORDER BY transaction_id, global_position) AS prev
	           FROM eventstore.events)
	SELECT format('%s|%s', (SELECT count(*) FROM c WHERE at > younger),
	              (SELECT count(*) FROM o WHERE p < prev))});
note "load: $late publisher transactions committed after a younger one; "
  . "$inverted events sort after a higher position there";
cmp_ok($late, '>', 0, 'load: some publisher transactions committed after younger ones');
like(compare_lists([ log_of($sub) ], [ log_of($pub) ]), qr/order=differs/,
	"load: the subscriber's log order is its own, not the publisher's");

# --- The subscriber's projection and checkpoints ----------------------------

my $check = read_model_check('relay', $types);
$sub->poll_query_until('postgres', $check, 'lost=0 doubled=0 extra=0');
is(on($sub, $check), 'lost=0 doubled=0 extra=0',
	"projection: the subscriber's worker applied every replicated event of its types once");
is(on($sub, q{
	SELECT count(*) FROM (SELECT revision - lag(revision) OVER (PARTITION BY stream_id ORDER BY n) AS d
	                      FROM es_w.applied) a
	WHERE d <= 0}), '0', 'projection: each stream in revision order');
is(on($sub, q{SELECT format('%s %s', status, last_error IS NULL)
	FROM eventstore.projection_status WHERE name = 'relay'}),
	'active t', 'projection: active, no error');
is(on($pub, 'SELECT count(*) FROM eventstore.projections'), '0',
	'projection: the publisher has no projection');

my $at = ($got[ int(@got / 2) ] =~ /^(\d+)/)[0];
is(on($sub, "SELECT eventstore.store_checkpoint('cp', $at, NULL)"), 'stored',
	'checkpoint: store_checkpoint works on the subscriber');
is(on($sub, q{SELECT format('%s %s', c.position, c.transaction_id = e.transaction_id)
	FROM eventstore.checkpoints c JOIN eventstore.events e ON e.global_position = c.position
	WHERE c.processor_id = 'cp'}), "$at t",
	"checkpoint: it holds the subscriber's own key of the event");
is(on($pub, q{SELECT format('%s %s', count(*), eventstore.read_checkpoint('cp') IS NULL)
	FROM eventstore.checkpoints}), '0 t',
	'checkpoint: the publisher has none');

# --- No appends on a subscriber ---------------------------------------------

is(error_on($sub, q{SELECT eventstore.append_event('w-1', 'Tick', '{}')}),
	'SE009: this database is a subscriber of the event log and cannot append',
	'subscriber: append_event is SE009');
is(error_on($sub, q{SELECT eventstore.append_to_stream('new', '[{"type": "Tick"}]')}),
	'SE009: this database is a subscriber of the event log and cannot append',
	'subscriber: append_to_stream is SE009');
is(on($sub, 'SELECT eventstore.node_role()'), 'subscriber', 'subscriber: node_role() there');
is(on($pub, 'SELECT eventstore.node_role()'), 'primary', 'publisher: node_role() is primary');

# Subscriber mode stays on while the subscription is there: events it
# brought with the trigger off would keep the publisher's keys.
is(error_on($sub, 'SELECT eventstore.set_subscriber_mode(false)'),
	'55000: subscription "s" still replicates the event log into this database',
	'subscriber: set_subscriber_mode(false) is refused while the subscription is there');
on($sub, 'ALTER SUBSCRIPTION s DISABLE');
like(error_on($sub, 'SELECT eventstore.set_subscriber_mode(false)'), qr/^55000: /,
	'subscriber: also while it is disabled');
is(on($sub, 'SELECT eventstore.node_role()'), 'subscriber', 'subscriber: and it stays a subscriber');

# Without its subscription, the subscriber appends on its own.
my $last_pub = on($pub, 'SELECT max(global_position) FROM eventstore.events');
on($sub, 'DROP SUBSCRIPTION s');
on($sub, 'SELECT eventstore.set_subscriber_mode(false)');
is(on($sub, 'SELECT eventstore.node_role()'), 'primary',
	'former subscriber: node_role() is primary after set_subscriber_mode(false)');
my $own = on($sub, q{SELECT last_position FROM eventstore.append_event('w-1', 'Tick', '{"k": "own"}')});
is($own, on($sub, "SELECT ((${last_pub}::bigint >> 40) + 1) << 40"),
	"former subscriber: its append takes the first position of the block after the publisher's last");
follow_to(scalar(@want) + 1);
is(join(',', @got[ scalar(@want) .. $#got ]),
	"$own w-1/" . on($pub, q{SELECT coalesce(max(revision), -1) + 1 FROM eventstore.events
		WHERE stream_id = 'w-1'}),
	'former subscriber: its append comes after the whole replicated log');

$follower->quit;
note_time_taken();
done_testing();
