-- Upgrading from 0.1.0: the log written before the upgrade stays, appends
-- work on 0.1.0 with the new library, and the projections arrive with 0.2.0;
-- the new library runs 0.2.0's projections, whose registry keeps oids, until
-- the update to 0.3.0 turns them into names without losing one and starts
-- the log's clock.
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

-- the status view keeps its grants through the update
SET client_min_messages = warning;
DROP ROLE IF EXISTS upgrade_watcher;
RESET client_min_messages;
CREATE ROLE upgrade_watcher;
GRANT SELECT ON eventstore.projection_status TO upgrade_watcher;
-- create_projection changes signature (promote is added): its grants stay
GRANT EXECUTE ON FUNCTION
	eventstore.create_projection(text, regproc, text[], text, integer, text, text)
TO upgrade_watcher WITH GRANT OPTION;
SELECT pg_typeof(handler) AS handler_type, pg_typeof(owner) AS owner_type
FROM eventstore.projections WHERE name = 'upgrade-counts';

-- 0.3.0 adds the index of each type's events in log order; an index of
-- its name that is another one fails the update, which changes nothing
CREATE INDEX events_type_order_idx ON eventstore.events (event_type);
\set SHOW_CONTEXT never
ALTER EXTENSION pg_eventstore UPDATE TO '0.3.0';
\set SHOW_CONTEXT errors
SELECT extversion FROM pg_extension WHERE extname = 'pg_eventstore';
DROP INDEX eventstore.events_type_order_idx;
-- one built beforehand (concurrently, appends going on) is kept
CREATE INDEX CONCURRENTLY events_type_order_idx
	ON eventstore.events (event_type, transaction_id, global_position);
SELECT 'eventstore.events_type_order_idx'::regclass::oid AS type_index \gset

ALTER EXTENSION pg_eventstore UPDATE TO '0.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'pg_eventstore';
SELECT 'eventstore.events_type_order_idx'::regclass::oid = :type_index AS kept_prebuilt_index;
-- the handler by its signature and the owner by name, the projection intact
SELECT handler, pg_typeof(handler) AS handler_type, owner = current_user AS owned_by_me,
       pg_typeof(owner) AS owner_type, status, "position"
FROM eventstore.projections WHERE name = 'upgrade-counts';
SELECT has_table_privilege('upgrade_watcher', 'eventstore.projection_status', 'SELECT')
       AS watcher_still_reads;
SELECT has_function_privilege('upgrade_watcher',
         'eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer)',
         'EXECUTE WITH GRANT OPTION') AS watcher_still_creates,
       has_function_privilege('public',
         'eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer)',
         'EXECUTE') AS public_creates;
-- ... as the users' own grant, not the extension's: pg_dump dumps it
SELECT i.initprivs::text NOT LIKE '%upgrade_watcher%' AS not_initial
FROM pg_init_privs i
WHERE i.objoid = 'eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer)'::regprocedure;
-- the log's clock starts in the update with this cluster's row at offset 0:
-- the keys written so far are its own transaction ids, and so are the next
SELECT xid_offset, reason,
       first_position = (SELECT max(global_position) + 1 FROM eventstore.events) AS goes_on,
       system_identifier = (SELECT s.system_identifier FROM pg_control_system() s) AS this_cluster,
       log_oid = 'eventstore.events'::regclass AS this_log
FROM eventstore.log_incarnations;
SELECT transaction_id = pg_current_xact_id() AS own_id
FROM eventstore.append_event('upgrade-1', 'Closed', '{"n": 3}');
SELECT count(*) AS incarnations FROM eventstore.log_incarnations;
SELECT eventstore.run_projection('upgrade-counts');
SELECT * FROM upgrade_counts;
SELECT status, lag_events, handler, owner = current_user::regrole AS owned_by_me
FROM eventstore.projection_status WHERE name = 'upgrade-counts';

-- event schemas arrive with 0.3.0, in this same session: the events
-- written before have no schema version (the column was added to the
-- catalog only), and a registered type is checked from then on
SELECT revision, event_type, schema_version FROM eventstore.read_stream('upgrade-1');
SELECT eventstore.register_event_schema('Closed', 1, '{"required": ["n"]}');
SELECT eventstore.append_event('upgrade-1', 'Closed', '{}');
SELECT (eventstore.append_event('upgrade-1', 'Closed', '{"n": 4}')).next_expected_revision;
SELECT revision, schema_version FROM eventstore.read_stream('upgrade-1') WHERE event_type = 'Closed';

SELECT eventstore.drop_projection('upgrade-counts');
DROP FUNCTION upgrade_count(eventstore.events);
DROP TABLE upgrade_counts;
REVOKE SELECT ON eventstore.projection_status FROM upgrade_watcher;
REVOKE EXECUTE ON FUNCTION
	eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer)
FROM upgrade_watcher CASCADE;
DROP ROLE upgrade_watcher;
