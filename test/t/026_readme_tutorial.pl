# The README's tutorial ("Five minutes in plain SQL") works as written: its
# SQL blocks, taken from the README itself, run in order on a server with
# the worker on; the errors they raise are exactly those the README shows,
# and the read models end as the README says.
use strict;
use warnings;
use EventstoreTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $readme = slurp_file('README.md');
my ($chapter) = $readme =~ /^## Five minutes in plain SQL\n(.*?)^## /ms
  or BAIL_OUT('README.md has no chapter "Five minutes in plain SQL"');
my @blocks = $chapter =~ /^```sql\n(.*?)^```/msg;
ok(@blocks >= 5, 'the tutorial has its SQL blocks (' . scalar(@blocks) . ')');
my $script = join("\n", @blocks);
my @expected_errors = $script =~ /^-- ERROR:  (.*)$/mg;

my $node = start_node('tutorial', "pg_eventstore.databases = 'postgres'\n");

# The projections are built by the worker between statements: a statement
# that reads a read model waits for the projections to reach the head
# first, as a reader of the tutorial would have.
my $wait = q{DO $$BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM eventstore.projection_status
                          WHERE status <> 'active' OR lag_events > 0);
    PERFORM pg_sleep(0.05);
  END LOOP; END$$;};
my @statements;
for my $block (@blocks)
{
	# statements end with ; at the end of a line (dollar-quoted bodies
	# here keep their ; inside lines that end otherwise, or end with $$;)
	my $current = '';
	my $in_body = 0;
	for my $line (split /\n/, $block)
	{
		next if $current eq '' && $line =~ /^\s*(--.*)?$/;
		$current .= "$line\n";
		my $dollars = () = $line =~ /\$\$/g;
		$in_body = !$in_body if $dollars % 2;
		if (!$in_body && $line =~ /;\s*(--.*)?$/)
		{
			push @statements, $current;
			$current = '';
		}
	}
	push @statements, $current if $current =~ /\S/;
}
my @errors;
for my $statement (@statements)
{
	$node->psql('postgres', $wait)
	  if $statement =~ /^SELECT \* FROM (cart_items|sku_sales)|promote_projection|projection_status/m;
	my ($rc, $out, $err) = $node->psql('postgres', $statement);
	push @errors, $1 while $err =~ /ERROR:  (.*)$/mg;
}
is_deeply(\@errors, \@expected_errors,
	'the statements raise exactly the errors the README shows');

$node->psql('postgres', $wait);
is( $node->safe_psql('postgres',
		q{SELECT string_agg(format('%s %s', sku, qty), ', ' ORDER BY sku) FROM cart_items}),
	'AB1 2, CD7 1, EF3 5',
	'cart_items holds what the README says');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(format('%s %s %s', sku, units, carts), ', ' ORDER BY sku) FROM sku_sales}),
	'AB1 2 1, CD7 1 1, EF3 5 1',
	'the stable view sku_sales serves version 2, as the README says');
is($node->safe_psql('postgres', q{SELECT eventstore.current_version('sku-units')}),
	'2', 'version 2 of sku-units is promoted');
is($node->safe_psql('postgres', q{SELECT eventstore.read_checkpoint('mailer')}),
	'2', "the consumer's checkpoint is where the README stored it");

$node->stop;
done_testing();
