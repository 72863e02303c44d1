-- pgTAP: what a session keeps from one inline application to the next, so
-- that the next costs less, is forgotten as soon as what it stands for
-- changes.  A projection found without pending skips: a pending row written
-- since by any statement (not only an append's skip) makes the next append
-- to its stream skip; with the table's trigger disabled nothing is kept.
-- An owner whose EXECUTE came through a role it is no longer a member of
-- is refused at the next application.  The creator's TimeZone is set again
-- once the appending session has changed its own.  (Other sessions'
-- writes: isolation spec projection_drain_stream_order.)
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_ic CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_icowner', 'es_tap_icgroup']);
CREATE ROLE es_tap_icowner NOLOGIN;
CREATE ROLE es_tap_icgroup NOLOGIN;
GRANT es_tap_icgroup TO es_tap_icowner;
GRANT EXECUTE ON FUNCTION
	eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer)
TO es_tap_icowner;
CREATE SCHEMA es_tap_ic;
GRANT USAGE ON SCHEMA es_tap_ic TO PUBLIC;
CREATE TABLE es_tap_ic.applied (n serial PRIMARY KEY, stream_id text NOT NULL,
	revision bigint NOT NULL, time_zone text NOT NULL);
GRANT INSERT ON es_tap_ic.applied TO PUBLIC;
GRANT USAGE ON SEQUENCE es_tap_ic.applied_n_seq TO PUBLIC;
CREATE FUNCTION es_tap_ic.record(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO es_tap_ic.applied (stream_id, revision, time_zone)
	VALUES (e.stream_id, e.revision, current_setting('TimeZone'))
$$;
REVOKE EXECUTE ON FUNCTION es_tap_ic.record(eventstore.events) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION es_tap_ic.record(eventstore.events) TO es_tap_icgroup;
-- a pending row as any statement would write it, for the stream's last event
CREATE FUNCTION pg_temp.pend(stream text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO eventstore.projection_skips
		(projection_id, global_position, transaction_id, skipped_at, stream_id)
	SELECT p.projection_id, e.global_position, e.transaction_id, now(), e.stream_id
	FROM eventstore.projections p, eventstore.events e
	WHERE p.name = 'ic' AND e.stream_id = stream
	ORDER BY e.revision DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.applied(stream text) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(revision::text, ',' ORDER BY n), '')
	FROM es_tap_ic.applied WHERE stream_id = stream
$$;
RESET client_min_messages;

SELECT plan(11);

SET TimeZone = 'UTC';
SET ROLE es_tap_icowner;
SELECT lives_ok($$SELECT eventstore.create_projection('ic', 'es_tap_ic.record', ARRAY['Added'], 'inline')$$,
	'an inline projection whose owner may execute its handler through a role');
RESET ROLE;
SELECT is(eventstore.run_projection('ic'), 0::bigint, 'active over the empty log');

-- Applied: the session knows the projection has no pending skip.
SELECT eventstore.append_event('a', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
SELECT is(pg_temp.applied('a'), '0', 'applied inline');
SELECT pg_temp.pend('a') \g /dev/null
SELECT eventstore.append_event('a', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
SELECT eventstore.append_event('b', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
SELECT is(pg_temp.applied('a') || ' / ' || pg_temp.applied('b'), '0 / 0',
	'a pending row written by a plain INSERT since: the next append to its stream skips, another stream''s applies');
UPDATE eventstore.projection_skips SET drained_at = now(), outcome = 'already applied'
WHERE drained_at IS NULL;
SELECT eventstore.append_event('a', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
SELECT is(pg_temp.applied('a'), '0,2', 'once drained, applied again');

-- The trigger disabled: nothing is kept, every application probes.
ALTER TABLE eventstore.projection_skips DISABLE TRIGGER projection_skips_pending;
SELECT eventstore.append_event('c', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
SELECT pg_temp.pend('c') \g /dev/null
SELECT eventstore.append_event('c', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
SELECT is(pg_temp.applied('c'), '0',
	'with the trigger disabled, a pending row it did not signal is still seen');
UPDATE eventstore.projection_skips SET drained_at = now(), outcome = 'already applied'
WHERE drained_at IS NULL;
ALTER TABLE eventstore.projection_skips ENABLE TRIGGER projection_skips_pending;
SELECT eventstore.append_event('d', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
-- where it does not fire
SET session_replication_role = replica;
SELECT pg_temp.pend('d') \g /dev/null
RESET session_replication_role;
SELECT eventstore.append_event('d', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
SELECT is(pg_temp.applied('d'), '0',
	'... and enabled for origin sessions only (not ALWAYS), the same');
ALTER TABLE eventstore.projection_skips ENABLE ALWAYS TRIGGER projection_skips_pending;
UPDATE eventstore.projection_skips SET drained_at = now(), outcome = 'already applied'
WHERE drained_at IS NULL;

-- The creator's TimeZone, whatever the appender's, before and after.
SELECT eventstore.append_event('e', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
SET TimeZone = 'Asia/Tokyo';
SELECT eventstore.append_event('e', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
RESET TimeZone;
SELECT results_eq($$SELECT time_zone FROM es_tap_ic.applied WHERE stream_id = 'e' ORDER BY n$$,
	$$VALUES ('UTC'), ('UTC')$$,
	'the handler runs with the creator''s TimeZone after the appender changed its own');
SET TimeZone = 'Asia/Tokyo';
SELECT eventstore.append_event('e', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
SELECT is(current_setting('TimeZone'), 'Asia/Tokyo', 'the appender''s own TimeZone is left to it');
RESET TimeZone;

-- EXECUTE through a role the owner leaves.
SELECT eventstore.append_event('f', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
REVOKE es_tap_icgroup FROM es_tap_icowner;
SELECT eventstore.append_event('f', 'Added', NULL) IS NOT NULL AS appended \g /dev/null
SELECT is(pg_temp.applied('f'), '0',
	'once the owner is no longer a member of the role that may execute the handler, it is not called');
SELECT is((SELECT count(*) FROM eventstore.projection_skips s JOIN eventstore.projections p USING (projection_id)
		   WHERE p.name = 'ic' AND s.stream_id = 'f' AND s.drained_at IS NULL), 1::bigint,
	'... the event is recorded as a skip');

SELECT * FROM finish();
SET client_min_messages = warning;
SELECT eventstore.drop_projection('ic') \g /dev/null
DROP SCHEMA es_tap_ic CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_icowner', 'es_tap_icgroup']);
DROP EXTENSION pg_eventstore CASCADE;
DROP EXTENSION pgtap CASCADE;
