-- pgTAP: archive_events, set_retention and run_maintenance: their errors
-- and privileges, what they move or remove (a stream loses events from its
-- start only), the maintenance_log rows, cursors and checkpoints at moved
-- or removed events, the holds of processors and projections, rebuilds
-- after archival, and the append-only archive.
\ir setup.psql
DROP EXTENSION IF EXISTS dblink CASCADE;
CREATE EXTENSION dblink;

CREATE FUNCTION pg_temp.connstr() RETURNS text LANGUAGE sql AS $$
	SELECT format('dbname=%L port=%s host=%L', current_database(), current_setting('port'),
	              COALESCE(NULLIF(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
	                       'localhost'))
$$;

-- The times the test's events are cut at, and read_all's order at moments.
CREATE TABLE pg_temp.marks (name text PRIMARY KEY, at timestamptz NOT NULL);
CREATE FUNCTION pg_temp.mark(n text) RETURNS void LANGUAGE sql AS $$
	SELECT pg_sleep(0.01);
	INSERT INTO pg_temp.marks VALUES (n, clock_timestamp());
	SELECT pg_sleep(0.01);
$$;
CREATE FUNCTION pg_temp.at(n text) RETURNS timestamptz LANGUAGE sql AS $$
	SELECT at FROM pg_temp.marks WHERE name = n
$$;
CREATE FUNCTION pg_temp.revisions(s text) RETURNS bigint[] LANGUAGE sql AS $$
	SELECT COALESCE(array_agg(revision ORDER BY revision), '{}') FROM eventstore.read_stream(s)
$$;
CREATE FUNCTION pg_temp.all_after(p bigint) RETURNS bigint[] LANGUAGE sql AS $$
	SELECT COALESCE(array_agg(global_position), '{}') FROM eventstore.read_all(p, NULL)
$$;
CREATE FUNCTION pg_temp.last_job(a text) RETURNS eventstore.maintenance_log LANGUAGE sql AS $$
	SELECT * FROM eventstore.maintenance_log WHERE action = a ORDER BY maintenance_id DESC LIMIT 1
$$;

SELECT plan(57);

------------------------------------------------------------------------
-- Privileges and arguments
------------------------------------------------------------------------
SELECT ok(NOT has_function_privilege('public', 'eventstore.archive_events(timestamptz)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'eventstore.set_retention(text, interval, bigint)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'eventstore.run_maintenance(bigint)', 'EXECUTE'),
          'archive_events, set_retention and run_maintenance are not executable by PUBLIC');
CALL pg_temp.drop_roles(ARRAY['tap_archive_nobody']);
CREATE ROLE tap_archive_nobody;
SET ROLE tap_archive_nobody;
SELECT is((pg_temp.error_of('SELECT eventstore.archive_events(now())'))[1], '42501',
          'a role not granted archive_events may not call it');
RESET ROLE;
CALL pg_temp.drop_roles(ARRAY['tap_archive_nobody']);

SELECT is(pg_temp.error_of('SELECT eventstore.archive_events(NULL)'),
          ARRAY['22004', 'before must not be null', NULL,
                'Pass the time before which events are archived, for example now() - interval ''1 year''.'],
          'archive_events(NULL) is refused with 22004 and a hint');
SELECT is((pg_temp.error_of('SELECT eventstore.set_retention(NULL, max_count => 1)'))[1], '22004',
          'set_retention with a NULL prefix is refused with 22004');
SELECT is(pg_temp.error_of($$SELECT eventstore.set_retention('x-', max_age => interval '0')$$),
          ARRAY['22023', 'max_age must be a positive interval', NULL,
                'Pass for example interval ''30 days'', or NULL for no age limit.'],
          'a max_age that is not positive is refused with 22023');
SELECT is(pg_temp.error_of($$SELECT eventstore.set_retention('x-', max_count => -1)$$),
          ARRAY['22023', 'max_count must be 0 or more', 'Got -1.',
                'Pass the number of events each stream keeps, or NULL for no count limit.'],
          'a negative max_count is refused with 22023');
SELECT is((pg_temp.error_of('SELECT eventstore.run_maintenance(0)'))[1:2],
          ARRAY['22023', 'max_events must be at least 1'],
          'run_maintenance(0) is refused with 22023');
SELECT is(eventstore.run_maintenance(), 0::bigint, 'with nothing queued and no rules, run_maintenance does nothing');

------------------------------------------------------------------------
-- Archival: old events move, a stream loses them from its start only
------------------------------------------------------------------------
SELECT eventstore.append_to_stream('a', '[{"type": "t"}, {"type": "t"}, {"type": "t"}]') \g /dev/null
SELECT eventstore.append_to_stream('b', '[{"type": "t"}, {"type": "t"}]') \g /dev/null
-- stream c: revision 0 old; revision 1 appended after the cutoff; revision 2
-- by a transaction that started before it, so created before it
SELECT eventstore.append_event('c', 't', '{}') \g /dev/null
SELECT dblink_connect('early', pg_temp.connstr()) \g /dev/null
SELECT dblink_exec('early', 'BEGIN') \g /dev/null
SELECT dblink_exec('early', 'SET application_name = early') \g /dev/null
SELECT pg_temp.mark('cutoff') \g /dev/null
SELECT eventstore.append_event('c', 't', '{}') \g /dev/null
SELECT eventstore.append_event('a', 't', '{}') \g /dev/null
SELECT * FROM dblink('early', $$SELECT (eventstore.append_event('c', 't', '{}')).last_position$$) AS t(p bigint) \g /dev/null
SELECT dblink_exec('early', 'COMMIT') \g /dev/null
SELECT dblink_disconnect('early') \g /dev/null
SELECT is((SELECT created_at < pg_temp.at('cutoff') FROM eventstore.events WHERE global_position = 9),
          true, 'stream c''s revision 2 was created before the cutoff, its revision 1 after');

CREATE TABLE pg_temp.before_archival AS
	SELECT p, pg_temp.all_after(p) AS rest FROM generate_series(0, 9) p;
SELECT eventstore.store_checkpoint('tap-archive-consumer', 2, NULL) \g /dev/null

SELECT is(eventstore.archive_events(pg_temp.at('cutoff')), 7::bigint,
          'archive_events returns the events created before the cutoff: what it queued');
SELECT is((SELECT count(*) FROM eventstore.events), 9::bigint, 'it moves nothing itself');
SELECT ok((SELECT finished_at IS NULL AND events = 0 AND target IS NOT NULL
                  AND (details->>'queued')::bigint = 7 AND (details->>'through_position')::bigint = 9
                  AND performed_by = current_user
           FROM pg_temp.last_job('archive_events')),
          'its maintenance_log row is running, with what it queued, the last position it covers and who asked');

-- the processor's checkpoint at 2 holds everything after it
SELECT is(eventstore.run_maintenance(), 2::bigint,
          'with a processor at position 2, run_maintenance moves events 1 and 2 only');
SELECT is((SELECT array_agg(global_position ORDER BY global_position) FROM eventstore.events_archive),
          '{1,2}'::bigint[], 'the archive holds them');
SELECT ok((SELECT finished_at IS NULL AND events = 2
                  AND details->>'waiting_for' = 'processor tap-archive-consumer partition default'
           FROM pg_temp.last_job('archive_events')),
          'the job stays running, its count so far and what it waits for in its row');
SELECT eventstore.store_checkpoint('tap-archive-consumer', 9, 2) \g /dev/null

SELECT is(eventstore.run_maintenance(), 4::bigint, 'once the processor has moved on, the rest is moved');
SELECT ok((SELECT finished_at IS NOT NULL AND events = 6 AND NOT details ? 'waiting_for'
           FROM pg_temp.last_job('archive_events')),
          'the job is finished, with the events it moved');
SELECT is((SELECT array_agg(global_position ORDER BY global_position) FROM eventstore.events_archive),
          '{1,2,3,4,5,6}'::bigint[], 'the archive holds the old events of a, b and c''s first');
SELECT is(pg_temp.revisions('c'), '{1,2}'::bigint[],
          'stream c keeps its revision 2, older than the cutoff, behind its newer revision 1: no hole');
SELECT is(pg_temp.revisions('a'), '{3}'::bigint[], 'stream a reads from its first event left');
SELECT is(pg_temp.revisions('b'), '{}'::bigint[], 'stream b reads as empty');
SELECT is(eventstore.stream_revision('b'), 1::bigint, 'and keeps its revision');
SELECT is((SELECT count(*) FROM eventstore.events e JOIN eventstore.events_archive a USING (global_position)),
          0::bigint, 'no event is in both tables');
SELECT is((SELECT count(*) FROM eventstore.removed_log_places), 0::bigint,
          'archival writes no removed_log_places: the archive is the place');

SELECT is((SELECT count(*) FROM pg_temp.before_archival b
           WHERE pg_temp.all_after(b.p) <> ARRAY(SELECT x FROM unnest(b.rest) x
                                                 WHERE NOT EXISTS (SELECT FROM eventstore.events_archive a
                                                                   WHERE a.global_position = x))),
          0::bigint, 'read_all after any position, an archived one too, returns what it did less the archived events');
SELECT is((SELECT next_expected_revision FROM eventstore.append_event('b', 't', '{}', expected_revision => 1)),
          2::bigint, 'an append to it continues its revisions');
SELECT is(pg_temp.all_after(3), '{7,8,9,10}'::bigint[], 'read_all resumes after an archived event in place');
SELECT is(eventstore.store_checkpoint('tap-archive-consumer', 4, 9), 'stored'::eventstore.checkpoint_result,
          'store_checkpoint takes an archived position');
SELECT is(eventstore.store_checkpoint('tap-archive-consumer', 5, 3), 'further'::eventstore.checkpoint_result,
          'and compares archived positions in log order');
SELECT is(pg_temp.error_of($$SELECT eventstore.reset_checkpoint('tap-archive-consumer', 5)$$), NULL,
          'reset_checkpoint takes an archived position');
SELECT is(eventstore.read_checkpoint('tap-archive-consumer'), 5::bigint, 'and stores it');
SELECT eventstore.reset_checkpoint('tap-archive-consumer', 10) \g /dev/null

SELECT is(eventstore.archive_events(pg_temp.at('cutoff')), 1::bigint,
          'archive_events again counts the old event still in the log');
SELECT is(eventstore.run_maintenance(), 0::bigint, 'but it stays: its stream''s newer event is before it');

------------------------------------------------------------------------
-- The archive is append-only
------------------------------------------------------------------------
SELECT is(pg_temp.error_of('DELETE FROM eventstore.events_archive'),
          ARRAY['SE004', 'the event log is append-only: DELETE of eventstore.events_archive is not allowed',
                'Stored events are facts; they are never changed or removed in place.',
                'Append a compensating event to the stream instead; events are removed or erased only by eventstore.delete_stream, eventstore.redact_events, eventstore.archive_events and retention (eventstore.set_retention).'],
          'DELETE of the archive is refused with SE004');
SELECT is((pg_temp.error_of($$UPDATE eventstore.events_archive SET data = '{}'$$))[1:2],
          ARRAY['SE004', 'the event log is append-only: UPDATE of eventstore.events_archive is not allowed'],
          'UPDATE of the archive is refused');
SELECT is((pg_temp.error_of('TRUNCATE eventstore.events_archive'))[1], 'SE004', 'TRUNCATE of the archive is refused');
SELECT is((pg_temp.error_of('DELETE FROM eventstore.events'))[1:2],
          ARRAY['SE004', 'the event log is append-only: DELETE of eventstore.events is not allowed'],
          'DELETE of the log is still refused after a maintenance function passed');

------------------------------------------------------------------------
-- Projections hold archival; a rebuild sees the log as it now is
------------------------------------------------------------------------
CREATE TABLE public.tap_archive_seen (position bigint);
CREATE FUNCTION public.tap_archive_note(e eventstore.events) RETURNS void LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	AS 'INSERT INTO public.tap_archive_seen VALUES (e.global_position)';
SELECT eventstore.create_projection('tap_archive', 'public.tap_archive_note',
                                    on_reset => 'TRUNCATE public.tap_archive_seen') \g /dev/null
SELECT pg_temp.mark('second') \g /dev/null
SELECT is(eventstore.archive_events(pg_temp.at('second')), 4::bigint, 'a second archival queues the rest');
SELECT is(eventstore.run_maintenance(), 0::bigint,
          'a projection that has applied nothing holds it all');
SELECT is((pg_temp.last_job('archive_events')).details->>'waiting_for', 'projection tap_archive version 1',
          'its row names the projection it waits for');
SELECT is(eventstore.run_projection('tap_archive', max_events => 2), 2::bigint, 'the projection applies two events');
SELECT is(eventstore.run_maintenance(), 2::bigint,
          'archival moves the two events it applied, and waits for the rest');
SELECT eventstore.run_projection('tap_archive') \g /dev/null
SELECT is(eventstore.run_maintenance(), 2::bigint, 'once it has applied everything, the rest is moved');
SELECT is((SELECT count(*) FROM eventstore.events), 0::bigint, 'the live log is empty');
SELECT eventstore.append_event('d', 't', '{}') \g /dev/null
SELECT eventstore.rebuild_projection('tap_archive') \g /dev/null
SELECT eventstore.run_projection('tap_archive') \g /dev/null
SELECT is((SELECT array_agg(position) FROM public.tap_archive_seen), '{11}'::bigint[],
          'a rebuild after archival applies the live log as it now is');
SELECT eventstore.drop_projection('tap_archive') \g /dev/null
DROP TABLE public.tap_archive_seen;
DROP FUNCTION public.tap_archive_note(eventstore.events);

------------------------------------------------------------------------
-- Retention
------------------------------------------------------------------------
SELECT eventstore.append_to_stream('r-' || s, '[{"type": "t"}, {"type": "t"}, {"type": "t"}, {"type": "t"}]')
FROM generate_series(1, 3) s \g /dev/null
SELECT eventstore.append_to_stream('r-keep', '[{"type": "t"}, {"type": "t"}, {"type": "t"}]') \g /dev/null
SELECT eventstore.append_to_stream('old-1', '[{"type": "t"}, {"type": "t"}]') \g /dev/null
SELECT is(pg_temp.error_of($$SELECT eventstore.set_retention('r-', max_count => 1)$$), NULL, 'set_retention sets a rule');
SELECT eventstore.set_retention('r-', max_count => 2) \g /dev/null
SELECT eventstore.set_retention('r-keep', max_count => 100) \g /dev/null
SELECT ok((SELECT max_count = 2 AND max_age IS NULL AND set_by = current_user
           FROM eventstore.retention_rules WHERE stream_prefix = 'r-'),
          'setting it again replaces it');
SELECT is(eventstore.run_maintenance(), 0::bigint,
          'retention waits for a processor that has not read the events it would remove');
SELECT eventstore.reset_checkpoint('tap-archive-consumer', 28) \g /dev/null
SELECT is(eventstore.run_maintenance(), 6::bigint,
          'once it has, run_maintenance removes the events over max_count, two of each r- stream');
SELECT ok(pg_temp.revisions('r-1') = '{2,3}' AND pg_temp.revisions('r-3') = '{2,3}',
          'each keeps its last two events');
SELECT is(pg_temp.revisions('r-keep'), '{0,1,2}'::bigint[], 'the longest prefix''s rule applies: r-keep keeps all');
SELECT is((SELECT array_agg(global_position ORDER BY global_position) FROM eventstore.removed_log_places),
          '{12,13,16,17,20,21}'::bigint[], 'each removed event left its place in removed_log_places');
SELECT is(pg_temp.all_after(13), '{14,15,18,19,22,23,24,25,26,27,28}'::bigint[],
          'read_all resumes after a removed event in place');
SELECT ok((SELECT finished_at IS NOT NULL AND events = 6 AND target IS NULL FROM pg_temp.last_job('retention')),
          'the pass is recorded in maintenance_log, finished, with its count');
SELECT eventstore.set_retention('old-', max_age => interval '1 millisecond') \g /dev/null
SELECT pg_sleep(0.01) \g /dev/null
SELECT is(eventstore.run_maintenance(), 2::bigint, 'max_age removes the events older than it');
SELECT eventstore.set_retention('old-') \g /dev/null
SELECT is((SELECT count(*) FROM eventstore.retention_rules WHERE stream_prefix = 'old-'), 0::bigint,
          'set_retention with NULL max_age and max_count removes the rule');
SELECT is(pg_temp.error_of($$SELECT eventstore.set_retention('no-such-')$$), NULL,
          'removing a rule that does not exist is no error (a notice says so)');
SELECT eventstore.set_retention('r-') \g /dev/null
SELECT eventstore.set_retention('r-keep') \g /dev/null

SELECT * FROM finish();
DELETE FROM eventstore.checkpoints;
