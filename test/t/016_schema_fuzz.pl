# The C validator of event schemas against an independent implementation:
# random (schema, document) cases from a seeded generator
# (test/fuzz/schema_cases.py), each judged by Debian's python3-jsonschema
# (Draft 2020-12, format checker on) and by an append of the document as an event
# of a type registered with the schema.
#
# Claims proven here:
# - On 10,000 cases over every supported keyword (type and arrays of types,
#   integer vs number, properties, required, additionalProperties boolean
#   and schema, items, enum, const, minimum, maximum and the exclusive ones,
#   minLength and maxLength in characters, pattern, format uuid, boolean
#   schemas, nesting), the append succeeds exactly when jsonschema says the
#   document is valid, and fails with SE016 otherwise.  The first
#   disagreements are printed with their schema and document.
# - Both verdicts occur often (neither side passes by accepting or refusing
#   everything).
# (format date-time is left out: jsonschema checks it only with the
# rfc3339-validator module, which Debian does not package; pg_regress
# test event_schemas covers it.)
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use EventstoreTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed = $ENV{PG_EVENTSTORE_FUZZ_SEED} // 20261201;
my $count = 10000;
my $generator = File::Spec->catfile(dirname(__FILE__), '..', 'fuzz', 'schema_cases.py');
my $cases = PostgreSQL::Test::Utils::tempdir() . '/cases.tsv';

my ($out, $err) = run_command(['python3', $generator, $seed, $count]);
is($err, '', "the generator ran with seed $seed");
die "no cases" if $out eq '';
die "a case needs quoting for COPY" if $out =~ /\\/;
open(my $fh, '>', $cases) or die "cannot write $cases: $!";
print $fh $out;
close $fh;

my $node = start_node('schema_fuzz', "pg_eventstore.databases = ''");
sql(qq{
CREATE EXTENSION pg_eventstore;
CREATE TABLE cases (i integer, schema jsonb, document jsonb, expected boolean);
COPY cases FROM '$cases';
-- the C verdict of one case: register the schema, append the document,
-- and roll both back (each case starts from an empty registry and log)
CREATE FUNCTION verdict(c cases) RETURNS boolean LANGUAGE plpgsql AS \$\$
DECLARE
	valid boolean;
BEGIN
	BEGIN
		PERFORM eventstore.register_event_schema('Fuzz', 1, c.schema);
		BEGIN
			PERFORM eventstore.append_event('fuzz', 'Fuzz', c.document);
			valid := true;
		EXCEPTION WHEN SQLSTATE 'SE016' THEN
			valid := false;
		END;
		RAISE EXCEPTION USING ERRCODE = 'P0003';
	EXCEPTION WHEN SQLSTATE 'P0003' THEN
		NULL;
	END;
	RETURN valid;
END \$\$;
CREATE TABLE verdicts AS SELECT i, verdict(c) AS got FROM cases c;
});

is(sql('SELECT count(*) FROM verdicts'), $count, "$count cases judged");
my $split = sql('SELECT count(*) FILTER (WHERE expected) || \' \' || count(*) FILTER (WHERE NOT expected) FROM cases');
my ($valid, $invalid) = split / /, $split;
ok($valid > $count / 5 && $invalid > $count / 5,
	"both verdicts are common: $valid valid, $invalid invalid");
my $disagreements = sql(q{
SELECT format('case %s: jsonschema says %s, the append says %s%s  schema   %s%s  document %s',
			  c.i, c.expected, v.got, chr(10), c.schema, chr(10), c.document)
FROM cases c JOIN verdicts v USING (i)
WHERE v.got IS DISTINCT FROM c.expected
ORDER BY c.i LIMIT 5});
is(sql('SELECT count(*) FROM cases c JOIN verdicts v USING (i) WHERE v.got IS DISTINCT FROM c.expected'),
	0, 'the C validator agrees with jsonschema on every case')
  or diag($disagreements);
is(sql('SELECT count(*) FROM eventstore.events'), 0, 'every case was rolled back');

$node->stop;
done_testing();
