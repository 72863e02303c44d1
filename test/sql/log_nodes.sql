-- The log across nodes: its incarnations, the horizon, the errors for a
-- position the log does not have, and subscriber mode.  (Restores,
-- failovers, standbys and subscriptions themselves are TAP tests.)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
CREATE EXTENSION pg_eventstore;
RESET client_min_messages;
\pset null '(null)'
\set VERBOSITY default

-- A new log has no incarnation yet: its keys will be this cluster's own
-- transaction ids (offset 0), so the horizon is the snapshot's xmin.  (A
-- restored log, with its sources' rows and none of its own, is final until
-- its first write: TAP 010.)
SELECT count(*) FROM eventstore.log_incarnations;
SELECT eventstore.log_horizon() = pg_snapshot_xmin(pg_current_snapshot()) AS horizon_is_xmin;
SELECT eventstore.node_role();

-- The first append takes this cluster's row: offset 0, positions from 1,
-- keys that are the appending transaction's own id.
SELECT first_position, transaction_id = pg_current_xact_id() AS own_id
FROM eventstore.append_event('a', 'A0', '{}');
SELECT timeline_id, xid_offset, first_position, reason,
	   system_identifier = (SELECT s.system_identifier FROM pg_control_system() s) AS this_cluster,
	   log_oid = 'eventstore.events'::regclass AS this_log
FROM eventstore.log_incarnations;
SELECT eventstore.log_horizon() = pg_snapshot_xmin(pg_current_snapshot()) AS horizon_is_xmin;
SELECT count(*) FROM eventstore.append_to_stream('a', '[{"type": "A1"}, {"type": "A2"}]');
SELECT count(*) FROM eventstore.log_incarnations;
-- a rolled-back append burns position 4
BEGIN;
SELECT first_position FROM eventstore.append_event('b', 'B0', '{}');
ROLLBACK;
SELECT first_position FROM eventstore.append_event('b', 'B0', '{}');

-- A position the log never had: SE003.
SELECT * FROM eventstore.read_all(99);
\echo :LAST_ERROR_SQLSTATE

-- A later incarnation of this cluster (as a promoted standby writes it)
-- that starts after a position with nothing in between: the position was
-- lost with the old timeline, SE007, for read_all and checkpoints alike.
INSERT INTO eventstore.log_incarnations
SELECT system_identifier, log_oid, 7, 0, 1099511627776, '2026-01-02 03:04:05+00', 'new timeline'
FROM eventstore.log_incarnations;
SELECT * FROM eventstore.read_all(6);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.store_checkpoint('p', 6, NULL);
\echo :LAST_ERROR_SQLSTATE
-- ... but one with events after it in its block never named an event
SELECT * FROM eventstore.read_all(4);
\echo :LAST_ERROR_SQLSTATE
DELETE FROM eventstore.log_incarnations WHERE timeline_id = 7;
-- the same for a restore's new cluster
INSERT INTO eventstore.log_incarnations
VALUES (42, 1, 1, 0, 1099511627776, '2026-01-02 03:04:05+00', 'new cluster');
SELECT * FROM eventstore.read_all(1000);
\echo :LAST_ERROR_SQLSTATE
DELETE FROM eventstore.log_incarnations WHERE system_identifier = 42;

-- Subscriber mode: appends are refused, a missing position may still
-- arrive (SE008), and the node says what it is.
SELECT eventstore.set_subscriber_mode(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.node_role();
SELECT eventstore.set_subscriber_mode(true);
SELECT eventstore.node_role();
SELECT eventstore.append_event('a', 'A3', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(99);
\echo :LAST_ERROR_SQLSTATE
SELECT stream_id, revision, event_type FROM eventstore.read_all(NULL);
CREATE FUNCTION pg_temp.nothing(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT eventstore.create_projection('on-sub', 'pg_temp.nothing', mode => 'inline');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.set_subscriber_mode(false);
SELECT eventstore.node_role();
SELECT next_expected_revision FROM eventstore.append_event('a', 'A3', '{}');

-- The publication a subscriber needs: the events, inserts only.
SELECT eventstore.create_log_publication();
SELECT pubname, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication;
SELECT pubname, schemaname, tablename FROM pg_publication_tables;
SELECT eventstore.create_log_publication('log copy');
SELECT eventstore.create_log_publication(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pubname FROM pg_publication ORDER BY 1;
DROP PUBLICATION eventstore_log;
DROP PUBLICATION "log copy";
