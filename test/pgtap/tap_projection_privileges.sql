-- pgTAP: projections and roles.  A handler runs as the role that created
-- the projection, whoever appends or runs it; only that role (or a member)
-- may drop, rebuild, stop or start it; a handler cannot change its role.
\ir setup.psql
-- Start clean: the schema and the roles a run stopped half-way leaves.
DROP SCHEMA IF EXISTS es_tap_pp CASCADE;
CALL pg_temp.drop_roles(ARRAY['es_tap_powner', 'es_tap_pmember', 'es_tap_pother', 'es_tap_pnobody']);

-- the projections' owner, a member of it, another role granted the API,
-- and a role granted nothing
CREATE ROLE es_tap_powner NOLOGIN;
CREATE ROLE es_tap_pmember NOLOGIN IN ROLE es_tap_powner;
CREATE ROLE es_tap_pother NOLOGIN;
CREATE ROLE es_tap_pnobody NOLOGIN;
GRANT EXECUTE ON FUNCTION
	eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer),
	eventstore.drop_projection(text, integer),
	eventstore.rebuild_projection(text, integer),
	eventstore.run_projection(text, integer, bigint),
	eventstore.stop_projection(text, integer),
	eventstore.start_projection(text, integer)
TO es_tap_powner, es_tap_pother;
-- the owner's schema, where it keeps its read model and handlers
CREATE SCHEMA es_tap_pp AUTHORIZATION es_tap_powner;
-- a function the owner may not execute
CREATE FUNCTION es_tap_pp.secret(e eventstore.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
REVOKE EXECUTE ON FUNCTION es_tap_pp.secret(eventstore.events) FROM PUBLIC;
-- the log, its streams created before any projection
SELECT last_position AS opened FROM eventstore.append_event('s', 'Opened', '{}') \gset

SET ROLE es_tap_powner;
CREATE TABLE es_tap_pp.model (tag text, global_position bigint, who text, session_who text);
CREATE FUNCTION es_tap_pp.record(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO es_tap_pp.model VALUES ('event', e.global_position, current_user, session_user)
$$;
-- tries to become the session's user, a superuser here
CREATE FUNCTION es_tap_pp.set_role(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('SET ROLE %I', session_user);
	INSERT INTO es_tap_pp.model VALUES ('escaped', e.global_position, current_user, session_user);
END $$;
CREATE FUNCTION es_tap_pp.set_session_authorization(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('SET SESSION AUTHORIZATION %I', session_user);
	INSERT INTO es_tap_pp.model VALUES ('escaped', e.global_position, current_user, session_user);
END $$;
CREATE FUNCTION es_tap_pp.temp_table(e eventstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	CREATE TEMP TABLE left_behind (x int);
END $$;
RESET ROLE;

SELECT plan(44);

------------------------------------------------------------------------
-- Who may create
------------------------------------------------------------------------
SET ROLE es_tap_pnobody;
SELECT throws_ok($$SELECT eventstore.create_projection('p', 'es_tap_pp.record')$$, '42501', NULL,
                 'a role not granted create_projection cannot create a projection');
RESET ROLE;
SET ROLE es_tap_powner;
SELECT throws_ok($$SELECT eventstore.create_projection('p', 'es_tap_pp.secret')$$, '42501',
                 'permission denied for handler es_tap_pp.secret(eventstore.events)',
                 'the owner cannot create a projection with a handler it may not execute');
SELECT lives_ok($$SELECT eventstore.create_projection('inline', 'es_tap_pp.record', mode => 'inline',
                    on_reset => 'INSERT INTO es_tap_pp.model VALUES (''reset'', NULL, current_user, session_user)')$$,
                'an unprivileged role creates an inline projection over its own table');
SELECT lives_ok($$SELECT eventstore.create_projection('async', 'es_tap_pp.record')$$,
                'an unprivileged role creates an async projection');
RESET ROLE;
SELECT results_eq($$SELECT name, owner::text FROM eventstore.projections ORDER BY name$$,
                  $$VALUES ('async', 'es_tap_powner'), ('inline', 'es_tap_powner')$$,
                  'the creating role owns them');
SELECT is((SELECT count(*) FROM eventstore.projections WHERE name = 'p'), 0::bigint, 'the refused ones were not created');

------------------------------------------------------------------------
-- Handlers run as the owner
------------------------------------------------------------------------
SELECT ok((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), 'setup: the test runs as a superuser');
SELECT is(eventstore.run_projection('inline'), 1::bigint, 'a superuser backfills the inline projection');
SELECT lives_ok($$SELECT eventstore.append_event('s', 'Added', '{}')$$, 'a superuser appends');
SELECT is(eventstore.run_projection('async'), 2::bigint, 'a superuser runs the async projection');
SELECT results_eq($$SELECT global_position, who, session_who = current_user::text FROM es_tap_pp.model ORDER BY 1, 2$$,
                  $$VALUES (1::bigint, 'es_tap_powner', true), (1, 'es_tap_powner', true),
                           (2, 'es_tap_powner', true), (2, 'es_tap_powner', true)$$,
                  'replayed, inline or async, the handler ran as the owner, not the superuser');
-- another role granted run_projection, with no privilege on the read model
SELECT lives_ok($$SELECT eventstore.append_event('s', 'Added', '{}')$$, 'append another event');
SET ROLE es_tap_pother;
SELECT throws_ok($$SELECT * FROM es_tap_pp.model$$, '42501', NULL, 'the other role cannot read the read model');
SELECT is(eventstore.run_projection('async'), 1::bigint, '... but may run the projection');
RESET ROLE;
SELECT results_eq($$SELECT who, count(*) FROM es_tap_pp.model WHERE global_position = 3 GROUP BY 1$$,
                  $$VALUES ('es_tap_powner', 2::bigint)$$, 'the handler ran as the owner for it too');

------------------------------------------------------------------------
-- Only the owner or a member may drop, rebuild, stop or start
------------------------------------------------------------------------
SET ROLE es_tap_pother;
SELECT throws_ok($$SELECT eventstore.drop_projection('async')$$, '42501',
                 'must be owner of projection "async" to drop it', 'another role cannot drop it');
SELECT throws_ok($$SELECT eventstore.rebuild_projection('async')$$, '42501',
                 'must be owner of projection "async" to rebuild it', 'another role cannot rebuild it');
SELECT throws_ok($$SELECT eventstore.stop_projection('async')$$, '42501',
                 'must be owner of projection "async" to stop it', 'another role cannot stop it');
SELECT throws_ok($$SELECT eventstore.start_projection('async')$$, '42501',
                 'must be owner of projection "async" to start it', 'another role cannot start it');
SELECT throws_ok($$SELECT eventstore.drop_projection('inline')$$, '42501', NULL, 'another role cannot drop the inline one');
RESET ROLE;
SELECT results_eq($$SELECT name, status FROM eventstore.projections ORDER BY name$$,
                  $$VALUES ('async', 'active'), ('inline', 'active')$$, 'both are still there, active');
SET ROLE es_tap_pnobody;
SELECT throws_ok($$SELECT eventstore.run_projection('async')$$, '42501', NULL,
                 'a role not granted run_projection cannot run it');
RESET ROLE;
-- a member of the owner role may; on_reset runs as the owner
GRANT EXECUTE ON FUNCTION eventstore.rebuild_projection(text, integer),
                          eventstore.stop_projection(text, integer),
                          eventstore.start_projection(text, integer) TO es_tap_pmember;
SET ROLE es_tap_pmember;
SELECT lives_ok($$SELECT eventstore.stop_projection('async')$$, 'a member of the owner role stops it');
SELECT lives_ok($$SELECT eventstore.start_projection('async')$$, '... starts it');
SELECT lives_ok($$SELECT eventstore.rebuild_projection('inline')$$, '... and rebuilds the inline one');
RESET ROLE;
SELECT results_eq($$SELECT who, session_who = current_user::text FROM es_tap_pp.model WHERE tag = 'reset'$$,
                  $$VALUES ('es_tap_powner', true)$$, 'on_reset ran as the owner, not the member');
SELECT is(eventstore.run_projection('inline'), 3::bigint, 'a superuser runs the rebuild');
SELECT is((SELECT count(DISTINCT who) FROM es_tap_pp.model), 1::bigint, 'every handler call was the owner''s');

------------------------------------------------------------------------
-- A handler cannot change its role, nor leave temporary objects
------------------------------------------------------------------------
SET ROLE es_tap_powner;
SELECT lives_ok($$SELECT eventstore.create_projection('escape', 'es_tap_pp.set_role', mode => 'inline')$$,
                'the owner creates an inline projection whose handler tries SET ROLE');
SELECT is(eventstore.run_projection('escape'), 0::bigint, 'its backfill fails');
RESET ROLE;
SELECT results_eq($$SELECT status, last_error FROM eventstore.projection_status WHERE name = 'escape'$$,
                  $$VALUES ('failed', 'cannot set parameter "role" within security-definer function')$$,
                  'SET ROLE is refused: the handler runs with the owner as a local user id');
SET ROLE es_tap_powner;
SELECT lives_ok($$SELECT eventstore.drop_projection('escape')$$, 'the owner drops it');
SELECT lives_ok($$SELECT eventstore.create_projection('escape', 'es_tap_pp.set_role', ARRAY['Escape'], mode => 'inline')$$,
                'an inline projection of one event type, whose handler tries SET ROLE');
SELECT is(eventstore.run_projection('escape'), 0::bigint, 'backfilled: none of its events');
RESET ROLE;
SELECT throws_ok($$SELECT eventstore.append_event('s', 'Escape', '{}')$$, '42501',
                 'cannot set parameter "role" within security-definer function',
                 'a superuser''s append: the handler cannot SET ROLE to the session user');
SET ROLE es_tap_powner;
SELECT lives_ok($$SELECT eventstore.create_projection('escape2', 'es_tap_pp.set_session_authorization')$$,
                'an async projection whose handler tries SET SESSION AUTHORIZATION');
SELECT lives_ok($$SELECT eventstore.create_projection('temp', 'es_tap_pp.temp_table')$$,
                'an async projection whose handler creates a temporary table');
RESET ROLE;
SELECT is(eventstore.run_projection('escape2') + eventstore.run_projection('temp'), 0::bigint,
          'a superuser runs them: nothing applied');
SELECT results_eq($$SELECT name, status, last_error FROM eventstore.projection_status WHERE name IN ('escape2', 'temp') ORDER BY 1$$,
                  $$VALUES ('escape2', 'failed', 'cannot set parameter "session_authorization" within security-definer function'),
                           ('temp', 'failed', 'cannot create temporary table within security-restricted operation')$$,
                  'both fail: neither escapes the owner''s restricted context');
SELECT is((SELECT count(*) FROM es_tap_pp.model WHERE tag = 'escaped' OR who <> 'es_tap_powner'), 0::bigint,
          'no handler ran as anyone but the owner');

-- A handler is kept by name: once it is dropped, another role able to
-- create a function of that name in its schema does not get its code run
-- as the projection's owner.
SET ROLE es_tap_powner;
CREATE FUNCTION es_tap_pp.swapped(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO es_tap_pp.model VALUES ('swapped', e.global_position, current_user, session_user)
$$;
SELECT lives_ok($$SELECT eventstore.create_projection('swapped', 'es_tap_pp.swapped', ARRAY['Swap'])$$,
                'the owner creates a projection with a handler of its own');
DROP FUNCTION es_tap_pp.swapped(eventstore.events);
RESET ROLE;
GRANT USAGE, CREATE ON SCHEMA es_tap_pp TO es_tap_pother;
SET ROLE es_tap_pother;
CREATE FUNCTION es_tap_pp.swapped(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO es_tap_pp.model VALUES ('hijacked', e.global_position, current_user, session_user)
$$;
RESET ROLE;
SELECT eventstore.append_event('s', 'Swap', '{}') \g /dev/null
SET client_min_messages = error;
SELECT is(eventstore.run_projection('swapped'), 0::bigint,
          'another role''s function of the dropped handler''s name is not run');
RESET client_min_messages;
SELECT results_eq($$SELECT status, last_error FROM eventstore.projection_status WHERE name = 'swapped'$$,
                  $$VALUES ('failed', 'the handler es_tap_pp.swapped(eventstore.events) of projection "swapped" version 1 is owned by role "es_tap_pother", not by "es_tap_powner" as when the projection was created')$$,
                  'the projection fails, saying whose function it found');
SELECT is((SELECT count(*) FROM es_tap_pp.model WHERE tag = 'hijacked'), 0::bigint,
          'nothing ran as the owner');
REVOKE USAGE, CREATE ON SCHEMA es_tap_pp FROM es_tap_pother;

SELECT * FROM finish();

-- Leave the cluster and the shared database as we found them.
DROP SCHEMA es_tap_pp CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
DROP OWNED BY es_tap_powner, es_tap_pmember, es_tap_pother, es_tap_pnobody CASCADE;
DROP ROLE es_tap_pmember, es_tap_powner, es_tap_pother, es_tap_pnobody;
DROP EXTENSION pgtap CASCADE;
