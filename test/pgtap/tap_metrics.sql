-- pgTAP: eventstore.metrics' values and who may read them (SPEC section
-- 9), and the lag of eventstore.processors.  The counters count committed
-- appends only (not rolled back, not to a savepoint rolled back, not an
-- idempotent retry); the sizes are the planner's estimates (exact after an
-- ANALYZE of a small log); a projection's and a processor's numbers are
-- those projection_status and processors show; a role granted the view
-- alone sees every projection's and processor's metrics, and nothing else.
-- (The view's names, labels and types: pg_regress metrics; the NOTIFY of
-- the readable head: TAP 024.)
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_mx CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_mx_monitor', 'es_tap_mx_owner']);
CREATE SCHEMA es_tap_mx;
CREATE ROLE es_tap_mx_monitor NOLOGIN;
CREATE ROLE es_tap_mx_owner NOLOGIN;
CREATE FUNCTION es_tap_mx.noop(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
-- fails on events whose data says poison
CREATE FUNCTION es_tap_mx.picky(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF e.data ? 'poison' THEN
		RAISE EXCEPTION 'poison at %', e.global_position;
	END IF;
END $$;
GRANT USAGE ON SCHEMA es_tap_mx TO es_tap_mx_owner;
GRANT EXECUTE ON FUNCTION es_tap_mx.noop(eventstore.events) TO es_tap_mx_owner;
GRANT EXECUTE ON FUNCTION eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer)
	TO es_tap_mx_owner;
-- a metric's value (unlabelled, or with these labels)
CREATE FUNCTION pg_temp.metric(metric text, with_labels jsonb DEFAULT '{}') RETURNS double precision
LANGUAGE sql AS $$
	SELECT m.value FROM eventstore.metrics m WHERE m.name = metric AND m.labels = with_labels
$$;
CREATE FUNCTION pg_temp.of_projection(projection text) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('projection', name, 'version', version::text, 'mode', mode)
	FROM eventstore.projections WHERE name = projection
$$;
CREATE FUNCTION pg_temp.of_processor(processor text) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('processor', processor, 'partition', 'default')
$$;
-- the positions of the log after an event in log order, counted
CREATE FUNCTION pg_temp.after(checkpoint bigint) RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM eventstore.events e, eventstore.events c
	WHERE c.global_position = checkpoint
	  AND (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)
$$;
RESET client_min_messages;

SELECT plan(37);

-- The counters: committed appends and their events
SELECT pg_temp.metric('eventstore_appends_total') AS appends0,
	   pg_temp.metric('eventstore_events_appended_total') AS events0 \gset
SELECT eventstore.append_event('mx-1', 'Opened', '{}') \g /dev/null
SELECT eventstore.append_to_stream('mx-1', '[{"type": "Added", "id": "00000000-0000-7000-8000-000000000001"},
                                             {"type": "Added"}, {"type": "Added"}]') \g /dev/null
SELECT is(pg_temp.metric('eventstore_appends_total') - :appends0, 2::double precision,
	'eventstore_appends_total counts committed appends');
SELECT is(pg_temp.metric('eventstore_events_appended_total') - :events0, 4::double precision,
	'eventstore_events_appended_total counts their events');
BEGIN;
SELECT eventstore.append_event('mx-2', 'Opened', '{}') \g /dev/null
ROLLBACK;
BEGIN;
SELECT eventstore.append_event('mx-2', 'Opened', '{}') \g /dev/null
SAVEPOINT s;
SELECT eventstore.append_to_stream('mx-2', '[{"type": "Added"}, {"type": "Added"}]') \g /dev/null
ROLLBACK TO s;
SAVEPOINT t;
SAVEPOINT u;
SELECT eventstore.append_event('mx-2', 'Added', '{}') \g /dev/null
RELEASE u;
RELEASE t;
COMMIT;
SELECT is(ARRAY[pg_temp.metric('eventstore_appends_total') - :appends0,
				pg_temp.metric('eventstore_events_appended_total') - :events0],
	ARRAY[4, 6]::double precision[],
	'a rolled-back transaction or savepoint takes its appends with it; released savepoints keep theirs');
-- an idempotent retry of the batch above appends nothing
SELECT eventstore.append_to_stream('mx-1', '[{"type": "Added", "id": "00000000-0000-7000-8000-000000000001"}]', 0) \g /dev/null
SELECT is(pg_temp.metric('eventstore_appends_total') - :appends0, 4::double precision,
	'an idempotent retry is not counted');

-- The log's sizes and positions
ANALYZE eventstore.events, eventstore.streams;
SELECT is(pg_temp.metric('eventstore_events'), (SELECT count(*) FROM eventstore.events)::double precision,
	'eventstore_events: the estimate is the count after an ANALYZE');
SELECT is(pg_temp.metric('eventstore_streams'), (SELECT count(*) FROM eventstore.streams)::double precision,
	'eventstore_streams: likewise');
SELECT is(pg_temp.metric('eventstore_log_head_position'),
	(SELECT max(global_position) FROM eventstore.events)::double precision,
	'eventstore_log_head_position: the highest position');
SELECT is(pg_temp.metric('eventstore_log_readable_position'),
	(SELECT global_position FROM eventstore.events
	 ORDER BY transaction_id DESC, global_position DESC LIMIT 1)::double precision,
	'eventstore_log_readable_position: the last event in log order, with nothing held back');
SELECT is(pg_temp.metric('eventstore_log_held_seconds'), 0::double precision,
	'eventstore_log_held_seconds: 0 with nothing held back');

-- Projections: their lag, skips, dead letters, parked events and failures
SELECT eventstore.create_projection('mx_lag', 'es_tap_mx.noop', ARRAY['Added']) \g /dev/null
SELECT eventstore.create_projection('mx_park', 'es_tap_mx.picky', on_error => 'park') \g /dev/null
SELECT eventstore.create_projection('mx_stop', 'es_tap_mx.picky') \g /dev/null
SELECT is(pg_temp.metric('eventstore_projection_lag_events', pg_temp.of_projection('mx_lag')),
	(SELECT count(*) FROM eventstore.events WHERE event_type = 'Added')::double precision,
	'a projection''s lag in events: those of its types');
SELECT ok(pg_temp.metric('eventstore_projection_lag_seconds', pg_temp.of_projection('mx_lag')) > 0,
	'and in seconds: the age of the oldest');
SELECT eventstore.append_event('mx-3', 'Opened', '{"poison": true}') \g /dev/null
SELECT eventstore.append_event('mx-3', 'Added', '{}') \g /dev/null
SELECT eventstore.append_event('mx-3', 'Added', '{}') \g /dev/null
SELECT eventstore.run_projection(p) FROM unnest(ARRAY['mx_lag', 'mx_park']) p \g /dev/null
SELECT is(pg_temp.metric('eventstore_projection_lag_events', pg_temp.of_projection('mx_lag')), 0::double precision,
	'a caught-up projection: lag 0');
SELECT is(pg_temp.metric('eventstore_projection_lag_seconds', pg_temp.of_projection('mx_lag')), 0::double precision,
	'... 0 seconds');
SELECT is(pg_temp.metric('eventstore_projection_events_applied_total', pg_temp.of_projection('mx_lag')),
	(SELECT count(*) FROM eventstore.events WHERE event_type = 'Added')::double precision,
	'events applied');
SELECT is(ARRAY[pg_temp.metric('eventstore_projection_dead_letters', pg_temp.of_projection('mx_park')),
				pg_temp.metric('eventstore_projection_parked_events', pg_temp.of_projection('mx_park')),
				pg_temp.metric('eventstore_projection_skips_pending', pg_temp.of_projection('mx_park'))],
	(SELECT ARRAY[unresolved_dead_letters, parked_events, skips_pending]::double precision[]
	 FROM eventstore.projection_status WHERE name = 'mx_park'),
	'dead letters, parked events and pending skips: as projection_status has them');
SELECT is(ARRAY[pg_temp.metric('eventstore_projection_dead_letters', pg_temp.of_projection('mx_park')),
				pg_temp.metric('eventstore_projection_parked_events', pg_temp.of_projection('mx_park'))],
	ARRAY[1, 2]::double precision[],
	'... one dead letter, and the two later events of its stream parked');
SELECT is(pg_temp.metric('eventstore_projection_failed', pg_temp.of_projection('mx_park')), 0::double precision,
	'a parking projection is not failed');
SELECT is(pg_temp.metric('eventstore_projections_failed'), 0::double precision, 'no projection failed yet');
SET client_min_messages = error;
SELECT eventstore.run_projection('mx_stop') \g /dev/null
RESET client_min_messages;
SELECT is(pg_temp.metric('eventstore_projection_failed', pg_temp.of_projection('mx_stop')), 1::double precision,
	'a failed projection: 1');
SELECT is(pg_temp.metric('eventstore_projections_failed'), 1::double precision,
	'eventstore_projections_failed counts it');

-- Processors: lag in events and seconds, in processors and in metrics
SELECT eventstore.store_checkpoint('mx-proc',
	(SELECT global_position FROM eventstore.events WHERE stream_id = 'mx-1' AND revision = 1), NULL) \g /dev/null
SELECT is((SELECT lag_events FROM eventstore.processors WHERE processor_id = 'mx-proc'),
	pg_temp.after((SELECT global_position FROM eventstore.events WHERE stream_id = 'mx-1' AND revision = 1)),
	'processors.lag_events: the events after the checkpoint in log order');
SELECT ok((SELECT lag_seconds > 0 AND lag_exact FROM eventstore.processors WHERE processor_id = 'mx-proc'),
	'processors.lag_seconds: the age of the oldest; counted exactly');
SELECT is(ARRAY[pg_temp.metric('eventstore_processor_lag_events', pg_temp.of_processor('mx-proc')),
				pg_temp.metric('eventstore_processor_lag_seconds', pg_temp.of_processor('mx-proc')) > 0,
				pg_temp.metric('eventstore_processor_running', pg_temp.of_processor('mx-proc'))]::text[],
	ARRAY[(SELECT lag_events FROM eventstore.processors WHERE processor_id = 'mx-proc')::text, 'true', '0'],
	'the metrics of a processor: its lag, and not running');
SELECT eventstore.claim_processor('mx-proc', 'here') \g /dev/null
SELECT is(pg_temp.metric('eventstore_processor_running', pg_temp.of_processor('mx-proc')), 1::double precision,
	'claimed by a live session: running');
SELECT eventstore.release_processor('mx-proc', 'here') \g /dev/null
SELECT eventstore.claim_processor('mx-new', 'here') \g /dev/null
SELECT is((SELECT lag_events FROM eventstore.processors WHERE processor_id = 'mx-new'),
	(SELECT count(*) FROM eventstore.events), 'a processor without a checkpoint lags by the whole log');
SELECT eventstore.release_processor('mx-new', 'here') \g /dev/null
SELECT eventstore.store_checkpoint('mx-proc', (SELECT max(global_position) FROM eventstore.events),
	(SELECT global_position FROM eventstore.events WHERE stream_id = 'mx-1' AND revision = 1)) \g /dev/null
SELECT is((SELECT ARRAY[lag_events::text, lag_seconds::text, lag_exact::text] FROM eventstore.processors
		   WHERE processor_id = 'mx-proc'),
	ARRAY['0', '0', 'true'], 'at the head: 0 events, 0 seconds');
-- beyond 10,000 log entries: estimated, at the count when positions run without a gap
SELECT count(eventstore.append_to_stream('mx-big-' || s,
	(SELECT jsonb_agg(jsonb_build_object('type', 'Added')) FROM generate_series(1, 10))))
FROM generate_series(1, 1001) s \g /dev/null
SELECT is((SELECT ARRAY[lag_events::text, lag_exact::text] FROM eventstore.processors
		   WHERE processor_id = 'mx-proc'),
	ARRAY['10010', 'false'], 'beyond 10,000 log entries: estimated, never counted');
SELECT is(pg_temp.metric('eventstore_processor_lag_events', pg_temp.of_processor('mx-proc')), 10010::double precision,
	'the metric likewise');
-- estimated from positions, its oldest found among the first entries after
-- the checkpoint: the age of the first of them
SELECT is((SELECT lag_seconds FROM eventstore.processors WHERE processor_id = 'mx-proc'),
	(SELECT EXTRACT(epoch FROM now() - min(created_at))::double precision FROM eventstore.events
	 WHERE stream_id LIKE 'mx-big-%'),
	'beyond 10,000 log entries: lag_seconds is the age of the oldest event after the checkpoint');

-- Who sees what
SELECT is(pg_temp.error_of('SET ROLE es_tap_mx_monitor; SELECT * FROM eventstore.metrics'),
	ARRAY['42501', 'permission denied for view metrics', NULL, NULL],
	'a role not granted the view may not read it');
RESET ROLE;
SELECT is(pg_temp.error_of('SET ROLE es_tap_mx_monitor; SELECT * FROM eventstore.metrics_rows()'),
	ARRAY['42501', 'permission denied for view metrics',
		  'eventstore.metrics_rows shows what eventstore.metrics shows, to the roles that may read it.',
		  'Ask the extension''s owner to GRANT SELECT ON eventstore.metrics to the role.'],
	'... nor call the function behind it');
RESET ROLE;
SELECT is(pg_temp.error_of('SET ROLE es_tap_mx_monitor; SELECT * FROM eventstore.processor_progress(''mx-proc'', ''default'')'),
	ARRAY['42501', 'permission denied for view processors',
		  'eventstore.processor_progress shows what eventstore.processors shows, to the roles that may read it.',
		  'Ask the extension''s owner to GRANT SELECT ON eventstore.processors to the role.'],
	'nor learn a processor''s lag');
RESET ROLE;
SELECT is(pg_temp.error_of('SET ROLE es_tap_mx_monitor; SELECT * FROM eventstore.metrics_of()'),
	ARRAY['42501', 'permission denied for function metrics_of', NULL, NULL],
	'the work, as the extension''s owner, is for the owner only');
RESET ROLE;
-- another role's projection, which the monitor is no member of
SET ROLE es_tap_mx_owner;
SELECT eventstore.create_projection('mx_theirs', 'es_tap_mx.noop') \g /dev/null
RESET ROLE;
GRANT SELECT ON eventstore.metrics TO es_tap_mx_monitor;
CREATE TEMP TABLE seen_by_owner AS SELECT name, labels FROM eventstore.metrics;
GRANT SELECT ON seen_by_owner TO es_tap_mx_monitor;
SET ROLE es_tap_mx_monitor;
SELECT set_eq('SELECT name, labels FROM eventstore.metrics', 'SELECT name, labels FROM seen_by_owner',
	'granted the view alone, a role sees every metric the owner sees');
SELECT ok((SELECT count(*) FROM eventstore.metrics
		   WHERE labels = '{"projection": "mx_theirs", "version": "1", "mode": "async"}') > 0,
	'... another role''s projection''s among them');
SELECT is((SELECT array_agg(DISTINCT k ORDER BY k) FROM eventstore.metrics, jsonb_object_keys(labels) k),
	ARRAY['mode', 'partition', 'processor', 'projection', 'version'],
	'labels name projections and processors only: no handler, event type or error');
RESET ROLE;
SELECT ok(NOT EXISTS (SELECT FROM eventstore.metrics WHERE help ~* 'poison'),
	'no error text in any metric');

SELECT * FROM finish();

SET client_min_messages = warning;
SELECT eventstore.drop_projection(n) FROM unnest(ARRAY['mx_lag', 'mx_park', 'mx_stop', 'mx_theirs']) n \g /dev/null
DROP TABLE seen_by_owner;
DROP SCHEMA es_tap_mx CASCADE;
DELETE FROM eventstore.checkpoints WHERE processor_id IN ('mx-proc', 'mx-new');
CALL pg_temp.drop_roles(ARRAY['es_tap_mx_monitor', 'es_tap_mx_owner']);
