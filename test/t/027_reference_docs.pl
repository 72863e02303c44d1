# The README is the reference: every function, view and table of the
# schema eventstore, every setting pg_eventstore.*, every column of the
# views users read, and every SQLSTATE of the extension's own class is
# named in it, and every SQL object has a COMMENT.  And test/README.md is
# the catalogue of the tests: every test file has its entry there (a
# heading naming the file), and every entry names a test file that exists.
use strict;
use warnings;
use EventstoreTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $readme = slurp_file('README.md');
my $errors_h = slurp_file('src/core/errors.h');
my $node = start_node('reference');
sql('CREATE EXTENSION pg_eventstore');

# Internal objects (trigger functions, helpers of the views) are commented
# but need no chapter: they are not called by users.
my %internal = map { $_ => 1 } qw(
  refuse_log_change note_pending_skip event_schemas_changed projection_progress
  projection_progress_of log_ranks log_holder worker_activity processor_claim_key
  refuse_events_from_publisher take_replicated_event append_counts
  estimated_rows processor_progress_of metrics_of log_backlog);

sub missing_from_readme
{
	my ($what, @names) = @_;
	my @missing = grep { index($readme, $_) < 0 } @names;
	is(join(', ', @missing), '', "every $what is in the README (" . scalar(@names) . ')');
}

my @functions = grep { !$internal{$_} } split /\n/, sql(q{
	SELECT DISTINCT p.proname FROM pg_proc p
	WHERE p.pronamespace = 'eventstore'::regnamespace ORDER BY 1});
missing_from_readme('function', map { "$_(" } @functions);

my @relations = split /\n/, sql(q{
	SELECT c.relname FROM pg_class c
	WHERE c.relnamespace = 'eventstore'::regnamespace AND c.relkind IN ('r', 'v')
	ORDER BY 1});
missing_from_readme('table and view', map { "eventstore.$_" } @relations);

my @settings = split /\n/, sql(q{
	SELECT name FROM pg_settings WHERE name LIKE 'pg\_eventstore.%' ORDER BY 1});
ok(@settings >= 5, 'the settings are defined (' . scalar(@settings) . ')');
missing_from_readme('setting', map { "`$_`" } @settings);

my @codes = $errors_h =~ /MAKE_SQLSTATE\('S','E','(\d)','(\d)','(\d)'\)/g;
my @sqlstates;
push @sqlstates, 'SE' . join('', splice(@codes, 0, 3)) while @codes;
ok(@sqlstates >= 10, 'the SQLSTATEs are defined (' . scalar(@sqlstates) . ')');
missing_from_readme('SQLSTATE', map { "`$_`" } @sqlstates);

# the columns of the views users read, each named in the README
my @columns = split /\n/, sql(q{
	SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	WHERE c.relnamespace = 'eventstore'::regnamespace AND c.relkind = 'v'
	  AND a.attnum > 0 AND NOT a.attisdropped
	ORDER BY c.relname, a.attnum});
missing_from_readme('view column', map { "`$_`" } @columns);

is( sql(q{
	SELECT string_agg(o, ', ' ORDER BY o) FROM (
		SELECT p.oid::regprocedure::text AS o FROM pg_proc p
		WHERE p.pronamespace = 'eventstore'::regnamespace
		  AND obj_description(p.oid, 'pg_proc') IS NULL
		UNION ALL
		SELECT c.oid::regclass::text FROM pg_class c
		WHERE c.relnamespace = 'eventstore'::regnamespace AND c.relkind IN ('r', 'v')
		  AND obj_description(c.oid, 'pg_class') IS NULL) u}),
	'', 'every function, table and view of the extension has a COMMENT');

# The catalogue of the tests, test/README.md: one entry ("### `name`") per
# file of test/sql, test/pgtap, test/specs and test/t.
my $catalogue = slurp_file('test/README.md');
my %entries;
$entries{$_}++ for $catalogue =~ /^### `([^`]+)`$/mg;
is(join(', ', grep { $entries{$_} > 1 } sort keys %entries),
	'', 'no test file has two entries in test/README.md');
my @test_files = map { s{.*/}{}r }
  map { glob($_) } qw(test/sql/*.sql test/pgtap/*.sql test/specs/*.spec test/t/*.pl);
ok(@test_files >= 90, 'the test files are found (' . scalar(@test_files) . ')');
is(join(', ', grep { !$entries{$_} } @test_files),
	'', 'every test file has its entry in test/README.md');
my %is_test_file = map { $_ => 1 } @test_files;
is(join(', ', grep { !$is_test_file{$_} } sort keys %entries),
	'', 'every entry of test/README.md names a test file');

$node->stop;
done_testing();
