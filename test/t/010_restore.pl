# Dump and restore keep the log (SPEC section 6, "Backup and restore"):
# pg_dump in custom, plain and data-only form and pg_dumpall, each restored
# into a cluster whose transaction counter is far behind the source's and
# into one far ahead of it, with no step by hand.
#
# The source: a log of some 300 events on a dozen streams, appended one
# transaction at a time between transactions that only burn ids, with
# outbox-style rounds (a transaction writes a table of the application's
# first, a younger one appends to a stream and commits, then the older one
# appends to that stream, its event keyed above its own transaction id, and
# to a new stream, keyed at it); a checkpoint where a lower position follows
# in log order; two async projections, each left part way.  Its counter
# starts at 2^20 (pg_resetwal before its first start) and burns some
# thousands more; the node behind is a fresh cluster (at a few thousand at
# most when the last restore is done), the node ahead starts at 2^24.
#
# Claims proven here, on every restored database (every list is compared in
# full, in order):
# - read_all from the start, page after page, returns the source's log:
#   every event once, in the source's order; the rows are the source's, log
#   keys included (nothing is rewritten), and log_incarnations holds the
#   source's rows only: the restore itself writes nothing, and until the
#   first append log_horizon is past every key.
# - read_checkpoint returns the stored checkpoint, and read_all from it
#   exactly the events after it.
# - The registry is the source's; both projections carry on with
#   run_projection to the set-based answer (a SELECT over
#   eventstore.events), and a rebuild, then a run, reaches it again.
# - A cursor at an event the source appended after the dump is SE007,
#   naming the copy's last position: before any append here (the
#   incarnation the first write will start counts already), and once the
#   first append has started this database's incarnation.
# - The first append takes the database's own row of log_incarnations:
#   this cluster's system identifier, reason 'new cluster', first_position
#   2^40 (the next block after the restored positions) and the offset that
#   keys it right after the log's last key (behind: that key + 1; ahead:
#   offset 0, its own transaction id).  New appends, to a restored stream
#   and to a new one, come after every restored event: read_all from the
#   start is the source's log, then them; a consumer at the last restored
#   event gets exactly them, the checkpoint's consumer the rest of the old
#   log, then them; the projections apply them.
# Restores (node behind; node ahead):
# - pg_dump -Fc, pg_restore --exit-on-error into a new database (both);
# - pg_dump (plain), psql with ON_ERROR_STOP (both);
# - data-only into a new database where CREATE EXTENSION and the
#   application's own schema ran first (its migrations: tables, handlers;
#   no events, no projections, no checkpoints: those come with the data,
#   and a row of the target's own would collide with the restored ones):
#   pg_dump --data-only and psql (behind), pg_restore --data-only of the
#   custom dump (ahead);
# - pg_dumpall, psql into the database postgres of the new cluster: the
#   only error is that role postgres already exists (both).
# Also:
# - On the node behind, a dump without the schema of one projection's
#   handler and read model (pg_dump --exclude-schema), restored with psql:
#   both registry rows come with it; the projection whose handler is
#   missing is failed by its run, naming the handler, and the other carries
#   on to the set-based answer and applies a new append.
#   (008_upgrade_restore.pl covers a schema left out by pg_restore -L, a
#   missing owner role, and the worker failing such projections on its
#   own.)
# - A restore into the source's own cluster (a copy next to the source
#   database) is an incarnation of its own ('restored'): its first
#   append takes a fresh block, never a position the source issued after
#   the dump, and a cursor at such an event is SE007.
# - A log that moved on on another cluster, dumped and restored back into
#   the source's cluster, is read whole there and new appends come after
#   it (the new database's offset is computed, not the cluster's reused).
# - pg_restore --data-only --disable-triggers ends each table's data with
#   ALTER TABLE ... ENABLE TRIGGER ALL: the subscriber trigger it enables
#   (for ordinary sessions, not ENABLE REPLICA) is not subscriber mode, the
#   database stays a primary and appends work.  TODO (PostgreSQL's doing,
#   documented): the log's ALWAYS guards become ordinary triggers.
#
# Nothing waits: no worker runs, run_projection drives the projections, and
# every program run is bounded by PostgreSQL::Test::Utils's timeout_default;
# the figures (events, transaction ids, how long each dump and restore
# took) are noted.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use EventstoreTest;

my $timeout = $PostgreSQL::Test::Utils::timeout_default;

# No worker anywhere: run_projection drives the projections, and nothing
# holds the read horizon back.
my $settings = "pg_eventstore.databases = ''";

# The first position of an incarnation after the first: the next block of
# 2^40 after the log's last position.
my $block = 2**40;

# The application's own schema, as its migrations make it: a table of its
# own (the outbox pattern's first write), two read models in two schemas,
# their handlers, and procedures to load the log and burn transaction ids.
my $app_ddl = q{
	CREATE SCHEMA app;
	CREATE TABLE app.orders (order_id text PRIMARY KEY, state text NOT NULL);
	CREATE TABLE app.totals (stream_id text PRIMARY KEY,
	                         n integer NOT NULL,
	                         amount bigint NOT NULL,
	                         positions bigint[] NOT NULL);
	CREATE FUNCTION app.apply_total(e eventstore.events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO app.totals AS t
		VALUES (e.stream_id, 1, (e.data->>'amount')::bigint, ARRAY[e.global_position])
		ON CONFLICT (stream_id) DO UPDATE
		  SET n = t.n + 1, amount = t.amount + excluded.amount,
		      positions = t.positions || excluded.positions;
	END $$;
	CREATE SCHEMA reports;
	CREATE TABLE reports.by_type (event_type text PRIMARY KEY,
	                              n integer NOT NULL,
	                              positions bigint[] NOT NULL);
	CREATE FUNCTION reports.count_type(e eventstore.events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO reports.by_type AS t VALUES (e.event_type, 1, ARRAY[e.global_position])
		ON CONFLICT (event_type) DO UPDATE
		  SET n = t.n + 1, positions = t.positions || excluded.positions;
	END $$;
	CREATE PROCEDURE app.burn(n integer) LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1 .. n LOOP
			PERFORM pg_current_xact_id();
			COMMIT;
		END LOOP;
	END $$;
	-- n events on eight streams, each in its own transaction, `burn`
	-- transactions that only take an id after each
	CREATE PROCEDURE app.load(n integer, seed integer, burn integer)
	LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1 .. n LOOP
			PERFORM eventstore.append_event('order-' || (seed * 3 + i) % 8 + 1,
			          (ARRAY['Placed', 'Paid', 'Shipped'])[(seed + i) % 3 + 1],
			          jsonb_build_object('amount', (seed * 7 + i) % 50 + 1));
			COMMIT;
			FOR j IN 1 .. burn LOOP
				PERFORM pg_current_xact_id();
				COMMIT;
			END LOOP;
		END LOOP;
	END $$;};

# The projections' read models, as text, and the same computed from the
# log: per stream, its positions in revision order; per type (Placed and
# Paid only), its positions in log order.
my $totals = q{
	SELECT coalesce(string_agg(format('%s:%s:%s:%s', stream_id, n, amount, positions),
	                           ' ' ORDER BY stream_id), '')
	FROM app.totals};
my $totals_answer = q{
	SELECT coalesce(string_agg(format('%s:%s:%s:%s', stream_id, n, amount, positions),
	                           ' ' ORDER BY stream_id), '')
	FROM (SELECT stream_id, count(*) AS n, sum((data->>'amount')::bigint) AS amount,
	             array_agg(global_position ORDER BY revision) AS positions
	      FROM eventstore.events GROUP BY stream_id) s};
my $by_type = q{
	SELECT coalesce(string_agg(format('%s:%s:%s', event_type, n, positions),
	                           ' ' ORDER BY event_type), '')
	FROM reports.by_type};
my $by_type_answer = q{
	SELECT coalesce(string_agg(format('%s:%s:%s', event_type, n, positions),
	                           ' ' ORDER BY event_type), '')
	FROM (SELECT event_type, count(*) AS n,
	             array_agg(global_position ORDER BY transaction_id, global_position)
	               AS positions
	      FROM eventstore.events WHERE event_type IN ('Placed', 'Paid')
	      GROUP BY event_type) s};

# The whole log in log order, one event a line.
my $log = q{
	SELECT global_position, transaction_id, stream_id, revision, event_id,
	       event_type, data
	FROM eventstore.events ORDER BY transaction_id, global_position};

# The incarnations, one a line, in the order they started.
my $incarnations = q{
	SELECT format('%s|%s|%s|%s|%s', system_identifier, timeline_id, xid_offset,
	              first_position, reason)
	FROM eventstore.log_incarnations ORDER BY first_position};

# The registry, one projection a line.
my $registry = q{
	SELECT name, version, handler, owner, mode, status, caught_up, "position",
	       transaction_id, events_applied, event_types
	FROM eventstore.projections ORDER BY name, version};

# Where the projections stand, and the status of each.
my $statuses = q{
	SELECT string_agg(format('%s=%s', name, status), ',' ORDER BY name)
	FROM eventstore.projections};

# The next transaction id of the node the helpers use (taking none).
my $next_xid = 'SELECT pg_snapshot_xmax(pg_current_snapshot())';

# Run a program; the test fails unless it exits 0.  Returns its stderr.
sub run_ok
{
	my ($what, @command) = @_;
	my ($out, $err) = ('', '');
	my $started = time;
	my $ok = IPC::Run::run(\@command, '>', \$out, '2>', \$err,
		IPC::Run::timeout($timeout));
	note sprintf('%s: %.2f s', $what, time - $started);
	ok($ok, "$what exits 0") or diag($err);
	return $err;
}

# The error of read_all from a cursor on a database of a node, verbose:
# "SQLSTATE: message", then its detail and hint, one a line.
sub read_all_error
{
	my ($node, $db, $cursor) = @_;
	my ($out, $err) = ('', '');
	$node->psql($db, "\\set VERBOSITY verbose\n"
		  . "SELECT count(*) FROM eventstore.read_all($cursor)",
		stdout => \$out, stderr => \$err);
	my %e = map { /^(?:psql:\S+: )?(ERROR|DETAIL|HINT):\s+(.*)$/ ? ($1 => $2) : () } split /\n/, $err;
	return "no error: $out" unless exists $e{ERROR};
	return join("\n", map { $_ // '' } @e{qw(ERROR DETAIL HINT)});
}

# --- the source ------------------------------------------------------------

my $source = init_node('source', $settings);
command_ok([ 'pg_resetwal', '-x', 2**20, $source->data_dir ],
	'source: pg_resetwal moves its transaction counter to 2^20');
$source->start;
sql("CREATE EXTENSION pg_eventstore; $app_ddl");
sql(q{
	SELECT eventstore.create_projection('totals', 'app.apply_total',
	                                    on_reset => 'TRUNCATE app.totals');
	SELECT eventstore.create_projection('by_type', 'reports.count_type',
	                                    ARRAY['Placed', 'Paid'],
	                                    on_reset => 'TRUNCATE reports.by_type');
	CALL app.burn(3000);});

# Four rounds, each of 60 events, then the outbox pattern: the
# application's transaction writes its own table (so takes its id), a
# younger one appends to order-1 and commits, then the older one appends to
# order-1 (raised to the younger one's key, above its own id) and to a new
# stream (at its id); then 40 events more.
my $early = session();
my $younger = session();
my @rounds;
for my $round (1 .. 4)
{
	sql("CALL app.load(60, $round, 3)");
	$early->query_safe('BEGIN');
	$early->query_safe("INSERT INTO app.orders VALUES ('o-$round', 'placing')");
	my $xid = $early->query_safe('SELECT pg_current_xact_id()');
	my %r = (xid => $xid);
	@r{qw(b_pos b_key)} = split /\|/, $younger->query_safe(q(
		SELECT last_position, transaction_id
		FROM eventstore.append_event('order-1', 'Paid', '{"amount": 5}')));
	@r{qw(a1_pos a1_key)} = split /\|/, $early->query_safe(q(
		SELECT last_position, transaction_id
		FROM eventstore.append_event('order-1', 'Shipped', '{"amount": 0}')));
	@r{qw(a2_pos a2_key)} = split /\|/, $early->query_safe(qq(
		SELECT last_position, transaction_id
		FROM eventstore.append_event('invoice-$round', 'Placed', '{"amount": 7}')));
	$early->query_safe("UPDATE app.orders SET state = 'placed' WHERE order_id = 'o-$round'");
	$early->query_safe('COMMIT');
	push @rounds, \%r;
}
$early->quit;
$younger->quit;
is(join(' ', map { join(',', $_->{a1_key} == $_->{b_key}, $_->{a1_key} > $_->{xid},
	$_->{a2_key} == $_->{xid}, $_->{a2_pos} > $_->{b_pos}) } @rounds),
	'1,1,1,1 1,1,1,1 1,1,1,1 1,1,1,1',
	'source: each outbox round keys its order-1 event at the younger one\'s key, '
	  . 'above its own id, and its new stream\'s at its id, with a higher position');
sql('CALL app.load(40, 5, 3)');

my @source_log = split /\n/, sql($log);
my @source_order = map { (split /\|/)[0] } @source_log;
is_deeply([ read_all_after('postgres', 0) ], \@source_order,
	'source: read_all from the start returns the log in log order');
my ($min_key, $max_key) = split /\|/, sql(q(
	SELECT min(transaction_id), max(transaction_id) FROM eventstore.events));

# The checkpoint: round 2's event on its new stream, keyed at the early
# transaction's id, which the younger one's lower position follows.
my $checkpoint = $rounds[1]{a2_pos};
is(sql("SELECT eventstore.store_checkpoint('proc', $checkpoint, NULL)"), 'stored',
	'source: a checkpoint stored');
my ($at) = grep { $source_order[$_] == $checkpoint } 0 .. $#source_order;
my @after_checkpoint = @source_order[ $at + 1 .. $#source_order ];
is($after_checkpoint[0], $rounds[1]{b_pos},
	'source: the event after the checkpoint in log order has a lower position');

# Both projections part way.
sql(q{
	SELECT eventstore.run_projection('totals', NULL, 150);
	SELECT eventstore.run_projection('by_type', NULL, 60);});
is(sql(q(SELECT string_agg(format('%s=%s', name, events_applied), ',' ORDER BY name)
	FROM eventstore.projections)), 'by_type=60,totals=150',
	'source: the projections applied 60 and 150 events');
isnt(sql($totals), sql($totals_answer), 'source: totals is behind the log');
isnt(sql($by_type), sql($by_type_answer), 'source: by_type is behind the log');

my $source_incarnations = sql($incarnations);
is($source_incarnations =~ s/^\d+\|//r, '1|0|1|first write',
	'source: one incarnation, its first write');
my $source_registry = sql($registry);
note sprintf('source: %d events on %d streams, keys %s to %s, %d after the checkpoint',
	scalar @source_log, sql('SELECT count(*) FROM eventstore.streams'),
	$min_key, $max_key, scalar @after_checkpoint);

my $dir = $source->basedir;
my %dump = (
	custom => "$dir/source.dump",
	plain => "$dir/source.sql",
	data => "$dir/source-data.sql",
	no_reports => "$dir/source-no-reports.sql",
	all => "$dir/source-all.sql");
my $src = $source->connstr('postgres');
run_ok('pg_dump -Fc', 'pg_dump', '-Fc', '-f', $dump{custom}, '-d', $src);
run_ok('pg_dump', 'pg_dump', '-f', $dump{plain}, '-d', $src);
run_ok('pg_dump --data-only', 'pg_dump', '--data-only', '-f', $dump{data}, '-d', $src);
run_ok('pg_dump --exclude-schema=reports', 'pg_dump', '--exclude-schema=reports',
	'-f', $dump{no_reports}, '-d', $src);
run_ok('pg_dumpall', 'pg_dumpall', '-f', $dump{all}, '-d', $src);

# An event appended after the dumps: a consumer that read it holds a cursor
# that no restored log has.
my $lost = sql(q(
	SELECT last_position FROM eventstore.append_event('order-1', 'Paid', '{"amount": 1}')));
my $last_restored = (sort { $a <=> $b } @source_order)[-1];
is($lost, $last_restored + 1, 'source: an event appended after the dumps');

# A restore into the cluster the dump came from (a database dropped and
# restored from last night's dump, or a copy of it next to it): the log's
# own incarnation row is this cluster's, so no new one starts.
sql('CREATE DATABASE r_same');
run_ok('pg_restore into the source\'s own cluster', 'pg_restore', '--exit-on-error',
	'-d', $source->connstr('r_same'), $dump{custom});
is_deeply([ read_all_after('r_same', 0) ], \@source_order,
	'same cluster: read_all returns the dumped log');
my $same_new = sql_in('r_same', q(
	SELECT last_position FROM eventstore.append_event('order-2', 'Paid', '{"amount": 2}')));
is_deeply([ read_all_after('r_same', $source_order[-1]) ], [$same_new],
	'same cluster: a new append comes after the restored log');
is($same_new, $block,
	'same cluster: the new append takes a fresh block, not a position issued after the dump');
like(read_all_error($source, 'r_same', $lost),
	qr/^SE007: position $lost is not in the event log and never will be\n/,
	'same cluster: the cursor of the event appended after the dump is SE007');
note "same cluster: the new append took position $same_new; read_all($lost): "
  . read_all_error($source, 'r_same', $lost);
$source->stop;

# --- the targets -----------------------------------------------------------

my $behind = start_node('behind', $settings);
my $ahead = init_node('ahead', $settings);
command_ok([ 'pg_resetwal', '-x', 2**24, $ahead->data_dir ],
	'ahead: pg_resetwal moves its transaction counter to 2^24');
$ahead->start;

# A new database of a node, with CREATE EXTENSION and the application's
# schema when asked.
sub new_database
{
	my ($db, $with_schema) = @_;
	sql("CREATE DATABASE $db");
	sql_in($db, "CREATE EXTENSION pg_eventstore; $app_ddl") if $with_schema;
	return;
}

# Restore with psql; the test fails unless psql exits 0.  Returns the
# errors psql printed.
sub psql_restore
{
	my ($node, $what, $db, $file, @options) = @_;
	my $err = run_ok($what, 'psql', '-X', '-q', @options, '-f', $file,
		'-d', $node->connstr($db));
	return [ $err =~ /ERROR:\s+(.*)$/mg ];
}

# Each kind of restore: the database it restores into, and how.
my %restore = (
	'pg_restore' => sub {
		my ($node) = @_;
		new_database('r_custom');
		run_ok('pg_restore', 'pg_restore', '--exit-on-error',
			'-d', $node->connstr('r_custom'), $dump{custom});
		return 'r_custom';
	},
	'psql' => sub {
		my ($node) = @_;
		new_database('r_plain');
		is_deeply(psql_restore($node, 'psql', 'r_plain', $dump{plain},
				'-v', 'ON_ERROR_STOP=1'), [], 'psql: no error');
		return 'r_plain';
	},
	'data-only, psql' => sub {
		my ($node) = @_;
		new_database('r_data', 1);
		is_deeply(psql_restore($node, 'psql of the data-only dump', 'r_data',
				$dump{data}, '-v', 'ON_ERROR_STOP=1'), [],
			'psql of the data-only dump: no error');
		return 'r_data';
	},
	'data-only, pg_restore' => sub {
		my ($node) = @_;
		new_database('r_data', 1);
		run_ok('pg_restore --data-only', 'pg_restore', '--data-only', '--exit-on-error',
			'-d', $node->connstr('r_data'), $dump{custom});
		return 'r_data';
	},
	'pg_dumpall' => sub {
		my ($node) = @_;
		is_deeply(psql_restore($node, 'psql of the pg_dumpall dump', 'postgres', $dump{all}),
			[ 'role "postgres" already exists' ],
			'psql of the pg_dumpall dump: the only error is that role postgres exists');
		return 'postgres';
	});

# The claims of the header on a restored database of the node the helpers
# use; `ahead` tells which node it is.
sub check_restored
{
	my ($node, $db, $label, $ahead) = @_;

	is_deeply([ read_all_after($db, 0) ], \@source_order,
		"$label: read_all from the start returns the source's log in its order");
	is_deeply([ split /\n/, sql_in($db, $log) ], \@source_log,
		"$label: the events are the source's, log keys included");
	is(sql_in($db, $incarnations), $source_incarnations,
		"$label: log_incarnations holds the source's rows only");
	is(sql_in($db, 'SELECT eventstore.log_horizon() > max(transaction_id) FROM eventstore.events'),
		't', "$label: log_horizon is past every key");
	is(sql_in($db, "SELECT eventstore.read_checkpoint('proc')"), $checkpoint,
		"$label: read_checkpoint returns the stored checkpoint");
	is_deeply([ read_all_after($db, $checkpoint) ], \@after_checkpoint,
		"$label: read_all from the checkpoint returns exactly the events after it");
	is(sql_in($db, $registry), $source_registry, "$label: the registry is the source's");
	is(read_all_error($node, $db, $lost), join("\n",
			"SE007: position $lost is not in the event log and never will be",
			"This log was restored from a copy that ends at position "
			  . "$last_restored, before this one.",
			'The consumer holding this cursor processed events this log no longer has: '
			  . 'check what it did with them, then resume it from a position this log '
			  . "has, such as $last_restored."),
		"$label: the cursor of the event appended after the dump is SE007 already before any append");

	sql_in($db, q{
		SELECT eventstore.run_projection('totals');
		SELECT eventstore.run_projection('by_type');});
	is(sql_in($db, $totals), sql_in($db, $totals_answer),
		"$label: totals carries on to the set-based answer");
	is(sql_in($db, $by_type), sql_in($db, $by_type_answer),
		"$label: by_type carries on to the set-based answer");
	sql_in($db, "SELECT eventstore.rebuild_projection('totals')");
	is(sql_in($db, $statuses), 'by_type=active,totals=rebuilding',
		"$label: totals rebuilding");
	sql_in($db, "SELECT eventstore.run_projection('totals')");
	is(sql_in($db, $totals), sql_in($db, $totals_answer),
		"$label: the rebuilt totals is the set-based answer");
	is(sql_in($db, $statuses), 'by_type=active,totals=active', "$label: both active");

	# The first append, its transaction's id beside it, then two more.
	my ($xid, $first) = split /\n/, sql_in($db, q{
		BEGIN;
		SELECT pg_current_xact_id();
		SELECT format('%s|%s', last_position, transaction_id)
		FROM eventstore.append_event('order-1', 'Paid', '{"amount": 11}');
		COMMIT;});
	my ($first_pos, $first_key) = split /\|/, $first;
	my @new = ($first_pos, split /\n/, sql_in($db, q{
		SELECT p FROM eventstore.append_to_stream('refund-1',
		  '[{"type": "Placed", "data": {"amount": 3}}, {"type": "Paid", "data": {"amount": 3}}]') r,
		  generate_series(r.first_position, r.last_position) p;
		SELECT last_position FROM eventstore.append_event('order-2', 'Shipped', '{"amount": 0}');}));
	is(join(',', @new), join(',', map { $block + $_ } 0 .. 3),
		"$label: new appends take positions from 2^40 on");
	my $offset = $ahead ? 0 : $first_key - $xid;
	is($first_key, $ahead ? $xid : $max_key + 1,
		$ahead ? "$label: the first append is keyed at its transaction id"
		  : "$label: the first append is keyed right after the log's last key");
	is(sql_in($db, $incarnations), join("\n", $source_incarnations,
			sql_in($db, 'SELECT system_identifier FROM pg_control_system()')
			  . "|1|$offset|$block|new cluster"),
		"$label: the first append took this cluster's row, 'new cluster'");
	my $started_at = sql_in($db, q(
		SELECT started_at FROM eventstore.log_incarnations WHERE reason = 'new cluster'));
	is(read_all_error($node, $db, $lost), join("\n",
			"SE007: position $lost is not in the event log and never will be",
			"This log was restored at $started_at from a copy that ends at position "
			  . "$last_restored, before this one.",
			'The consumer holding this cursor processed events this log no longer has: '
			  . 'check what it did with them, then resume it from a position this log '
			  . "has, such as $last_restored."),
		"$label: once it has, that cursor is SE007, naming the copy's last position");
	is_deeply([ read_all_after($db, 0) ], [ @source_order, @new ],
		"$label: read_all from the start returns the source's log, then the new appends");
	is_deeply([ read_all_after($db, $source_order[-1]) ], \@new,
		"$label: a consumer at the last restored event gets exactly the new appends");
	is_deeply([ read_all_after($db, $checkpoint) ], [ @after_checkpoint, @new ],
		"$label: read_all from the checkpoint returns the rest of the old log, then them");
	sql_in($db, q{
		SELECT eventstore.run_projection('totals');
		SELECT eventstore.run_projection('by_type');});
	is(join(',', sql_in($db, $totals) eq sql_in($db, $totals_answer),
			sql_in($db, $by_type) eq sql_in($db, $by_type_answer)), '1,1',
		"$label: both projections apply the new appends");
	return;
}

for my $target ([ $behind, 'behind', 0 ], [ $ahead, 'ahead', 1 ])
{
	my ($node, $name, $is_ahead) = @$target;
	use_node($node);
	for my $kind ('pg_restore', 'psql',
		($is_ahead ? 'data-only, pg_restore' : 'data-only, psql'), 'pg_dumpall')
	{
		my $xid = sql($next_xid);
		if ($is_ahead)
		{
			cmp_ok($xid, '>', $max_key, "$name, $kind: the counter is past every key");
		}
		else
		{
			cmp_ok($xid, '<', $min_key, "$name, $kind: the counter is below every key");
		}
		note "$name, $kind: next xid $xid, the log's keys $min_key to $max_key";
		my $db = $restore{$kind}->($node);
		check_restored($node, $db, "$name, $kind", $is_ahead);
	}
}

# --- back to the source's cluster -------------------------------------------

# The log moves on on the node behind (its counter, offset included, well
# past the source's), and is dumped and restored back into the source's
# cluster, whose own row from the first write is in the dump.
use_node($behind);
sql_in('r_custom', 'CALL app.burn(2000)');
my $moved_on = sql_in('r_custom', q(
	SELECT format('%s|%s', last_position, transaction_id)
	FROM eventstore.append_event('order-5', 'Paid', '{"amount": 4}')));
my @behind_order = read_all_after('r_custom', 0);
is($behind_order[-1], (split /\|/, $moved_on)[0], 'behind: one more append, last in read_all');
run_ok('pg_dump -Fc of behind', 'pg_dump', '-Fc', '-f', "$dir/behind.dump",
	'-d', $behind->connstr('r_custom'));
$source->start;
use_node($source);
sql('CREATE DATABASE r_back');
run_ok('pg_restore into the source\'s cluster', 'pg_restore', '--exit-on-error',
	'-d', $source->connstr('r_back'), "$dir/behind.dump");
note sprintf('back: the source\'s next xid %s, the last key of the log %s',
	sql($next_xid), (split /\|/, $moved_on)[1]);
is_deeply([ read_all_after('r_back', 0) ], \@behind_order,
	'back: read_all returns the whole log');
my $back_new = sql_in('r_back', q(
	SELECT last_position FROM eventstore.append_event('order-6', 'Paid', '{"amount": 6}')));
is_deeply([ read_all_after('r_back', $behind_order[-1]) ], [$back_new],
	'back: a new append comes after the restored log');
$source->stop;

# --- a restore without one projection's handler ----------------------------

use_node($behind);
new_database('r_no_reports');
is_deeply(psql_restore($behind, 'psql of the dump without reports', 'r_no_reports',
		$dump{no_reports}, '-v', 'ON_ERROR_STOP=1'), [],
	'no reports: psql restores the dump with no error');
is(sql_in('r_no_reports', q(SELECT to_regnamespace('reports') IS NULL)), 't',
	'no reports: the schema reports is not there');
is(sql_in('r_no_reports', $registry), $source_registry,
	'no reports: both registry rows are there, as they were');
is_deeply([ read_all_after('r_no_reports', 0) ], \@source_order,
	'no reports: read_all returns the source\'s log');
sql_in('r_no_reports', q{
	SELECT eventstore.run_projection('totals');
	SELECT eventstore.run_projection('by_type');});
is(sql_in('r_no_reports', $statuses), 'by_type=failed,totals=active',
	'no reports: the run fails by_type, totals is active');
is(sql_in('r_no_reports', q(
	SELECT format('%s|%s|%s', error_sqlstate, coalesce(error_position::text, 'NULL'),
	              last_error)
	FROM eventstore.projections WHERE name = 'by_type')),
	'42883|NULL|the handler reports.count_type(eventstore.events) of projection "by_type" '
	  . 'version 1 does not exist',
	'no reports: last_error names the missing handler');
is(sql_in('r_no_reports', $totals), sql_in('r_no_reports', $totals_answer),
	'no reports: totals carries on to the set-based answer');
my $appended = sql_in('r_no_reports', q(
	SELECT last_position FROM eventstore.append_event('order-3', 'Paid', '{"amount": 9}')));
is_deeply([ read_all_after('r_no_reports', $source_order[-1]) ], [$appended],
	'no reports: a new append comes after the restored log');
sql_in('r_no_reports', q{
	SELECT eventstore.run_projection('totals');
	SELECT eventstore.run_projection('by_type');});
is(sql_in('r_no_reports', $totals), sql_in('r_no_reports', $totals_answer),
	'no reports: totals applies it');
is(sql_in('r_no_reports', $statuses), 'by_type=failed,totals=active',
	'no reports: by_type stays failed');

# --- data-only with --disable-triggers (a known defect) --------------------

new_database('r_data_triggers', 1);
run_ok('pg_restore --data-only --disable-triggers', 'pg_restore', '--data-only',
	'--disable-triggers', '--exit-on-error', '-d', $behind->connstr('r_data_triggers'),
	$dump{custom});
is_deeply([ read_all_after('r_data_triggers', 0) ], \@source_order,
	'--disable-triggers: read_all returns the source\'s log');
TODO:
{
	local $TODO = 'ENABLE TRIGGER ALL after each table makes the ALWAYS guards '
	  . 'ordinary triggers (PostgreSQL\'s doing; the README says how to set them back)';
	is(sql_in('r_data_triggers', q(
		SELECT string_agg(format('%s=%s', tgname, tgenabled), ',' ORDER BY tgname)
		FROM pg_trigger WHERE tgrelid = 'eventstore.events'::regclass)),
		'events_append_only=A,events_from_publisher=D,events_no_truncate=A',
		'--disable-triggers: the triggers on events are as CREATE EXTENSION set them');
}
# the subscriber trigger it enabled (O, not R) is not subscriber mode
is(sql_in('r_data_triggers', 'SELECT eventstore.node_role()'), 'primary',
	'--disable-triggers: the database is still a primary');
{
	my ($out, $err) = (q(), q());
	$behind->psql('r_data_triggers', q(
		SELECT last_position FROM eventstore.append_event('order-3', 'Paid', '{"amount": 9}')),
		stdout => \$out, stderr => \$err, on_error_stop => 1);
	is($err, '', '--disable-triggers: an append succeeds');
	is(sql_in('r_data_triggers', q(
		SELECT count(*) FROM eventstore.streams s
		WHERE s.revision <> (SELECT max(e.revision) FROM eventstore.events e
		                     WHERE e.stream_id = s.stream_id))), '0',
		'--disable-triggers: the trigger left the append alone (streams agree with events)');
}

$behind->stop;
$ahead->stop;
note_time_taken();
done_testing();
