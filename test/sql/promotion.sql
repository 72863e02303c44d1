-- add_projection_check, drop_projection_check, check_projection,
-- promote_projection, set_read_model, create_projection's promote,
-- current_version after promotions and the promotion columns of
-- eventstore.projection_status: exact results and errors.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
DROP SCHEMA IF EXISTS es_promo CASCADE;
DROP ROLE IF EXISTS es_promo_other;
CREATE EXTENSION pg_eventstore;
RESET client_min_messages;
\set VERBOSITY default
\pset null '(null)'

CREATE SCHEMA es_promo;
CREATE TABLE es_promo.sales_v1 (sku text PRIMARY KEY, units bigint NOT NULL);
CREATE TABLE es_promo.sales_v2 (sku text PRIMARY KEY, units bigint NOT NULL);
-- v1 counts every event, v2 sums the quantities
CREATE FUNCTION es_promo.apply_v1(e eventstore.events) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO es_promo.sales_v1 VALUES (e.data ->> 'sku', (e.data ->> 'qty')::bigint)
	ON CONFLICT (sku) DO UPDATE SET units = es_promo.sales_v1.units + excluded.units
$$;
CREATE FUNCTION es_promo.apply_v2(e eventstore.events) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO es_promo.sales_v2 VALUES (e.data ->> 'sku', (e.data ->> 'qty')::bigint)
	ON CONFLICT (sku) DO UPDATE SET units = es_promo.sales_v2.units + excluded.units
$$;

-- create_projection's promote
SELECT eventstore.create_projection('sales', 'es_promo.apply_v1', promote => 'sometimes');
SELECT eventstore.create_projection('sales', 'es_promo.apply_v1', promote => NULL);
SELECT eventstore.create_projection('sales', 'es_promo.apply_v1');
SELECT eventstore.append_to_stream('s-1',
	'[{"type": "Sold", "data": {"sku": "a", "qty": 2}},
	  {"type": "Sold", "data": {"sku": "b", "qty": -1}},
	  {"type": "Sold", "data": {"sku": "a", "qty": 3}}]', NULL) IS NOT NULL AS appended;
SELECT eventstore.run_projection('sales');
SELECT eventstore.create_projection('sales', 'es_promo.apply_v2', version => 2,
                                    promote => 'manual');
SELECT name, version, promote FROM eventstore.read_models ORDER BY version;

-- add_projection_check: arguments
SELECT eventstore.add_projection_check(NULL, 1, 'c', 'SELECT 1');
SELECT eventstore.add_projection_check('sales', NULL, 'c', 'SELECT 1');
SELECT eventstore.add_projection_check('sales', 1, NULL, 'SELECT 1');
SELECT eventstore.add_projection_check('sales', 1, 'c', NULL);
SELECT eventstore.add_projection_check('nope', 1, 'c', 'SELECT 1');
SELECT eventstore.add_projection_check('sales', 9, 'c', 'SELECT 1');
-- one SELECT-like statement, which parses and resolves as the owner
SELECT eventstore.add_projection_check('sales', 1, 'c', 'DELETE FROM es_promo.sales_v1');
SELECT eventstore.add_projection_check('sales', 1, 'c', 'SELECT 1; SELECT 2');
SELECT eventstore.add_projection_check('sales', 1, 'c', '');
SELECT eventstore.add_projection_check('sales', 1, 'c', 'SELECT * FROM es_promo.sales_v1 FOR UPDATE');
-- no row locks at any level: a check is read-only
SELECT eventstore.add_projection_check('sales', 1, 'c',
	'SELECT * FROM (SELECT * FROM es_promo.sales_v1 FOR UPDATE) s');
SELECT eventstore.add_projection_check('sales', 1, 'c',
	'WITH l AS (SELECT * FROM es_promo.sales_v1 FOR SHARE) SELECT * FROM l');
SELECT eventstore.add_projection_check('sales', 1, 'c',
	'SELECT 1 WHERE EXISTS (SELECT FROM es_promo.sales_v1 FOR KEY SHARE)');
SELECT eventstore.add_projection_check('sales', 1, 'c', 'SELECT 1 INTO es_promo.x');
\set VERBOSITY terse
SELECT eventstore.add_projection_check('sales', 1, 'c', 'SELEC 1');
SELECT eventstore.add_projection_check('sales', 1, 'c', 'SELECT * FROM es_promo.nope');
SELECT eventstore.add_projection_check('sales', 1, 'c', 'SELECT nope FROM es_promo.sales_v1');
SELECT eventstore.add_projection_check('sales', 1, 'c',
	'WITH d AS (DELETE FROM es_promo.sales_v1 RETURNING *) SELECT * FROM d');
\set VERBOSITY default
-- checks that pass and fail; VALUES, TABLE and WITH are SELECT-like, a
-- trailing semicolon and comment are fine
SELECT eventstore.add_projection_check('sales', 1, 'no negative units',
	'SELECT sku, units FROM es_promo.sales_v1 WHERE units < 0;');
SELECT eventstore.add_projection_check('sales', 1, 'values', 'VALUES (1) EXCEPT VALUES (1) -- none');
SELECT eventstore.add_projection_check('sales', 1, 'table', 'WITH t AS (TABLE es_promo.sales_v1) SELECT * FROM t WHERE false');
SELECT eventstore.add_projection_check('sales', 1, 'values', 'SELECT 1');
SELECT eventstore.add_projection_check('sales', 2, 'parity',
	$$SELECT * FROM eventstore.compare_read_models('es_promo.sales_v1', 'es_promo.sales_v2')
	  WHERE NOT identical$$);
SELECT eventstore.add_projection_check('sales', 2, 'divides', 'SELECT 1 / (count(*) - count(*)) FROM es_promo.sales_v2');
SELECT name, version, check_name, query FROM eventstore.projection_checks
ORDER BY version, check_name;

-- check_projection: a version not at the head yet, then results per check
SELECT * FROM eventstore.check_projection('sales', 2);
SELECT * FROM eventstore.check_projection('sales', NULL);
SELECT * FROM eventstore.check_projection('sales', 1);
SELECT eventstore.run_projection('sales', 2);
-- v2 sums: a:5 b:-1, v1 likewise: identical; the erroring check failed
SELECT * FROM eventstore.check_projection('sales', 2);
-- checks run read-only: one that writes (through a function that inserts,
-- nextval, append_event) fails with 25006, and nothing of it is kept
CREATE TABLE es_promo.written (note text);
CREATE SEQUENCE es_promo.seq;
CREATE FUNCTION es_promo.writes() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO es_promo.written VALUES ('by a check');
	RETURN false;
END $$;
SELECT eventstore.add_projection_check('sales', 2, 'inserts', 'SELECT 1 WHERE es_promo.writes()');
SELECT eventstore.add_projection_check('sales', 2, 'nextval',
	$$SELECT 1 WHERE nextval('es_promo.seq') < 0$$);
SELECT eventstore.add_projection_check('sales', 2, 'appends',
	$$SELECT 1 WHERE eventstore.append_event('checked', 'Checked', '{}') IS NULL$$);
SELECT * FROM eventstore.check_projection('sales', 2)
WHERE check_name IN ('inserts', 'nextval', 'appends');
SELECT (SELECT count(*) FROM es_promo.written) AS written,
       (SELECT is_called FROM es_promo.seq) AS nextval_called,
       (SELECT count(*) FROM eventstore.events WHERE stream_id = 'checked') AS appended;
SELECT eventstore.drop_projection_check('sales', 2, 'inserts');
SELECT eventstore.drop_projection_check('sales', 2, 'nextval');
SELECT eventstore.drop_projection_check('sales', 2, 'appends');

-- drop_projection_check
SELECT eventstore.drop_projection_check('sales', 2, 'nope');
SELECT eventstore.drop_projection_check('sales', 2, NULL);
SELECT eventstore.drop_projection_check('sales', 2, 'divides');
SELECT * FROM eventstore.check_projection('sales', 2);

-- set_read_model: arguments
SELECT eventstore.set_read_model('sales', 1, NULL, 'es_promo.sales');
SELECT eventstore.set_read_model('sales', 1, 'es_promo.sales_v1', NULL);
SELECT eventstore.set_read_model('sales', 1, 'es_promo.sales_v1_pkey', 'es_promo.sales');
SELECT eventstore.set_read_model('sales', 1, 'es_promo.sales_v1', 'es_promo.sales_v1');
SELECT eventstore.set_read_model('sales', 1, 'es_promo.sales_v1', 'db.es_promo.sales');
SELECT eventstore.set_read_model('sales', 1, 'es_promo.sales_v1', 'es_promo."sales');
SELECT eventstore.set_read_model('sales', 1, 12345, 'es_promo.sales');
SELECT eventstore.set_read_model('sales', 1, 'es_promo.sales_v1', 'es_promo.sales');
-- another view for the same name; the name's view for another name
SELECT eventstore.set_read_model('sales', 2, 'es_promo.sales_v2', 'es_promo.other');
SELECT eventstore.create_projection('other', 'es_promo.apply_v2');
SELECT eventstore.set_read_model('other', 1, 'es_promo.sales_v2', 'es_promo.sales');
SELECT eventstore.drop_projection('other');
-- an unqualified view name goes to the owner's first schema
SET search_path = es_promo, public;
SELECT eventstore.create_projection('unqualified', 'es_promo.apply_v2');
RESET search_path;
SELECT eventstore.set_read_model('unqualified', 1, 'es_promo.sales_v2', 'Unq View');
SELECT eventstore.set_read_model('unqualified', 1, 'es_promo.sales_v2', '"Unq View"');
SELECT name, version, relation, view_name FROM eventstore.read_models
WHERE relation IS NOT NULL ORDER BY name, version;
SELECT eventstore.drop_projection('unqualified');
-- nothing is promoted: no view yet
SELECT to_regclass('es_promo.sales') AS view_before_promotion,
       eventstore.current_version('sales') AS highest_active;

-- promote_projection: failing checks, SE011 naming the first one
SELECT eventstore.promote_projection('sales', 1);
SELECT eventstore.promote_projection('sales', 1, NULL);
SELECT eventstore.promote_projection('sales', NULL);
-- force: promoted without the checks, the view created
SELECT eventstore.promote_projection('sales', 1, force => true);
SELECT * FROM es_promo.sales ORDER BY sku;
SELECT eventstore.current_version('sales');
-- v2 has no read model yet: promoting it would leave the view on v1
SELECT eventstore.promote_projection('sales', 2);
SELECT eventstore.set_read_model('sales', 2, 'es_promo.sales_v2', 'es_promo.sales');
SELECT eventstore.promote_projection('sales', 2);
SELECT eventstore.current_version('sales');
SELECT pg_get_viewdef('es_promo.sales'::regclass);
-- the rollback: promoting v1 again (forced: its check still fails)
SELECT eventstore.promote_projection('sales', 1, true);
SELECT pg_get_viewdef('es_promo.sales'::regclass);
SELECT eventstore.current_version('sales');
SELECT promotion_id, name, from_version, to_version, forced, automatic,
       promoted_by = current_user AS by_me, relation, view_name, check_results
FROM eventstore.projection_promotions ORDER BY promotion_id;

-- a relation that cannot stand behind the view: SE013, nothing changed
CREATE TABLE es_promo.sales_v3 (sku text, quantity bigint);
CREATE FUNCTION es_promo.apply_v3(e eventstore.events) RETURNS void
LANGUAGE sql AS $$ INSERT INTO es_promo.sales_v3 VALUES (e.data ->> 'sku', 1) $$;
SELECT eventstore.create_projection('sales', 'es_promo.apply_v3', version => 3);
SELECT eventstore.run_projection('sales', 3);
SELECT eventstore.set_read_model('sales', 3, 'es_promo.sales_v3', 'es_promo.sales');
SELECT eventstore.promote_projection('sales', 3);
SELECT pg_get_viewdef('es_promo.sales'::regclass);
SELECT eventstore.current_version('sales'), count(*) AS promotions
FROM eventstore.projection_promotions;
-- a relation with the view's columns and one more at the end will do
ALTER TABLE es_promo.sales_v3 RENAME COLUMN quantity TO units;
ALTER TABLE es_promo.sales_v3 ADD COLUMN note text;
SELECT eventstore.promote_projection('sales', 3);
SELECT * FROM es_promo.sales ORDER BY sku LIMIT 1;
-- set_read_model of the promoted version re-points the view at once
SELECT eventstore.set_read_model('sales', 3, 'es_promo.sales_v2', 'es_promo.sales');
SELECT pg_get_viewdef('es_promo.sales'::regclass);

-- projection_status: the promotion columns
SELECT name, version, promote, promoted, read_model, view_name,
       promoted_at IS NOT NULL AS was_promoted, promoted_from, promotion_forced,
       checks_passed, check_results
FROM eventstore.projection_status ORDER BY version;

-- a dropped promoted version: current_version falls back to the version
-- promoted before (the view stays on the dropped version's relation, which
-- drop_projection leaves, until the next promotion)
SELECT eventstore.drop_projection('sales', 3);
SELECT eventstore.current_version('sales');
SELECT count(*) AS checks_left FROM eventstore.projection_checks WHERE version = 3;

-- promote => 'auto': promoted by the run that brings it to the head, when
-- the checks pass and the view can take the relation: here it cannot (the
-- view has a third column now), a WARNING says so and it stays unpromoted
CREATE TABLE es_promo.sales_v4 (sku text PRIMARY KEY, units bigint NOT NULL);
CREATE FUNCTION es_promo.apply_v4(e eventstore.events) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO es_promo.sales_v4 (sku, units)
	VALUES (e.data ->> 'sku', (e.data ->> 'qty')::bigint)
	ON CONFLICT (sku) DO UPDATE SET units = es_promo.sales_v4.units + excluded.units
$$;
SELECT eventstore.create_projection('sales', 'es_promo.apply_v4', version => 4,
                                    on_reset => 'TRUNCATE es_promo.sales_v4',
                                    promote => 'auto');
SELECT eventstore.set_read_model('sales', 4, 'es_promo.sales_v4', 'es_promo.sales');
SELECT eventstore.add_projection_check('sales', 4, 'units known',
	'SELECT * FROM es_promo.sales_v4 WHERE units IS NULL');
SELECT eventstore.run_projection('sales', 4);
SELECT eventstore.current_version('sales');
SELECT pg_get_viewdef('es_promo.sales'::regclass);
SELECT version, promoted, checks_passed, check_results, promotion_error
FROM eventstore.projection_status WHERE version = 4;
-- with the view's columns, a rebuild reaching the head again promotes it
ALTER TABLE es_promo.sales_v4 ADD COLUMN note text;
SELECT eventstore.rebuild_projection('sales', 4);
SELECT eventstore.run_projection('sales', 4);
SELECT eventstore.current_version('sales');
SELECT * FROM es_promo.sales ORDER BY sku;
SELECT version, promoted, checks_passed, check_results, promotion_error
FROM eventstore.projection_status WHERE version = 4;
SELECT from_version, to_version, forced, automatic, check_results
FROM eventstore.projection_promotions ORDER BY promotion_id DESC LIMIT 1;
-- one failing its check stays unpromoted, with a WARNING
CREATE TABLE es_promo.sales_v5 (sku text PRIMARY KEY, units bigint NOT NULL);
SELECT eventstore.create_projection('sales', 'es_promo.apply_v1', version => 5,
                                    promote => 'auto');
SELECT eventstore.add_projection_check('sales', 5, 'positive',
	'SELECT sku, units FROM es_promo.sales_v1 WHERE units <= 0');
SELECT eventstore.run_projection('sales', 5);
SELECT eventstore.current_version('sales');
SELECT version, promote, promoted, checks_passed, check_results
FROM eventstore.projection_status WHERE version = 5;

-- privileges: another role may not manage this projection's checks and
-- promotions, and the functions are not PUBLIC's
CREATE ROLE es_promo_other;
GRANT USAGE ON SCHEMA es_promo TO es_promo_other;
GRANT EXECUTE ON FUNCTION eventstore.promote_projection(text, integer, boolean),
	eventstore.add_projection_check(text, integer, text, text),
	eventstore.set_read_model(text, integer, regclass, text)
TO es_promo_other;
SET ROLE es_promo_other;
SELECT eventstore.promote_projection('sales', 4);
SELECT eventstore.add_projection_check('sales', 4, 'c', 'SELECT 1');
SELECT eventstore.set_read_model('sales', 4, 'es_promo.sales_v4', 'es_promo.sales');
SELECT eventstore.check_projection('sales', 4);
RESET ROLE;
SELECT p.proname, p.proacl IS NOT NULL AND NOT EXISTS (
         SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS not_public,
       p.proconfig
FROM pg_proc p
WHERE p.pronamespace = 'eventstore'::regnamespace
  AND p.proname IN ('add_projection_check', 'drop_projection_check', 'check_projection',
                    'promote_projection', 'set_read_model')
ORDER BY 1;

SET client_min_messages = warning;
DROP EXTENSION pg_eventstore CASCADE;
DROP SCHEMA es_promo CASCADE;
DROP OWNED BY es_promo_other;
DROP ROLE es_promo_other;
RESET client_min_messages;
