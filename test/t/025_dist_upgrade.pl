# The release as users get it: the pg_regress suite passes on a database
# whose extension was reached by updates from each earlier release, and
# from the PGXN archive (make dist) built and installed on its own.
#
# Claims proven here:
# - For each earlier release V with an install script in sql/ (0.1.0,
#   0.2.0), on an installation of PostgreSQL that holds the current
#   library and every script but the install scripts of the versions after
#   V: the current version is available, only through updates from V (its
#   install script is absent), and the whole pg_regress suite (test/sql,
#   expected/) passes there, but for what the update does by design (the
#   log's clock started: see @updated_differences), which is shown exactly
#   where the suite expects it.  Every test starts with CREATE EXTENSION
#   pg_eventstore, which PostgreSQL then runs as V's install script
#   followed by the update scripts V -> ... -> current, so every exact
#   result and error of the suite is checked on the updated schema.
#   (test/t/005_schema.pl compares that schema with a new install's.)
# - The archive make dist wrote (PG_EVENTSTORE_DIST, set by
#   scripts/test.sh in a git checkout; skipped without it) unpacks into
#   one directory NAME-VERSION/, builds with warnings as errors, installs
#   on an installation that held no pg_eventstore, with the install script
#   META.json's provides names, and passes its own pg_regress suite.
#
# The installations are made here, under the test's temporary directory:
# the programs copied (PostgreSQL finds its library and share directories
# from where the programs really are), every other file a symbolic link to
# the installation under test, and no pg_eventstore file but those chosen.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname basename);
use File::Copy qw(copy);
use File::Find qw(find);
use File::Path qw(make_path);
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $src = abs_path(File::Spec->catdir(dirname(__FILE__), '..', '..'));
my $tmp = PostgreSQL::Test::Utils::tempdir();

# What pg_config (from PATH, the installation under test) says.
sub pg_config
{
	my ($what) = @_;
	my ($out) = run_command([ 'pg_config', "--$what" ]);
	chomp $out;
	return $out;
}
my %dir = map { $_ => pg_config($_) } qw(bindir pkglibdir sharedir includedir);

my $control = slurp_file("$src/pg_eventstore.control");
my ($current) = $control =~ /^default_version = '([^']+)'/m;
ok($current, "the current version is $current");

# Does a directory hold a pg_eventstore file at any depth?
sub holds_ours
{
	my ($d) = @_;
	my $found = 0;
	find(sub { $found = 1 if /^pg_eventstore/ }, $d);
	return $found;
}

# Mirror directory $from at $to: directories that hold a pg_eventstore file
# are made, everything else is a symbolic link, pg_eventstore files are left
# out (make install then writes its own, never through a link).
sub mirror
{
	my ($from, $to) = @_;
	make_path($to);
	opendir(my $dh, $from) or die "cannot read $from: $!";
	for my $e (sort grep { $_ ne '.' && $_ ne '..' } readdir $dh)
	{
		next if $e =~ /^pg_eventstore/;
		if (-d "$from/$e" && !-l "$from/$e" && holds_ours("$from/$e"))
		{
			mirror("$from/$e", "$to/$e");
		}
		else
		{
			symlink("$from/$e", "$to/$e") or die "cannot link $to/$e: $!";
		}
	}
	closedir $dh;
	return;
}

# A new installation at $root (the directories of the one under test below
# it) without pg_eventstore; returns its bin and extension directories.
sub installation
{
	my ($root) = @_;
	my $bin = "$root$dir{bindir}";
	make_path($bin);
	opendir(my $dh, $dir{bindir}) or die "cannot read $dir{bindir}: $!";
	for my $e (grep { -f "$dir{bindir}/$_" } readdir $dh)
	{
		copy("$dir{bindir}/$e", "$bin/$e") or die "cannot copy $e: $!";
		chmod(0755, "$bin/$e");
	}
	closedir $dh;
	mirror($dir{pkglibdir}, "$root$dir{pkglibdir}");
	mirror($dir{sharedir}, "$root$dir{sharedir}");
	make_path(dirname("$root$dir{includedir}"));
	symlink($dir{includedir}, "$root$dir{includedir}")
	  or die "cannot link the headers: $!";
	return ($bin, "$root$dir{sharedir}/extension");
}

# What an updated database shows unlike a new install, by design: the
# update to 0.3.0 starts the log's clock, so the log has its incarnation,
# with reason 'upgrade', before its first append (README: Updating the
# extension from 0.2.0).  Each is one exact replacement in an expected file.
my @updated_differences = (
	[
		'log_nodes.out',
		"SELECT count(*) FROM eventstore.log_incarnations;\n count \n-------\n     0\n",
		"SELECT count(*) FROM eventstore.log_incarnations;\n count \n-------\n     1\n"
	],
	[
		'log_nodes.out',
		" timeline_id | xid_offset | first_position |   reason    | this_cluster | this_log \n"
		  . "-------------+------------+----------------+-------------+--------------+----------\n"
		  . "           1 |          0 |              1 | first write | t            | t\n",
		" timeline_id | xid_offset | first_position | reason  | this_cluster | this_log \n"
		  . "-------------+------------+----------------+---------+--------------+----------\n"
		  . "           1 |          0 |              1 | upgrade | t            | t\n"
	]);

# Run the pg_regress suite of the tree $tree (test/sql, expected/) on a
# temporary instance of the installation whose programs are in $bin; on an
# updated database, with @updated_differences applied to the expected output.
sub regress
{
	my ($label, $bin, $tree, $updated) = @_;
	my $out = "$tmp/regress-$label";
	# PostgreSQL 15's pg_regress looks for expected/ in its output directory
	make_path("$out/expected");
	for my $f (glob("$tree/expected/*.out"))
	{
		copy($f, "$out/expected/" . basename($f)) or die "cannot copy $f: $!";
	}
	for my $d ($updated ? @updated_differences : ())
	{
		my ($file, $from, $to) = @$d;
		my $text = slurp_file("$out/expected/$file");
		my $n = () = $text =~ /\Q$from\E/g;
		is($n, 1, "$label: $file shows, once, what an updated database shows otherwise");
		$text =~ s/\Q$from\E/$to/;
		open(my $fh, '>', "$out/expected/$file") or die "cannot write $file: $!";
		print $fh $text;
		close($fh) or die "cannot write $file: $!";
	}
	my @tests = map { basename($_, '.sql') } sort glob("$tree/test/sql/*.sql");
	my ($stdout, $stderr);
	my $ok = IPC::Run::run [
		"$dir{pkglibdir}/pgxs/src/test/regress/pg_regress",
		"--inputdir=$tree/test", "--outputdir=$out", "--bindir=$bin",
		"--temp-instance=$out/instance",
		"--temp-config=$tree/test/pg_eventstore.conf",
		'--dbname=contrib_regression', @tests
	  ],
	  '>', \$stdout, '2>', \$stderr;
	my $passed = () = $stdout =~ /\.\.\. ok\b/g;
	ok($ok && $passed == @tests,
		"$label: the pg_regress suite passes ($passed of " . scalar(@tests) . ')')
	  or diag($stdout . $stderr
		  . (-f "$out/regression.diffs" ? slurp_file("$out/regression.diffs") : ''));
	return;
}

# ---- the suite on databases updated from each earlier release

my @releases = sort grep { $_ ne $current }
  map { /pg_eventstore--([^-]+)\.sql$/ ? $1 : () } glob("$src/sql/pg_eventstore--*.sql");
ok(@releases > 0, 'earlier releases: ' . join(', ', @releases));

# compare versions numerically, part by part
sub version_cmp
{
	my @a = split /\./, $_[0];
	my @b = split /\./, $_[1];
	for my $i (0 .. 2)
	{
		my $c = ($a[$i] // 0) <=> ($b[$i] // 0);
		return $c if $c;
	}
	return 0;
}

my $installed_ext = "$dir{sharedir}/extension";
for my $v (@releases)
{
	my ($bin, $ext) = installation("$tmp/from-$v");
	symlink("$dir{pkglibdir}/pg_eventstore.so", "$tmp/from-$v$dir{pkglibdir}/pg_eventstore.so")
	  or die "cannot link the library: $!";
	my @kept;
	for my $f (sort glob("$installed_ext/pg_eventstore*"))
	{
		my $name = basename($f);
		# the install scripts of the versions after V are left out
		next
		  if $name =~ /^pg_eventstore--([^-]+)\.sql$/ && version_cmp($1, $v) > 0;
		symlink($f, "$ext/$name") or die "cannot link $name: $!";
		push @kept, $name;
	}
	ok(!-e "$ext/pg_eventstore--$current.sql" && -e "$ext/pg_eventstore--$v.sql",
		"from $v: the installation has $v\'s install script and not $current\'s: "
		  . join(' ', @kept));
	regress("from-$v", $bin, $src, 1);
}

# ---- the archive, built and installed on its own

SKIP:
{
	my $zip = $ENV{PG_EVENTSTORE_DIST};
	skip 'PG_EVENTSTORE_DIST is not set (scripts/test.sh sets it in a git checkout)', 4
	  unless $zip;
	my $unpacked = "$tmp/archive";
	my ($out, $err) = run_command([ 'python3', '-m', 'zipfile', '-e', $zip, $unpacked ]);
	my @tops = map { basename($_) } glob("$unpacked/*");
	is_deeply(\@tops, ["pg_eventstore-$current"],
		"the archive holds one directory, pg_eventstore-$current");
	my $tree = "$unpacked/pg_eventstore-$current";

	my ($bin, $ext) = installation("$tmp/archive-install");
	my $pg_config = "$bin/pg_config";
	my ($ok, $log) = (1, '');
	for my $step ([ 'make', '-s', "PG_CONFIG=$pg_config", 'COPT=-Werror' ],
		[ 'make', '-s', "PG_CONFIG=$pg_config", 'install' ])
	{
		my ($o, $e);
		$ok &&= IPC::Run::run [ @$step ], '>', \$o, '2>', \$e, init => sub { chdir $tree };
		$log .= "@$step:\n$o$e";
	}
	ok($ok, 'the archive builds with -Werror and installs') or diag($log);
	my ($provides) = slurp_file("$tree/META.json") =~ /"provides".*?"file": "([^"]+)"/s;
	ok(-f "$ext/" . basename($provides // 'none'),
		"the installation holds the script META.json provides: $provides");
	regress('archive', $bin, $tree);
}

done_testing();
