-- pgTAP: what a projection's code runs with.  The creator's search_path
-- (pg_temp last) and result-affecting settings are captured at
-- create_projection, so the natural unqualified handler works inline and
-- from run_projection whatever search_path the appender or runner has, and
-- two replays of one log by sessions with different DateStyle, TimeZone,
-- IntervalStyle, extra_float_digits, bytea_output and
-- standard_conforming_strings give identical read models.  A handler whose
-- own SET search_path does not end with pg_temp is refused at creation and
-- fails at load.  (The worker runs the same code: TAP 002.)
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_set CASCADE;
CREATE SCHEMA es_tap_set;
RESET client_min_messages;

SELECT plan(16);

-- The natural handler: an unqualified table and function, as a new user
-- writes it, with the schema on the creator's search_path.
SET search_path = es_tap_set, public;
CREATE TABLE cart_summary (stream_id text PRIMARY KEY, items integer NOT NULL);
CREATE FUNCTION summarize(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO cart_summary VALUES (e.stream_id, 1)
	ON CONFLICT (stream_id) DO UPDATE SET items = cart_summary.items + 1
$$;
CREATE FUNCTION apply_cart(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	SELECT summarize(e)
$$;
SELECT lives_ok($$SELECT eventstore.create_projection('carts', 'apply_cart', ARRAY['ItemAdded'], 'inline')$$,
	'the natural handler: unqualified names, its schema on the creator''s search_path');
SELECT is((SELECT settings[1] FROM eventstore.projections WHERE name = 'carts'),
	'search_path=es_tap_set, public, pg_temp', 'the creator''s search_path is kept, pg_temp last');
RESET search_path;

-- Appended from a session whose search_path does not have the schema.
SELECT eventstore.append_event('cart-1', 'ItemAdded', '{}') IS NOT NULL AS appended \g /dev/null
SET search_path = pg_catalog, public;
SELECT eventstore.append_event('cart-1', 'ItemAdded', '{}') IS NOT NULL AS appended \g /dev/null
RESET search_path;
SELECT results_eq($$SELECT stream_id, items FROM es_tap_set.cart_summary$$,
	$$VALUES ('cart-1', 2)$$, 'it works inline, whatever search_path the appender has');
SELECT is((SELECT status FROM eventstore.projection_status WHERE name = 'carts'), 'active', 'still active');

-- An appender's temporary table named like the read model is not used.
CREATE TEMPORARY TABLE cart_summary (stream_id text, items integer);
SET search_path = pg_temp, public;
SELECT eventstore.append_event('cart-2', 'ItemAdded', '{}') IS NOT NULL AS appended \g /dev/null
RESET search_path;
SELECT is((SELECT count(*) FROM pg_temp.cart_summary), 0::bigint,
	'the appender''s temporary table of the same name is not written');
SELECT results_eq($$SELECT stream_id, items FROM es_tap_set.cart_summary ORDER BY 1$$,
	$$VALUES ('cart-1', 2), ('cart-2', 1)$$, 'the owner''s table is');
DROP TABLE pg_temp.cart_summary;

-- From run_projection, with the runner's search_path elsewhere.
SET search_path = es_tap_set, public;
SELECT lives_ok($$SELECT eventstore.create_projection('carts-async', 'apply_cart', ARRAY['ItemAdded'])$$,
	'the same handler, async');
RESET search_path;
TRUNCATE es_tap_set.cart_summary;
SET search_path = pg_catalog, public;
SELECT is(eventstore.run_projection('carts-async'), 3::bigint, 'run_projection from a session without the schema applies the events');
RESET search_path;
SELECT results_eq($$SELECT stream_id, items FROM es_tap_set.cart_summary ORDER BY 1$$,
	$$VALUES ('cart-1', 2), ('cart-2', 1)$$, 'and writes the owner''s table');

-- Determinism: a handler whose output depends on session settings.
CREATE TABLE es_tap_set.rendered (global_position bigint PRIMARY KEY, text_form text NOT NULL);
CREATE FUNCTION es_tap_set.render(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO es_tap_set.rendered VALUES (e.global_position, concat_ws(' | ',
		'2026-03-04 05:06:07+00'::timestamptz::text,
		'2026-03-04'::date::text,
		interval '1 day 2 hours'::text,
		(0.1::float8 * 3)::text,
		'\x41'::bytea::text,
		length('a\nb'),
		to_char(1234.5, 'FM9G999D9')))
$$;
SET DateStyle = 'ISO, MDY';
SET TimeZone = 'UTC';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 1;
SET bytea_output = 'hex';
SET standard_conforming_strings = on;
SELECT lives_ok($$SELECT eventstore.create_projection('render', 'es_tap_set.render')$$,
	'a projection whose handler renders values as the session''s settings say');
SELECT eventstore.run_projection('render') AS first_run \gset
CREATE TABLE es_tap_set.first_replay AS SELECT * FROM es_tap_set.rendered;
RESET ALL;
-- the second replay from a session with every one of them different
SET DateStyle = 'German, DMY';
SET TimeZone = 'Asia/Tokyo';
SET IntervalStyle = 'sql_standard';
SET extra_float_digits = 0;
SET bytea_output = 'escape';
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT lives_ok($$SELECT eventstore.rebuild_projection('render')$$, 'rebuilt by another session');
TRUNCATE es_tap_set.rendered;
SELECT is(eventstore.run_projection('render'), :first_run::bigint, 'replayed');
RESET ALL;
SELECT is((SELECT count(*) FROM es_tap_set.rendered), 3::bigint, 'every event rendered');
SELECT set_eq($$SELECT * FROM es_tap_set.rendered$$, $$SELECT * FROM es_tap_set.first_replay$$,
	'two replays by sessions with different settings give identical read models');

-- A handler whose own search_path would search the caller's temporary
-- schema first: refused at creation, and failed at load when given one later.
CREATE FUNCTION es_tap_set.own_path(e eventstore.events) RETURNS void
LANGUAGE sql SET search_path = es_tap_set AS $$ SELECT $$;
SELECT throws_ok($$SELECT eventstore.create_projection('own-path', 'es_tap_set.own_path')$$,
	'42P13', 'handler es_tap_set.own_path(eventstore.events) sets search_path to "es_tap_set", which does not end with pg_temp',
	'a handler whose own search_path does not end with pg_temp is refused');
CREATE FUNCTION es_tap_set.later_path(e eventstore.events) RETURNS void
LANGUAGE sql AS $$ SELECT $$;
SELECT eventstore.create_projection('later-path', 'es_tap_set.later_path');
ALTER FUNCTION es_tap_set.later_path(eventstore.events) SET search_path = es_tap_set, pg_temp, public;
SELECT eventstore.append_event('cart-3', 'ItemAdded', '{}') IS NOT NULL AS appended \g /dev/null
SET client_min_messages = error;
SELECT eventstore.run_projection('later-path') \g /dev/null
RESET client_min_messages;
SELECT results_eq($$SELECT status, last_error FROM eventstore.projection_status WHERE name = 'later-path'$$,
	$$VALUES ('failed', 'the handler es_tap_set.later_path(eventstore.events) of projection "later-path" version 1 sets search_path to "es_tap_set, pg_temp, public", which does not end with pg_temp')$$,
	'a handler given such a search_path later fails its projection at load');

SELECT * FROM finish();
SET client_min_messages = warning;
DROP SCHEMA es_tap_set CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
DROP EXTENSION pgtap CASCADE;
