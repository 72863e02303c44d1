-- Upgrading from 0.1.0: the log written before the upgrade stays, appends
-- work on 0.1.0 with the new library, and the projections arrive with 0.2.0.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
CREATE EXTENSION pg_eventstore VERSION '0.1.0';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'pg_eventstore';

-- the library serves 0.1.0's API, with no projections to apply
SELECT stream_id, next_expected_revision, first_position
FROM eventstore.append_event('upgrade-1', 'Opened', '{"n": 1}');
SELECT to_regclass('eventstore.projections') IS NULL AS no_registry_yet;

ALTER EXTENSION pg_eventstore UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'pg_eventstore';
SELECT stream_id, revision, event_type, data FROM eventstore.read_stream('upgrade-1');

-- the objects 0.2.0 adds belong to the extension
SELECT pg_describe_object(classid, objid, objsubid) AS object
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_eventstore')
  AND deptype = 'e'
  AND pg_describe_object(classid, objid, objsubid) ~ 'projection|dead_letter|skips|current_version|worker_activity|log_holder'
ORDER BY 1;

-- a projection created after the upgrade backfills the log written before it
CREATE TABLE upgrade_counts (stream_id text PRIMARY KEY, n integer NOT NULL);
CREATE FUNCTION upgrade_count(e eventstore.events) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO public.upgrade_counts VALUES (e.stream_id, 1)
	ON CONFLICT (stream_id) DO UPDATE SET n = public.upgrade_counts.n + 1
$$;
SELECT eventstore.create_projection('upgrade-counts', 'upgrade_count');
SELECT status FROM eventstore.projection_status WHERE name = 'upgrade-counts';
SELECT eventstore.append_event('upgrade-1', 'Renamed', '{"n": 2}') IS NOT NULL AS appended;
SELECT eventstore.run_projection('upgrade-counts');
SELECT * FROM upgrade_counts;
SELECT status, lag_events FROM eventstore.projection_status WHERE name = 'upgrade-counts';

SELECT eventstore.drop_projection('upgrade-counts');
DROP FUNCTION upgrade_count(eventstore.events);
DROP TABLE upgrade_counts;
