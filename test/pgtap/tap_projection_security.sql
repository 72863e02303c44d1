-- pgTAP: a projection's code cannot be turned against its owner.  A
-- changed handler takes effect at its next call in a session that has
-- called it already; an owner whose EXECUTE on the handler is revoked gets
-- the projection failed with 42501 (inline: the events are skipped and the
-- runner fails it); projection_status shows a projection's errors and
-- details only to members of its owner; another role cannot add a version
-- to someone else's projection.
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_sec CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_sowner', 'es_tap_sother', 'es_tap_slender']);
CREATE ROLE es_tap_sowner NOLOGIN;
CREATE ROLE es_tap_sother NOLOGIN;
CREATE ROLE es_tap_slender NOLOGIN;
GRANT EXECUTE ON FUNCTION
	eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer),
	eventstore.drop_projection(text, integer),
	eventstore.run_projection(text, integer, bigint),
	eventstore.start_projection(text, integer),
	eventstore.append_event(text, text, jsonb, jsonb, bigint, uuid)
TO es_tap_sowner, es_tap_sother;
CREATE SCHEMA es_tap_sec;
GRANT USAGE ON SCHEMA es_tap_sec TO PUBLIC;
CREATE TABLE es_tap_sec.seen (tag text, global_position bigint, work_mem text, who text);
GRANT INSERT ON es_tap_sec.seen TO PUBLIC;
RESET client_min_messages;

SELECT plan(28);

-- A handler changed after a session applied it.
CREATE FUNCTION es_tap_sec.note(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO es_tap_sec.seen VALUES ('note', e.global_position,
		pg_catalog.current_setting('work_mem'), current_user)
$$;
SET work_mem = '4MB';
SELECT eventstore.create_projection('note', 'es_tap_sec.note', ARRAY['Note'], 'inline');
SELECT eventstore.append_event('n', 'Note', '{}') IS NOT NULL AS appended \g /dev/null
ALTER FUNCTION es_tap_sec.note(eventstore.events) SET work_mem = '77kB';
SELECT eventstore.append_event('n', 'Note', '{}') IS NOT NULL AS appended \g /dev/null
SELECT results_eq($$SELECT work_mem FROM es_tap_sec.seen WHERE tag = 'note' ORDER BY global_position$$,
	$$VALUES ('4MB'), ('77kB')$$,
	'ALTER FUNCTION takes effect at the next call in the session that applied the handler already');
CREATE OR REPLACE FUNCTION es_tap_sec.note(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO es_tap_sec.seen VALUES ('replaced', e.global_position, NULL, current_user)
$$;
SELECT eventstore.append_event('n', 'Note', '{}') IS NOT NULL AS appended \g /dev/null
SELECT is((SELECT count(*) FROM es_tap_sec.seen WHERE tag = 'replaced'), 1::bigint,
	'and so does CREATE OR REPLACE');
RESET work_mem;
SELECT eventstore.drop_projection('note');

-- A handler lent by another role, whose EXECUTE is revoked later.
CREATE FUNCTION es_tap_sec.lent(e eventstore.events) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	INSERT INTO es_tap_sec.seen VALUES ('lent', e.global_position, NULL, current_user)
$$;
ALTER FUNCTION es_tap_sec.lent(eventstore.events) OWNER TO es_tap_slender;
GRANT INSERT ON es_tap_sec.seen TO es_tap_slender;
REVOKE EXECUTE ON FUNCTION es_tap_sec.lent(eventstore.events) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION es_tap_sec.lent(eventstore.events) TO es_tap_sowner;
SET ROLE es_tap_sowner;
SELECT lives_ok($$SELECT eventstore.create_projection('lent-inline', 'es_tap_sec.lent', ARRAY['Lent'], 'inline')$$,
	'an inline projection on a lent handler');
SELECT lives_ok($$SELECT eventstore.create_projection('lent-async', 'es_tap_sec.lent', ARRAY['Lent'])$$,
	'an async one');
RESET ROLE;
-- over a log that is not empty they start by backfilling it
SELECT eventstore.run_projection('lent-async') + eventstore.run_projection('lent-inline') AS backfilled \g /dev/null
SELECT eventstore.append_event('l', 'Lent', '{}') IS NOT NULL AS appended \g /dev/null
SELECT is(eventstore.run_projection('lent-async'), 1::bigint, 'both apply while the grant stands');
REVOKE EXECUTE ON FUNCTION es_tap_sec.lent(eventstore.events) FROM es_tap_sowner;
SELECT eventstore.append_event('l', 'Lent', '{}') IS NOT NULL AS appended \g /dev/null
SELECT is((SELECT count(*) FROM es_tap_sec.seen WHERE tag = 'lent'), 2::bigint,
	'after the REVOKE the inline projection does not call it');
SELECT is((SELECT count(*) FROM eventstore.projection_skips s JOIN eventstore.projections p USING (projection_id)
		   WHERE p.name = 'lent-inline'), 1::bigint, '... but records the event as a skip');
SET client_min_messages = error;
SELECT eventstore.run_projection('lent-async') + eventstore.run_projection('lent-inline') AS applied \g /dev/null
RESET client_min_messages;
SELECT results_eq($$SELECT name, status, last_error, error_position FROM eventstore.projection_status
		   WHERE name LIKE 'lent-%' ORDER BY name$$,
	$$VALUES ('lent-async', 'failed', 'the owner role "es_tap_sowner" of projection "lent-async" version 1 may not execute its handler es_tap_sec.lent(eventstore.events)', NULL::bigint),
	         ('lent-inline', 'failed', 'the owner role "es_tap_sowner" of projection "lent-inline" version 1 may not execute its handler es_tap_sec.lent(eventstore.events)', NULL::bigint)$$,
	'both fail, saying why, with no event to blame');
SELECT is((SELECT error_sqlstate FROM eventstore.projections WHERE name = 'lent-async'), '42501',
	'with 42501');
SELECT is((SELECT count(*) FROM es_tap_sec.seen WHERE tag = 'lent'), 2::bigint,
	'the handler was not called again');

-- projection_status shows errors, handler and event details to members of
-- the owner role only.
GRANT SELECT ON eventstore.projection_status TO es_tap_sowner, es_tap_sother;
SET ROLE es_tap_sother;
SELECT results_eq($$SELECT name, status, last_error, handler::text, event_types, on_error
		   FROM eventstore.projection_status WHERE name = 'lent-async'$$,
	$$VALUES ('lent-async', 'failed', NULL::text, NULL::text, NULL::text[], NULL::text)$$,
	'another role sees the name and status, not the error, handler or event types');
RESET ROLE;
SET ROLE es_tap_sowner;
SELECT results_eq($$SELECT name, status, handler::text, event_types, on_error, last_error IS NOT NULL
		   FROM eventstore.projection_status WHERE name = 'lent-async'$$,
	$$VALUES ('lent-async', 'failed', 'es_tap_sec.lent', ARRAY['Lent'], 'stop', true)$$,
	'its owner sees them all');
RESET ROLE;
REVOKE SELECT ON eventstore.projection_status FROM es_tap_sowner, es_tap_sother;

-- Versions belong to the name's owner.
CREATE FUNCTION es_tap_sec.other(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SET ROLE es_tap_sother;
SELECT throws_ok($$SELECT eventstore.create_projection('lent-async', 'es_tap_sec.other', version => 99)$$,
	'42501', 'projection "lent-async" belongs to role es_tap_sowner',
	'another role cannot add a version to someone else''s projection');
RESET ROLE;

-- Session state a handler may not touch: the claims of the session that
-- applies it, constraints of its transaction, what outlives the call.
CREATE FUNCTION es_tap_sec.unlock(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_unlock_all();
END $$;
CREATE FUNCTION es_tap_sec.lock(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_lock(42);
END $$;
-- a plan parsed outside owner code is not parsed again in it: the claims
-- are checked after the call as well
CREATE FUNCTION es_tap_sec.unlock_cached(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_unlock_all();
END $$;
SET search_path = "$user", public, pg_temp;   -- the one its projection captures
SELECT es_tap_sec.unlock_cached(e) FROM eventstore.events e LIMIT 1 \g /dev/null
RESET search_path;
SELECT lives_ok($$SELECT eventstore.claim_processor('relay', 'me')$$, 'this session claims a processor');
CREATE FUNCTION es_tap_sec.defer(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	SET CONSTRAINTS ALL DEFERRED;
END $$;
CREATE FUNCTION es_tap_sec.hold(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE 'PREPARE kept AS SELECT 1';
END $$;
SELECT eventstore.create_projection('unlock', 'es_tap_sec.unlock', ARRAY['Guarded'], 'inline', on_error => 'skip');
SELECT eventstore.create_projection('lock', 'es_tap_sec.lock', ARRAY['Guarded'], 'inline', on_error => 'skip');
SELECT eventstore.create_projection('unlock-cached', 'es_tap_sec.unlock_cached', ARRAY['Guarded'], 'inline', on_error => 'skip');
SELECT eventstore.create_projection('defer', 'es_tap_sec.defer', ARRAY['Guarded'], 'inline', on_error => 'skip');
SELECT eventstore.create_projection('hold', 'es_tap_sec.hold', ARRAY['Guarded'], 'inline', on_error => 'skip');
SELECT eventstore.run_projection(n) FROM unnest(ARRAY['unlock', 'lock', 'unlock-cached', 'defer', 'hold']) n \g /dev/null
SELECT eventstore.append_event('g', 'Guarded', '{}') IS NOT NULL AS appended \g /dev/null
SELECT results_eq($$SELECT p.name, d.error_sqlstate, d.error_message FROM eventstore.projection_dead_letters d
		   JOIN eventstore.projections p USING (projection_id) ORDER BY p.name$$,
	$$VALUES ('defer', '42501', 'a projection''s handler may not run SET CONSTRAINTS'),
	         ('hold', '42501', 'a projection''s handler may not run PREPARE'),
	         ('lock', '42501', 'a projection''s handler may not take or release session-level advisory locks'),
	         ('unlock', '42501', 'a projection''s handler may not take or release session-level advisory locks'),
	         ('unlock-cached', '42501', 'a projection''s handler released the processor claims of the session applying it')$$,
	'a handler may not use session advisory locks, drop the session''s claims, SET CONSTRAINTS or PREPARE: each call fails');
SELECT ok(EXISTS (SELECT FROM eventstore.processors
		   WHERE processor_id = 'relay' AND owner_pid = pg_backend_pid()),
	'the session''s claim is still held');
SELECT is((SELECT error_detail FROM eventstore.projection_dead_letters d
		   JOIN eventstore.projections p USING (projection_id) WHERE p.name = 'unlock-cached'),
	'It was taken back at once.', 'the claim dropped by the handler was taken back at once');
SELECT eventstore.release_processor('relay', 'me');

-- Processors belong to the role that first stored, reset or claimed them.
GRANT EXECUTE ON FUNCTION
	eventstore.store_checkpoint(text, bigint, bigint, text),
	eventstore.read_checkpoint(text, text),
	eventstore.reset_checkpoint(text, bigint, text),
	eventstore.claim_processor(text, text, text),
	eventstore.release_processor(text, text, text)
TO es_tap_sowner, es_tap_sother;
SELECT max(global_position) AS pos FROM eventstore.events \gset
SET ROLE es_tap_sowner;
SELECT eventstore.store_checkpoint('mine', :pos, NULL) AS stored \g /dev/null
RESET ROLE;
SELECT is((SELECT owner_role FROM eventstore.processors WHERE processor_id = 'mine'), 'es_tap_sowner',
	'a processor belongs to the role that stored it first');
SET ROLE es_tap_sother;
SELECT throws_ok($$SELECT eventstore.store_checkpoint('mine', 0, NULL)$$, '42501',
	'processor "mine" partition "default" belongs to role es_tap_sowner',
	'another role may not store its checkpoint');
SELECT throws_ok($$SELECT eventstore.reset_checkpoint('mine')$$, '42501',
	'processor "mine" partition "default" belongs to role es_tap_sowner', '... nor reset it');
SELECT throws_ok($$SELECT eventstore.claim_processor('mine', 'thief')$$, '42501',
	'processor "mine" partition "default" belongs to role es_tap_sowner', '... nor claim it');
SELECT is(eventstore.read_checkpoint('mine'), :pos::bigint, 'but may read it');
RESET ROLE;
-- a row from before 0.3.0 has no owner: the first to store it takes it
UPDATE eventstore.checkpoints SET owner = NULL WHERE processor_id = 'mine';
SET ROLE es_tap_sother;
SELECT eventstore.reset_checkpoint('mine');
RESET ROLE;
SELECT is((SELECT owner_role FROM eventstore.processors WHERE processor_id = 'mine'), 'es_tap_sother',
	'a processor without an owner becomes the first storer''s');

-- The hook that follows roles runs its queries with the API's search_path,
-- not the caller's: an operator of the caller's schema is not run as the
-- extension's owner.
CALL pg_temp.drop_roles(ARRAY['es_tap_smallory']);
CREATE ROLE es_tap_smallory NOLOGIN;
CREATE SCHEMA es_tap_m AUTHORIZATION es_tap_smallory;
SET ROLE es_tap_smallory;
CREATE FUNCTION es_tap_m.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
		EXECUTE 'ALTER ROLE es_tap_smallory SUPERUSER';
	END IF;
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR es_tap_m.= (LEFTARG = text, RIGHTARG = text, FUNCTION = es_tap_m.texteq);
SET search_path = es_tap_m, pg_catalog, public;
REASSIGN OWNED BY es_tap_smallory TO es_tap_smallory;
RESET search_path;
RESET ROLE;
SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = 'es_tap_smallory'), false,
	'REASSIGN OWNED with an operator of the caller''s schema on its search_path runs none of it as the owner');
DROP SCHEMA es_tap_m CASCADE;
DROP ROLE es_tap_smallory;

-- Projections follow their owner role like its other objects.
-- (once PostgreSQL's own dependencies, its grants, would let it go)
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventstore FROM es_tap_sowner;
SELECT throws_ok($$DROP ROLE es_tap_sowner$$, '2BP01',
	'role "es_tap_sowner" cannot be dropped because it owns projections or processors',
	'DROP ROLE of a projection''s owner is refused');
REASSIGN OWNED BY es_tap_sowner TO es_tap_sother;
SELECT results_eq($$SELECT name, owner FROM eventstore.projections WHERE name LIKE 'lent-%' ORDER BY name$$,
	$$VALUES ('lent-async', 'es_tap_sother'), ('lent-inline', 'es_tap_sother')$$,
	'REASSIGN OWNED gives its projections to the new role');
DROP OWNED BY es_tap_sother;
SELECT is((SELECT count(*) FROM eventstore.projections WHERE name LIKE 'lent-%'), 0::bigint,
	'DROP OWNED drops them');
SELECT lives_ok($$DROP OWNED BY es_tap_sowner; DROP ROLE es_tap_sowner$$,
	'then the role can be dropped (once its grants are gone too, as ever)');

SELECT * FROM finish();
SET client_min_messages = warning;
SELECT eventstore.drop_projection(n) FROM unnest(ARRAY['unlock', 'lock', 'unlock-cached', 'defer', 'hold']) n;
DROP SCHEMA es_tap_sec CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_sowner', 'es_tap_sother', 'es_tap_slender']);
DROP EXTENSION pg_eventstore CASCADE;
DROP EXTENSION pgtap CASCADE;
