# Temporary placeholder replaced by the claim tests.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('smoke');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_eventstore'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_eventstore');
is($node->safe_psql('postgres', "SELECT (eventstore.append_event('s', 'A', '{}')).last_position"), '1', 'append works');
$node->stop;
done_testing();
