-- pgTAP: what a handler cannot do to the session that runs it, and what
-- happens when it cannot run.  A handler's SET (of search_path, of a
-- timeout) does not outlive its call, whether an append or run_projection
-- called it; handlers see their creator's search_path (pg_temp last), not
-- their caller's; a dropped handler neither
-- crashes nor loses events; a transient error (a serialization failure,
-- a cancel) is not taken for a poison event.
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_safe CASCADE;
CREATE SCHEMA es_tap_safe;
CREATE TABLE es_tap_safe.seen (tag text NOT NULL, global_position bigint NOT NULL,
							   search_path text NOT NULL);
RESET client_min_messages;

SELECT plan(19);

-- A handler that changes session settings, as an attacker's would.
CREATE FUNCTION es_tap_safe.meddle(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO es_tap_safe.seen VALUES ('meddle', e.global_position,
										 current_setting('search_path'));
	PERFORM set_config('search_path', 'es_tap_safe, pg_catalog', false);
	PERFORM set_config('statement_timeout', '1ms', false);
END $$;

SET search_path = public;
SET statement_timeout = 0;
SELECT eventstore.create_projection('meddle-inline', 'es_tap_safe.meddle',
	ARRAY['Meddle'], 'inline');
SELECT eventstore.append_event('m-1', 'Meddle', '{}') IS NOT NULL AS appended \g /dev/null
SELECT is(current_setting('search_path'), 'public',
	'an inline handler''s search_path does not outlive the append');
SELECT is(current_setting('statement_timeout'), '0',
	'nor does its statement_timeout');
SELECT is((SELECT search_path FROM es_tap_safe.seen WHERE global_position = 1),
	'public, pg_temp', 'the inline handler ran with its creator''s search_path, pg_temp last');

SELECT eventstore.create_projection('meddle-async', 'es_tap_safe.meddle', ARRAY['Meddle']);
SELECT is(eventstore.run_projection('meddle-async'), 1::bigint, 'the async projection applies the event');
SELECT is(current_setting('search_path'), 'public',
	'an async handler''s search_path does not outlive run_projection');
SELECT is(current_setting('statement_timeout'), '0',
	'nor does its statement_timeout');
SELECT is((SELECT count(*) FROM es_tap_safe.seen WHERE search_path = 'public, pg_temp'),
	2::bigint, 'both handler calls saw their creator''s search_path');

-- A dropped handler: no crash, no lost event.
CREATE FUNCTION es_tap_safe.gone(e eventstore.events) RETURNS void
LANGUAGE sql AS $$ INSERT INTO es_tap_safe.seen VALUES ('gone', e.global_position, '') $$;
SELECT eventstore.create_projection('gone-inline', 'es_tap_safe.gone', ARRAY['Gone'], 'inline');
SELECT eventstore.create_projection('gone-async', 'es_tap_safe.gone', ARRAY['Gone'],
	version => 2);
SELECT eventstore.run_projection('gone-async') \g /dev/null
DROP FUNCTION es_tap_safe.gone(eventstore.events);
SELECT lives_ok($$SELECT eventstore.append_event('g-1', 'Gone', '{}')$$,
	'an append lives when an inline handler was dropped');
SELECT lives_ok($$SELECT eventstore.append_event('g-1', 'Gone', '{}')$$,
	'and the next one too');
SELECT is((SELECT count(*) FROM eventstore.projection_skips s
		   JOIN eventstore.projections p USING (projection_id)
		   WHERE p.name = 'gone-inline' AND s.drained_at IS NULL),
	2::bigint, 'its events are recorded as skips, not lost');
SET client_min_messages = error;
SELECT is(eventstore.run_projection('gone-async'), 0::bigint,
	'run_projection over a dropped handler applies nothing');
SELECT is(eventstore.run_projection('gone-inline'), 0::bigint,
	'nor does the drain of the inline one');
RESET client_min_messages;
SELECT results_eq($$SELECT name, status, last_error, error_position FROM eventstore.projection_status
				   WHERE name LIKE 'gone-%' ORDER BY name, version$$,
	$$VALUES ('gone-async', 'failed', 'the handler es_tap_safe.gone(eventstore.events) of projection "gone-async" version 2 does not exist', NULL::bigint),
			 ('gone-inline', 'failed', 'the handler es_tap_safe.gone(eventstore.events) of projection "gone-inline" version 1 does not exist', NULL::bigint)$$,
	'both are failed, saying why, at no event''s position');

-- Transient errors are not poison: nothing is dead-lettered, the run fails
-- and is tried again later.
CREATE FUNCTION es_tap_safe.flaky(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF (e.data->>'mode') = 'serialization' THEN
		RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001';
	END IF;
	INSERT INTO es_tap_safe.seen VALUES ('flaky', e.global_position, '');
END $$;
SELECT eventstore.create_projection('flaky', 'es_tap_safe.flaky', ARRAY['Flaky'],
	on_error => 'skip');
SELECT eventstore.append_event('f-1', 'Flaky', '{"mode": "serialization"}') \g /dev/null
SELECT throws_ok($$SELECT eventstore.run_projection('flaky')$$, '40001', NULL,
	'a serialization failure in a handler fails the run, under on_error = skip too');
SELECT is((SELECT count(*) FROM eventstore.projection_dead_letters), 0::bigint,
	'and is not recorded as a dead letter');
SELECT isnt((SELECT status FROM eventstore.projection_status WHERE name = 'flaky'), 'failed',
	'the projection is not failed: it is run again later');
SET statement_timeout = '200ms';
CREATE OR REPLACE FUNCTION es_tap_safe.flaky(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); END $$;
-- a cancel cannot be caught by throws_ok: the statement itself fails, and
-- anything but a cancel stops the file short of its plan
\set ON_ERROR_STOP off
\set VERBOSITY terse
SELECT eventstore.run_projection('flaky');
\set VERBOSITY default
\set ON_ERROR_STOP on
SELECT :'SQLSTATE' = '57014' AS cancelled \gset
\if :cancelled
\else
\echo '# run_projection was not cancelled by statement_timeout'
\quit
\endif
RESET statement_timeout;
SELECT is((SELECT count(*) FROM eventstore.projection_dead_letters), 0::bigint,
	'and dead-letters nothing');

-- Drains are bounded by max_events like replays, archived skips included:
-- small calls get through a backlog of skips in a bounded number of calls.
CREATE TABLE es_tap_safe.counts (stream_id text PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION es_tap_safe.count_event(e eventstore.events) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO es_tap_safe.counts AS c VALUES (e.stream_id, 1)
	ON CONFLICT (stream_id) DO UPDATE SET n = c.n + 1
$$;
SELECT eventstore.create_projection('drained', 'es_tap_safe.count_event', ARRAY['Counted'],
	'inline', on_reset => 'TRUNCATE es_tap_safe.counts');
SELECT count(eventstore.append_event('c-' || (g % 5), 'Counted', '{}'))
FROM generate_series(1, 20) g \g /dev/null
SELECT eventstore.run_projection('drained') \g /dev/null
SELECT eventstore.rebuild_projection('drained');
SELECT count(eventstore.append_event('c-' || (g % 5), 'Counted', '{}'))
FROM generate_series(1, 30) g \g /dev/null
CREATE TEMP TABLE calls AS SELECT 0 AS n;
DO $$
BEGIN
	FOR i IN 1..100 LOOP
		PERFORM eventstore.run_projection('drained', max_events => 3);
		UPDATE calls SET n = i;
		EXIT WHEN (SELECT status = 'active' AND skips_pending = 0
				   FROM eventstore.projection_status WHERE name = 'drained');
	END LOOP;
END $$;
SELECT cmp_ok((SELECT n FROM calls), '<=', 30,
	'50 events replayed and 30 skips drained take at most 30 calls of max_events 3');
SELECT results_eq($$SELECT stream_id, n FROM es_tap_safe.counts ORDER BY 1$$,
	$$SELECT stream_id, count(*) FROM eventstore.events WHERE event_type = 'Counted'
	  GROUP BY 1 ORDER BY 1$$,
	'and the read model equals the log');

SELECT * FROM finish();

SET client_min_messages = warning;
DROP SCHEMA es_tap_safe CASCADE;
DROP EXTENSION pgtap CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
