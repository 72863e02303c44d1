-- pgTAP: checked promotion and stable read-model names.  Checks pass and
-- fail with the count of failing rows and a sample of at most 5; they run
-- as the projection's owner with its captured search_path and settings,
-- whoever calls; promote, force, rollback and current_version; automatic
-- promotion by run_projection; a relation that cannot stand behind the
-- view refused with nothing changed; consumers' grants on the view
-- surviving promotions; who may do what.  (The worker's automatic
-- promotion and crashes: TAP 014; concurrency: the promotion_* specs.)
\ir setup.psql
CALL pg_temp.drop_roles(ARRAY['es_tap_pr_alice', 'es_tap_pr_bob', 'es_tap_pr_reader',
                              'es_tap_pr_mallory']);
DROP SCHEMA IF EXISTS es_tap_pr CASCADE;
DROP SCHEMA IF EXISTS es_tap_pr_elsewhere CASCADE;
CREATE SCHEMA es_tap_pr;
RESET client_min_messages;

SELECT plan(47);

CREATE ROLE es_tap_pr_alice;
CREATE ROLE es_tap_pr_bob IN ROLE es_tap_pr_alice;	-- a member of alice
CREATE ROLE es_tap_pr_reader;
CREATE ROLE es_tap_pr_mallory;
GRANT USAGE, CREATE ON SCHEMA es_tap_pr TO es_tap_pr_alice;
GRANT USAGE ON SCHEMA es_tap_pr TO es_tap_pr_reader, es_tap_pr_mallory;
GRANT EXECUTE ON FUNCTION
	eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer),
	eventstore.run_projection(text, integer, bigint),
	eventstore.add_projection_check(text, integer, text, text),
	eventstore.drop_projection_check(text, integer, text),
	eventstore.check_projection(text, integer),
	eventstore.promote_projection(text, integer, boolean),
	eventstore.set_read_model(text, integer, regclass, text),
	eventstore.current_version(text)
TO es_tap_pr_alice, es_tap_pr_mallory;
GRANT SELECT ON eventstore.projection_status TO es_tap_pr_alice;

-- alice's read models, v1 and v2, written by unqualified handlers: her
-- search_path has her schema; her TimeZone is UTC
SET ROLE es_tap_pr_alice;
SET search_path = es_tap_pr, public;
SET TimeZone = 'UTC';
CREATE TABLE sales_v1 (sku text PRIMARY KEY, units bigint NOT NULL);
CREATE TABLE sales_v2 (sku text PRIMARY KEY, units bigint NOT NULL);
CREATE FUNCTION apply_v1(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO sales_v1 VALUES (e.data ->> 'sku', (e.data ->> 'qty')::bigint)
	ON CONFLICT (sku) DO UPDATE SET units = sales_v1.units + excluded.units
$$;
CREATE FUNCTION apply_v2(e eventstore.events[]) RETURNS void LANGUAGE sql AS $$
	INSERT INTO sales_v2
	SELECT e.data ->> 'sku', sum((e.data ->> 'qty')::bigint) FROM unnest(e) e GROUP BY 1
	ON CONFLICT (sku) DO UPDATE SET units = sales_v2.units + excluded.units
$$;
SELECT eventstore.create_projection('sales', 'apply_v1') \g /dev/null
RESET ROLE;
-- 1,000 skus, 7 of them negative
SELECT count(eventstore.append_event('sku-' || i, 'Sold',
	jsonb_build_object('sku', 'k' || i, 'qty', CASE WHEN i <= 7 THEN -1 ELSE i END)))
FROM generate_series(1, 1000) i \g /dev/null
SET ROLE es_tap_pr_alice;
SELECT eventstore.run_projection('sales') \g /dev/null
SELECT eventstore.create_projection('sales', 'apply_v2', version => 2) \g /dev/null
-- unqualified names in checks resolve on alice's captured search_path
SELECT lives_ok($$SELECT eventstore.add_projection_check('sales', 1, 'no negative units',
	'SELECT sku, units FROM sales_v1 WHERE units < 0 ORDER BY sku')$$,
	'a check with unqualified names, resolved on the owner''s search_path');
SELECT eventstore.add_projection_check('sales', 1, 'all rows fail',
	'SELECT sku FROM sales_v1') \g /dev/null
SELECT eventstore.add_projection_check('sales', 1, 'runs as alice in UTC',
	$$SELECT current_user, current_setting('TimeZone') AS tz
	  WHERE current_user <> 'es_tap_pr_alice' OR current_setting('TimeZone') <> 'UTC'$$) \g /dev/null
SELECT eventstore.add_projection_check('sales', 2, 'parity',
	$$SELECT * FROM eventstore.compare_read_models('sales_v1', 'sales_v2') WHERE NOT identical$$) \g /dev/null
RESET ROLE;
RESET search_path;
RESET TimeZone;

-- Called by bob (a member of alice) from a session whose search_path and
-- TimeZone differ, with a temporary table named like the read model.
SET ROLE es_tap_pr_bob;
SET TimeZone = 'Asia/Tokyo';
SET search_path = pg_temp, public;
RESET ROLE;
CREATE TEMPORARY TABLE sales_v1 (sku text, units bigint);
INSERT INTO pg_temp.sales_v1 VALUES ('temp', -100);
SET ROLE es_tap_pr_bob;
SELECT results_eq($$SELECT check_name, passed, failing_rows FROM eventstore.check_projection('sales', 1)$$,
	$$VALUES ('all rows fail', false, 1000::bigint), ('no negative units', false, 7::bigint),
	         ('runs as alice in UTC', true, 0::bigint)$$,
	'checks count their failing rows, as alice with her settings, whoever calls');
SELECT is((SELECT sample FROM eventstore.check_projection('sales', 1) WHERE check_name = 'no negative units'),
	'[{"sku": "k1", "units": -1}, {"sku": "k2", "units": -1}, {"sku": "k3", "units": -1},
	  {"sku": "k4", "units": -1}, {"sku": "k5", "units": -1}]'::jsonb,
	'the sample is the first 5 failing rows, as JSON objects');
SELECT is((SELECT jsonb_array_length(sample) FROM eventstore.check_projection('sales', 1)
	WHERE check_name = 'all rows fail'), 5, 'of 1,000 failing rows, 5 are shown');
SELECT is(current_setting('TimeZone'), 'Asia/Tokyo', 'the caller''s TimeZone is its own again');
SELECT is(current_user::text, 'es_tap_pr_bob', 'and so is its role');
RESET ROLE;
SELECT is((SELECT count(*) FROM pg_temp.sales_v1), 1::bigint, 'the temporary table was not read or written');
DROP TABLE pg_temp.sales_v1;
RESET search_path;
RESET TimeZone;

-- A check that raises an error fails, with its error; the others run.
SET ROLE es_tap_pr_alice;
SELECT eventstore.add_projection_check('sales', 1, 'zero', 'SELECT 1 / (count(*) - count(*)) FROM es_tap_pr.sales_v1') \g /dev/null
SELECT results_eq($$SELECT check_name, passed, failing_rows, sample FROM eventstore.check_projection('sales', 1)
	WHERE check_name IN ('zero', 'runs as alice in UTC')$$,
	$$VALUES ('runs as alice in UTC', true, 0::bigint, '[]'::jsonb),
	         ('zero', false, NULL::bigint, '{"error": "division by zero", "sqlstate": "22012"}'::jsonb)$$,
	'an erroring check failed with its error, the others still ran');
SELECT eventstore.drop_projection_check('sales', 1, 'zero') \g /dev/null
SELECT eventstore.drop_projection_check('sales', 1, 'all rows fail') \g /dev/null

-- Not at the head: SE012.
SELECT throws_ok($$SELECT * FROM eventstore.check_projection('sales', 2)$$, 'SE012', NULL,
	'a version still rebuilding is not checked');
SELECT throws_ok($$SELECT eventstore.promote_projection('sales', 2)$$, 'SE012', NULL,
	'nor promoted');

-- Promote: SE011 naming the failing check, its count and sample.
SELECT eventstore.set_read_model('sales', 1, 'es_tap_pr.sales_v1', 'es_tap_pr.sales') \g /dev/null
SELECT is(pg_temp.error_of($$SELECT eventstore.promote_projection('sales', 1)$$),
	ARRAY['SE011', 'projection "sales" version 1 failed check "no negative units"',
	      'It returned 7 failing rows; the first 5: [{"sku": "k1", "units": -1}, {"sku": "k2", "units": -1}, {"sku": "k3", "units": -1}, {"sku": "k4", "units": -1}, {"sku": "k5", "units": -1}].',
	      'Fix the read model or the check and promote again, or pass force => true to promote without the checks.'],
	'promotion refused with SE011, the failing check, count and sample');
SELECT is(to_regclass('es_tap_pr.sales'), NULL, 'no view was created');
SELECT is(eventstore.current_version('sales'), 1, 'current_version: the highest active while none is promoted');
SELECT lives_ok($$SELECT eventstore.promote_projection('sales', 1, force => true)$$, 'force promotes');
RESET ROLE;	-- the tables are granted to nobody
SELECT results_eq($$SELECT forced, check_results FROM eventstore.projection_promotions$$,
	$$VALUES (true, '[]'::jsonb)$$, 'recorded as forced, no checks run');
SET ROLE es_tap_pr_alice;
SELECT is((SELECT relowner::regrole::text FROM pg_class WHERE oid = 'es_tap_pr.sales'::regclass),
	'es_tap_pr_alice', 'the view belongs to the projection''s owner');
GRANT SELECT ON es_tap_pr.sales TO es_tap_pr_reader;
RESET ROLE;

-- v2 reaches the head, passes its check, is promoted.
SET ROLE es_tap_pr_alice;
SELECT eventstore.run_projection('sales', 2) \g /dev/null
SELECT eventstore.set_read_model('sales', 2, 'es_tap_pr.sales_v2', 'es_tap_pr.sales') \g /dev/null
SELECT is(eventstore.current_version('sales'), 1, 'v1 stays current though v2 is active and higher');
SELECT lives_ok($$SELECT eventstore.promote_projection('sales', 2)$$, 'v2 passes and is promoted');
SELECT is(eventstore.current_version('sales'), 2, 'current_version: the promoted version');
SELECT results_eq($$SELECT version, promoted, promoted_from, promotion_forced, checks_passed
	FROM eventstore.projection_status WHERE name = 'sales' ORDER BY version$$,
	$$VALUES (1, false, NULL::integer, true, NULL::boolean), (2, true, 1, false, true)$$,
	'projection_status shows the promotion');
RESET ROLE;
SET ROLE es_tap_pr_reader;
SELECT is((SELECT count(*) FROM es_tap_pr.sales), 1000::bigint,
	'a consumer granted the view reads v2 through it after the promotion');
SELECT throws_ok($$SELECT * FROM es_tap_pr.sales_v2$$, '42501', NULL,
	'without any privilege on v2''s table');
RESET ROLE;

-- Rollback: promote v1 again.
SET ROLE es_tap_pr_alice;
SELECT eventstore.promote_projection('sales', 1, true) \g /dev/null
SELECT is(eventstore.current_version('sales'), 1, 'promoting v1 again is the rollback');
SELECT ok(pg_get_viewdef('es_tap_pr.sales'::regclass) LIKE '%sales_v1%', 'the view shows v1 again');
RESET ROLE;	-- the tables are granted to nobody
SELECT results_eq($$SELECT from_version, to_version FROM eventstore.projection_promotions ORDER BY promotion_id$$,
	$$VALUES (NULL::integer, 1), (1, 2), (2, 1)$$, 'every promotion recorded, from and to');
SET ROLE es_tap_pr_alice;

-- A relation that cannot stand behind the view: refused, nothing changed.
CREATE TABLE es_tap_pr.sales_v3 (sku text, units integer);	-- units: another type
CREATE FUNCTION es_tap_pr.apply_v3(e eventstore.events) RETURNS void LANGUAGE sql AS
	$$ INSERT INTO es_tap_pr.sales_v3 VALUES (e.data ->> 'sku', 0) $$;
SELECT eventstore.create_projection('sales', 'es_tap_pr.apply_v3', version => 3) \g /dev/null
SELECT eventstore.run_projection('sales', 3) \g /dev/null
SELECT eventstore.set_read_model('sales', 3, 'es_tap_pr.sales_v3', 'es_tap_pr.sales') \g /dev/null
SELECT throws_ok($$SELECT eventstore.promote_projection('sales', 3)$$, 'SE013', NULL,
	'a relation whose columns differ from the view''s is refused');
SELECT ok(pg_get_viewdef('es_tap_pr.sales'::regclass) LIKE '%sales_v1%', 'the view still shows v1');
SELECT is(eventstore.current_version('sales'), 1, 'v1 is still current');
RESET ROLE;	-- the tables are granted to nobody
SELECT is((SELECT count(*) FROM eventstore.projection_promotions), 3::bigint, 'no promotion recorded');
SET ROLE es_tap_pr_alice;
RESET ROLE;
SELECT ok(has_table_privilege('es_tap_pr_reader', 'es_tap_pr.sales', 'SELECT'),
	'the consumer''s grant on the view survived every promotion');

-- promote => 'auto' with run_projection.
SET ROLE es_tap_pr_alice;
CREATE TABLE es_tap_pr.sales_v4 (sku text PRIMARY KEY, units bigint NOT NULL);
CREATE FUNCTION es_tap_pr.apply_v4(e eventstore.events[]) RETURNS void LANGUAGE sql AS $$
	INSERT INTO es_tap_pr.sales_v4
	SELECT e.data ->> 'sku', sum((e.data ->> 'qty')::bigint) FROM unnest(e) e GROUP BY 1
	ON CONFLICT (sku) DO UPDATE SET units = es_tap_pr.sales_v4.units + excluded.units
$$;
SELECT eventstore.create_projection('sales', 'es_tap_pr.apply_v4', version => 4, promote => 'auto') \g /dev/null
SELECT eventstore.set_read_model('sales', 4, 'es_tap_pr.sales_v4', 'es_tap_pr.sales') \g /dev/null
SELECT eventstore.add_projection_check('sales', 4, 'parity',
	$$SELECT * FROM eventstore.compare_read_models('es_tap_pr.sales_v2', 'es_tap_pr.sales_v4') WHERE NOT identical$$) \g /dev/null
SELECT eventstore.run_projection('sales', 4, max_events => 500) \g /dev/null
SELECT is(eventstore.current_version('sales'), 1, 'auto: not promoted before the head');
SELECT eventstore.run_projection('sales', 4) \g /dev/null
SELECT is(eventstore.current_version('sales'), 4, 'auto: promoted by the run that reached the head');
RESET ROLE;	-- the tables are granted to nobody
SELECT results_eq($$SELECT automatic, from_version, forced FROM eventstore.projection_promotions
	ORDER BY promotion_id DESC LIMIT 1$$, $$VALUES (true, 1, false)$$, 'recorded as automatic');
SET ROLE es_tap_pr_alice;
SELECT ok(pg_get_viewdef('es_tap_pr.sales'::regclass) LIKE '%sales_v4%', 'the view shows v4');

-- A check cancelled by statement_timeout in an automatic promotion has
-- failed, and the run goes on (by hand, the call is cancelled as usual).
SELECT eventstore.create_projection('slow', 'es_tap_pr.apply_v4', version => 1, promote => 'auto') \g /dev/null
RESET ROLE;
SELECT eventstore.stop_projection('slow') \g /dev/null
SET ROLE es_tap_pr_alice;
SELECT eventstore.add_projection_check('slow', 1, 'sleeps', 'SELECT 1 FROM pg_sleep(30)') \g /dev/null
SET statement_timeout = '500ms';
RESET ROLE;
SELECT eventstore.start_projection('slow') \g /dev/null
SET ROLE es_tap_pr_alice;
SET client_min_messages = error;	-- its WARNING
SELECT lives_ok($$SELECT eventstore.run_projection('slow')$$,
	'auto: a run whose check meets statement_timeout goes on');
RESET client_min_messages;
RESET statement_timeout;
SELECT results_eq($$SELECT promoted, checks_passed, check_results -> 0 ->> 'sqlstate'
	FROM eventstore.projection_status WHERE name = 'slow'$$,
	$$VALUES (false, false, '57014')$$, 'the check failed with the cancel, the version unpromoted');
RESET ROLE;
SELECT eventstore.drop_projection('slow') \g /dev/null
SET ROLE es_tap_pr_alice;

-- A promotion keeps the view's options: a security_invoker view over
-- tables with row-level security goes on filtering for each consumer.
SET ROLE es_tap_pr_alice;
CREATE TABLE es_tap_pr.notes_v1 (who text, note text);
CREATE TABLE es_tap_pr.notes_v2 (who text, note text);
INSERT INTO es_tap_pr.notes_v1 VALUES ('es_tap_pr_reader', 'v1 mine'), ('es_tap_pr_mallory', 'v1 theirs');
INSERT INTO es_tap_pr.notes_v2 VALUES ('es_tap_pr_reader', 'v2 mine'), ('es_tap_pr_mallory', 'v2 theirs');
ALTER TABLE es_tap_pr.notes_v1 ENABLE ROW LEVEL SECURITY;
ALTER TABLE es_tap_pr.notes_v2 ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON es_tap_pr.notes_v1 USING (who = current_user);
CREATE POLICY own ON es_tap_pr.notes_v2 USING (who = current_user);
GRANT SELECT ON es_tap_pr.notes_v1, es_tap_pr.notes_v2 TO es_tap_pr_reader;
CREATE FUNCTION es_tap_pr.noop(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT eventstore.create_projection('notes', 'es_tap_pr.noop', ARRAY['Noted']) \g /dev/null
SELECT eventstore.create_projection('notes', 'es_tap_pr.noop', ARRAY['Noted'], version => 2) \g /dev/null
SELECT eventstore.run_projection('notes') \g /dev/null
SELECT eventstore.set_read_model('notes', 1, 'es_tap_pr.notes_v1', 'es_tap_pr.notes') \g /dev/null
SELECT eventstore.set_read_model('notes', 2, 'es_tap_pr.notes_v2', 'es_tap_pr.notes') \g /dev/null
SELECT eventstore.promote_projection('notes', 1) \g /dev/null
ALTER VIEW es_tap_pr.notes SET (security_invoker = true, security_barrier = true,
                                check_option = local);
GRANT SELECT ON es_tap_pr.notes TO es_tap_pr_reader;
SELECT lives_ok($$SELECT eventstore.promote_projection('notes', 2)$$, 'v2 of notes promoted');
SELECT is((SELECT reloptions FROM pg_class WHERE oid = 'es_tap_pr.notes'::regclass),
	'{security_invoker=true,security_barrier=true,check_option=local}',
	'the promotion kept the view''s options');
RESET ROLE;
SET ROLE es_tap_pr_reader;
SELECT results_eq($$SELECT note FROM es_tap_pr.notes$$, $$VALUES ('v2 mine')$$,
	'row-level security still applies to the consumer through the view');
RESET ROLE;

-- Nothing a check does is kept, even when it passes: here a lock.
SET ROLE es_tap_pr_alice;
SELECT eventstore.add_projection_check('notes', 2, 'locks',
	'SELECT 1 WHERE pg_advisory_xact_lock(4242) IS NULL') \g /dev/null
BEGIN;
SELECT count(*) FROM eventstore.check_projection('notes', 2) \g /dev/null
SELECT is((SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242
	AND pid = pg_backend_pid()), 0::bigint, 'a passing check''s subtransaction was rolled back');
COMMIT;
RESET ROLE;

-- set_read_model: the owner must be able to create the view, and own it
-- if it exists already (else any role granted set_read_model could
-- reserve a name in any schema).
CREATE SCHEMA es_tap_pr_elsewhere;
GRANT USAGE ON SCHEMA es_tap_pr_elsewhere TO es_tap_pr_alice;
CREATE VIEW es_tap_pr.taken AS SELECT 1 AS one;
ALTER VIEW es_tap_pr.taken OWNER TO es_tap_pr_mallory;
SET ROLE es_tap_pr_alice;
SELECT eventstore.create_projection('reserve', 'es_tap_pr.noop', ARRAY['Noted']) \g /dev/null
SELECT is(pg_temp.error_of($$SELECT eventstore.set_read_model('reserve', 1, 'es_tap_pr.notes_v1',
	'es_tap_pr_elsewhere.notes')$$),
	ARRAY['42501', 'the owner role "es_tap_pr_alice" of projection "reserve" may not create view es_tap_pr_elsewhere.notes',
	      'The projection''s owner creates the view at the first promotion.',
	      'Grant CREATE on schema es_tap_pr_elsewhere to role "es_tap_pr_alice", or choose a view in a schema it may create in.'],
	'set_read_model: a view in a schema the owner may not create in is refused');
SELECT is(pg_temp.error_of($$SELECT eventstore.set_read_model('reserve', 1, 'es_tap_pr.notes_v1',
	'es_tap_pr.taken')$$),
	ARRAY['42501', 'view es_tap_pr.taken does not belong to the owner role "es_tap_pr_alice" of projection "reserve"',
	      'A promotion replaces the view as the projection''s owner.',
	      'Make role "es_tap_pr_alice" the view''s owner (ALTER VIEW ... OWNER TO), or choose another view name.'],
	'set_read_model: another role''s view is refused');
SELECT is(pg_temp.error_of($$SELECT eventstore.set_read_model('reserve', 1, 'es_tap_pr.notes_v1',
	'es_tap_pr.sales_v1')$$),
	ARRAY['42809', 'es_tap_pr.sales_v1 is not a view', NULL,
	      'Choose the name of a view, or one that is not taken.'],
	'set_read_model: a name taken by a table is refused');
RESET ROLE;

-- Who may: not another role; the owner must be able to read the relation.
RESET ROLE;
SET ROLE es_tap_pr_mallory;
SELECT throws_ok($$SELECT eventstore.promote_projection('sales', 1, true)$$, '42501', NULL,
	'another role may not promote');
SELECT throws_ok($$SELECT eventstore.add_projection_check('sales', 1, 'x', 'SELECT 1')$$, '42501', NULL,
	'nor add checks');
SELECT throws_ok($$SELECT * FROM eventstore.check_projection('sales', 1)$$, '42501', NULL,
	'nor run them');
RESET ROLE;
CREATE TABLE es_tap_pr.secret (sku text, units bigint);
SET ROLE es_tap_pr_alice;
SELECT throws_ok($$SELECT eventstore.set_read_model('sales', 4, 'es_tap_pr.secret', 'es_tap_pr.sales')$$,
	'42501', NULL, 'a relation its owner may not read cannot stand behind the view');
RESET ROLE;

SELECT * FROM finish();
SET client_min_messages = warning;
DROP SCHEMA es_tap_pr CASCADE;
DROP SCHEMA es_tap_pr_elsewhere CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
DROP EXTENSION pgtap CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_pr_alice', 'es_tap_pr_bob', 'es_tap_pr_reader',
                              'es_tap_pr_mallory']);
