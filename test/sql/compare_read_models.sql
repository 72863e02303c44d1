-- compare_read_models: exact results and every error.
-- Each test file starts from an empty store (the tests share one database).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
DROP SCHEMA IF EXISTS es_cmp CASCADE;
DROP ROLE IF EXISTS es_cmp_reader;
CREATE EXTENSION pg_eventstore;
RESET client_min_messages;
\set VERBOSITY default
\pset null '(null)'

CREATE SCHEMA es_cmp;
CREATE TABLE es_cmp.a (k int, v text, amount numeric);
CREATE TABLE es_cmp.b (k int, v text, amount numeric);

------------------------------------------------------------------------
-- Identical rows in another physical order are identical.
INSERT INTO es_cmp.a SELECT g, 'row ' || g, g / 100.0 FROM generate_series(1, 3000) g;
INSERT INTO es_cmp.b SELECT * FROM es_cmp.a ORDER BY k DESC;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
-- a relation is identical to itself
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.a');
-- the typical projection check: no row when they are identical
SELECT 1 AS failing FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b')
WHERE NOT identical;

------------------------------------------------------------------------
-- A row changed: one row of each side is not in the other.
UPDATE es_cmp.b SET v = 'changed' WHERE k = 1234;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
SELECT 1 AS failing FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b')
WHERE NOT identical;
-- three changed, one of them in a (k, v) pair that now exists twice in b
UPDATE es_cmp.b SET v = 'row ' || k WHERE k = 1234;
UPDATE es_cmp.b SET amount = amount + 1 WHERE k IN (7, 8);
UPDATE es_cmp.b SET k = 10, v = 'row 10', amount = 0.10 WHERE k = 11;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
SELECT * FROM eventstore.compare_read_models('es_cmp.b', 'es_cmp.a');

------------------------------------------------------------------------
-- Multisets: a duplicated row is a difference; matching is one for one.
TRUNCATE es_cmp.a, es_cmp.b;
INSERT INTO es_cmp.a VALUES (1, 'x', 1), (2, 'y', 2);
INSERT INTO es_cmp.b VALUES (1, 'x', 1), (2, 'y', 2), (2, 'y', 2);
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
-- three copies against two; the same count of rows, other multiplicities
TRUNCATE es_cmp.a, es_cmp.b;
INSERT INTO es_cmp.a VALUES (1, 'x', 1), (1, 'x', 1), (1, 'x', 1), (2, 'y', 2);
INSERT INTO es_cmp.b VALUES (1, 'x', 1), (1, 'x', 1), (2, 'y', 2), (2, 'y', 2);
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
-- the same multiplicities are identical
INSERT INTO es_cmp.a VALUES (2, 'y', 2);
INSERT INTO es_cmp.b VALUES (1, 'x', 1);
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');

------------------------------------------------------------------------
-- NULLs: a NULL equals a NULL, and differs from the empty string and from
-- every value; where a NULL stands matters.
TRUNCATE es_cmp.a, es_cmp.b;
INSERT INTO es_cmp.a VALUES (1, NULL, NULL), (NULL, NULL, NULL);
INSERT INTO es_cmp.b VALUES (1, NULL, NULL), (NULL, NULL, NULL);
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
UPDATE es_cmp.b SET v = '' WHERE k = 1;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
TRUNCATE es_cmp.a, es_cmp.b;
INSERT INTO es_cmp.a VALUES (1, 'x', NULL);
INSERT INTO es_cmp.b VALUES (1, NULL, NULL);
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
-- the column boundaries are kept: ('ab', 'c') is not ('a', 'bc')
CREATE TABLE es_cmp.t1 (x text, y text);
CREATE TABLE es_cmp.t2 (x text, y text);
INSERT INTO es_cmp.t1 VALUES ('ab', 'c');
INSERT INTO es_cmp.t2 VALUES ('a', 'bc');
SELECT * FROM eventstore.compare_read_models('es_cmp.t1', 'es_cmp.t2');

------------------------------------------------------------------------
-- Empty relations.
TRUNCATE es_cmp.a, es_cmp.b;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
INSERT INTO es_cmp.a SELECT g, 'row ' || g, g FROM generate_series(1, 500) g;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
SELECT * FROM eventstore.compare_read_models('es_cmp.b', 'es_cmp.a');

------------------------------------------------------------------------
-- Values are compared as their binary send form: bit-identical, not
-- merely equal.  numeric keeps its scale (1.0 = 1.00 but they differ),
-- floats their bits (-0 = 0 but they differ, and 0.1 + 0.2 is not 0.3);
-- jsonb is normalized (key
-- order and spacing of the input do not matter); arrays keep their bounds.
CREATE TABLE es_cmp.n1 (n numeric);
CREATE TABLE es_cmp.n2 (n numeric);
INSERT INTO es_cmp.n1 VALUES (1.0), (2);
INSERT INTO es_cmp.n2 VALUES (1.00), (2);
SELECT (SELECT count(*) FROM (TABLE es_cmp.n1 EXCEPT ALL TABLE es_cmp.n2) x) AS except_all_finds;
SELECT * FROM eventstore.compare_read_models('es_cmp.n1', 'es_cmp.n2');
CREATE TABLE es_cmp.f1 (f float8, r real);
CREATE TABLE es_cmp.f2 (f float8, r real);
INSERT INTO es_cmp.f1 VALUES (0, 1.5), ('NaN', 'Infinity'), (0.1::float8 + 0.2::float8, 1);
INSERT INTO es_cmp.f2 VALUES ('-0', 1.5), ('NaN', 'Infinity'), (0.3, 1);
SELECT * FROM eventstore.compare_read_models('es_cmp.f1', 'es_cmp.f2');
CREATE TABLE es_cmp.j1 (j jsonb, js json, arr int[], ts timestamptz);
CREATE TABLE es_cmp.j2 (j jsonb, js json, arr int[], ts timestamptz);
INSERT INTO es_cmp.j1 VALUES ('{"a": 1, "b": [1, 2]}', '{"a": 1}', '{1,2}', '2024-01-01 00:00:00+00');
INSERT INTO es_cmp.j2 VALUES ('{"b":[1,2],"a":1}', '{"a": 1}', '{1,2}', '2024-01-01 01:00:00+01');
SELECT * FROM eventstore.compare_read_models('es_cmp.j1', 'es_cmp.j2');
-- json (not jsonb) is its text
UPDATE es_cmp.j2 SET js = '{"a":1}';
SELECT * FROM eventstore.compare_read_models('es_cmp.j1', 'es_cmp.j2');
-- an array with other bounds is another array
UPDATE es_cmp.j2 SET js = '{"a": 1}', arr = '[0:1]={1,2}';
SELECT * FROM eventstore.compare_read_models('es_cmp.j1', 'es_cmp.j2');
-- composite values, field by field
CREATE TYPE es_cmp.money_pair AS (currency text, cents bigint);
CREATE TABLE es_cmp.c1 (id int, p es_cmp.money_pair);
CREATE TABLE es_cmp.c2 (id int, p es_cmp.money_pair);
INSERT INTO es_cmp.c1 VALUES (1, ('EUR', 100)), (2, ('USD', NULL)), (3, NULL);
INSERT INTO es_cmp.c2 VALUES (3, NULL), (2, ('USD', NULL)), (1, ('EUR', 100));
SELECT * FROM eventstore.compare_read_models('es_cmp.c1', 'es_cmp.c2');
UPDATE es_cmp.c2 SET p = ('EUR', 101) WHERE id = 1;
SELECT * FROM eventstore.compare_read_models('es_cmp.c1', 'es_cmp.c2');

------------------------------------------------------------------------
-- Long values (hashed on their own) and stored forms: a compressed value
-- and the same value uncompressed and out of line are the same value.
CREATE TABLE es_cmp.l1 (id int, body text);
CREATE TABLE es_cmp.l2 (id int, body text);
ALTER TABLE es_cmp.l2 ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO es_cmp.l1 SELECT g, repeat('ab', 1000 * g) FROM generate_series(1, 5) g;
INSERT INTO es_cmp.l2 SELECT g, repeat('ab', 1000 * g) FROM generate_series(1, 5) g;
SELECT pg_column_size(l1.body) < pg_column_size(l2.body) AS l1_compressed
FROM es_cmp.l1 JOIN es_cmp.l2 USING (id) WHERE id = 5;
SELECT * FROM eventstore.compare_read_models('es_cmp.l1', 'es_cmp.l2');
UPDATE es_cmp.l2 SET body = overlay(body PLACING 'X' FROM 5000) WHERE id = 5;
SELECT * FROM eventstore.compare_read_models('es_cmp.l1', 'es_cmp.l2');

------------------------------------------------------------------------
-- Columns pair up by position: names are not compared, dropped columns
-- do not count.
TRUNCATE es_cmp.a, es_cmp.b;
INSERT INTO es_cmp.a SELECT g, 'row ' || g, g FROM generate_series(1, 100) g;
CREATE TABLE es_cmp.renamed (id int, label text, total numeric);
INSERT INTO es_cmp.renamed SELECT * FROM es_cmp.a;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.renamed');
CREATE TABLE es_cmp.dropped (k int, gone bigint, v text, amount numeric);
ALTER TABLE es_cmp.dropped DROP COLUMN gone;
INSERT INTO es_cmp.dropped SELECT * FROM es_cmp.a;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.dropped');

------------------------------------------------------------------------
-- Views, materialized views and partitioned tables are read like tables.
CREATE VIEW es_cmp.a_view AS SELECT k, v, amount FROM es_cmp.a;
SELECT * FROM eventstore.compare_read_models('es_cmp.a_view', 'es_cmp.a');
CREATE VIEW es_cmp.a_odd AS SELECT k, v, amount FROM es_cmp.a WHERE k % 2 = 1;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.a_odd');
CREATE MATERIALIZED VIEW es_cmp.a_mat AS SELECT * FROM es_cmp.a;
SELECT * FROM eventstore.compare_read_models('es_cmp.a_mat', 'es_cmp.a_view');
CREATE TABLE es_cmp.parts (k int, v text, amount numeric) PARTITION BY RANGE (k);
CREATE TABLE es_cmp.parts_low PARTITION OF es_cmp.parts FOR VALUES FROM (MINVALUE) TO (50);
CREATE TABLE es_cmp.parts_high PARTITION OF es_cmp.parts FOR VALUES FROM (50) TO (MAXVALUE);
INSERT INTO es_cmp.parts SELECT * FROM es_cmp.a;
SELECT * FROM eventstore.compare_read_models('es_cmp.parts', 'es_cmp.a');
-- an unpopulated materialized view cannot be read
CREATE MATERIALIZED VIEW es_cmp.a_empty AS SELECT * FROM es_cmp.a WITH NO DATA;
SELECT * FROM eventstore.compare_read_models('es_cmp.a_empty', 'es_cmp.a');
\echo :LAST_ERROR_SQLSTATE

------------------------------------------------------------------------
-- Many differences, more than work_mem holds: the sorts spill to disk
-- and the counts stay exact.
CREATE TABLE es_cmp.big1 (k int, v text);
CREATE TABLE es_cmp.big2 (k int, v text);
INSERT INTO es_cmp.big1 SELECT g, md5(g::text) FROM generate_series(1, 40000) g;
INSERT INTO es_cmp.big2 SELECT g, CASE WHEN g % 4 = 0 THEN 'other' ELSE md5(g::text) END
FROM generate_series(1, 40000) g;
INSERT INTO es_cmp.big2 SELECT * FROM es_cmp.big2 WHERE k <= 1000;
BEGIN;
SET LOCAL work_mem = '64kB';
SELECT * FROM eventstore.compare_read_models('es_cmp.big1', 'es_cmp.big2');
COMMIT;
SELECT (SELECT count(*) FROM (TABLE es_cmp.big1 EXCEPT ALL TABLE es_cmp.big2) x) AS only_in_a,
	   (SELECT count(*) FROM (TABLE es_cmp.big2 EXCEPT ALL TABLE es_cmp.big1) x) AS only_in_b;

------------------------------------------------------------------------
-- Errors.
-- NULL arguments (not STRICT: no row would read as a passed check)
SELECT * FROM eventstore.compare_read_models(NULL, 'es_cmp.a');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.compare_read_models('es_cmp.a', NULL);
\echo :LAST_ERROR_SQLSTATE
-- a relation that no longer exists
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 4000000000::oid::regclass);
\echo :LAST_ERROR_SQLSTATE
-- different column counts
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.t1');
\echo :LAST_ERROR_SQLSTATE
-- different column types (bigint is not int, a domain is not its type)
CREATE TABLE es_cmp.wide (k bigint, v text, amount numeric);
INSERT INTO es_cmp.wide SELECT * FROM es_cmp.a;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.wide');
\echo :LAST_ERROR_SQLSTATE
CREATE DOMAIN es_cmp.label AS text;
CREATE TABLE es_cmp.labelled (k int, v es_cmp.label, amount numeric);
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.labelled');
\echo :LAST_ERROR_SQLSTATE
-- ... and a view casting them compares
CREATE VIEW es_cmp.wide_as_int AS SELECT k::int, v, amount FROM es_cmp.wide;
SELECT * FROM eventstore.compare_read_models('es_cmp.wide_as_int', 'es_cmp.a');
-- not a relation with rows
CREATE INDEX a_k ON es_cmp.a (k);
SELECT * FROM eventstore.compare_read_models('es_cmp.a_k', 'es_cmp.a');
\echo :LAST_ERROR_SQLSTATE
CREATE SEQUENCE es_cmp.seq;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.seq');
\echo :LAST_ERROR_SQLSTATE
-- a view that returns other rows when read again (when the two differ,
-- each relation is read twice)
CREATE TABLE es_cmp.r (k int, x float8);
INSERT INTO es_cmp.r SELECT g, 0.5 FROM generate_series(1, 2000) g;
CREATE VIEW es_cmp.r_random AS SELECT g AS k, random() AS x FROM generate_series(1, 2000) g;
SELECT * FROM eventstore.compare_read_models('es_cmp.r', 'es_cmp.r_random');
\echo :LAST_ERROR_SQLSTATE

------------------------------------------------------------------------
-- Both relations are read in the caller's snapshot: its own uncommitted
-- changes included.
INSERT INTO es_cmp.b SELECT * FROM es_cmp.a;
BEGIN;
DELETE FROM es_cmp.b WHERE k = 1;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
ROLLBACK;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');

------------------------------------------------------------------------
-- Privileges: it runs as its caller, who must be able to SELECT every
-- column of both relations, as a SELECT would check.
CREATE ROLE es_cmp_reader;
GRANT USAGE ON SCHEMA es_cmp TO es_cmp_reader;
GRANT SELECT ON es_cmp.a TO es_cmp_reader;
GRANT SELECT (k, v) ON es_cmp.b TO es_cmp_reader;
SET ROLE es_cmp_reader;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.a');
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.compare_read_models('es_cmp.renamed', 'es_cmp.a');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- SELECT granted on every column is enough
GRANT SELECT (amount) ON es_cmp.b TO es_cmp_reader;
SET ROLE es_cmp_reader;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
RESET ROLE;
-- row-level security applies: the caller compares the rows it sees
ALTER TABLE es_cmp.b ENABLE ROW LEVEL SECURITY;
CREATE POLICY low_only ON es_cmp.b TO es_cmp_reader USING (k <= 10);
SET ROLE es_cmp_reader;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');
RESET ROLE;
SELECT * FROM eventstore.compare_read_models('es_cmp.a', 'es_cmp.b');

-- It runs as its caller: not SECURITY DEFINER, search_path pinned,
-- callable by PUBLIC.
SELECT p.prosecdef, p.proisstrict, p.provolatile, p.proconfig,
	   has_function_privilege('es_cmp_reader', p.oid, 'EXECUTE') AS reader_may_execute,
	   obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
FROM pg_proc p
WHERE p.oid = 'eventstore.compare_read_models(regclass, regclass)'::regprocedure;

SET client_min_messages = warning;
DROP SCHEMA es_cmp CASCADE;
DROP ROLE es_cmp_reader;
RESET client_min_messages;
