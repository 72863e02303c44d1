# pg_upgrade and a restore into another cluster: the log, the checkpoints
# and the projections carry over, and a restored registry whose handler
# function or owner role did not come with it is restored row by row, the
# projections that lack them failing and naming what is missing.
#
# Claims proven here (every list is compared in full, in order):
# - pg_upgrade 15 -> 15 of a cluster with the extension at the current
#   version: pg_upgrade --check passes (exit 0; a 0.2.0 registry kept
#   regproc, which it refuses), and so does the upgrade.  On the new
#   cluster the log (global_position, transaction_id, stream_id, revision,
#   event_id, in log order) is the old one's; read_checkpoint returns the
#   stored checkpoint and read_all from it exactly the events after it in
#   log order (it is taken where a lower position follows it); the registry
#   rows and the read model are the old ones.  Once the worker serves the
#   database it applies the async projection's backlog to the set-based
#   answer, and new appends come after the whole old log and are applied.
# - pg_dump (custom format, which never holds roles) restored with
#   pg_restore into a fresh database of another cluster that lacks the
#   owner role of one projection and the schema of another's handler: the
#   only errors are the statements naming that role (owners and grants),
#   none of them the COPY of the registry; every registry row is there as
#   it was, and so is the log.  Once a worker serves the database, with no
#   append needed, the projection with both runs to the set-based answer,
#   and the one missing its handler (an active inline projection) and the
#   one missing its owner are failed, each with last_error naming what is
#   missing.
#
# Every wait is bounded by PostgreSQL::Test::Utils's timeout_default; the
# figures (events, backlogs, transaction ids, how long pg_upgrade and
# pg_restore took) are noted, not bounded.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use EventstoreTest;

my $timeout = $PostgreSQL::Test::Utils::timeout_default;

# The worker's settings of every node here, but pg_eventstore.databases,
# which each node sets: a node whose state is compared before and after
# serves no database until the comparison is done.
my $settings = q(
pg_eventstore.batch_size = 50
pg_eventstore.poll_interval = '200ms'
pg_eventstore.retry_interval = '200ms'
);

# A read model in a schema: per cart, the quantity and the positions of the
# events applied, in the order applied (so that a lost, doubled or
# misordered event shows), kept by a per-event handler.
sub read_model_ddl
{
	my ($schema) = @_;
	return qq{
		CREATE TABLE $schema.items (cart text PRIMARY KEY,
		                            qty integer NOT NULL,
		                            positions bigint[] NOT NULL);
		CREATE FUNCTION $schema.apply_items(e eventstore.events) RETURNS void
		LANGUAGE sql AS \$\$
			INSERT INTO $schema.items AS i
			VALUES (e.stream_id,
			        CASE e.event_type WHEN 'ItemAdded' THEN 1 ELSE -1 END
			          * (e.data->>'qty')::integer,
			        ARRAY[e.global_position])
			ON CONFLICT (cart) DO UPDATE
			  SET qty = i.qty + excluded.qty,
			      positions = i.positions || excluded.positions
		\$\$;};
}

# The read model of a schema, as text, and the same computed from the log.
sub read_model
{
	my ($schema) = @_;
	return qq{
		SELECT coalesce(string_agg(format('%s:%s:%s', cart, qty, positions), ' '
		                           ORDER BY cart), '')
		FROM $schema.items};
}
my $answer = q{
	SELECT coalesce(string_agg(format('%s:%s:%s', stream_id, qty, positions), ' '
	                           ORDER BY stream_id), '')
	FROM (SELECT stream_id,
	             sum(CASE event_type WHEN 'ItemAdded' THEN 1 ELSE -1 END
	                   * (data->>'qty')::integer) AS qty,
	             array_agg(global_position ORDER BY transaction_id, global_position)
	               AS positions
	      FROM eventstore.events
	      WHERE event_type IN ('ItemAdded', 'ItemRemoved')
	      GROUP BY stream_id) s};
my $types = q(ARRAY['ItemAdded', 'ItemRemoved']);

# The extension, the app's read model and a procedure appending to four
# carts in n transactions (every fourth adds a batch with a Checkout, a
# type no projection here takes).
my $setup = read_model_ddl('app') . q{
	CREATE PROCEDURE app.load(n integer, seed integer) LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1 .. n LOOP
			PERFORM eventstore.append_event('cart-' || (seed + i) % 4 + 1,
			          CASE WHEN i % 3 = 0 THEN 'ItemRemoved' ELSE 'ItemAdded' END,
			          jsonb_build_object('qty', (seed + i) % 5 + 1));
			IF i % 4 = 0 THEN
				PERFORM eventstore.append_to_stream('cart-' || (seed + i + 1) % 4 + 1,
				          '[{"type": "ItemAdded", "data": {"qty": 2}}, {"type": "Checkout"}]');
			END IF;
			COMMIT;
		END LOOP;
	END $$;};

# The whole log in log order, one event a line.
my $log = q{
	SELECT global_position, transaction_id, stream_id, revision, event_id
	FROM eventstore.events ORDER BY transaction_id, global_position};

# The registry, one projection a line.
my $registry = q{
	SELECT name, version, handler, owner, handler_owner, mode, status,
	       caught_up, "position", transaction_id, events_applied, event_types
	FROM eventstore.projections ORDER BY name, version};

# Set pg_eventstore.databases and reload.
sub serve
{
	my ($databases) = @_;
	sql("ALTER SYSTEM SET pg_eventstore.databases = '$databases'");
	sql('SELECT pg_reload_conf()');
	return;
}

# Wait until the number of a node's pg_eventstore workers meets a
# condition ("= 0", "> 0").
sub wait_workers
{
	my ($node, $condition, $what) = @_;
	ok( $node->poll_query_until('postgres', qq(
			SELECT count(*) $condition FROM pg_stat_activity
			WHERE backend_type = 'pg_eventstore worker')),
		$what);
	return;
}

# Run a command in a directory (pg_upgrade writes files into its current
# one); returns whether it exited 0, its stdout and its stderr.
sub run_in
{
	my ($dir, @command) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(\@command,
		init => sub { chdir $dir or die "cannot enter $dir: $!" },
		'>', \$out, '2>', \$err, IPC::Run::timeout($timeout));
	return ($ok, $out, $err);
}

# Wait until the read horizon of a node's database passes every event (a
# worker's transaction that took its xid before an append holds the
# append back from read_all until it ends).  The horizon is a log key, as
# transaction_id is: on a restored database, this cluster's transaction
# ids plus its offset.
sub wait_horizon
{
	my ($node, $db, $what) = @_;
	ok( $node->poll_query_until($db, q(
			SELECT eventstore.log_horizon()
			       > (SELECT max(transaction_id) FROM eventstore.events))),
		$what);
	return;
}

# --- A: pg_upgrade ---------------------------------------------------------

my $old = start_node('old', "pg_eventstore.databases = 'postgres'\n$settings");
sql("CREATE EXTENSION pg_eventstore; CREATE SCHEMA app; $setup");
sql('CALL app.load(12, 0)');

# A transaction that takes its xid and a position early and commits after a
# younger one, so that log order and position order differ.
my $early = session();
my $younger = session();
$early->query_safe('BEGIN');
my $first = $early->query_safe(q(
	SELECT last_position FROM eventstore.append_event('cart-1', 'ItemAdded', '{"qty": 3}')));
my $between = $younger->query_safe(q(
	SELECT last_position FROM eventstore.append_event('cart-2', 'ItemAdded', '{"qty": 4}')));
my $late = $early->query_safe(q(
	SELECT last_position FROM eventstore.append_event('cart-3', 'ItemRemoved', '{"qty": 1}')));
$early->query_safe('COMMIT');
$early->quit;
$younger->quit;
is(join(',', $first < $between, $between < $late), '1,1',
	'old: the early transaction took a position before the younger one and one after');

# The async projection, created over a non-empty log, replayed by the worker.
sql(qq(SELECT eventstore.create_projection('items', 'app.apply_items', $types)));
$old->poll_query_until('postgres', qq(
	SELECT status = 'active' AND ($answer) = (@{[ read_model('app') ]})
	FROM eventstore.projections WHERE name = 'items'));
is(sql(read_model('app')), sql($answer),
	'old: the worker replayed the projection to the set-based answer');
is(sql(q(SELECT status FROM eventstore.projections WHERE name = 'items')),
	'active', 'old: and it is active');

# The checkpoint: after the early transaction's last event, followed in log
# order by the younger one's lower position.
is(sql("SELECT eventstore.store_checkpoint('relay', $late, NULL)"), 'stored',
	'old: a checkpoint stored');

# The backlog: the worker stops serving the database, then more events.
serve('');
wait_workers($old, '= 0', 'old: the worker stops when no database is served');
sql('CALL app.load(10, 1)');
my @old_log = split /\n/, sql($log);
my @old_positions = map { (split /\|/)[0] } @old_log;
my $old_registry = sql($registry);
my $old_model = sql(read_model('app'));
my $backlog = sql(q(SELECT lag_events FROM eventstore.projection_status WHERE name = 'items'));
my ($at) = grep { $old_positions[$_] == $late } 0 .. $#old_positions;
my @after_checkpoint = @old_positions[ $at + 1 .. $#old_positions ];
note sprintf('old: %d events, %d after the checkpoint (the first %d, below it), backlog %d',
	scalar @old_log, scalar @after_checkpoint, $after_checkpoint[0], $backlog);
is($after_checkpoint[0], $between,
	'old: the event after the checkpoint in log order has a lower position');
cmp_ok($backlog, '>', 0, 'old: the projection has a backlog');
isnt($old_model, sql($answer), 'old: so its read model is behind the log');
$old->stop;

# The new cluster: initialized alike, never started.  It serves no database
# at first, so that its state can be compared before its worker moves on.
my $new = init_node('new', "pg_eventstore.databases = ''\n$settings");
my $dir = PostgreSQL::Test::Utils::tempdir;
my @upgrade = (
	$new->config_data('--bindir') . '/pg_upgrade', '--no-sync',
	'-d', $old->data_dir, '-D', $new->data_dir,
	'-b', $old->config_data('--bindir'), '-B', $new->config_data('--bindir'),
	'-s', $new->host, '-p', $old->port, '-P', $new->port);

my $started = time;
my ($ok, $out, $err) = run_in($dir, @upgrade, '--check');
note sprintf('pg_upgrade --check: %.1f s', time - $started);
ok($ok, 'pg_upgrade --check exits 0') or diag("$out\n$err");
like($out, qr/^\*Clusters are compatible\*$/m, 'pg_upgrade --check: clusters are compatible');
unlike($out, qr/reg\* data types in user tables\s+fatal/,
	'pg_upgrade --check: no reg* data type in user tables');

$started = time;
($ok, $out, $err) = run_in($dir, @upgrade);
note sprintf('pg_upgrade: %.1f s', time - $started);
ok($ok, 'pg_upgrade exits 0') or diag("$out\n$err");
like($out, qr/^Upgrade Complete$/m, 'pg_upgrade: upgrade complete');

$new->start;
use_node($new);
is(sql(q(SELECT extversion FROM pg_extension WHERE extname = 'pg_eventstore')),
	sql(q(SELECT default_version FROM pg_available_extensions WHERE name = 'pg_eventstore')),
	'new: the extension at the current version');
is_deeply([ split /\n/, sql($log) ], \@old_log,
	'new: the log is the old one, event by event, in the same order');
is(sql(q(SELECT eventstore.read_checkpoint('relay'))), $late,
	'new: read_checkpoint returns the checkpoint stored before the upgrade');
is_deeply([ read_all_after('postgres', $late) ], \@after_checkpoint,
	'new: read_all from the checkpoint returns exactly the events after it');
is(sql($registry), $old_registry, 'new: the registry rows are the old ones');
is(sql(read_model('app')), $old_model, 'new: the read model is the old one');

# The worker resumes from the projection's checkpoint.
serve('postgres');
wait_workers($new, '> 0', 'new: workers serve the database');
$new->poll_query_until('postgres', qq(SELECT ($answer) = (@{[ read_model('app') ]})));
is(sql(read_model('app')), sql($answer),
	'new: the worker applied the backlog to the set-based answer');
is(sql(q(SELECT format('%s %s', status, lag_events) FROM eventstore.projection_status
	WHERE name = 'items')), 'active 0', 'new: active, no lag');

# New appends come after the whole old log, and are applied.
my @new_positions = split /\n/, sql(q(
	SELECT last_position FROM eventstore.append_event('cart-4', 'ItemAdded', '{"qty": 5}');
	SELECT last_position FROM eventstore.append_event('cart-9', 'ItemAdded', '{"qty": 1}');));
wait_horizon($new, 'postgres', 'new: the read horizon passes the new appends');
is_deeply([ read_all_after('postgres', $old_positions[-1]) ], \@new_positions,
	'new: new appends come after the whole old log in read_all order');
is_deeply([ read_all_after('postgres', 0) ], [ @old_positions, @new_positions ],
	'new: read_all from the start returns the old log, then the new appends');
$new->poll_query_until('postgres', qq(SELECT ($answer) = (@{[ read_model('app') ]})));
is(sql(read_model('app')), sql($answer), 'new: the worker applied the new appends');
$new->stop;

# --- B: a restore without a handler and without an owner -------------------

# The source: p_ok (its handler and owner restored), p_gone_handler (an
# inline projection whose handler's schema, gone, is left out of the
# restore) and p_gone_owner (owned by r_owner, a role the dump does not
# hold).  No worker: run_projection drives them.
my $source = start_node('source', "pg_eventstore.databases = ''\n$settings");
sql(qq{
	CREATE EXTENSION pg_eventstore;
	CREATE SCHEMA app;
	CREATE SCHEMA gone;
	CREATE SCHEMA owned;
	$setup
	@{[ read_model_ddl('gone') ]}
	CREATE ROLE r_owner NOLOGIN;
	GRANT USAGE, CREATE ON SCHEMA owned TO r_owner;
	GRANT EXECUTE ON FUNCTION
		eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer),
		eventstore.run_projection(text, integer, bigint)
	TO r_owner;
	CALL app.load(12, 0);
});
sql(qq{
	SET ROLE r_owner;
	@{[ read_model_ddl('owned') ]}
	SELECT eventstore.create_projection('p_gone_owner', 'owned.apply_items', $types);
	RESET ROLE;
	SELECT eventstore.create_projection('p_ok', 'app.apply_items', $types);
	SELECT eventstore.create_projection('p_gone_handler', 'gone.apply_items', $types,
	                                    mode => 'inline');
});
sql(q(SELECT eventstore.run_projection(name) FROM eventstore.projections ORDER BY name));
is(sql(q(SELECT string_agg(format('%s=%s/%s', name, owner, status), ',' ORDER BY name)
	FROM eventstore.projections)),
	'p_gone_handler=postgres/active,p_gone_owner=r_owner/active,p_ok=postgres/active',
	'source: three projections, one owned by r_owner, all active');
# more events: applied inline by p_gone_handler, a backlog for the others
sql('CALL app.load(10, 1)');
is(sql(read_model('gone')), sql($answer), 'source: the inline projection is up to date');
note 'source: backlogs ' . sql(q(
	SELECT string_agg(format('%s %s', name, lag_events), ', ' ORDER BY name)
	FROM eventstore.projection_status WHERE mode = 'async'));

my @source_log = split /\n/, sql($log);
my $source_registry = sql($registry);
my $dump = $source->basedir . '/source.dump';
$source->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $source->connstr('postgres') ],
	'source: pg_dump, custom format');
$source->stop;

# The target serves no database until the restore is done, so that no
# worker acts on a registry whose read models are not restored yet.
my $target = start_node('target', "pg_eventstore.databases = ''\n$settings");

is(sql(q(SELECT count(*) FROM pg_roles WHERE rolname = 'r_owner')), '0',
	'target: has no role r_owner');

# The restore: every entry of the dump but the schema gone and what is in
# it (a list edited for pg_restore -L; --exclude-schema would also leave out
# the grants on the extension's functions, whose entries it skips with the
# functions, and restore the schema itself).
my ($listed, $list_err) = ('', '');
IPC::Run::run([ 'pg_restore', '-l', $dump ], '>', \$listed, '2>', \$list_err,
	IPC::Run::timeout($timeout))
  or die "pg_restore -l: $list_err";
my @entries = split /\n/, $listed;
my @left_out = grep { /^\d+; \d+ \d+ (?:SCHEMA - gone|(?:[A-Z]+ )+gone) / } @entries;
my $list = $target->basedir . '/restore.list';
PostgreSQL::Test::Utils::append_to_file($list,
	join("\n", grep { my $e = $_; !grep { $_ eq $e } @left_out } @entries) . "\n");
note 'left out of the restore: ' . join('; ', @left_out);
is(join(',', map { /^\d+; \d+ \d+ ((?:[A-Z]+ )+)/; $1 =~ s/ $//r } @left_out),
	'SCHEMA,FUNCTION,TABLE,TABLE DATA,CONSTRAINT',
	'restore: the list leaves out the schema gone, its handler and its read model');

sql('CREATE DATABASE restored');
$started = time;
($ok, $out, $err) = run_in($target->basedir,
	'pg_restore', '-L', $list, '-d', $target->connstr('restored'), $dump);
note sprintf('pg_restore: %.2f s', time - $started);
my @errors = $err =~ /^pg_restore: error: (.*)$/mg;
my @commands = $err =~ /^Command was: (.*)$/mg;
note 'pg_restore: ' . scalar(@errors) . ' errors: ' . join(' ', @commands);
is_deeply([ grep { $_ ne 'could not execute query: ERROR:  role "r_owner" does not exist' } @errors ],
	[], 'pg_restore: every error is that role r_owner does not exist')
  or diag($err);
is(join("\n", @commands), join("\n",
	'ALTER FUNCTION owned.apply_items(e eventstore.events) OWNER TO r_owner;',
	'ALTER TABLE owned.items OWNER TO r_owner;',
	'GRANT ALL ON SCHEMA owned TO r_owner;',
	'GRANT ALL ON FUNCTION eventstore.create_projection(name text, handler regproc, '
	  . 'event_types text[], mode text, version integer, on_reset text, on_error text, '
	  . 'promote text, upcast boolean, backfill text, parallel integer) TO r_owner;',
	'GRANT ALL ON FUNCTION eventstore.run_projection(name text, version integer, '
	  . 'max_events bigint) TO r_owner;'),
	'pg_restore: the statements that failed are those giving r_owner ownership or a privilege');
unlike($err, qr/TABLE DATA|COPY/, 'pg_restore: no error in any table\'s data, the registry\'s included');

is(sql_in('restored', q(SELECT string_agg(name, ',' ORDER BY name) FROM eventstore.projections)),
	'p_gone_handler,p_gone_owner,p_ok', 'restored: all three projections are in the registry');
is(sql_in('restored', $registry), $source_registry, 'restored: each row as it was');
is_deeply([ split /\n/, sql_in('restored', $log) ], \@source_log,
	'restored: the log is the source\'s');
is(sql_in('restored', q(SELECT to_regnamespace('gone') IS NULL
	AND to_regprocedure('gone.apply_items(eventstore.events)') IS NULL)),
	't', 'restored: without the schema gone, so without p_gone_handler\'s handler');

# A worker's turn: no append needed.
my $served_at = time;
serve('restored');
my $outcome = q{
	SELECT string_agg(format('%s=%s', name, status), ',' ORDER BY name)
	FROM eventstore.projections};
$target->poll_query_until('restored', qq(
	SELECT ($outcome) = 'p_gone_handler=failed,p_gone_owner=failed,p_ok=active'
	   AND ($answer) = (@{[ read_model('app') ]})));
note sprintf('restored: the worker settled every projection %.2f s after the reload',
	time - $served_at);
is(sql_in('restored', $outcome), 'p_gone_handler=failed,p_gone_owner=failed,p_ok=active',
	'restored: the worker fails the projections missing a handler or an owner');
is(sql_in('restored', read_model('app')), sql_in('restored', $answer),
	'restored: and brings p_ok to the set-based answer');
is(sql_in('restored', q(
	SELECT string_agg(format('%s|%s|%s', name, error_sqlstate, last_error), E'\n' ORDER BY name)
	FROM eventstore.projections WHERE status = 'failed')),
	qq(p_gone_handler|42883|the handler gone.apply_items(eventstore.events) of projection "p_gone_handler" version 1 does not exist\n)
	  . q(p_gone_owner|42704|the owner role "r_owner" of projection "p_gone_owner" version 1 does not exist),
	'restored: last_error names the missing handler and the missing owner');
is(sql_in('restored', q(
	SELECT string_agg(format('%s|%s|%s', name, coalesce(handler::text, 'NULL'),
	                         coalesce(owner::text, 'NULL')), ',' ORDER BY name)
	FROM eventstore.projection_status)),
	'p_gone_handler|NULL|postgres,p_gone_owner|owned.apply_items|NULL,p_ok|app.apply_items|postgres',
	'restored: projection_status shows the missing handler and owner as NULL');

# A new append is applied by p_ok, after the restored log.
my $new_position = sql_in('restored', q(
	SELECT last_position FROM eventstore.append_event('cart-1', 'ItemAdded', '{"qty": 7}')));
wait_horizon($target, 'restored', 'restored: the read horizon passes the new append');
is_deeply([ read_all_after('restored', (split /\|/, $source_log[-1])[0]) ], [$new_position],
	'restored: a new append comes after the restored log');
$target->poll_query_until('restored', qq(SELECT ($answer) = (@{[ read_model('app') ]})));
is(sql_in('restored', read_model('app')), sql_in('restored', $answer),
	'restored: p_ok applies it');

$target->stop;
note_time_taken();
done_testing();
