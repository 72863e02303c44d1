-- pgTAP: the set-based backfill (create_projection's backfill,
-- eventstore.backfill_events()).  Its statement runs once when a
-- projection builds from the start (creation over a non-empty log, a
-- rebuild, a new version), as the owner with its captured settings, with
-- replaying() true, over exactly the events below the build's horizon that
-- the projection takes (upcast unless upcast => false), in log order; the
-- checkpoint is the last event below the horizon and the handler goes on
-- from the next; inline skips recorded meanwhile are drained without
-- doubles; a failing statement fails the projection with its error and
-- leaves nothing applied (on_error does not apply); backfill_events() is
-- refused (SE020) outside a backfill.
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_bf CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_bfowner']);

SELECT plan(43);

CREATE ROLE es_tap_bfowner NOLOGIN;
GRANT EXECUTE ON FUNCTION
	eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer),
	eventstore.run_projection(text, integer, bigint),
	eventstore.rebuild_projection(text, integer),
	eventstore.start_projection(text, integer)
TO es_tap_bfowner;
GRANT SELECT ON eventstore.projection_status TO es_tap_bfowner;
-- for the tests' comparisons; revoked before the last backfills, which
-- need no privilege on the log
GRANT SELECT ON eventstore.events, eventstore.projection_skips, eventstore.projections TO es_tap_bfowner;
CREATE SCHEMA es_tap_bf AUTHORIZATION es_tap_bfowner;

------------------------------------------------------------------------
-- Outside a backfill
------------------------------------------------------------------------
SELECT is(pg_temp.error_of('SELECT count(*) FROM eventstore.backfill_events()'),
	ARRAY['SE020', 'eventstore.backfill_events() can only be read by a projection''s backfill statement',
		  'It returns the events of the projection being built, and only while its backfill runs.',
		  'Pass the statement as create_projection(..., backfill => ''...''): it runs when the projection builds from the start.'],
	'backfill_events() outside a backfill is SE020, also over an empty log');
SELECT is((pg_temp.error_of('SELECT * FROM eventstore.backfill_log'))[1], 'SE020',
	'... and so is its view');
SELECT is((pg_temp.error_of('SELECT eventstore.backfill_horizon()'))[1], 'SE020',
	'... and its horizon');

SET ROLE es_tap_bfowner;
SET search_path = es_tap_bf, public;
SET TimeZone = 'Asia/Tokyo';
-- what a backfill statement saw: each row in the order received
CREATE TABLE got (tag text, ord bigint, global_position bigint, stream_id text,
	event_type text, schema_version integer, data jsonb, replaying boolean,
	who text, tz text);
-- what a handler applied
CREATE TABLE applied (tag text, global_position bigint, replaying boolean);
CREATE TABLE poison (why text);
CREATE FUNCTION apply_main(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO applied VALUES ('main', e.global_position, eventstore.replaying()) $$;
CREATE FUNCTION apply_inl(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO applied VALUES ('inl', e.global_position, eventstore.replaying()) $$;
CREATE FUNCTION apply_bad(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO applied VALUES ('bad', e.global_position, eventstore.replaying()) $$;
-- fails on its third row while poison has one
CREATE FUNCTION check_row(n bigint) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
	IF n = 3 AND EXISTS (SELECT FROM poison) THEN
		RAISE EXCEPTION 'poisoned backfill' USING ERRCODE = '22012';
	END IF;
	RETURN 1;
END $$;
-- a backfill statement: unqualified names, as the creator's search_path has them
CREATE FUNCTION pg_temp.recorder(tag text) RETURNS text LANGUAGE sql AS $$
	SELECT format($s$INSERT INTO got SELECT %L, row_number() OVER (), global_position,
		stream_id, event_type, schema_version, data, eventstore.replaying(),
		current_user, current_setting('TimeZone') FROM eventstore.backfill_events()$s$, tag)
$$;

------------------------------------------------------------------------
-- Over an empty log: active at once, no backfill
------------------------------------------------------------------------
SELECT eventstore.create_projection('bf_empty', 'apply_main', backfill => pg_temp.recorder('empty')) \g /dev/null
SELECT results_eq($$SELECT status, phase, backfilled_at IS NULL FROM eventstore.projection_status WHERE name = 'bf_empty'$$,
	$$VALUES ('active', 'live', true)$$,
	'a projection with a backfill created over an empty log starts active, with nothing to backfill');
RESET ROLE;
SELECT eventstore.append_event('a-1', 'A', '{"n": 1}') IS NOT NULL AS appended \g /dev/null
SET ROLE es_tap_bfowner;
SELECT is(eventstore.run_projection('bf_empty'), 1::bigint, '... and applies what follows with its handler');
SELECT is((SELECT count(*) FROM got), 0::bigint, '... never running its backfill');
RESET ROLE;

------------------------------------------------------------------------
-- Over a non-empty log
------------------------------------------------------------------------
SELECT eventstore.append_to_stream('s-' || i,
	format('[{"type": "A", "data": {"n": %s}}, {"type": "B", "data": {}}, {"type": "C", "data": {"n": %s}}]',
		   i, 10 * i)::jsonb) IS NOT NULL AS appended
FROM generate_series(1, 4) i \g /dev/null
SELECT eventstore.append_event('s-1', 'B', '{}') IS NOT NULL AS appended \g /dev/null
SET ROLE es_tap_bfowner;
SET search_path = es_tap_bf, public;
SET TimeZone = 'Asia/Tokyo';
SELECT eventstore.create_projection('bf', 'apply_main', ARRAY['A', 'C'],
	on_reset => $$DELETE FROM got WHERE tag = 'bf'; DELETE FROM applied WHERE tag = 'main'$$,
	backfill => pg_temp.recorder('bf')) \g /dev/null
SELECT eventstore.create_projection('bf_inl', 'apply_inl', ARRAY['A', 'C'], 'inline',
	on_reset => $$DELETE FROM got WHERE tag = 'inl'; DELETE FROM applied WHERE tag = 'inl'$$,
	backfill => pg_temp.recorder('inl')) \g /dev/null
RESET search_path;
RESET TimeZone;
SELECT results_eq($$SELECT name, status, phase, checkpoint, backfilled_at IS NULL
	FROM eventstore.projection_status WHERE name LIKE 'bf\_%' OR name = 'bf' ORDER BY name$$,
	$$VALUES ('bf'::text, 'rebuilding'::text, 'backfill'::text, 0::bigint, true),
			 ('bf_empty', 'active', 'live', 1, true),
			 ('bf_inl', 'rebuilding', 'backfill', 0, true)$$,
	'created over a non-empty log: rebuilding, in phase backfill');
RESET ROLE;
-- appended while bf_inl waits for its build: skipped, and in its backfill
SELECT eventstore.append_event('s-2', 'A', '{"n": 100}') IS NOT NULL AS appended \g /dev/null
SELECT is((SELECT count(*) FROM eventstore.projection_skips s JOIN eventstore.projections p USING (projection_id)
	WHERE p.name = 'bf_inl' AND s.drained_at IS NULL), 1::bigint,
	'an inline append during the build records a skip');
SET ROLE es_tap_bfowner;
SET search_path = public;
SET TimeZone = 'UTC';

SELECT is(eventstore.run_projection('bf'), 0::bigint,
	'run_projection builds it with its backfill, the handler having nothing left');
SELECT results_eq($$SELECT global_position, stream_id, event_type FROM es_tap_bf.got WHERE tag = 'bf' ORDER BY ord$$,
	$$SELECT global_position, stream_id, event_type FROM eventstore.events
	  WHERE event_type IN ('A', 'C') ORDER BY transaction_id, global_position$$,
	'the backfill received exactly the events of its types, in log order');
SELECT is((SELECT count(DISTINCT global_position) FROM es_tap_bf.got WHERE tag = 'bf'),
	(SELECT count(*) FROM es_tap_bf.got WHERE tag = 'bf'), '... each once');
SELECT results_eq($$SELECT DISTINCT replaying, who, tz FROM es_tap_bf.got WHERE tag = 'bf'$$,
	$$VALUES (true, 'es_tap_bfowner'::text, 'Asia/Tokyo'::text)$$,
	'... with replaying() true, as the owner, with the settings captured at creation');
SELECT is((SELECT count(*) FROM es_tap_bf.applied WHERE tag = 'main'), 0::bigint,
	'... and its handler applied none of them');
SELECT results_eq($$SELECT status, phase, checkpoint, backfilled_at IS NOT NULL, lag_events
	FROM eventstore.projection_status WHERE name = 'bf'$$,
	$$SELECT 'active'::text, 'live'::text, max(global_position), true, 0::bigint FROM eventstore.events$$,
	'it is active with its checkpoint at the last event of the log (of a type it does not take)');

SELECT is(eventstore.run_projection('bf_inl'), 0::bigint, 'the inline projection is built by its backfill');
SELECT results_eq($$SELECT global_position FROM es_tap_bf.got WHERE tag = 'inl' ORDER BY ord$$,
	$$SELECT global_position FROM eventstore.events
	  WHERE event_type IN ('A', 'C') ORDER BY transaction_id, global_position$$,
	'... over the event its append skipped too');
SELECT results_eq($$SELECT s.outcome FROM eventstore.projection_skips s JOIN eventstore.projections p USING (projection_id)
	WHERE p.name = 'bf_inl'$$,
	$$VALUES ('already applied'::text)$$,
	'... whose skip is drained as already applied: nothing doubled');
SELECT is((SELECT count(*) FROM es_tap_bf.applied WHERE tag = 'inl'), 0::bigint,
	'... its handler applying nothing');

-- after the build: the handler, from the event after the checkpoint
RESET ROLE;
SELECT eventstore.append_event('s-3', 'C', '{"n": 7}') IS NOT NULL AS appended \g /dev/null
SELECT eventstore.append_event('s-3', 'B', '{}') IS NOT NULL AS appended \g /dev/null
SET ROLE es_tap_bfowner;
SELECT is(eventstore.run_projection('bf'), 1::bigint, 'later events go to the handler');
SELECT results_eq($$SELECT global_position, replaying FROM es_tap_bf.applied WHERE tag = 'main'$$,
	$$SELECT max(global_position), false FROM eventstore.events WHERE event_type = 'C'$$,
	'... the one event after the checkpoint, applied for the first time');
SELECT results_eq($$SELECT global_position, replaying FROM es_tap_bf.applied WHERE tag = 'inl'$$,
	$$SELECT max(global_position), false FROM eventstore.events WHERE event_type = 'C'$$,
	'... and inline, by its append');
SELECT is((SELECT count(*) FROM es_tap_bf.got), 20::bigint, 'the backfills ran once each');

------------------------------------------------------------------------
-- A rebuild and a new version build with their backfill again
------------------------------------------------------------------------
SELECT eventstore.rebuild_projection('bf') \g /dev/null
SELECT results_eq($$SELECT status, phase, backfilled_at IS NULL FROM eventstore.projection_status WHERE name = 'bf'$$,
	$$VALUES ('rebuilding', 'backfill', true)$$, 'a rebuild is in phase backfill again');
SELECT is(eventstore.run_projection('bf'), 0::bigint, '... and runs it');
SELECT results_eq($$SELECT global_position FROM es_tap_bf.got WHERE tag = 'bf' ORDER BY ord$$,
	$$SELECT global_position FROM eventstore.events
	  WHERE event_type IN ('A', 'C') ORDER BY transaction_id, global_position$$,
	'... after on_reset, over every event of its types up to the horizon, each once');
SELECT is((SELECT count(*) FROM es_tap_bf.applied WHERE tag = 'main'), 0::bigint,
	'... the handler applying none of them');
SET search_path = es_tap_bf, public;
SELECT eventstore.create_projection('bf', 'apply_main', ARRAY['A'], version => 2,
	backfill => pg_temp.recorder('bf2')) \g /dev/null
RESET search_path;
SELECT is(eventstore.run_projection('bf', 2), 0::bigint, 'a new version builds with its own backfill');
SELECT results_eq($$SELECT global_position FROM es_tap_bf.got WHERE tag = 'bf2' ORDER BY ord$$,
	$$SELECT global_position FROM eventstore.events WHERE event_type = 'A'
	  ORDER BY transaction_id, global_position$$,
	'... over the events of its own types');

------------------------------------------------------------------------
-- A failing statement: failed with its error, nothing half-applied
------------------------------------------------------------------------
INSERT INTO es_tap_bf.poison VALUES ('now');
SET search_path = es_tap_bf, public;
SELECT eventstore.create_projection('bf_bad', 'apply_bad', on_error => 'skip',
	on_reset => $$INSERT INTO got (tag) VALUES ('bad reset')$$,
	backfill => $$INSERT INTO got (tag, ord, global_position)
		SELECT 'bad', row_number() OVER (), global_position FROM eventstore.backfill_events() e
		WHERE check_row(e.revision + 1) = 1$$) \g /dev/null
RESET search_path;
SET client_min_messages = error;
SELECT is(eventstore.run_projection('bf_bad'), 0::bigint, 'a failing backfill applies nothing');
SET client_min_messages = warning;
SELECT results_eq($$SELECT status, phase, checkpoint, last_error, error_position, dead_letters
	FROM eventstore.projection_status WHERE name = 'bf_bad'$$,
	$$VALUES ('failed'::text, 'backfill'::text, 0::bigint,
			  'the backfill statement failed: poisoned backfill'::text, NULL::bigint, 0::bigint)$$,
	'... the projection is failed with the statement''s error, at no event (on_error => skip does not apply)');
SELECT is((SELECT error_sqlstate FROM eventstore.projections WHERE name = 'bf_bad'), '22012',
	'... and its SQLSTATE');
SELECT is((SELECT count(*) FROM es_tap_bf.got WHERE tag IN ('bad', 'bad reset')), 0::bigint,
	'... nothing of on_reset or of the statement is left');
SELECT is((SELECT count(*) FROM es_tap_bf.applied WHERE tag = 'bad'), 0::bigint,
	'... and the handler applied nothing');
DELETE FROM es_tap_bf.poison;
SELECT eventstore.start_projection('bf_bad') \g /dev/null
SELECT is(eventstore.run_projection('bf_bad'), 0::bigint, 'started again, it runs the backfill again');
SELECT results_eq($$SELECT tag, count(*) FROM es_tap_bf.got WHERE tag IN ('bad', 'bad reset') GROUP BY tag ORDER BY tag$$,
	$$SELECT 'bad'::text, count(*) FROM eventstore.events UNION ALL SELECT 'bad reset', 1$$,
	'... on_reset first, then every event, once');
SELECT results_eq($$SELECT status, phase FROM eventstore.projection_status WHERE name = 'bf_bad'$$,
	$$VALUES ('active'::text, 'live'::text)$$, '... and it is active');
RESET ROLE;

------------------------------------------------------------------------
-- Upcast events, as its handler would receive them
------------------------------------------------------------------------
CREATE FUNCTION es_tap_bf.thing_v2(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
	SELECT d || '{"v": 2}' $$;
GRANT EXECUTE ON FUNCTION es_tap_bf.thing_v2(jsonb) TO PUBLIC;
SELECT eventstore.register_event_schema('Thing', 1, '{"type": "object"}') \g /dev/null
SELECT eventstore.append_event('t-1', 'Thing', '{"x": 1}') IS NOT NULL AS appended \g /dev/null
SELECT eventstore.register_event_schema('Thing', 2, '{"type": "object"}', 'es_tap_bf.thing_v2(jsonb)') \g /dev/null
SELECT eventstore.append_event('t-1', 'Thing', '{"x": 2, "v": 2}') IS NOT NULL AS appended \g /dev/null
REVOKE SELECT ON eventstore.events FROM es_tap_bfowner;
SET ROLE es_tap_bfowner;
SET search_path = es_tap_bf, public;
SELECT eventstore.create_projection('bf_up', 'apply_main', ARRAY['Thing'], backfill => pg_temp.recorder('up')) \g /dev/null
SELECT eventstore.create_projection('bf_raw', 'apply_main', ARRAY['Thing'], upcast => false,
	backfill => pg_temp.recorder('raw')) \g /dev/null
RESET search_path;
SELECT eventstore.run_projection('bf_up') + eventstore.run_projection('bf_raw') \g /dev/null
SELECT results_eq($$SELECT data, schema_version FROM es_tap_bf.got WHERE tag = 'up' ORDER BY ord$$,
	$$VALUES ('{"x": 1, "v": 2}'::jsonb, 2), ('{"x": 2, "v": 2}', 2)$$,
	'with upcast, the backfill reads events upcast to their type''s latest version (as an owner without any privilege on the log)');
SELECT results_eq($$SELECT data, schema_version FROM es_tap_bf.got WHERE tag = 'raw' ORDER BY ord$$,
	$$VALUES ('{"x": 1}'::jsonb, 1), ('{"x": 2, "v": 2}', 2)$$,
	'with upcast => false, as stored');
RESET ROLE;

SELECT is((pg_temp.error_of('SELECT count(*) FROM eventstore.backfill_events()'))[1], 'SE020',
	'after the backfills, backfill_events() is refused again');

------------------------------------------------------------------------
-- A split build from the start (parallel => 2): its backfill runs once,
-- before any partition, and the partitions apply only what follows
------------------------------------------------------------------------
SET ROLE es_tap_bfowner;
SET search_path = es_tap_bf, public;
CREATE FUNCTION apply_split(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO applied VALUES ('split', e.global_position, eventstore.replaying()) $$;
SELECT eventstore.create_projection('bf_split', 'apply_split', ARRAY['A', 'C'],
	on_reset => $$DELETE FROM got WHERE tag = 'split'; DELETE FROM applied WHERE tag = 'split'$$,
	backfill => pg_temp.recorder('split'), parallel => 2) \g /dev/null
RESET search_path;
RESET ROLE;
SELECT results_eq($$SELECT status, phase, partitions FROM eventstore.projection_status WHERE name = 'bf_split'$$,
	$$VALUES ('rebuilding'::text, 'backfill'::text, 2)$$,
	'a projection with a backfill and parallel => 2 starts split, in phase backfill');
SELECT eventstore.append_event('s-9', 'A', '{"n": 9}') IS NOT NULL AS appended \g /dev/null
SET ROLE es_tap_bfowner;
SELECT eventstore.run_projection('bf_split') \g /dev/null
RESET ROLE;
SELECT eventstore.append_event('s-9', 'C', '{"n": 90}') IS NOT NULL AS appended \g /dev/null
SET ROLE es_tap_bfowner;
SELECT eventstore.run_projection('bf_split') \g /dev/null
RESET ROLE;
SELECT results_eq($$SELECT global_position FROM es_tap_bf.got WHERE tag = 'split' ORDER BY ord$$,
	$$SELECT global_position FROM eventstore.events
	  WHERE event_type IN ('A', 'C') AND NOT (stream_id = 's-9' AND event_type = 'C')
	  ORDER BY transaction_id, global_position$$,
	'the split build''s backfill ran once, over every event of its types below its horizon');
SELECT results_eq($$SELECT global_position, replaying FROM es_tap_bf.applied WHERE tag = 'split'$$,
	$$SELECT global_position, false FROM eventstore.events WHERE stream_id = 's-9' AND event_type = 'C'$$,
	'... and the handler, in the partitions and after their join, applied only the event after it');
SELECT results_eq($$SELECT status, phase, partitions, lag_events FROM eventstore.projection_status WHERE name = 'bf_split'$$,
	$$VALUES ('active'::text, 'live'::text, NULL::integer, 0::bigint)$$,
	'... and it is active, its partitions joined');

SELECT * FROM finish();

DROP SCHEMA es_tap_bf CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_bfowner']);
DROP EXTENSION pgtap;
DROP EXTENSION pg_eventstore;
