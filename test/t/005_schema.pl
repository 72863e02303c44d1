# One schema, however it was reached: a new install of the current version
# and an upgrade to it from every earlier release give the same schema.
#
# Claims proven here:
# - Every earlier release found in sql/ (an install script
#   pg_eventstore--V.sql other than the current version's, or the version an
#   upgrade script starts from) has its install script there and is
#   installed, so its upgrade is tested; there is at least one.
# - For each of them, CREATE EXTENSION pg_eventstore VERSION 'V' then
#   ALTER EXTENSION pg_eventstore UPDATE reaches the current version, and
#   pg_dump --schema-only --binary-upgrade of that database is the same as
#   of a database with CREATE EXTENSION pg_eventstore.
#
# A plain pg_dump shows an extension as CREATE EXTENSION only; with
# --binary-upgrade it shows every member (tables with their column order,
# defaults and constraints, indexes, triggers, functions with their
# attributes, views, types, sequences, comments, membership, privileges
# with what pg_init_privs records, and the pg_extension_config_dump
# registrations), as pg_upgrade would recreate them.  It also shows what
# differs between any two databases, which the comparison takes out or
# names: the calls setting the next object's oids and relfilenodes (the
# object itself follows them) are dropped, relfrozenxid and relminmxid are
# blanked, a toast table's oid is replaced by the table it belongs to, the
# extension's configuration tables by their names (in their order), and
# the \restrict key, random for each dump, is blanked.  Anything else that
# differs fails the test, which prints a diff.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use EventstoreTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $sqldir = File::Spec->catdir(dirname(__FILE__), '..', '..', 'sql');

my $node = start_node('schema', "pg_eventstore.databases = ''");

my $current = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'pg_eventstore'");
isnt($current, '', "pg_eventstore is installed, default version $current");

# The earlier releases: versions with an install script in sql/ or an
# upgrade script from them, but the current one.
my %seen;
opendir(my $dh, $sqldir) or die "cannot read $sqldir: $!";
for my $file (readdir $dh)
{
	$seen{$1} = 1
	  if $file =~ /^pg_eventstore--([^-]+)(?:--[^-]+)?\.sql$/ && $1 ne $current;
}
closedir $dh;
my @releases = sort keys %seen;
ok(@releases > 0, 'earlier releases found in sql/: ' . join(', ', @releases));

my %available = map { $_ => 1 } split /\n/,
  $node->safe_psql('postgres',
	"SELECT version FROM pg_available_extension_versions WHERE name = 'pg_eventstore'");
for my $v (@releases)
{
	ok(-f "$sqldir/pg_eventstore--$v.sql", "release $v has its install script in sql/");
	ok($available{$v}, "release $v is installed");
}

# The schema-only binary-upgrade dump of a database, with what differs
# between any two databases taken out or named (see the top).
sub schema_dump
{
	my ($db) = @_;
	my ($out, $err);
	my $ok = IPC::Run::run [
		'pg_dump', '--schema-only', '--binary-upgrade',
		'--dbname', $node->connstr($db)
	  ],
	  '>', \$out, '2>', \$err;
	ok($ok, "pg_dump of $db") or diag($err);

	# every relation's name, and for a toast table the table it belongs to
	my %name;
	for my $row (split /\n/,
		$node->safe_psql($db,
			"SELECT c.oid, c.oid::regclass, coalesce(t.oid::regclass::text, '')
			 FROM pg_class c LEFT JOIN pg_class t ON t.reltoastrelid = c.oid"))
	{
		my ($oid, $rel, $table) = split /\|/, $row, -1;
		$name{$oid} = $table ne '' ? "toast table of $table" : $rel;
	}
	my $named = sub {
		my ($oid) = @_;
		return $name{$oid} // $oid;
	};

	my @lines;
	for my $line (split /\n/, $out)
	{
		next if $line =~ /^SELECT pg_catalog\.binary_upgrade_set_next_\w+\(.*\);$/;
		$line =~ s/^\\(un)?restrict \S+$/\\$1restrict <key>/;
		$line =~ s/relfrozenxid = '\d+', relminmxid = '\d+'/relfrozenxid = <xid>, relminmxid = <mxid>/;
		$line =~ s/^WHERE oid = '(\d+)';$/"WHERE oid = '<" . $named->($1) . ">';"/e;
		$line =~ s{'\{([\d,]+)\}'}{"'{" . join(',', map { $named->($_) } split(/,/, $1)) . "}'"}e
		  if $line =~ /binary_upgrade_create_empty_extension\(/;
		push @lines, $line;
	}
	return join("\n", @lines) . "\n";
}

# Write a file, replacing what it held.
sub write_file
{
	my ($path, $text) = @_;
	open(my $fh, '>', $path) or die "cannot write $path: $!";
	print $fh $text;
	close($fh) or die "cannot write $path: $!";
	return;
}

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION pg_eventstore');
my $fresh = schema_dump('fresh');
like($fresh, qr/^CREATE TABLE eventstore\.events \(/m, 'the dump shows the tables');
like($fresh, qr/^ALTER EXTENSION pg_eventstore ADD FUNCTION eventstore\.append_event\(/m,
	'the dump shows the membership');

for my $v (@releases)
{
	next unless $available{$v};
	my $db = "from_$v" =~ s/\W/_/gr;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION pg_eventstore VERSION '$v'");
	$node->safe_psql($db, 'ALTER EXTENSION pg_eventstore UPDATE');
	is($node->safe_psql($db,
			"SELECT extversion FROM pg_extension WHERE extname = 'pg_eventstore'"),
		$current, "$v updates to $current");

	my $upgraded = schema_dump($db);
	next if ok($upgraded eq $fresh, "upgrade from $v: the schema of a new install");

	my $dir = $PostgreSQL::Test::Utils::tmp_check;
	write_file("$dir/fresh.sql", $fresh);
	write_file("$dir/$db.sql", $upgraded);
	my ($diff) = run_command([ 'diff', '-u', "$dir/fresh.sql", "$dir/$db.sql" ]);
	diag("new install (-) against upgrade from $v (+):\n$diff");
}

$node->stop;
done_testing();
