-- pgTAP: dead letters and replays.  on_error = 'park' (a poison event is a
-- dead letter and parks the later events of its stream; other streams go
-- on; the good events around it stay applied), inline, async, in a build
-- from the start, in a drain and in a rebuild; retry_dead_letters and
-- discard_dead_letters (who and when, in log order, a retry that fails
-- again, skip projections, the permissions and errors); the status
-- columns; eventstore.replaying() in every kind of application, in a
-- nested append and after an error.
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_dl CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_dlother']);

CREATE SCHEMA es_tap_dl;
-- what each projection applied, in the order applied, with replaying()
CREATE TABLE es_tap_dl.applied (
	seq bigserial, tag text NOT NULL, stream_id text NOT NULL,
	revision bigint NOT NULL, replaying boolean NOT NULL);
-- the events a projection's handler fails on, until cured (deleted)
CREATE TABLE es_tap_dl.poison (
	tag text, stream_id text, revision bigint, note text NOT NULL DEFAULT '',
	PRIMARY KEY (tag, stream_id, revision));

CREATE FUNCTION es_tap_dl.apply(tag text, e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	why text;
BEGIN
	SELECT p.note INTO why FROM es_tap_dl.poison p
	WHERE p.tag = apply.tag AND p.stream_id = e.stream_id AND p.revision = e.revision;
	IF FOUND THEN
		RAISE EXCEPTION '%', format('poison %s:%s%s', e.stream_id, e.revision, why)
			USING ERRCODE = '22012';
	END IF;
	INSERT INTO es_tap_dl.applied (tag, stream_id, revision, replaying)
	VALUES (tag, e.stream_id, e.revision, eventstore.replaying());
END $$;
DO $do$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['in_park', 'as_park', 'as_skip', 'inner', 'bad_batch', 'lagging'] LOOP
		EXECUTE format($f$
			CREATE FUNCTION es_tap_dl.%I(e eventstore.events) RETURNS void
			LANGUAGE sql AS $b$ SELECT es_tap_dl.apply(%L, e) $b$$f$, t, t);
	END LOOP;
END $do$;
-- a batch handler, under on_error = 'park'
CREATE FUNCTION es_tap_dl.b_park(es eventstore.events[]) RETURNS void
LANGUAGE sql AS $$ SELECT es_tap_dl.apply('b_park', e) FROM pg_catalog.unnest(es) e $$;
-- a handler that appends to another stream, which an inline projection takes
CREATE FUNCTION es_tap_dl.outer(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO es_tap_dl.applied (tag, stream_id, revision, replaying)
	VALUES ('outer-before', e.stream_id, e.revision, eventstore.replaying());
	PERFORM eventstore.append_event('nested-' || e.global_position, 'Nested', '{}');
	INSERT INTO es_tap_dl.applied (tag, stream_id, revision, replaying)
	VALUES ('outer-after', e.stream_id, e.revision, eventstore.replaying());
END $$;
-- a handler failing with an error that is not the event's fault
CREATE FUNCTION es_tap_dl.conflict(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'conflict' USING ERRCODE = '40001';
END $$;

-- a projection's order of revisions applied per stream
CREATE FUNCTION pg_temp.order_of(t text, s text) RETURNS text LANGUAGE sql AS $$
	SELECT COALESCE(string_agg(revision::text, ',' ORDER BY seq), '')
	FROM es_tap_dl.applied WHERE tag = t AND stream_id = s
$$;
-- replaying() as each event of a stream was applied
CREATE FUNCTION pg_temp.replaying_of(t text, s text) RETURNS text LANGUAGE sql AS $$
	SELECT COALESCE(string_agg(revision || '=' || replaying, ',' ORDER BY seq), '')
	FROM es_tap_dl.applied WHERE tag = t AND stream_id = s
$$;
-- the projection's dead letters: stream:revision, resolution
CREATE FUNCTION pg_temp.dead_letters(t text) RETURNS TABLE (event text, resolution text)
LANGUAGE sql AS $$
	SELECT d.stream_id || ':' || e.revision, d.resolution
	FROM eventstore.projection_dead_letters d
	JOIN eventstore.projections p USING (projection_id)
	JOIN eventstore.events e USING (global_position)
	WHERE p.name = t ORDER BY d.dead_letter_id
$$;
-- its pending skip rows: stream:revision, parked, standing for a dead letter
CREATE FUNCTION pg_temp.pending(t text) RETURNS TABLE (event text, parked boolean, dead_letter boolean)
LANGUAGE sql AS $$
	SELECT s.stream_id || ':' || e.revision, s.parked, s.dead_letter_id IS NOT NULL
	FROM eventstore.projection_skips s
	JOIN eventstore.projections p USING (projection_id)
	JOIN eventstore.events e USING (global_position)
	WHERE p.name = t AND s.drained_at IS NULL ORDER BY s.global_position
$$;
CREATE FUNCTION pg_temp.append(s text, n integer DEFAULT 1) RETURNS void LANGUAGE sql AS $$
	SELECT eventstore.append_to_stream(s,
		(SELECT jsonb_agg(jsonb_build_object('type', 'Added', 'data', '{}'::jsonb)) FROM generate_series(1, n)))
$$;

SELECT plan(100);

------------------------------------------------------------------------
-- create_projection takes on_error => 'park'
------------------------------------------------------------------------
SELECT lives_ok($$SELECT eventstore.create_projection('in_park', 'es_tap_dl.in_park', mode => 'inline',
                    on_reset => $r$DELETE FROM es_tap_dl.applied WHERE tag = 'in_park'$r$, on_error => 'park')$$,
                'an inline projection with on_error park, over an empty log');
SELECT is((SELECT on_error FROM eventstore.projections WHERE name = 'in_park'), 'park', 'the registry says park');
SELECT is(pg_temp.error_of($$SELECT eventstore.create_projection('x', 'es_tap_dl.in_park', on_error => 'parked')$$),
          ARRAY['22023', 'on_error must be ''stop'', ''skip'' or ''park''', 'Got ''parked''.', 'Pass ''stop'', ''skip'' or ''park''.'],
          'another word is refused, naming the three');

------------------------------------------------------------------------
-- Inline: a poison event parks its stream; other streams go on
------------------------------------------------------------------------
INSERT INTO es_tap_dl.poison VALUES ('in_park', 'a', 1);
SELECT pg_temp.append('a');            -- a:0
SELECT pg_temp.append('b');            -- b:0
SELECT lives_ok($$SELECT pg_temp.append('a')$$, 'an append whose event is poison succeeds');   -- a:1
SELECT lives_ok($$SELECT pg_temp.append('a')$$, 'so does the next append to its stream');      -- a:2
SELECT pg_temp.append('b');            -- b:1
SELECT pg_temp.append('a');            -- a:3
SELECT is(pg_temp.order_of('in_park', 'a'), '0', 'the poison event and every later event of its stream wait');
SELECT is(pg_temp.order_of('in_park', 'b'), '0,1', 'another stream goes on');
SELECT results_eq($$SELECT * FROM pg_temp.dead_letters('in_park')$$, $$VALUES ('a:1', NULL::text)$$,
                  'the poison event is an unresolved dead letter');
SELECT results_eq($$SELECT error_sqlstate, error_message FROM eventstore.projection_dead_letters$$,
                  $$VALUES ('22012', 'poison a:1')$$, 'with its error');
SELECT results_eq($$SELECT * FROM pg_temp.pending('in_park')$$,
                  $$VALUES ('a:1', true, true), ('a:2', false, false), ('a:3', false, false)$$,
                  'its stream is parked behind it: the later appends recorded skips');
SELECT results_eq($$SELECT dead_letters, unresolved_dead_letters, parked_streams, parked_events, skips_pending, status
                    FROM eventstore.projection_status WHERE name = 'in_park'$$,
                  $$VALUES (1::bigint, 1::bigint, 1::bigint, 2::bigint, 3::bigint, 'active')$$,
                  'projection_status: one dead letter, unresolved, one stream parked with two events behind it');
SELECT is(eventstore.run_projection('in_park'), 0::bigint, 'run_projection does not drain parked events');
SELECT is(pg_temp.order_of('in_park', 'a'), '0', '... the stream still waits');

-- one append of three events, the middle one poison
INSERT INTO es_tap_dl.poison VALUES ('in_park', 'c', 1);
SELECT lives_ok($$SELECT pg_temp.append('c', 3)$$, 'an append of three events, the middle one poison');
SELECT is(pg_temp.order_of('in_park', 'c'), '0', 'the event before it stays applied, the one after it is parked');
SELECT results_eq($$SELECT * FROM pg_temp.pending('in_park') WHERE event LIKE 'c:%'$$,
                  $$VALUES ('c:1', true, true), ('c:2', true, false)$$, '... parked behind c:1');

------------------------------------------------------------------------
-- retry_dead_letters
------------------------------------------------------------------------
UPDATE es_tap_dl.poison SET note = ' still' WHERE stream_id = 'a';
SELECT is(eventstore.retry_dead_letters('in_park', stream_id => 'a'), 0::bigint,
          'a retry that fails again resolves nothing');
SELECT results_eq($$SELECT d.error_message, d.resolution, d.resolved_at FROM eventstore.projection_dead_letters d
                    WHERE d.stream_id = 'a'$$,
                  $$VALUES ('poison a:1 still', NULL::text, NULL::timestamptz)$$,
                  '... the dead letter stays unresolved, with the new error');
SELECT is(pg_temp.order_of('in_park', 'a'), '0', '... and its stream parked');
DELETE FROM es_tap_dl.poison WHERE stream_id = 'a';
SELECT is(eventstore.retry_dead_letters('in_park', NULL, 'a'), 1::bigint, 'once the handler no longer fails, the retry resolves it');
SELECT is(pg_temp.order_of('in_park', 'a'), '0,1,2,3', 'the dead letter and the events parked behind it are applied, in order');
SELECT is(pg_temp.order_of('in_park', 'c'), '0', 'another stream''s dead letter is left alone (stream_id)');
SELECT results_eq($$SELECT d.resolution, d.resolved_by = current_user, d.resolved_at IS NOT NULL AND d.resolved_at <= clock_timestamp()
                    FROM eventstore.projection_dead_letters d WHERE d.stream_id = 'a'$$,
                  $$VALUES ('retried', true, true)$$, 'who resolved it and when is recorded');
SELECT results_eq($$SELECT s.outcome, count(*) FROM eventstore.projection_skips s
                    WHERE s.stream_id = 'a' GROUP BY 1$$,
                  $$VALUES ('applied', 3::bigint)$$, 'its skip rows are drained as applied');
SELECT pg_temp.append('a');            -- a:4
SELECT is(pg_temp.order_of('in_park', 'a'), '0,1,2,3,4', 'the stream is no longer parked: an append applies it inline');

------------------------------------------------------------------------
-- discard_dead_letters
------------------------------------------------------------------------
SELECT is(eventstore.discard_dead_letters('in_park'), 1::bigint, 'discard gives up the dead letter');
SELECT is(pg_temp.order_of('in_park', 'c'), '0,2', 'the event it parked is released and applied; it is not');
SELECT results_eq($$SELECT * FROM pg_temp.dead_letters('in_park')$$,
                  $$VALUES ('a:1', 'retried'), ('c:1', 'discarded')$$, 'both stay as the record');
SELECT results_eq($$SELECT s.outcome FROM eventstore.projection_skips s JOIN eventstore.events e USING (global_position)
                    WHERE s.stream_id = 'c' ORDER BY e.revision$$,
                  $$VALUES ('discarded'), ('applied')$$, 'the dead letter''s row is discarded, the released one applied');
SELECT is(eventstore.discard_dead_letters('in_park'), 0::bigint, 'nothing is left to discard');
SELECT results_eq($$SELECT unresolved_dead_letters, parked_streams, parked_events, skips_pending
                    FROM eventstore.projection_status WHERE name = 'in_park'$$,
                  $$VALUES (0::bigint, 0::bigint, 0::bigint, 0::bigint)$$, 'nothing is parked or pending');

------------------------------------------------------------------------
-- A drain meets a poison event
------------------------------------------------------------------------
INSERT INTO es_tap_dl.poison VALUES ('in_park', 'e', 1);
SELECT eventstore.stop_projection('in_park');
SELECT pg_temp.append('e', 3);         -- e:0, e:1 poison, e:2: skipped while stopped
SELECT pg_temp.append('f');            -- f:0
SELECT eventstore.start_projection('in_park');
SELECT is(eventstore.run_projection('in_park'), 2::bigint, 'the drain applies what it can (e:0, f:0), dead-lettering e:1');
SELECT is(pg_temp.order_of('in_park', 'e') || '/' || pg_temp.order_of('in_park', 'f'), '0/0',
          'the event of the poison one''s stream after it stays parked; the other stream is applied');
SELECT pg_temp.append('e');            -- e:3
SELECT results_eq($$SELECT * FROM pg_temp.pending('in_park')$$,
                  $$VALUES ('e:1', true, true), ('e:2', true, false), ('e:3', false, false)$$,
                  'the drain parked e:2 behind e:1; the next append to e skips');
SELECT is(eventstore.run_projection('in_park'), 0::bigint, 'another drain leaves them');
SELECT is(eventstore.discard_dead_letters('in_park', 1, 'e'), 1::bigint, 'discard e:1');
SELECT is(pg_temp.order_of('in_park', 'e'), '0,2,3', 'e:2 and e:3 are released, in order');
SELECT is((SELECT count(*) FROM es_tap_dl.applied WHERE tag = 'in_park' AND replaying), 0::bigint,
          'inline applications, retries and releases are not replays');

------------------------------------------------------------------------
-- Async, created over a non-empty log: its first build is a replay
------------------------------------------------------------------------
INSERT INTO es_tap_dl.poison VALUES ('as_park', 'b', 0), ('b_park', 'b', 0);
SELECT lives_ok($$SELECT eventstore.create_projection('as_park', 'es_tap_dl.as_park', on_error => 'park')$$,
                'an async park projection over a non-empty log');
SELECT lives_ok($$SELECT eventstore.create_projection('b_park', 'es_tap_dl.b_park', on_error => 'park')$$,
                'and one with a batch handler');
SELECT is(eventstore.run_projection('as_park'), (SELECT count(*) FROM eventstore.events), 'its build deals with every event');
SELECT is(pg_temp.order_of('as_park', 'b'), '', 'the poison event''s stream is parked');
SELECT is(pg_temp.order_of('as_park', 'a'), '0,1,2,3,4', 'the other streams are applied');
SELECT results_eq($$SELECT * FROM pg_temp.pending('as_park')$$,
                  $$VALUES ('b:0', true, true), ('b:1', true, false)$$, 'the build recorded the parked event');
SELECT results_eq($$SELECT status, lag_events, parked_streams, parked_events FROM eventstore.projection_status WHERE name = 'as_park'$$,
                  $$VALUES ('active', 0::bigint, 1::bigint, 1::bigint)$$, 'caught up: parked events are no lag');
SELECT is((SELECT bool_and(replaying) FROM es_tap_dl.applied WHERE tag = 'as_park'), true,
          'the build from the start of a projection created over a non-empty log is a replay');
SELECT is(eventstore.run_projection('b_park'), (SELECT count(*) FROM eventstore.events), 'the batch handler''s build too');
SELECT is(pg_temp.order_of('b_park', 'b') || '/' || pg_temp.order_of('b_park', 'a'), '/0,1,2,3,4',
          'a batch handler parks the same way, the good events of its batch applied');
SELECT pg_temp.append('b');            -- b:2
SELECT pg_temp.append('a');            -- a:5
SELECT is(eventstore.run_projection('as_park'), 2::bigint, 'a batch deals with the new events');
SELECT is(pg_temp.order_of('as_park', 'b') || '/' || pg_temp.order_of('as_park', 'a'), '/0,1,2,3,4,5',
          'the parked stream''s new event is parked too, the other applied');
SELECT is(pg_temp.replaying_of('as_park', 'a'), '0=true,1=true,2=true,3=true,4=true,5=false',
          'an event appended after the build began is applied for the first time');
DELETE FROM es_tap_dl.poison WHERE tag IN ('as_park', 'b_park');
SELECT is(eventstore.retry_dead_letters('as_park'), 1::bigint, 'retry');
SELECT is(pg_temp.replaying_of('as_park', 'b'), '0=true,1=true,2=false',
          'the stream is applied in order; what the build dead-lettered or parked is applied as replayed');
SELECT is(eventstore.retry_dead_letters('b_park', 1), 1::bigint, 'retry of one version');
SELECT is(pg_temp.order_of('b_park', 'b'), '0,1', 'the batch handler''s stream too');

------------------------------------------------------------------------
-- on_error = 'skip': a retry applies the dead letter out of order
------------------------------------------------------------------------
INSERT INTO es_tap_dl.poison VALUES ('as_skip', 'a', 1);
SELECT lives_ok($$SELECT eventstore.create_projection('as_skip', 'es_tap_dl.as_skip', on_error => 'skip')$$, 'a skip projection');
SELECT is(eventstore.run_projection('as_skip'), (SELECT count(*) FROM eventstore.events), 'built');
SELECT is(pg_temp.order_of('as_skip', 'a'), '0,2,3,4,5', 'skip goes on with the stream');
DELETE FROM es_tap_dl.poison WHERE tag = 'as_skip';
SELECT is(eventstore.retry_dead_letters('as_skip'), 1::bigint, 'retry of a skip dead letter');
SELECT is(pg_temp.order_of('as_skip', 'a'), '0,2,3,4,5,1', '... applies it then, out of the stream''s order');
SELECT results_eq($$SELECT * FROM pg_temp.dead_letters('as_skip')$$, $$VALUES ('a:1', 'retried')$$, 'resolved');

------------------------------------------------------------------------
-- A rebuild meets the poison event again
------------------------------------------------------------------------
INSERT INTO es_tap_dl.poison VALUES ('in_park', 'd', 0);
SELECT pg_temp.append('d');            -- d:0, poison
SELECT results_eq($$SELECT * FROM pg_temp.dead_letters('in_park') WHERE event = 'd:0'$$,
                  $$VALUES ('d:0', NULL::text)$$, 'an unresolved dead letter before the rebuild');
SELECT lives_ok($$SELECT eventstore.rebuild_projection('in_park')$$, 'rebuild');
SELECT results_eq($$SELECT * FROM pg_temp.dead_letters('in_park') WHERE event = 'd:0'$$,
                  $$VALUES ('d:0', 'rebuilt')$$, 'the rebuild resolves it as rebuilt');
SELECT is((SELECT count(*) FROM pg_temp.pending('in_park')), 0::bigint, '... and gives its row back to the replay');
SELECT pg_temp.append('d');            -- d:1, skipped while rebuilding
SELECT lives_ok($$SELECT eventstore.run_projection('in_park')$$, 'the replay');
SELECT results_eq($$SELECT * FROM pg_temp.dead_letters('in_park') WHERE resolution IS NULL$$,
                  $$VALUES ('c:1', NULL::text), ('e:1', NULL::text), ('d:0', NULL::text)$$,
                  'it meets the poison events again: new dead letters (c:1 and e:1 were discarded, not cured)');
SELECT is(pg_temp.order_of('in_park', 'd') || '/' || pg_temp.order_of('in_park', 'c'), '/0',
          'their streams are parked: the event skipped during the rebuild too');
SELECT is(pg_temp.order_of('in_park', 'a'), '0,1,2,3,4,5', 'the other streams are replayed');
SELECT pg_temp.append('d');            -- d:2, inline, behind d:0
SELECT is(pg_temp.order_of('in_park', 'd'), '', 'an append to the parked stream after the rebuild is parked too');
DELETE FROM es_tap_dl.poison WHERE tag = 'in_park';
SELECT is(eventstore.retry_dead_letters('in_park'), 3::bigint, 'retry all three');
SELECT is(pg_temp.replaying_of('in_park', 'd'), '0=true,1=false,2=false',
          'the stream in order: the event the replay met is replayed, the later ones are not');
SELECT is(pg_temp.order_of('in_park', 'c') || '/' || pg_temp.order_of('in_park', 'e'), '0,1,2/0,1,2,3', 'c and e in order');
SELECT is(pg_temp.replaying_of('in_park', 'b'), '0=true,1=true,2=true', 'a rebuild is a replay');

------------------------------------------------------------------------
-- replaying(): outside any application, nested appends, errors
------------------------------------------------------------------------
SELECT is(eventstore.replaying(), false, 'replaying() is false outside any application');
SELECT lives_ok($$SELECT eventstore.create_projection('inner', 'es_tap_dl.inner', ARRAY['Nested'], mode => 'inline')$$, 'inner');
SELECT is(eventstore.run_projection('inner'), 0::bigint, '... built: there is no Nested event yet');
SELECT lives_ok($$SELECT eventstore.create_projection('outer', 'es_tap_dl.outer', ARRAY['Added'], version => 1)$$, 'outer');
SELECT lives_ok($$SELECT eventstore.run_projection('outer', max_events => 1)$$, 'the outer build applies one event');
SELECT results_eq($$SELECT tag, replaying FROM es_tap_dl.applied WHERE tag IN ('outer-before', 'inner', 'outer-after') ORDER BY seq$$,
                  $$VALUES ('outer-before', true), ('inner', false), ('outer-after', true)$$,
                  'an inline projection applied by an append from a replayed handler is not replaying; the outer one still is after');
SELECT lives_ok($$SELECT eventstore.create_projection('conflict', 'es_tap_dl.conflict', on_error => 'skip')$$, 'a handler failing with 40001');
SELECT throws_ok($$SELECT eventstore.run_projection('conflict')$$, '40001', 'conflict', 'its replay fails as a whole');
SELECT is(eventstore.replaying(), false, 'replaying() is false again after the error');

------------------------------------------------------------------------
-- replaying() in a rebuild: again for the events the projection had
-- applied, for the first time for those it had still to apply
------------------------------------------------------------------------
CREATE FUNCTION pg_temp.last_applied(t text, n integer) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(revision || '=' || replaying, ',' ORDER BY seq)
	FROM (SELECT * FROM es_tap_dl.applied WHERE tag = t ORDER BY seq DESC LIMIT n) x
$$;
SELECT lives_ok($$SELECT eventstore.create_projection('lagging', 'es_tap_dl.lagging', ARRAY['Late'])$$,
                'an async projection of events appended after it');
SELECT eventstore.append_event('late', 'Late', '{}') IS NOT NULL FROM generate_series(1, 3);
SELECT is(eventstore.run_projection('lagging'), 3::bigint, 'it applies three events');
SELECT is(pg_temp.replaying_of('lagging', 'late'), '0=false,1=false,2=false', 'for the first time');
SELECT eventstore.append_event('late', 'Late', '{}') IS NOT NULL FROM generate_series(1, 2);
SELECT lives_ok($$SELECT eventstore.rebuild_projection('lagging')$$, 'rebuilt while two events wait');
SELECT is(eventstore.run_projection('lagging'), 5::bigint, 'the rebuild applies the five');
SELECT is(pg_temp.last_applied('lagging', 5), '0=true,1=true,2=true,3=false,4=false',
          'the three it had applied are replayed; the two it had not are applied for the first time');
SELECT lives_ok($$SELECT eventstore.rebuild_projection('lagging')$$, 'rebuilt again');
SELECT is(eventstore.run_projection('lagging', max_events => 1), 1::bigint, 'that replay applies one event');
SELECT eventstore.append_event('late', 'Late', '{}') IS NOT NULL;
SELECT lives_ok($$SELECT eventstore.rebuild_projection('lagging')$$, 'rebuilt in the middle of that replay');
SELECT is(eventstore.run_projection('lagging'), 6::bigint, 'the last rebuild applies the six');
SELECT is(pg_temp.last_applied('lagging', 6), '0=true,1=true,2=true,3=true,4=true,5=false',
          'what any build before had applied is replayed; the new event is not');

------------------------------------------------------------------------
-- Who may, and errors
------------------------------------------------------------------------
CREATE ROLE es_tap_dlother NOLOGIN;
GRANT EXECUTE ON FUNCTION eventstore.retry_dead_letters(text, integer, text),
	eventstore.discard_dead_letters(text, integer, text) TO es_tap_dlother;
SET ROLE es_tap_dlother;
SELECT is(pg_temp.error_of($$SELECT eventstore.retry_dead_letters('in_park')$$),
          ARRAY['42501', 'must be owner of projection "in_park" to retry the dead letters of it',
                'Projection "in_park" version 1 is owned by role ' || session_user || '.',
                'Ask its owner, or a member of that role, to do it.'],
          'only the owner may retry');
SELECT throws_ok($$SELECT eventstore.discard_dead_letters('in_park')$$, '42501', NULL, '... or discard');
RESET ROLE;
REVOKE ALL ON FUNCTION eventstore.retry_dead_letters(text, integer, text),
	eventstore.discard_dead_letters(text, integer, text) FROM es_tap_dlother;
SELECT throws_ok($$SELECT eventstore.retry_dead_letters('nope')$$, 'SE005', 'projection "nope" does not exist', 'an unknown projection');
SELECT throws_ok($$SELECT eventstore.discard_dead_letters('in_park', 7)$$, 'SE005', 'projection "in_park" version 7 does not exist', 'an unknown version');
SELECT throws_ok($$SELECT eventstore.retry_dead_letters(NULL)$$, '22004', 'name must not be null', 'a NULL name');
SELECT throws_ok($$SELECT eventstore.retry_dead_letters('in_park', stream_id => '')$$, '22023', 'stream_id must not be empty', 'an empty stream id');

SELECT * FROM finish();
SELECT eventstore.drop_projection(name) FROM (SELECT DISTINCT name FROM eventstore.projections) p;
DROP SCHEMA es_tap_dl CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_dlother']);
DROP EXTENSION pgtap;
DROP EXTENSION pg_eventstore;
