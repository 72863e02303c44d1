-- pgTAP: projection_status's lag and rebuild progress, cheap on a log of
-- any size (SPEC section 3).  lag_events is an exact count while a
-- projection's backlog spans at most 10,000 log entries (lag_exact), and
-- estimated beyond: at the count when positions run without a gap, above
-- it by the positions aborted appends took, near it for one type.  0 and
-- exact when caught up.  While rebuilding, the share of the replay done
-- and a time left; NULL otherwise.  No JIT inside.  (Across a block of
-- positions, after a restore: TAP 015.)
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_st CASCADE;
CREATE SCHEMA es_tap_st;
CREATE FUNCTION es_tap_st.noop(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
-- n events in streams of 10, every fourth of type B
CREATE FUNCTION pg_temp.load(n integer, tag text) RETURNS void LANGUAGE sql AS $$
	SELECT count(eventstore.append_to_stream(tag || s,
		(SELECT jsonb_agg(jsonb_build_object('type', CASE WHEN i % 4 = 0 THEN 'B' ELSE 'A' END,
											 'data', '{}'::jsonb))
		 FROM generate_series(1, 10) i)))
	FROM generate_series(1, n / 10) s
$$;
-- name's lag_events, lag_exact and the exact count, as text
CREATE FUNCTION pg_temp.lag(projection text) RETURNS text LANGUAGE sql AS $$
	SELECT s.lag_events || ' ' || s.lag_exact || ' ' ||
		   (SELECT count(*) FROM eventstore.events e
			WHERE (e.transaction_id, e.global_position) > (p.transaction_id, p."position")
			  AND (p.event_types IS NULL OR e.event_type = ANY (p.event_types)))
	FROM eventstore.projection_status s JOIN eventstore.projections p USING (name, version)
	WHERE s.name = projection
$$;
RESET client_min_messages;

SELECT plan(14);

SELECT eventstore.create_projection('every', 'es_tap_st.noop') \g /dev/null
SELECT eventstore.create_projection('typed', 'es_tap_st.noop', ARRAY['B']) \g /dev/null
SELECT is(pg_temp.lag('every'), '0 true 0', 'an empty log: 0, exact');
SELECT pg_temp.load(10000, 'a') \g /dev/null
SELECT is(pg_temp.lag('every'), '10000 true 10000', '10,000 entries past the checkpoint: counted');
SELECT pg_temp.load(10, 'b') \g /dev/null
SELECT is(pg_temp.lag('every'), '10010 false 10010', 'more: estimated, at the count when positions run without a gap');
SELECT pg_temp.load(5000, 'c') \g /dev/null
SELECT is(pg_temp.lag('every'), '15010 false 15010', '... however many more');
SELECT ok((SELECT abs(split_part(l, ' ', 1)::bigint - split_part(l, ' ', 3)::bigint)
				  <= 0.05 * split_part(l, ' ', 3)::bigint
			  AND split_part(l, ' ', 2) = 'false'
		   FROM pg_temp.lag('typed') l),
	'one type: estimated from its share of the entries counted, near the count');
-- an aborted append takes positions it does not keep
BEGIN;
SELECT pg_temp.load(100, 'x') \g /dev/null
ROLLBACK;
SELECT pg_temp.load(10, 'd') \g /dev/null
SELECT is(pg_temp.lag('every'), '15120 false 15020',
	'beyond the count, the positions aborted appends took count too (100 here)');

SELECT is(eventstore.run_projection('every', max_events => 15020 - 50), 14970::bigint, 'run to 50 short of the head');
SELECT is(pg_temp.lag('every'), '50 true 50', 'then counted again');
SELECT is(eventstore.run_projection('every'), 50::bigint, 'run to the end');
SELECT results_eq($$SELECT lag_events, lag_exact, lag_seconds, rebuild_progress, rebuild_time_left
				   FROM eventstore.projection_status WHERE name = 'every'$$,
	$$VALUES (0::bigint, true, 0::double precision, NULL::double precision, NULL::interval)$$,
	'caught up: 0, exact, no progress shown');

SELECT eventstore.rebuild_projection('every') \g /dev/null
SELECT is(eventstore.run_projection('every', max_events => 5000), 5000::bigint, 'rebuilt, and run for a third of the log');
SELECT ok((SELECT status = 'rebuilding' AND rebuild_progress BETWEEN 0.32 AND 0.34
		   AND rebuild_time_left >= interval '0'
		   FROM eventstore.projection_status WHERE name = 'every'),
	'rebuilding: a third done (of the positions up to the replay''s target), a time left');
SELECT is(eventstore.run_projection('every'), 15020::bigint - 5000, 'the rest');

SELECT ok((SELECT proconfig @> ARRAY['jit=off'] FROM pg_proc
		   WHERE oid = 'eventstore.projection_progress_of(integer)'::regprocedure),
	'what the view runs per projection never compiles with JIT');

SELECT * FROM finish();
SET client_min_messages = warning;
SELECT eventstore.drop_projection(n) FROM unnest(ARRAY['every', 'typed']) n \g /dev/null
DROP SCHEMA es_tap_st CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
DROP EXTENSION pgtap CASCADE;
