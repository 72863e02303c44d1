-- pgTAP: erasure reaches the archive.  redact_events redacts a stream's
-- archived events as well as those in the log, and a hard delete_stream
-- removes its archived events too, keeping their places for cursors.
\ir setup.psql

SELECT plan(8);

SELECT eventstore.append_to_stream('person-1', '[
  {"type": "Registered", "data": {"name": "Ada", "city": "London"}},
  {"type": "Moved", "data": {"name": "Ada", "city": "Paris"}}]') \g /dev/null
SELECT eventstore.append_to_stream('person-2', '[
  {"type": "Registered", "data": {"name": "Bob", "city": "Rome"}}]') \g /dev/null
SELECT pg_sleep(0.01) \g /dev/null
CREATE TABLE pg_temp.cutoff AS SELECT clock_timestamp() AS at;
SELECT pg_sleep(0.01) \g /dev/null
SELECT eventstore.append_event('person-1', 'Moved', '{"name": "Ada", "city": "Oslo"}') \g /dev/null
SELECT eventstore.append_event('other', 'Noted', '{}') \g /dev/null

SELECT eventstore.archive_events((SELECT at FROM pg_temp.cutoff)) \g /dev/null
SELECT is(eventstore.run_maintenance(), 3::bigint,
          'the events before the cutoff move to the archive');
SELECT is((SELECT count(*) FROM eventstore.events_archive WHERE stream_id = 'person-1'), 2::bigint,
          'person-1 has two events archived and one in the log');

SELECT is(eventstore.redact_events('person-1', ARRAY['name'], 'erasure request 7'), 3::bigint,
          'redact_events counts the stream''s events in the log and in the archive');
SELECT is((SELECT count(*) FROM eventstore.events_archive
           WHERE stream_id = 'person-1' AND data->'name' = '{"$redacted": true}'), 2::bigint,
          'its archived events are redacted');
SELECT is((SELECT count(*) FROM (SELECT data FROM eventstore.events WHERE stream_id = 'person-1'
                                 UNION ALL
                                 SELECT data FROM eventstore.events_archive WHERE stream_id = 'person-1') d
           WHERE d.data::text LIKE '%Ada%'), 0::bigint,
          'nothing of the name is left anywhere');

CREATE TABLE pg_temp.archived AS
	SELECT global_position FROM eventstore.events_archive WHERE stream_id = 'person-2';
SELECT is(eventstore.delete_stream('person-2', hard => true), 1::bigint,
          'a hard delete counts the stream''s archived events');
SELECT is((SELECT count(*) FROM eventstore.events_archive WHERE stream_id = 'person-2'), 0::bigint,
          'and removes them from the archive');
SELECT ok((SELECT bool_and(EXISTS (SELECT FROM eventstore.removed_log_places r
                                   WHERE r.global_position = a.global_position))
           FROM pg_temp.archived a)
          AND (SELECT count(*) FROM eventstore.read_all((SELECT global_position FROM pg_temp.archived), NULL)) > 0,
          'their places are kept: a cursor at one still resumes');

SELECT * FROM finish();
