-- pgTAP: who may append and read, the append-only log for every role, and
-- SECURITY DEFINER functions that a caller's search_path cannot subvert.
\ir setup.psql
-- Start clean: the schema and the roles a run stopped half-way leaves.
DROP SCHEMA IF EXISTS es_tap_evil CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_nobody', 'es_tap_writer', 'es_tap_reader', 'es_tap_admin']);

CREATE ROLE es_tap_nobody NOLOGIN;
CREATE ROLE es_tap_writer NOLOGIN;
CREATE ROLE es_tap_reader NOLOGIN;
CREATE ROLE es_tap_admin NOLOGIN;
GRANT EXECUTE ON FUNCTION eventstore.append_to_stream(text, jsonb, bigint) TO es_tap_writer;
GRANT EXECUTE ON FUNCTION eventstore.read_all(bigint, integer, text[], integer, integer),
                          eventstore.read_stream(text, bigint, integer, boolean) TO es_tap_reader;
-- an administrator given every table privilege on the log
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON eventstore.events TO es_tap_admin;
-- a place where the writer may create objects of its own
CREATE SCHEMA es_tap_evil;
GRANT USAGE, CREATE ON SCHEMA es_tap_evil TO es_tap_writer;

SELECT plan(78);

------------------------------------------------------------------------
-- The catalog: SECURITY DEFINER, a pinned search_path, nothing for PUBLIC.
------------------------------------------------------------------------
SELECT results_eq(
  $$SELECT proname::text COLLATE "default", prosecdef, proconfig COLLATE "default" FROM pg_proc
    WHERE pronamespace = 'eventstore'::regnamespace
      AND proname IN ('append_to_stream', 'append_event', 'read_stream', 'read_all', 'stream_revision')
    ORDER BY proname$$,
  $$VALUES ('append_event', true, '{"search_path=pg_catalog, pg_temp"}'::text[]),
           ('append_to_stream', true, '{"search_path=pg_catalog, pg_temp"}'),
           ('read_all', true, '{"search_path=pg_catalog, pg_temp"}'),
           ('read_stream', true, '{"search_path=pg_catalog, pg_temp"}'),
           ('stream_revision', true, '{"search_path=pg_catalog, pg_temp"}')$$,
  'the API functions are SECURITY DEFINER with search_path pinned to pg_catalog, pg_temp');
SELECT is(ARRAY(SELECT proname::text FROM pg_proc
                WHERE pronamespace = 'eventstore'::regnamespace AND prosecdef
                  AND (proconfig IS NULL OR NOT proconfig @> '{"search_path=pg_catalog, pg_temp"}')
                ORDER BY 1),
          '{}'::text[], 'no SECURITY DEFINER function of the schema lacks the pinned search_path');
SELECT is(ARRAY(SELECT DISTINCT proowner FROM pg_proc
                WHERE pronamespace = 'eventstore'::regnamespace AND prosecdef),
          ARRAY[(SELECT relowner FROM pg_class WHERE oid = 'eventstore.events'::regclass)],
          'the SECURITY DEFINER functions belong to the owner of the log');
SELECT is(ARRAY(SELECT proname::text FROM pg_proc
                WHERE pronamespace = 'eventstore'::regnamespace
                  AND has_function_privilege('es_tap_nobody', oid, 'EXECUTE')
                ORDER BY 1),
          ARRAY['backfill_data', 'backfill_events', 'backfill_horizon', 'backfill_schema_version', 'backfill_types', 'backfill_upcasts', 'compare_read_models', 'log_holder', 'log_horizon', 'metrics_rows', 'node_role', 'processor_claim_key', 'processor_progress', 'projection_progress', 'replaying', 'stream_partition', 'uuid_v7', 'worker_activity'],
          'a role without grants may execute only the data-free helpers, compare_read_models, which reads as its caller, projection_progress, processor_progress and metrics_rows, which answer only the readers of projection_status, processors and metrics, replaying(), which tells a handler nothing but whether it replays, and backfill_events() and its helpers, which answer only inside a backfill (SE020 otherwise)');
SET ROLE es_tap_nobody;
SELECT is(pg_temp.error_of($$SELECT eventstore.projection_progress(1)$$),
          ARRAY['42501', 'permission denied for view projection_status',
                'eventstore.projection_progress shows what eventstore.projection_status shows, to the roles that may read it.',
                'Ask the extension''s owner to GRANT SELECT ON eventstore.projection_status to the role.'],
          '... which refuses a role that may not');
RESET ROLE;
SELECT ok(NOT has_table_privilege('es_tap_nobody', 'eventstore.events',
                                  'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
          'a role without grants has no privilege on eventstore.events');
SELECT ok(NOT has_table_privilege('es_tap_nobody', 'eventstore.streams',
                                  'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
          'a role without grants has no privilege on eventstore.streams');
SELECT ok(NOT has_sequence_privilege('es_tap_nobody', 'eventstore.global_position_seq', 'USAGE, SELECT, UPDATE'),
          'a role without grants has no privilege on the position sequence');
SELECT ok(has_schema_privilege('es_tap_nobody', 'eventstore', 'USAGE')
          AND NOT has_schema_privilege('es_tap_nobody', 'eventstore', 'CREATE'),
          'everyone may use the schema, nobody but its owner create in it');
SELECT results_eq(
  $$SELECT tgname::text COLLATE "default", tgenabled::text FROM pg_trigger
    WHERE tgrelid = 'eventstore.events'::regclass AND NOT tgisinternal ORDER BY tgname$$,
  $$VALUES ('events_append_only', 'A'), ('events_from_publisher', 'D'), ('events_no_truncate', 'A')$$,
  'the append-only triggers fire ALWAYS, whatever session_replication_role; the subscriber''s is off until set_subscriber_mode');

------------------------------------------------------------------------
-- A caller's search_path cannot subvert the SECURITY DEFINER functions.
-- These are the first appends and reads of this session, so the functions
-- also prepare their statements under the caller's search_path.
------------------------------------------------------------------------
SET ROLE es_tap_writer;
CREATE TABLE es_tap_evil.calls (what text);
CREATE FUNCTION es_tap_evil.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN INSERT INTO es_tap_evil.calls VALUES ('nextval'); RETURN 1000000; END $$;
CREATE FUNCTION es_tap_evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO es_tap_evil.calls VALUES ('='); RETURN true; END $$;
CREATE OPERATOR es_tap_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = es_tap_evil.text_eq);
CREATE FUNCTION es_tap_evil.int8_plus(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN INSERT INTO es_tap_evil.calls VALUES ('+'); RETURN $1 OPERATOR(pg_catalog.+) $2 OPERATOR(pg_catalog.+) 1000; END $$;
CREATE OPERATOR es_tap_evil.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = es_tap_evil.int8_plus);
CREATE FUNCTION es_tap_evil.pg_snapshot_xmin(pg_snapshot) RETURNS xid8 LANGUAGE plpgsql AS $$
BEGIN INSERT INTO es_tap_evil.calls VALUES ('pg_snapshot_xmin'); RETURN '999999999'::xid8; END $$;
GRANT INSERT ON es_tap_evil.calls TO PUBLIC;

SET search_path = es_tap_evil, pg_catalog, public;
-- the trap is armed: unqualified names reach the writer's objects
CREATE TEMP TABLE trap AS
SELECT 'a'::text = 'b'::text AS eq, nextval('eventstore.global_position_seq') AS nv, 1::bigint + 1::bigint AS plus;
CREATE TEMP TABLE evil_1 AS
SELECT * FROM eventstore.append_to_stream('evil-1', '[{"type": "E1"}, {"type": "E2"}]');
CREATE TEMP TABLE evil_2 AS
SELECT * FROM eventstore.append_to_stream('evil-2', '[{"type": "E3", "id": "0190e3a0-0000-7000-8000-0000000e0001"}]', -1);
CREATE TEMP TABLE evil_3 AS
SELECT * FROM eventstore.append_to_stream('evil-1', '[{"type": "E4"}]', 1);
CREATE TEMP TABLE evil_4 AS
SELECT * FROM eventstore.append_to_stream('evil-2', '[{"type": "E3", "id": "0190e3a0-0000-7000-8000-0000000e0001"}]', -1);
RESET search_path;
SELECT is((SELECT (eq, nv, plus)::text FROM trap), '(t,1000000,1002)',
          'control: under the writer''s search_path, =, nextval and + are the writer''s');
DELETE FROM es_tap_evil.calls;
RESET ROLE;

SET search_path = es_tap_evil, pg_catalog, public;
CREATE TEMP TABLE evil_read_all AS SELECT * FROM eventstore.read_all(NULL, NULL);
CREATE TEMP TABLE evil_read_stream AS SELECT * FROM eventstore.read_stream('evil-1');
CREATE TEMP TABLE evil_revision AS SELECT eventstore.stream_revision('evil-2') AS revision;
BEGIN;
SELECT count(*) AS own_uncommitted FROM eventstore.append_event('evil-3', 'E5', '{}') \gset
SELECT count(*) AS evil_read_open FROM eventstore.read_all(NULL, NULL) \gset
ROLLBACK;
RESET search_path;

SELECT is((SELECT (next_expected_revision, first_position, last_position)::text FROM evil_1), '(1,1,2)',
          'under a hostile search_path append_to_stream takes positions from the real sequence');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text FROM evil_2), '(0,3,3)',
          '... with a caller-chosen id as well');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text FROM evil_3), '(2,4,4)',
          '... and checks an expected revision with the real operators');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text FROM evil_4), '(0,3,3)',
          '... and recognises a retry');
SELECT results_eq($$SELECT stream_id, revision FROM eventstore.streams ORDER BY stream_id$$,
                  $$VALUES ('evil-1'::text, 2::bigint), ('evil-2', 0)$$,
                  'each append advanced its own stream only');
SELECT results_eq($$SELECT global_position, stream_id, revision, event_type FROM eventstore.events ORDER BY global_position$$,
                  $$VALUES (1::bigint, 'evil-1'::text, 0::bigint, 'E1'::text), (2, 'evil-1', 1, 'E2'),
                           (3, 'evil-2', 0, 'E3'), (4, 'evil-1', 2, 'E4')$$,
                  'the log holds exactly the appended events');
SELECT bag_eq($$SELECT * FROM evil_read_all$$, $$SELECT * FROM eventstore.events$$,
              'under a hostile search_path read_all returns the committed log');
SELECT is(:evil_read_open::bigint, 4::bigint,
          '... and not the reader''s own uncommitted event: its snapshot horizon is the real one');
SELECT results_eq($$SELECT global_position FROM evil_read_stream$$, $$VALUES (1::bigint), (2), (4)$$,
                  'under a hostile search_path read_stream reads the right stream');
SELECT is((SELECT revision FROM evil_revision), 0::bigint,
          'under a hostile search_path stream_revision reads the right stream');
SELECT is((SELECT count(*) FROM es_tap_evil.calls), 0::bigint,
          'none of the writer''s functions or operators ran inside the event store');

------------------------------------------------------------------------
-- A role without grants.
------------------------------------------------------------------------
SET ROLE es_tap_nobody;
SELECT throws_ok($$SELECT eventstore.append_to_stream('n-1', '[{"type": "A"}]')$$,
                 '42501', 'permission denied for function append_to_stream', 'no grant: append_to_stream is denied');
SELECT throws_ok($$SELECT eventstore.append_event('n-1', 'A', '{}')$$,
                 '42501', 'permission denied for function append_event', 'no grant: append_event is denied');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream('evil-1')$$,
                 '42501', 'permission denied for function read_stream', 'no grant: read_stream is denied');
SELECT throws_ok($$SELECT * FROM eventstore.read_all()$$,
                 '42501', 'permission denied for function read_all', 'no grant: read_all is denied');
SELECT throws_ok($$SELECT eventstore.stream_revision('evil-1')$$,
                 '42501', 'permission denied for function stream_revision', 'no grant: stream_revision is denied');
SELECT throws_ok($$SELECT * FROM eventstore.events$$,
                 '42501', 'permission denied for table events', 'no grant: SELECT on events is denied');
SELECT throws_ok($$SELECT * FROM eventstore.streams$$,
                 '42501', 'permission denied for table streams', 'no grant: SELECT on streams is denied');
SELECT throws_ok($$INSERT INTO eventstore.events VALUES (100, '1', 'n-1', 0, gen_random_uuid(), 'A', '{}', '{}', now())$$,
                 '42501', 'permission denied for table events', 'no grant: INSERT into events is denied');
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}'$$,
                 '42501', 'permission denied for table events', 'no grant: UPDATE of events is denied');
SELECT throws_ok($$DELETE FROM eventstore.events$$,
                 '42501', 'permission denied for table events', 'no grant: DELETE from events is denied');
SELECT throws_ok($$TRUNCATE eventstore.events$$,
                 '42501', 'permission denied for table events', 'no grant: TRUNCATE of events is denied');
SELECT throws_ok($$INSERT INTO eventstore.streams VALUES ('n-1', 0, now(), now())$$,
                 '42501', 'permission denied for table streams', 'no grant: INSERT into streams is denied');
SELECT throws_ok($$UPDATE eventstore.streams SET revision = 0$$,
                 '42501', 'permission denied for table streams', 'no grant: UPDATE of streams is denied');
SELECT throws_ok($$SELECT nextval('eventstore.global_position_seq')$$,
                 '42501', 'permission denied for sequence global_position_seq', 'no grant: the position sequence is denied');
SELECT throws_ok($$CREATE TABLE eventstore.mine (x int)$$,
                 '42501', 'permission denied for schema eventstore', 'nobody may create objects in the schema');
SELECT lives_ok($$SELECT eventstore.stream_partition('a', 3), eventstore.uuid_v7()$$,
                'stream_partition and uuid_v7 are free for everyone');
RESET ROLE;

------------------------------------------------------------------------
-- A writer granted append_to_stream.
------------------------------------------------------------------------
SET ROLE es_tap_writer;
SELECT is((SELECT (stream_id, next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_to_stream('w-1', '[{"type": "W1"}, {"type": "W2", "data": {"by": "writer"}}]')),
          '(w-1,1,6,7)', 'a writer granted append_to_stream appends through the SECURITY DEFINER function');
SELECT is((SELECT next_expected_revision FROM eventstore.append_to_stream('w-1', '[{"type": "W3"}]', 1)),
          2::bigint, 'a writer appends with an expected revision');
SELECT throws_ok($$SELECT eventstore.append_to_stream('w-1', '[{"type": "W4"}]', 0)$$,
                 'SE001', 'wrong expected revision for stream "w-1"', 'a writer gets SE001 on a conflict');
SELECT throws_ok($$SELECT eventstore.append_to_stream('evil-2', '[{"type": "X", "id": "0190e3a0-0000-7000-8000-0000000e0001"}]')$$,
                 'SE002', NULL, 'a writer gets SE002 for an id stored elsewhere');
SELECT throws_ok($$SELECT eventstore.append_event('w-1', 'W4', '{}')$$,
                 '42501', 'permission denied for function append_event', 'the writer was not granted append_event');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream('w-1')$$,
                 '42501', 'permission denied for function read_stream', 'the writer was not granted read_stream');
SELECT throws_ok($$SELECT * FROM eventstore.events$$,
                 '42501', 'permission denied for table events', 'a writer cannot SELECT events');
SELECT throws_ok($$INSERT INTO eventstore.events VALUES (100, pg_current_xact_id(), 'w-1', 3, gen_random_uuid(), 'W4', '{}', '{}', now())$$,
                 '42501', 'permission denied for table events', 'a writer cannot INSERT into events directly');
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}' WHERE stream_id = 'w-1'$$,
                 '42501', 'permission denied for table events', 'a writer cannot UPDATE events');
SELECT throws_ok($$DELETE FROM eventstore.events WHERE stream_id = 'w-1'$$,
                 '42501', 'permission denied for table events', 'a writer cannot DELETE events');
SELECT throws_ok($$TRUNCATE eventstore.events$$,
                 '42501', 'permission denied for table events', 'a writer cannot TRUNCATE events');
SELECT throws_ok($$INSERT INTO eventstore.streams VALUES ('w-2', 0, now(), now())$$,
                 '42501', 'permission denied for table streams', 'a writer cannot INSERT into streams directly');
SELECT throws_ok($$UPDATE eventstore.streams SET revision = 0 WHERE stream_id = 'w-1'$$,
                 '42501', 'permission denied for table streams', 'a writer cannot UPDATE streams');
SELECT throws_ok($$DELETE FROM eventstore.streams WHERE stream_id = 'w-1'$$,
                 '42501', 'permission denied for table streams', 'a writer cannot DELETE streams');
SELECT throws_ok($$SELECT setval('eventstore.global_position_seq', 1)$$,
                 '42501', 'permission denied for sequence global_position_seq', 'a writer cannot move the position sequence');
RESET ROLE;
SELECT results_eq($$SELECT revision, event_type, data, created_at <= now() FROM eventstore.read_stream('w-1')$$,
                  $$VALUES (0::bigint, 'W1'::text, '{}'::jsonb, true), (1, 'W2', '{"by": "writer"}', true), (2, 'W3', '{}', true)$$,
                  'the writer''s events are stored');
SELECT is(eventstore.stream_revision('w-1'), 2::bigint, 'the writer''s stream row is maintained');

------------------------------------------------------------------------
-- A reader granted read_all and read_stream.
------------------------------------------------------------------------
SET ROLE es_tap_reader;
SELECT results_eq($$SELECT global_position, stream_id, event_type FROM eventstore.read_all(NULL, NULL)$$,
                  $$VALUES (1::bigint, 'evil-1'::text, 'E1'::text), (2, 'evil-1', 'E2'), (3, 'evil-2', 'E3'),
                           (4, 'evil-1', 'E4'), (6, 'w-1', 'W1'), (7, 'w-1', 'W2'), (8, 'w-1', 'W3')$$,
                  'a reader granted read_all reads the log');
SELECT results_eq($$SELECT revision, event_type FROM eventstore.read_stream('w-1', 1)$$,
                  $$VALUES (1::bigint, 'W2'::text), (2, 'W3')$$,
                  'a reader granted read_stream reads a stream');
SELECT results_eq($$SELECT stream_id FROM eventstore.read_all(NULL, 10, NULL, eventstore.stream_partition('w-1', 2), 2)
                    WHERE stream_id = 'w-1'$$,
                  $$VALUES ('w-1'::text), ('w-1'), ('w-1')$$,
                  'a reader reads its partition of a consumer group');
SELECT throws_ok($$SELECT * FROM eventstore.read_all(999)$$,
                 'SE003', 'position 999 is not in the event log', 'a reader gets SE003 for an unknown position');
SELECT throws_ok($$SELECT eventstore.append_to_stream('r-1', '[{"type": "A"}]')$$,
                 '42501', 'permission denied for function append_to_stream', 'a reader cannot append');
SELECT throws_ok($$SELECT eventstore.stream_revision('w-1')$$,
                 '42501', 'permission denied for function stream_revision', 'the reader was not granted stream_revision');
SELECT throws_ok($$SELECT * FROM eventstore.events$$,
                 '42501', 'permission denied for table events', 'a reader cannot SELECT events directly');
SELECT throws_ok($$DELETE FROM eventstore.events$$,
                 '42501', 'permission denied for table events', 'a reader cannot DELETE events');
RESET ROLE;

------------------------------------------------------------------------
-- The log is append-only for every role: an administrator granted every
-- table privilege, and the owner.
------------------------------------------------------------------------
SET ROLE es_tap_admin;
SELECT is((SELECT count(*) FROM eventstore.events), 7::bigint, 'an administrator granted SELECT reads the table');
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}'$$,
                 'SE004', 'the event log is append-only: UPDATE of eventstore.events is not allowed',
                 'an administrator granted UPDATE gets SE004');
SELECT throws_ok($$DELETE FROM eventstore.events WHERE stream_id = 'w-1'$$,
                 'SE004', 'the event log is append-only: DELETE of eventstore.events is not allowed',
                 'an administrator granted DELETE gets SE004');
SELECT throws_ok($$TRUNCATE eventstore.events$$,
                 'SE004', 'the event log is append-only: TRUNCATE of eventstore.events is not allowed',
                 'an administrator granted TRUNCATE gets SE004');
SELECT throws_ok($$ALTER TABLE eventstore.events DISABLE TRIGGER events_append_only$$,
                 '42501', 'must be owner of table events', 'an administrator cannot disable the append-only trigger');
SELECT throws_ok($$SET session_replication_role = replica$$,
                 '42501', 'permission denied to set parameter "session_replication_role"',
                 'an administrator cannot switch to session_replication_role = replica');
RESET ROLE;

SELECT ok((SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
          AND (SELECT relowner FROM pg_class WHERE oid = 'eventstore.events'::regclass)
              = (SELECT oid FROM pg_roles WHERE rolname = current_user),
          'the session user is a superuser and owns the log');
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}'$$,
                 'SE004', 'the event log is append-only: UPDATE of eventstore.events is not allowed',
                 'the owner gets SE004 on UPDATE');
SELECT throws_ok($$DELETE FROM eventstore.events$$,
                 'SE004', 'the event log is append-only: DELETE of eventstore.events is not allowed',
                 'the owner gets SE004 on DELETE');
SELECT throws_ok($$TRUNCATE eventstore.events$$,
                 'SE004', 'the event log is append-only: TRUNCATE of eventstore.events is not allowed',
                 'the owner gets SE004 on TRUNCATE');
SET session_replication_role = replica;
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}'$$, 'SE004', NULL,
                 'the owner gets SE004 on UPDATE with session_replication_role = replica');
SELECT throws_ok($$DELETE FROM eventstore.events$$, 'SE004', NULL,
                 'the owner gets SE004 on DELETE with session_replication_role = replica');
SELECT throws_ok($$TRUNCATE eventstore.events$$, 'SE004', NULL,
                 'the owner gets SE004 on TRUNCATE with session_replication_role = replica');
RESET session_replication_role;
SELECT is((SELECT count(*) FROM eventstore.events), 7::bigint, 'the log is intact');

-- the projections' status is readable by whoever is granted the view
GRANT SELECT ON eventstore.projection_status TO es_tap_reader;
SET ROLE es_tap_reader;
SELECT lives_ok($$SELECT * FROM eventstore.projection_status$$,
                'a role granted SELECT on projection_status can read it');
RESET ROLE;

SELECT * FROM finish();

-- Leave the cluster and the shared database as we found them.
DROP SCHEMA es_tap_evil CASCADE;
DROP OWNED BY es_tap_nobody, es_tap_writer, es_tap_reader, es_tap_admin CASCADE;
DROP ROLE es_tap_nobody, es_tap_writer, es_tap_reader, es_tap_admin;
DROP EXTENSION pgtap CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
