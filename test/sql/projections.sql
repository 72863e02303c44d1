-- create_projection, drop_projection, rebuild_projection, run_projection,
-- stop_projection, start_projection, current_version and
-- eventstore.projection_status: exact results and errors.
-- Each test file starts from an empty store (the tests share one database).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
DROP SCHEMA IF EXISTS es_proj CASCADE;
DROP ROLE IF EXISTS es_proj_role;
CREATE EXTENSION pg_eventstore;
RESET client_min_messages;
\set VERBOSITY default
\pset null '(null)'

-- Read models and handlers.  Handlers run with search_path pg_catalog,
-- pg_temp, so they name everything with its schema.
CREATE SCHEMA es_proj;
CREATE TABLE es_proj.counts (event_type text PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE es_proj.totals (stream_id text PRIMARY KEY, qty bigint NOT NULL);
CREATE FUNCTION es_proj.count_event(e eventstore.events) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO es_proj.counts VALUES (e.event_type, 1)
	ON CONFLICT (event_type) DO UPDATE SET n = es_proj.counts.n + 1
$$;
-- a batch handler: the events' quantities summed per stream
CREATE FUNCTION es_proj.sum_qty(es eventstore.events[]) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO es_proj.totals
	SELECT e.stream_id, sum(COALESCE((e.data ->> 'qty')::bigint, 0))
	FROM pg_catalog.unnest(es) e GROUP BY e.stream_id
	ON CONFLICT (stream_id) DO UPDATE SET qty = es_proj.totals.qty + excluded.qty
$$;
-- fails on an event whose data has "poison": true, unless it was cured
CREATE TABLE es_proj.cured (global_position bigint PRIMARY KEY);
CREATE FUNCTION es_proj.picky(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF (e.data ->> 'poison')::boolean
	   AND NOT EXISTS (SELECT FROM es_proj.cured c WHERE c.global_position = e.global_position) THEN
		RAISE EXCEPTION 'poison event at %', e.global_position
			USING ERRCODE = 'P0042', DETAIL = 'stream ' || e.stream_id;
	END IF;
	INSERT INTO es_proj.counts VALUES (e.event_type, 1)
	ON CONFLICT (event_type) DO UPDATE SET n = es_proj.counts.n + 1;
END $$;
-- not handlers
CREATE FUNCTION es_proj.returns_int(e eventstore.events) RETURNS integer
LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION es_proj.two_args(e eventstore.events, x integer) RETURNS void
LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION es_proj.no_args() RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION es_proj.takes_jsonb(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION es_proj.returns_set(e eventstore.events) RETURNS SETOF void
LANGUAGE sql AS $$ SELECT $$;
CREATE PROCEDURE es_proj.a_procedure(e eventstore.events) LANGUAGE sql AS $$ SELECT $$;

-- Registry rows, without timestamps.
CREATE FUNCTION pg_temp.registry()
RETURNS TABLE (name text, version integer, handler text, batch boolean,
               event_types text[], mode text, on_reset text, on_error text,
               owned_by_me boolean, status text, caught_up boolean,
               "position" bigint, events_applied bigint)
LANGUAGE sql AS $$
	SELECT name, version, handler, batch_handler, event_types, mode, on_reset,
	       on_error, owner = current_user, status, caught_up,
	       "position", events_applied
	FROM eventstore.projections ORDER BY name, version
$$;
-- projection_status without its volatile columns.
CREATE FUNCTION pg_temp.status()
RETURNS TABLE (name text, version integer, mode text, status text,
               checkpoint bigint, head bigint, lag_events bigint,
               skips_pending bigint, dead_letters bigint, last_error text,
               error_position bigint, events_applied bigint)
LANGUAGE sql AS $$
	SELECT name, version, mode, status, checkpoint, head, lag_events,
	       skips_pending, dead_letters, last_error, error_position, events_applied
	FROM eventstore.projection_status ORDER BY name, version
$$;

------------------------------------------------------------------------
-- The view's columns, and the setting.
------------------------------------------------------------------------
SELECT attnum, attname, format_type(atttypid, atttypmod) AS type
FROM pg_attribute WHERE attrelid = 'eventstore.projection_status'::regclass AND attnum > 0
ORDER BY attnum;
SHOW pg_eventstore.batch_size;
SET pg_eventstore.batch_size = 0;
\echo :LAST_ERROR_SQLSTATE

------------------------------------------------------------------------
-- Over an empty log a projection starts active.
------------------------------------------------------------------------
SELECT eventstore.create_projection('counts', 'es_proj.count_event');
SELECT eventstore.create_projection('totals', 'es_proj.sum_qty', ARRAY['ItemAdded', 'ItemRemoved'],
                                    'inline', on_reset => 'TRUNCATE es_proj.totals');
SELECT * FROM pg_temp.registry();
SELECT * FROM pg_temp.status();
SELECT eventstore.current_version('counts'), eventstore.current_version('totals'),
       eventstore.current_version('nope');

-- Appending: the inline projection is applied in the append, the async one
-- waits for run_projection.
SELECT last_position FROM eventstore.append_to_stream('cart-1',
  '[{"type": "CartOpened"}, {"type": "ItemAdded", "data": {"qty": 2}},
    {"type": "ItemAdded", "data": {"qty": 3}}]');
SELECT last_position FROM eventstore.append_to_stream('cart-2',
  '[{"type": "CartOpened"}, {"type": "ItemAdded", "data": {"qty": 5}},
    {"type": "ItemRemoved", "data": {"qty": -5}}, {"type": "CheckedOut"}]');
SELECT * FROM es_proj.totals ORDER BY stream_id;
SELECT * FROM es_proj.counts ORDER BY event_type;
SELECT * FROM pg_temp.status();

-- run_projection: a given number, then the rest, then nothing.
SELECT eventstore.run_projection('counts', max_events => 2);
SELECT * FROM es_proj.counts ORDER BY event_type;
SELECT * FROM pg_temp.status();
SELECT eventstore.run_projection('counts');
SELECT eventstore.run_projection('counts');
SELECT * FROM es_proj.counts ORDER BY event_type;
-- an active inline projection has nothing to run
SELECT eventstore.run_projection('totals');
SELECT * FROM pg_temp.status();

-- The whole status of one projection, volatile columns as booleans.
SELECT name, version, mode, status, checkpoint, head, lag_events,
       lag_seconds = 0 AS no_lag, skips_pending, dead_letters, last_error,
       error_position, events_applied, owner = current_user::regrole AS owned_by_me,
       handler, event_types, on_error, log_held_by_pid, log_held_for,
       rebuild_started_at, caught_up_at IS NOT NULL AS caught_up,
       updated_at >= caught_up_at AS updated_after
FROM eventstore.projection_status WHERE name = 'counts';

------------------------------------------------------------------------
-- stop and start
------------------------------------------------------------------------
SELECT eventstore.stop_projection('counts');
SELECT last_position FROM eventstore.append_event('cart-3', 'CartOpened', '{}');
SELECT eventstore.run_projection('counts');
SELECT * FROM pg_temp.status();
SELECT eventstore.start_projection('counts');
SELECT eventstore.run_projection('counts');
SELECT * FROM es_proj.counts ORDER BY event_type;
-- a stopped inline projection records skips; started and run, it applies them
SELECT eventstore.stop_projection('totals');
SELECT eventstore.current_version('totals');
SELECT last_position FROM eventstore.append_event('cart-3', 'ItemAdded', '{"qty": 7}');
SELECT * FROM es_proj.totals ORDER BY stream_id;
SELECT global_position, drained_at IS NULL AS pending, outcome
FROM eventstore.projection_skips ORDER BY global_position;
SELECT eventstore.start_projection('totals');
SELECT * FROM pg_temp.status();
SELECT eventstore.run_projection('totals');
SELECT * FROM es_proj.totals ORDER BY stream_id;
SELECT global_position, drained_at IS NULL AS pending, outcome
FROM eventstore.projection_skips ORDER BY global_position;
SELECT * FROM pg_temp.status();

------------------------------------------------------------------------
-- rebuild: on_reset, back to the start, replayed by run_projection
------------------------------------------------------------------------
SELECT eventstore.rebuild_projection('totals');
SELECT * FROM es_proj.totals ORDER BY stream_id;
SELECT * FROM pg_temp.status();
SELECT eventstore.current_version('totals');
-- appended while rebuilding: skipped, then found already applied
SELECT last_position FROM eventstore.append_event('cart-3', 'ItemAdded', '{"qty": 1}');
SELECT * FROM pg_temp.status();
SELECT eventstore.run_projection('totals');
SELECT * FROM es_proj.totals ORDER BY stream_id;
SELECT global_position, drained_at IS NULL AS pending, outcome
FROM eventstore.projection_skips ORDER BY global_position;
SELECT * FROM pg_temp.status();
-- without on_reset, the rebuild leaves the read model to the owner
TRUNCATE es_proj.counts;
SELECT eventstore.rebuild_projection('counts');
SELECT * FROM pg_temp.status();
SELECT eventstore.run_projection('counts', NULL, 4);
SELECT * FROM pg_temp.status();
SELECT eventstore.run_projection('counts');
SELECT * FROM es_proj.counts ORDER BY event_type;
SELECT * FROM pg_temp.status();

------------------------------------------------------------------------
-- Over a non-empty log a projection starts rebuilding.  Versions.
------------------------------------------------------------------------
SELECT eventstore.create_projection('counts', 'es_proj.count_event', ARRAY['ItemAdded'], version => 2);
SELECT * FROM pg_temp.registry() WHERE name = 'counts';
SELECT eventstore.current_version('counts');
SELECT eventstore.run_projection('counts', 2);
SELECT eventstore.current_version('counts');
SELECT * FROM pg_temp.status() WHERE name = 'counts';
-- version NULL: every version
SELECT eventstore.stop_projection('counts');
SELECT name, version, status FROM eventstore.projection_status ORDER BY 1, 2;
SELECT eventstore.current_version('counts');
SELECT eventstore.start_projection('counts', 1);
SELECT eventstore.current_version('counts');
SELECT eventstore.start_projection('counts');
SELECT eventstore.current_version('counts');
-- rebuild with version NULL: the highest
SELECT eventstore.rebuild_projection('counts');
SELECT name, version, status, checkpoint FROM eventstore.projection_status ORDER BY 1, 2;
SELECT eventstore.current_version('counts');
SELECT eventstore.run_projection('counts');
SELECT name, version, status, checkpoint, events_applied FROM eventstore.projection_status ORDER BY 1, 2;
-- drop one version, then every version
SELECT eventstore.drop_projection('counts', 1);
SELECT name, version FROM eventstore.projections ORDER BY 1, 2;
SELECT eventstore.current_version('counts');
SELECT eventstore.drop_projection('counts');
SELECT name, version FROM eventstore.projections ORDER BY 1, 2;
SELECT eventstore.current_version('counts');

------------------------------------------------------------------------
-- on_error
------------------------------------------------------------------------
TRUNCATE es_proj.counts;
SELECT last_position FROM eventstore.append_to_stream('bad',
  '[{"type": "A"}, {"type": "B", "data": {"poison": true}}, {"type": "C"}]');
-- stop: the events before the poison one are applied, the projection fails
SELECT eventstore.create_projection('picky', 'es_proj.picky');
SELECT eventstore.run_projection('picky');
SELECT * FROM pg_temp.status() WHERE name = 'picky';
SELECT error_sqlstate, e.event_type AS failed_event_type
FROM eventstore.projections p JOIN eventstore.events e ON e.event_id = p.error_event_id;
SELECT * FROM es_proj.counts ORDER BY event_type;
-- a failed projection applies nothing until started
SELECT eventstore.run_projection('picky');
-- started, it tries the failed event again (it never caught up: rebuilding)
SELECT eventstore.start_projection('picky');
SELECT name, status, checkpoint, last_error, error_position FROM eventstore.projection_status;
SELECT eventstore.run_projection('picky');
SELECT name, status, checkpoint, last_error, error_position FROM eventstore.projection_status;
-- once the handler copes with it, the rest is applied
INSERT INTO es_proj.cured VALUES (12);
SELECT eventstore.start_projection('picky');
SELECT eventstore.run_projection('picky');
SELECT * FROM pg_temp.status() WHERE name = 'picky';
SELECT * FROM es_proj.counts ORDER BY event_type;
SELECT eventstore.drop_projection('picky');
-- skip: the poison event is a dead letter, the others are applied
TRUNCATE es_proj.counts, es_proj.cured;
SELECT eventstore.create_projection('picky', 'es_proj.picky', on_error => 'skip');
SELECT eventstore.run_projection('picky');
SELECT * FROM pg_temp.status() WHERE name = 'picky';
SELECT d.global_position, d.event_id = e.event_id AS same_event, d.stream_id, d.event_type,
       d.error_sqlstate, d.error_message, d.error_detail, d.error_context
FROM eventstore.projection_dead_letters d JOIN eventstore.events e USING (global_position);
SELECT * FROM es_proj.counts ORDER BY event_type;
-- dropping a projection drops its dead letters
SELECT eventstore.drop_projection('picky');
SELECT count(*) FROM eventstore.projection_dead_letters;

-- inline, stop: a failing handler fails the append, which leaves no event
INSERT INTO es_proj.cured SELECT global_position FROM eventstore.events;
SELECT eventstore.create_projection('picky', 'es_proj.picky', mode => 'inline');
SELECT eventstore.run_projection('picky');
SELECT name, status FROM eventstore.projection_status WHERE name = 'picky';
TRUNCATE es_proj.counts;
SELECT last_position FROM eventstore.append_to_stream('bad',
  '[{"type": "D"}, {"type": "D", "data": {"poison": true}}]');
SELECT count(*) AS events, eventstore.stream_revision('bad') AS revision FROM eventstore.events;
SELECT * FROM es_proj.counts;
SELECT next_expected_revision FROM eventstore.append_event('bad', 'D', '{}');
SELECT * FROM es_proj.counts;
SELECT eventstore.drop_projection('picky');
-- inline, skip: the append succeeds and the event is a dead letter
TRUNCATE es_proj.counts;
SELECT eventstore.create_projection('picky', 'es_proj.picky', ARRAY['E', 'F'], mode => 'inline',
                                    on_error => 'skip');
SELECT eventstore.run_projection('picky');
SELECT next_expected_revision FROM eventstore.append_to_stream('bad',
  '[{"type": "E", "data": {"poison": true}}, {"type": "F"}, {"type": "G"}]');
SELECT * FROM es_proj.counts ORDER BY event_type;
SELECT e.revision, d.stream_id, d.event_type, d.error_sqlstate,
       d.error_message = 'poison event at ' || d.global_position AS message
FROM eventstore.projection_dead_letters d JOIN eventstore.events e USING (global_position);
SELECT name, mode, status, lag_events, skips_pending, dead_letters, last_error
FROM eventstore.projection_status WHERE name = 'picky';
SELECT eventstore.drop_projection('picky');

------------------------------------------------------------------------
-- errors
------------------------------------------------------------------------
-- the name
SELECT eventstore.create_projection(NULL, 'es_proj.count_event');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('', 'es_proj.count_event');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection(repeat('x', 1001), 'es_proj.count_event');
\echo :LAST_ERROR_SQLSTATE
-- the handler
SELECT eventstore.create_projection('p', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', '-');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.returns_int');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.two_args');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.no_args');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.takes_jsonb');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.returns_set');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.a_procedure');
\echo :LAST_ERROR_SQLSTATE
-- event_types
SELECT eventstore.create_projection('p', 'es_proj.count_event', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.count_event', ARRAY['A', NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.count_event', '{{A}, {B}}');
\echo :LAST_ERROR_SQLSTATE
-- on_reset is parsed at creation, not first at a rebuild
SELECT eventstore.create_projection('p', 'es_proj.count_event', on_reset => 'TRUNCAT es_proj.totals');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.count_event', on_reset => 'TRUNCATE es_proj.totals; COMMIT');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.count_event', on_reset => ' ; ');
\echo :LAST_ERROR_SQLSTATE
-- mode, version, on_error, upcast
SELECT eventstore.create_projection('p', 'es_proj.count_event', mode => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.count_event', mode => 'sync');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.count_event', version => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.count_event', version => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.count_event', on_error => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.count_event', on_error => 'retry');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_projection('p', 'es_proj.count_event', upcast => NULL);
\echo :LAST_ERROR_SQLSTATE
-- already there
SELECT eventstore.create_projection('totals', 'es_proj.count_event');
\echo :LAST_ERROR_SQLSTATE
-- privileges: a handler the caller may not execute, a projection it does
-- not own, a function it was not granted
CREATE ROLE es_proj_role;
GRANT USAGE ON SCHEMA es_proj TO es_proj_role;
GRANT EXECUTE ON FUNCTION eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer),
                          eventstore.drop_projection(text, integer) TO es_proj_role;
REVOKE EXECUTE ON FUNCTION es_proj.count_event(eventstore.events) FROM PUBLIC;
SET ROLE es_proj_role;
SELECT eventstore.create_projection('p', 'es_proj.count_event');
\echo :LAST_ERROR_SQLSTATE
-- (terse: the detail names the owner, the user running the tests)
\set VERBOSITY terse
SELECT eventstore.drop_projection('totals');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT eventstore.run_projection('totals');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP OWNED BY es_proj_role;
DROP ROLE es_proj_role;
-- none of these created anything
SELECT name, version FROM eventstore.projections ORDER BY 1, 2;
-- unknown projections and versions
SELECT eventstore.drop_projection('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.drop_projection('totals', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.rebuild_projection('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.rebuild_projection('totals', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.run_projection('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.run_projection('totals', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.stop_projection('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.start_projection('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.retry_dead_letters('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.discard_dead_letters('totals', 2);
\echo :LAST_ERROR_SQLSTATE
-- the other arguments
SELECT eventstore.drop_projection(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.drop_projection('');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.run_projection('totals', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.run_projection('totals', NULL, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.run_projection('totals', NULL, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.current_version(NULL);
SELECT eventstore.retry_dead_letters(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.discard_dead_letters('totals', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.retry_dead_letters('totals', NULL, '');
\echo :LAST_ERROR_SQLSTATE
-- nothing to retry or discard: none resolved
SELECT eventstore.retry_dead_letters('totals'), eventstore.discard_dead_letters('totals', 1, 'nowhere');
-- outside any application
SELECT eventstore.replaying();
-- nothing to see from PUBLIC: the API is revoked
SELECT proname, proacl IS NOT NULL AND NOT EXISTS (
         SELECT FROM aclexplode(proacl) a WHERE a.grantee = 0) AS revoked_from_public
FROM pg_proc WHERE pronamespace = 'eventstore'::regnamespace
  AND proname IN ('create_projection', 'drop_projection', 'rebuild_projection',
                  'run_projection', 'stop_projection', 'start_projection', 'current_version',
                  'retry_dead_letters', 'discard_dead_letters')
ORDER BY proname;

SELECT eventstore.drop_projection('totals');
SELECT count(*) FROM eventstore.projection_skips;
SET client_min_messages = warning;
DROP SCHEMA es_proj CASCADE;
RESET client_min_messages;
