-- pgTAP: projections receive upcast events (create_projection's upcast,
-- true by default).  A chain of three versions of one type, events stored
-- at each; every path of application sees them at version 3: inline, the
-- drain of an inline projection's skips, async batches (a per-event and a
-- batch handler), a rebuild, a dead letter retried; upcast => false sees
-- them as stored; an upcaster's error is the event's (on_error); the
-- per-stream order and replaying() as without upcasting.
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_up CASCADE;

SELECT plan(29);

CREATE SCHEMA es_tap_up;
-- what each projection received, in the order received
CREATE TABLE es_tap_up.seen (
	seq bigserial, tag text NOT NULL, global_position bigint NOT NULL,
	stream_id text NOT NULL, revision bigint NOT NULL, schema_version integer,
	data jsonb NOT NULL, replaying boolean NOT NULL);
-- the streams the 'park' handler fails on, until cured (deleted)
CREATE TABLE es_tap_up.poison (stream_id text PRIMARY KEY);
-- while it has a row, the version 3 upcaster fails
CREATE TABLE es_tap_up.broken (why text);

CREATE FUNCTION es_tap_up.record(tag text, e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF tag = 'park' AND EXISTS (SELECT FROM es_tap_up.poison p WHERE p.stream_id = e.stream_id) THEN
		RAISE EXCEPTION 'poison %', e.stream_id USING ERRCODE = '22012';
	END IF;
	INSERT INTO es_tap_up.seen (tag, global_position, stream_id, revision, schema_version, data, replaying)
	VALUES (tag, e.global_position, e.stream_id, e.revision, e.schema_version, e.data,
			eventstore.replaying());
END $$;
DO $do$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['inline', 'async', 'raw', 'park', 'skip'] LOOP
		EXECUTE format($f$
			CREATE FUNCTION es_tap_up.%I(e eventstore.events) RETURNS void
			LANGUAGE sql AS $b$ SELECT es_tap_up.record(%L, e) $b$$f$, 'h_' || t, t);
	END LOOP;
	FOREACH t IN ARRAY ARRAY['batch', 'raw_batch'] LOOP
		EXECUTE format($f$
			CREATE FUNCTION es_tap_up.%I(es eventstore.events[]) RETURNS void
			LANGUAGE sql AS $b$ SELECT es_tap_up.record(%L, e) FROM pg_catalog.unnest(es) e $b$$f$,
			'h_' || t, t);
	END LOOP;
END $do$;

-- Version 1: {"name": ...}; version 2 renames "name" to "full_name";
-- version 3 adds "country", "unknown" when the event had none.
CREATE FUNCTION es_tap_up.person_v2(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
	SELECT (d - 'name') || jsonb_build_object('full_name', d->'name')
$$;
CREATE FUNCTION es_tap_up.person_v3(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT FROM es_tap_up.broken) THEN
		RAISE EXCEPTION 'the version 3 upcaster is broken' USING ERRCODE = '22023';
	END IF;
	RETURN jsonb_build_object('country', 'unknown') || d;
END $$;

-- the inline projection, over the empty log, stopped: its events are skipped
SELECT eventstore.create_projection('up_inline', 'es_tap_up.h_inline', mode => 'inline',
	on_reset => $$DELETE FROM es_tap_up.seen WHERE tag = 'inline'$$) \g /dev/null
SELECT eventstore.stop_projection('up_inline') \g /dev/null

SELECT eventstore.register_event_schema('Person', 1,
	'{"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}') \g /dev/null
SELECT eventstore.append_event('p-1', 'Person', '{"name": "Ada"}') IS NOT NULL AS appended \g /dev/null
SELECT eventstore.append_event('p-2', 'Person', '{"name": "Bob"}') IS NOT NULL AS appended \g /dev/null
SELECT eventstore.append_event('n-1', 'Note', '{"text": "no schema"}') IS NOT NULL AS appended \g /dev/null
SELECT eventstore.append_event('p-1', 'Person', '{"name": "Ada L"}') IS NOT NULL AS appended \g /dev/null
SELECT eventstore.register_event_schema('Person', 2,
	'{"type": "object", "required": ["full_name"], "additionalProperties": false,
	  "properties": {"full_name": {"type": "string"}}}',
	'es_tap_up.person_v2(jsonb)') \g /dev/null
SELECT eventstore.append_event('p-2', 'Person', '{"full_name": "Bob B"}') IS NOT NULL AS appended \g /dev/null
SELECT eventstore.append_event('p-1', 'Person', '{"full_name": "Ada Lovelace"}') IS NOT NULL AS appended \g /dev/null
SELECT eventstore.register_event_schema('Person', 3,
	'{"type": "object", "required": ["full_name", "country"], "additionalProperties": false,
	  "properties": {"full_name": {"type": "string"}, "country": {"type": "string"}}}',
	'es_tap_up.person_v3(jsonb)') \g /dev/null
SELECT eventstore.append_event('p-1', 'Person', '{"full_name": "Ada K", "country": "uk"}') IS NOT NULL AS appended \g /dev/null
SELECT eventstore.append_event('p-2', 'Person', '{"full_name": "Bob C", "country": "us"}') IS NOT NULL AS appended \g /dev/null

SELECT results_eq($$SELECT schema_version FROM eventstore.events ORDER BY global_position$$,
	$$VALUES (1), (1), (NULL), (1), (2), (2), (3), (3)$$,
	'events are stored at versions 1, 2 and 3 (and one of a type without a schema)');

-- What a projection over every event should receive: the events upcast,
-- as eventstore.upcast(e) returns them, in log order
CREATE FUNCTION pg_temp.received(t text) RETURNS TABLE (global_position bigint, stream_id text, revision bigint,
	schema_version integer, data jsonb)
LANGUAGE sql AS $$
	SELECT s.global_position, s.stream_id, s.revision, s.schema_version, s.data
	FROM es_tap_up.seen s WHERE s.tag = t ORDER BY s.global_position, s.seq
$$;
CREATE VIEW pg_temp.upcast_log AS
	SELECT u.global_position, u.stream_id, u.revision, u.schema_version, u.data
	FROM eventstore.events e, eventstore.upcast(e) u ORDER BY e.global_position;
CREATE VIEW pg_temp.stored_log AS
	SELECT e.global_position, e.stream_id, e.revision, e.schema_version, e.data
	FROM eventstore.events e ORDER BY e.global_position;

SELECT results_eq($$SELECT data, schema_version FROM pg_temp.upcast_log WHERE stream_id = 'p-1'$$,
	$$VALUES ('{"full_name": "Ada", "country": "unknown"}'::jsonb, 3),
			 ('{"full_name": "Ada L", "country": "unknown"}', 3),
			 ('{"full_name": "Ada Lovelace", "country": "unknown"}', 3),
			 ('{"full_name": "Ada K", "country": "uk"}', 3)$$,
	'the chain: version 1 renamed and given the default, version 2 given the default, version 3 as it is');

------------------------------------------------------------------------
-- The drain of an inline projection's skips, then inline, then a rebuild
------------------------------------------------------------------------
SELECT eventstore.start_projection('up_inline') \g /dev/null
SELECT is(eventstore.run_projection('up_inline'), 8::bigint, 'the inline projection drains its 8 skips');
SELECT results_eq($$SELECT * FROM pg_temp.received('inline')$$, $$SELECT * FROM pg_temp.upcast_log$$,
	'the drained skips reach the handler upcast to version 3');
SELECT eventstore.append_event('p-3', 'Person', '{"full_name": "Cy", "country": "fr"}') IS NOT NULL AS appended \g /dev/null
SELECT results_eq($$SELECT * FROM pg_temp.received('inline') WHERE stream_id = 'p-3'$$,
	$$SELECT * FROM pg_temp.upcast_log WHERE stream_id = 'p-3'$$,
	'an append applies it inline with the event at version 3');
SELECT eventstore.rebuild_projection('up_inline') \g /dev/null
SELECT is(eventstore.run_projection('up_inline'), 9::bigint, 'the inline projection rebuilt: 9 events');
SELECT results_eq($$SELECT * FROM pg_temp.received('inline')$$, $$SELECT * FROM pg_temp.upcast_log$$,
	'the rebuild of the inline projection receives every event upcast');

------------------------------------------------------------------------
-- Async batches: a per-event and a batch handler, upcast or not
------------------------------------------------------------------------
SELECT eventstore.create_projection('up_async', 'es_tap_up.h_async') \g /dev/null
SELECT eventstore.create_projection('up_batch', 'es_tap_up.h_batch') \g /dev/null
SELECT eventstore.create_projection('up_raw', 'es_tap_up.h_raw', upcast => false) \g /dev/null
SELECT eventstore.create_projection('up_raw_batch', 'es_tap_up.h_raw_batch', upcast => false) \g /dev/null
SELECT results_eq($$SELECT name, upcast FROM eventstore.projection_status WHERE name LIKE 'up\_%' ORDER BY name$$,
	$$VALUES ('up_async', true), ('up_batch', true), ('up_inline', true), ('up_raw', false), ('up_raw_batch', false)$$,
	'projection_status shows upcast, true unless created with upcast => false');
SET pg_eventstore.batch_size = 4;
SELECT is(eventstore.run_projection('up_async'), 9::bigint, 'the async per-event projection is built');
SELECT is(eventstore.run_projection('up_batch'), 9::bigint, 'the async batch projection is built');
SELECT is(eventstore.run_projection('up_raw'), 9::bigint, 'the per-event projection without upcasting is built');
SELECT is(eventstore.run_projection('up_raw_batch'), 9::bigint, 'the batch projection without upcasting is built');
RESET pg_eventstore.batch_size;
SELECT results_eq($$SELECT * FROM pg_temp.received('async')$$, $$SELECT * FROM pg_temp.upcast_log$$,
	'a per-event handler receives, batch after batch, every event upcast to version 3');
SELECT results_eq($$SELECT * FROM pg_temp.received('batch')$$, $$SELECT * FROM pg_temp.upcast_log$$,
	'a batch handler receives every event upcast to version 3');
SELECT results_eq($$SELECT * FROM pg_temp.received('raw')$$, $$SELECT * FROM pg_temp.stored_log$$,
	'upcast => false: a per-event handler receives the events as stored');
SELECT results_eq($$SELECT * FROM pg_temp.received('raw_batch')$$, $$SELECT * FROM pg_temp.stored_log$$,
	'upcast => false: a batch handler receives the events as stored');
SELECT results_eq($$SELECT data FROM eventstore.events WHERE stream_id = 'p-1' ORDER BY revision$$,
	$$VALUES ('{"name": "Ada"}'::jsonb), ('{"name": "Ada L"}'), ('{"full_name": "Ada Lovelace"}'),
			 ('{"full_name": "Ada K", "country": "uk"}')$$,
	'the stored events have not changed');

-- the order in which each stream's events were received, and replaying(),
-- are those of a projection that does not upcast
SELECT results_eq(
	$$SELECT tag, stream_id, array_agg(revision ORDER BY seq) FROM es_tap_up.seen
	  WHERE tag IN ('async', 'batch', 'raw', 'raw_batch') GROUP BY 1, 2 ORDER BY 1, 2$$,
	$$SELECT t, stream_id, array_agg(revision ORDER BY revision) FROM eventstore.events,
		unnest(ARRAY['async', 'batch', 'raw', 'raw_batch']) t GROUP BY 1, 2 ORDER BY 1, 2$$,
	'each stream''s events arrive in order, upcast or not');

------------------------------------------------------------------------
-- A rebuild: replaying() true, the events upcast again
------------------------------------------------------------------------
SELECT eventstore.rebuild_projection('up_async') \g /dev/null
SELECT eventstore.rebuild_projection('up_raw') \g /dev/null
DELETE FROM es_tap_up.seen WHERE tag IN ('async', 'raw');
SELECT is(eventstore.run_projection('up_async'), 9::bigint, 'the rebuild of the per-event projection');
SELECT is(eventstore.run_projection('up_raw'), 9::bigint, '... and of the one without upcasting');
SELECT results_eq($$SELECT * FROM pg_temp.received('async')$$, $$SELECT * FROM pg_temp.upcast_log$$,
	'a rebuild receives every event upcast to version 3');
SELECT results_eq($$SELECT global_position, replaying FROM es_tap_up.seen WHERE tag = 'async' ORDER BY 1$$,
	$$SELECT global_position, replaying FROM es_tap_up.seen WHERE tag = 'raw' ORDER BY 1$$,
	'replaying() answers as without upcasting');

------------------------------------------------------------------------
-- A dead letter retried (on_error => 'park'), its parked events released
------------------------------------------------------------------------
INSERT INTO es_tap_up.poison VALUES ('p-2');
SELECT eventstore.create_projection('up_park', 'es_tap_up.h_park', on_error => 'park') \g /dev/null
SELECT is(eventstore.run_projection('up_park'), 9::bigint, 'the parking projection deals with every event');
SELECT results_eq($$SELECT stream_id FROM pg_temp.received('park') GROUP BY 1 ORDER BY 1$$,
	$$VALUES ('n-1'), ('p-1'), ('p-3')$$, '... p-2 is dead-lettered and parked');
DELETE FROM es_tap_up.poison;
DELETE FROM es_tap_up.seen WHERE tag = 'park';
SELECT is(eventstore.retry_dead_letters('up_park'), 1::bigint, 'the dead letter is retried');
SELECT results_eq($$SELECT * FROM pg_temp.received('park')$$,
	$$SELECT * FROM pg_temp.upcast_log WHERE stream_id = 'p-2'$$,
	'the retried dead letter and the events parked behind it reach the handler upcast');

------------------------------------------------------------------------
-- An upcaster's error is the event's: on_error deals with it
------------------------------------------------------------------------
INSERT INTO es_tap_up.broken VALUES ('now');
SELECT eventstore.create_projection('up_skip', 'es_tap_up.h_skip', on_error => 'skip') \g /dev/null
SELECT is(eventstore.run_projection('up_skip'), 9::bigint, 'a projection whose upcaster fails deals with every event');
SELECT results_eq($$SELECT d.global_position, d.error_sqlstate, d.error_message
	FROM eventstore.projection_dead_letters d JOIN eventstore.projections p USING (projection_id)
	WHERE p.name = 'up_skip' ORDER BY 1$$,
	$$SELECT global_position, '22023', 'the version 3 upcaster is broken' FROM eventstore.events
	  WHERE schema_version < 3 ORDER BY 1$$,
	'under on_error => skip the events of versions 1 and 2 are dead letters with the upcaster''s error');
SELECT results_eq($$SELECT * FROM pg_temp.received('skip')$$,
	$$SELECT * FROM pg_temp.stored_log WHERE schema_version IS DISTINCT FROM 1 AND schema_version IS DISTINCT FROM 2$$,
	'... the events that need no upcasting are applied');
DELETE FROM es_tap_up.broken;

SELECT * FROM finish();

DROP VIEW pg_temp.upcast_log, pg_temp.stored_log;
DROP SCHEMA es_tap_up CASCADE;
DROP EXTENSION pgtap;
DROP EXTENSION pg_eventstore;
