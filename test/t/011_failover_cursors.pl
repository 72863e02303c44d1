# Cursors across a standby and across failovers that lost committed WAL:
# a cursor must never be resolved to another event than the one it named.
#
# Claims proven here (every list is compared in full, in order):
# - On a hot standby, read_all from a position the standby has replayed
#   returns exactly the events after it; from a position the primary issued
#   that the standby has not replayed yet (its replay paused), read_all
#   raises SE008 ("not in the event log of this standby yet"), and so does
#   a position far past anything issued; once replay resumes and catches
#   up, the same cursor returns exactly the events after it.
# - A lossy failover: the standby stops; the primary commits a transaction
#   that took position x before the standby stopped (the standby has x + 1,
#   a younger transaction's), then appends more events; a consumer reads
#   them with read_all and stores its checkpoint at the last (P_lost, kept
#   here, outside the database); the primary's async projection applies
#   them; the primary stops (immediate) and the old standby, which never
#   received that WAL, is promoted.  Before the promotion, a session there
#   reads the log without x + 1 (the transaction of x might still commit,
#   for all a standby knows); after it, the log is exactly the events the
#   standby had, x + 1 included, the consumer's checkpoint is the one it
#   stored before, and the projection's checkpoint names an event of that
#   log.
# - On the promoted node, once it has appended (its first append, through
#   the session that lived through the promotion, opens the incarnation of
#   its timeline): every lost position above the last survivor, P_lost
#   among them, raises SE007 from read_all and store_checkpoint, with a
#   detail naming timeline 2, its start and the last position kept before
#   it, and a hint naming that position; it still does after more appends
#   than there were lost events.  The new events take positions 2^40,
#   2^40 + 1, ... (log_incarnations: the old 'first write' row and a 'new
#   timeline' row with the same xid_offset and first_position 2^40), none
#   of them a lost position.  read_all from a surviving position returns
#   exactly the surviving events after it, then the new ones, in order.
# - Which code an unknown cursor gets on the promoted node: SE007 for any
#   position above the last surviving event and below 2^40, lost or never
#   issued (2^40 - 5): the node cannot tell them apart; SE003 for a
#   position burned by a rollback between survivors, for the lost position
#   x (below the survivor x + 1, it looks like a burned one), and for
#   positions past the new incarnation's last (2^40 + 1000, 2^62).
# - The worker on the promoted node resumes the async projection: its read
#   model, which on the old primary had the lost events, is there exactly
#   the set-based answer over the promoted node's log, in log order (x + 1,
#   which the old primary's worker could not apply before the standby
#   stopped, applied after the promotion), and stays so after new appends.
# - A second failover, to a copy of the promoted node taken before its
#   first append: log_incarnations there has timelines 1 and 3 (the row of
#   timeline 2 is lost with its events), and P_lost of the first failover
#   is still SE007.
#
# - Before the promoted node's first append, read_all(P_lost) is SE007
#   already: the incarnation its first write will start counts.
# - A failover that loses an incarnation's first writes (and its row)
#   never issues their positions again: in the database fresh, whose first
#   event (position 1, and with it the 'first write' row) was lost, the
#   promoted node's first append takes its timeline's block, 2^40; after
#   the second failover, which lost timeline 2's events (2^40, ...) and its
#   row, the new node's first append takes timeline 3's block, 2^41.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventstoreTest;

my $block = 2**40;

my $primary = start_node('primary', q(
pg_eventstore.databases = 'postgres'
pg_eventstore.max_workers = 1
pg_eventstore.poll_interval = '100ms'
pg_eventstore.retry_interval = '100ms'
), allows_streaming => 1);

# "SQLSTATE: message" of the error that statements raise (on the database
# postgres unless told otherwise), or "no error".
sub error_line
{
	my ($sql, $db) = @_;
	my $e = sql_error($sql, $db);
	return $e ? "$e->{sqlstate}: $e->{message}" : 'no error';
}

# The positions read_all returns after a cursor, comma-separated, once the
# read horizon has passed every event the node has (a worker's transaction
# that took its id before an append's holds it back a moment).
sub after
{
	my ($cursor) = @_;
	poll_sql(q(SELECT eventstore.log_horizon() > coalesce(max(transaction_id), '0')
		FROM eventstore.events))
	  or die 'the read horizon never passed the log';
	return sql(qq(SELECT coalesce(string_agg(global_position::text, ','), '')
		FROM eventstore.read_all($cursor, 1000)));
}

# Append one event; returns its position.
sub append
{
	my ($stream, $type) = @_;
	return sql(qq(SELECT last_position
		FROM eventstore.append_event('$stream', '$type', '{}')));
}

# The log in log order, comma-separated positions.
sub log_order
{
	return sql(q(SELECT string_agg(global_position::text, ','
		ORDER BY transaction_id, global_position) FROM eventstore.events));
}

# A projection that logs each event it applies, in the order applied.
sql(q{
	CREATE EXTENSION pg_eventstore;
	CREATE SCHEMA es_w;
	CREATE TABLE es_w.applied (n bigint GENERATED ALWAYS AS IDENTITY,
	                           projection text NOT NULL,
	                           global_position bigint NOT NULL);
	CREATE FUNCTION es_w.h_ledger(e eventstore.events) RETURNS void
	LANGUAGE sql AS $$
		INSERT INTO es_w.applied (projection, global_position)
		VALUES ('ledger', e.global_position);
	$$;
	SELECT eventstore.create_projection('ledger', 'es_w.h_ledger',
	                                    ARRAY['Deposit', 'Withdrawal']);
});
my $types = q(ARRAY['Deposit', 'Withdrawal']);
my $check = read_model_check('ledger', $types);

# The read model as the positions applied, in the order applied, and the
# events of its types in log order: the set-based answer.
my $applied = q(SELECT coalesce(string_agg(global_position::text, ',' ORDER BY n), '')
	FROM es_w.applied WHERE projection = 'ledger');
my $answer = qq(SELECT coalesce(string_agg(global_position::text, ','
		ORDER BY transaction_id, global_position), '')
	FROM eventstore.events WHERE event_type = ANY ($types));

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

# --- 1. Cursors on the standby ----------------------------------------------

my @kept = map { append(@$_) } (
	[ 'acct-1', 'Deposit' ], [ 'acct-2', 'Deposit' ], [ 'acct-1', 'Note' ],
	[ 'acct-2', 'Withdrawal' ]);
# a position burned by a rollback, between surviving events
my $burned = sql(q(
	BEGIN;
	SELECT last_position FROM eventstore.append_event('acct-9', 'Deposit', '{}');
	ROLLBACK;));
push @kept, map { append(@$_) } ([ 'acct-1', 'Withdrawal' ], [ 'acct-3', 'Deposit' ]);
note 'kept: ' . join(',', @kept) . "; burned: $burned";
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));

use_node($standby);
is(log_order(), join(',', @kept), 'standby: it has the primary\'s log');
is(after($kept[1]), join(',', @kept[ 2 .. $#kept ]),
	'standby: read_all from a replayed position returns the events after it');

sql('SELECT pg_wal_replay_pause()');
ok(poll_sql(q(SELECT pg_get_wal_replay_pause_state() = 'paused')),
	'standby: replay paused');
use_node($primary);
my @ahead = map { append(@$_) } ([ 'acct-2', 'Deposit' ], [ 'acct-4', 'Deposit' ]);
use_node($standby);
is(error_line("SELECT * FROM eventstore.read_all($ahead[0])"),
	"SE008: position $ahead[0] is not in the event log of this standby yet",
	'standby: read_all from a position it has not replayed yet is SE008');
my $e = sql_error("SELECT * FROM eventstore.read_all($ahead[0])");
is($e->{detail},
	'This node replicates the log and may not have received that event yet.',
	'standby: SE008\'s detail');
is(error_line('SELECT * FROM eventstore.read_all(4611686018427387904)'),
	'SE008: position 4611686018427387904 is not in the event log of this standby yet',
	'standby: a position far past anything issued is SE008 too');
is(after($kept[-1]), '',
	'standby: paused, read_all from its last replayed event returns nothing');

sql('SELECT pg_wal_replay_resume()');
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
is(after($ahead[0]), $ahead[1],
	'standby: caught up, the same cursor returns exactly the event after it');
push @kept, @ahead;
is(after($kept[-3]), join(',', @ahead),
	'standby: and read_all from before them returns both');

# --- 2. The lossy failover --------------------------------------------------

# The consumer's checkpoint at the last surviving event, and the
# projection caught up with it, both replayed on the standby.
use_node($primary);
my $relay = $kept[-1];
is(sql("SELECT eventstore.store_checkpoint('relay', $relay, NULL)"),
	'stored', 'primary: the consumer stores its checkpoint');
poll_sql($check, 'lost=0 doubled=0 extra=0');
is(sql($applied), sql($answer), 'primary: the projection is caught up');

# A database with the extension and no event yet, on the standby too.
sql('CREATE DATABASE fresh');
sql_in('fresh', 'CREATE EXTENSION pg_eventstore');

# A transaction that takes a position and commits only after the standby
# stops, and a younger one, with the next position, that the standby
# replays: a lost position below a surviving one.
my $late = session();
$late->query_safe('BEGIN');
my $x = $late->query_safe(q(SELECT last_position
	FROM eventstore.append_event('acct-8', 'Deposit', '{}')));
my $x1 = append('acct-2', 'Deposit');
is($x1, $x + 1, 'primary: the younger transaction has the next position');
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
$standby->stop('fast');
$late->query_safe('COMMIT');
$late->quit;

# Events the standby never receives; the consumer reads them and stores
# its checkpoint at the last, and the projection applies them.
my @lost = map { append(@$_) } (
	[ 'acct-1', 'Deposit' ], [ 'acct-5', 'Deposit' ], [ 'acct-5', 'Note' ],
	[ 'acct-2', 'Withdrawal' ], [ 'acct-5', 'Withdrawal' ]);
is(after($relay), join(',', $x, $x1, @lost),
	'primary: the consumer reads the events the standby lacks (and the one it has after the first)');
my $p_lost = $lost[-1];
is(sql("SELECT eventstore.store_checkpoint('relay', $p_lost, $relay)"),
	'stored', 'primary: and stores its checkpoint at the last of them');
poll_sql($check, 'lost=0 doubled=0 extra=0');
my $old_model = sql($applied);
is($old_model, sql($answer), 'primary: the projection applied them');

# The first event of the database fresh, lost too: the log's first
# incarnation is lost with it.
my $f = sql_in('fresh', q(SELECT last_position
	FROM eventstore.append_event('f-1', 'Deposit', '{}')));
my $f_id = sql_in('fresh', qq(SELECT event_id FROM eventstore.events
	WHERE global_position = $f));
is(sql_in('fresh', 'SELECT global_position FROM eventstore.read_all(0)'), $f,
	'primary: a consumer of the database fresh reads its first event');
my ($sysid, $offset) = split /\|/, sql(q(
	SELECT system_identifier || '|' || xid_offset FROM eventstore.log_incarnations));
push @kept, $x1;
note "lost: $x @lost; P_lost = $p_lost; system $sysid, xid_offset $offset";
$primary->stop('immediate');

$standby->start;
# A session of the hot standby that lives on through the promotion.  It
# reads the log without x + 1: for all the standby knows, the older
# transaction that took x may still commit, and holds the horizon back.
use_node($standby);
my $survivor = session();
is($survivor->query_safe(q(SELECT string_agg(global_position::text, ',')
		FROM eventstore.read_all(0))),
	join(',', @kept[ 0 .. $#kept - 1 ]),
	'standby: restarted, read_all holds back the event after the lost one');
$standby->promote;
is(sql('SELECT pg_is_in_recovery()'), 'f', 'promotion: the old standby is a primary');

# A copy of the promoted node before its first append, for a second
# failover (section 4).
$standby->backup('promoted');
is(log_order(), join(',', @kept), 'promoted: the log is the events the standby had');
is(sql(q(SELECT eventstore.read_checkpoint('relay'))), $relay,
	'promoted: the consumer\'s checkpoint is the one stored before the loss');
is(sql(q(SELECT checkpoint IN (SELECT global_position FROM eventstore.events)
	FROM eventstore.projection_status WHERE name = 'ledger')),
	't', 'promoted: the projection\'s checkpoint names an event of this log');

is(error_line("SELECT * FROM eventstore.read_all($p_lost)"),
	"SE007: position $p_lost is not in the event log and never will be",
	'promoted, before any append: read_all(P_lost) is SE007');
is(after($kept[-2]), $x1,
	'promoted, before any append: read_all from a survivor returns the survivors after it');

# --- 3. The worker on the promoted node -------------------------------------

ok(poll_sql(q(
		SELECT count(*) > 0 FROM pg_stat_activity
		WHERE backend_type = 'pg_eventstore worker')),
	'promoted: the launcher starts a worker');
poll_sql($check, 'lost=0 doubled=0 extra=0');
my $model = sql($applied);
is($model, sql($answer),
	'promoted: the read model is the set-based answer over this log');
isnt($model, $old_model, 'promoted: which is not the old primary\'s');

# New events, more than were lost, on streams old, lost and new; the first
# through the session that was open before the promotion.
my @new = ($survivor->query_safe(q(SELECT last_position
	FROM eventstore.append_event('acct-1', 'Deposit', '{}'))));
$survivor->quit;
push @new, map { append(@$_) } (
	[ 'acct-5', 'Deposit' ], [ 'acct-6', 'Note' ],
	[ 'acct-2', 'Deposit' ], [ 'acct-6', 'Withdrawal' ], [ 'acct-5', 'Deposit' ],
	[ 'acct-3', 'Withdrawal' ]);
cmp_ok(scalar @new, '>', scalar @lost, 'promoted: more new events than lost ones');
is(join(',', @new), join(',', map { $block + $_ } 0 .. $#new),
	'promoted: the new events take positions 2^40, 2^40 + 1, ...');
my %lost = map { $_ => 1 } @lost;
is(scalar(grep { $lost{$_} } @new), 0, 'promoted: no new position is a lost one');
is(sql(q(SELECT string_agg(format('%s|%s|%s|%s', system_identifier, timeline_id,
		xid_offset, reason), ',' ORDER BY timeline_id) FROM eventstore.log_incarnations)),
	"$sysid|1|$offset|first write,$sysid|2|$offset|new timeline",
	'promoted: log_incarnations has the new timeline, with the same xid_offset');
is(sql(q(SELECT first_position FROM eventstore.log_incarnations WHERE timeline_id = 2)),
	$block, 'promoted: its first position is 2^40');

my $started = sql(q(SELECT started_at::text FROM eventstore.log_incarnations
	WHERE timeline_id = 2));
$e = sql_error("SELECT * FROM eventstore.read_all($p_lost)");
is("$e->{sqlstate}: $e->{message}",
	"SE007: position $p_lost is not in the event log and never will be",
	'promoted: read_all(P_lost) is SE007');
is($e->{detail},
	"This server was promoted to timeline 2 at $started without the events "
	  . "its old primary wrote after position $kept[-1], this one among them.",
	'promoted: its detail names the timeline and the last position kept');
like($e->{hint}, qr/ such as $kept[-1]\.$/, 'promoted: its hint names that position');
is(join(',', map { error_line("SELECT * FROM eventstore.read_all($_)") =~ s/:.*//r } @lost),
	join(',', map { 'SE007' } @lost), 'promoted: every lost position is SE007');
is(error_line("SELECT eventstore.store_checkpoint('relay', $p_lost, $relay)"),
	"SE007: position $p_lost is not in the event log and never will be",
	'promoted: store_checkpoint at P_lost is SE007 too');

is(after($kept[2]), join(',', @kept[ 3 .. $#kept ], @new),
	'promoted: read_all from a surviving position: the survivors after it, then the new events');
is(after(0), join(',', @kept, @new), 'promoted: read_all from the start: the whole log');
is(log_order(), join(',', @kept, @new), 'promoted: which is the log order');

# Which code an unknown cursor gets here.
my $gap = $block - 5;
is(error_line("SELECT * FROM eventstore.read_all($gap)"),
	"SE007: position $gap is not in the event log and never will be",
	'codes: a never-issued position before the new block is SE007 (indistinguishable from a lost one)');
is(error_line("SELECT * FROM eventstore.read_all($x)"),
	"SE003: position $x is not in the event log",
	'codes: a lost position below a surviving one is SE003 (indistinguishable from a burned one)');
is(error_line("SELECT * FROM eventstore.read_all($burned)"),
	"SE003: position $burned is not in the event log",
	'codes: a position burned by a rollback between survivors is SE003');
my $beyond = $block + 1000;
is(error_line("SELECT * FROM eventstore.read_all($beyond)"),
	"SE003: position $beyond is not in the event log",
	'codes: a position past the new incarnation\'s last is SE003');
is(error_line('SELECT * FROM eventstore.read_all(4611686018427387904)'),
	'SE003: position 4611686018427387904 is not in the event log',
	'codes: so is a far one');

# More appends, and P_lost still never resolves.
push @new, map { append('acct-7', 'Deposit') } 1 .. 3;
is(error_line("SELECT * FROM eventstore.read_all($p_lost)"),
	"SE007: position $p_lost is not in the event log and never will be",
	'promoted: after more appends, read_all(P_lost) is still SE007');
is(after($new[0]), join(',', @new[ 1 .. $#new ]),
	'promoted: read_all from a new position returns the new events after it');

poll_sql($check, 'lost=0 doubled=0 extra=0');
is(sql($applied), sql($answer),
	'promoted: the worker applies the new events: the read model is the set-based answer');
is(sql($answer), join(',', grep { !/^(?:$kept[2]|$new[2])$/ } @kept, @new),
	'promoted: which is every event of its types in the log, in log order');

# --- 4. Failovers that lose an incarnation's first writes ------------------

# The database fresh: its first incarnation (timeline 1, 'first write')
# was lost with its first event; the promoted node's first append there.
my $g = sql_in('fresh', q(SELECT last_position
	FROM eventstore.append_event('f-2', 'Deposit', '{}')));
note "fresh: lost position $f, new position $g; incarnations: "
  . sql_in('fresh', q(SELECT string_agg(format('%s|%s|%s', timeline_id, first_position, reason), ',')
	FROM eventstore.log_incarnations));
isnt($g, $f, 'fresh: the promoted node does not issue the lost position again');
is(error_line("SELECT * FROM eventstore.read_all($f)", 'fresh'),
	"SE007: position $f is not in the event log and never will be",
	'fresh: read_all from the lost position is SE007');
is(sql_in('fresh', qq(SELECT count(*) FROM eventstore.events
	WHERE global_position = $f AND event_id <> '$f_id')),
	'0', 'fresh: the lost position names no other event');

# A second failover: the copy of the promoted node taken before its first
# append, promoted in turn after the promoted node wrote its new timeline's
# first events (2^40, ...) and stopped; those events and the incarnation
# row of their timeline are lost.
my $new0_id = sql(qq(SELECT event_id FROM eventstore.events
	WHERE global_position = $new[0]));
$standby->stop('immediate');
my $third = PostgreSQL::Test::Cluster->new('third');
$third->init_from_backup($standby, 'promoted', has_streaming => 1);
$third->start;
$third->promote;
use_node($third);
is(log_order(), join(',', @kept),
	'second failover: the log is the one of the first promotion');
my $h = append('acct-1', 'Deposit');
my %new = map { $_ => 1 } @new;
note "second failover: lost positions @new; new position $h";
is(sql(q(SELECT string_agg(format('%s|%s', timeline_id, reason), ',' ORDER BY timeline_id)
	FROM eventstore.log_incarnations)),
	'1|first write,3|new timeline',
	'second failover: log_incarnations has timeline 3, not the lost timeline 2');
ok(!$new{$h}, 'second failover: the new position is none of the lost ones');
is(error_line("SELECT * FROM eventstore.read_all($new[0])"),
	"SE007: position $new[0] is not in the event log and never will be",
	'second failover: read_all from the first lost position of timeline 2 is SE007');
is(sql(qq(SELECT count(*) FROM eventstore.events
	WHERE global_position = $new[0] AND event_id <> '$new0_id')),
	'0', 'second failover: that position names no other event');
is(error_line("SELECT * FROM eventstore.read_all($new[1])"),
	"SE007: position $new[1] is not in the event log and never will be",
	'second failover: read_all from a lost position of timeline 2 is SE007');
is(error_line("SELECT * FROM eventstore.read_all($p_lost)"),
	"SE007: position $p_lost is not in the event log and never will be",
	'second failover: read_all(P_lost) of the first failover is still SE007');

$third->stop;
note_time_taken();
done_testing();
