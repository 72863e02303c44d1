-- pgTAP: stream ids and event types no one means are refused with 22023 on
-- every append path, before anything is written, inside a caller's
-- transaction too; what people mean is stored byte for byte.
\ir setup.psql

-- Names no one means, each with what makes it so.
CREATE TEMP TABLE bad_names (name text, why text);
INSERT INTO bad_names VALUES
  (' ', 'a space'), (E'\u00a0\u2003\u3000', 'Unicode spaces only'),
  (E'a\u0001b', 'U+0001'), (E'a\tb', 'a tab'), (E'ab\n', 'a newline'),
  (E'a\u001fb', 'U+001F'), (E'a\u007fb', 'DEL'), (E'a\u0080b', 'U+0080'),
  (E'a\u009fb', 'U+009F'), (E'a\u202ab', 'U+202A'), (E'a\u202eb', 'U+202E'),
  (E'a\u2066b', 'U+2066'), (E'a\u2069b', 'U+2069'), (repeat('x', 1001), '1001 bytes');

-- Every append path, as a statement with %1$L for the name.
CREATE TEMP TABLE paths (path text, sql text);
INSERT INTO paths VALUES
  ('append_event stream_id',
   $$SELECT eventstore.append_event(%1$L, 'Opened', '{}')$$),
  ('append_to_stream stream_id',
   $$SELECT eventstore.append_to_stream(%1$L, '[{"type": "Opened"}]')$$),
  ('append_event event_type',
   $$SELECT eventstore.append_event('names-1', %1$L, '{}')$$),
  ('append_to_stream batch type',
   $$SELECT eventstore.append_to_stream('names-1',
       jsonb_build_array(jsonb_build_object('type', 'Opened'), jsonb_build_object('type', %1$L::text)))$$),
  ('append_event with an id',
   $$SELECT eventstore.append_event(%1$L, 'Opened', '{}', NULL, NULL, gen_random_uuid())$$),
  ('append_to_stream with ids and an expected revision',
   $$SELECT eventstore.append_to_stream('names-1',
       jsonb_build_array(jsonb_build_object('type', %1$L::text, 'id', gen_random_uuid())), -1)$$);

SELECT plan(9);

-- every name on every path: 22023 with a message naming what is wrong and a hint
SELECT is((SELECT count(*)::integer FROM bad_names, paths), 84,
          '14 names no one means on 6 append paths');
SELECT is(array(SELECT p.path || ': ' || b.why || ': ' || coalesce(e[1], 'accepted')
                FROM bad_names b, paths p, pg_temp.error_of(format(p.sql, b.name)) e
                WHERE e IS NULL OR e[1] <> '22023' OR e[4] IS NULL
                ORDER BY 1),
          '{}'::text[], 'each is refused with 22023 and a hint');
SELECT is(array(SELECT DISTINCT regexp_replace(e[2], 'U\+[0-9A-F]{4}', 'U+XXXX')
                FROM bad_names b, paths p, pg_temp.error_of(format(p.sql, b.name)) e
                ORDER BY 1),
          ARRAY['event_type contains the bidirectional control character U+XXXX',
                'event_type contains the control character U+XXXX',
                'event_type is longer than 1000 bytes',
                'event_type is only whitespace',
                'stream_id contains the bidirectional control character U+XXXX',
                'stream_id contains the control character U+XXXX',
                'stream_id is longer than 1000 bytes',
                'stream_id is only whitespace',
                'the "type" of event 0 contains the bidirectional control character U+XXXX',
                'the "type" of event 0 contains the control character U+XXXX',
                'the "type" of event 0 is longer than 1000 bytes',
                'the "type" of event 0 is only whitespace',
                'the "type" of event 1 contains the bidirectional control character U+XXXX',
                'the "type" of event 1 contains the control character U+XXXX',
                'the "type" of event 1 is longer than 1000 bytes',
                'the "type" of event 1 is only whitespace'],
          'the messages name the argument or the event and what is wrong');
SELECT is((SELECT count(*)::integer FROM eventstore.events) +
          (SELECT count(*)::integer FROM eventstore.streams), 0,
          'nothing was written, no stream row either');

-- what people mean: any script, inner and outer spaces, neighbours of the
-- refused characters; stored and read back byte for byte
CREATE TEMP TABLE good_names (name text);
INSERT INTO good_names VALUES ('Käse-Übersicht 名前'), (' spaced '), (E'x\u00a0y'),
  (E'~\u00a0\u2029\u202f\u206a'), (E'caf\u00e9'), (E'cafe\u0301'), (repeat('s', 1000));
SELECT is(array(SELECT g.name FROM good_names g
                WHERE (SELECT r.stream_id FROM eventstore.append_event(g.name, g.name, '{}') r)
                      IS DISTINCT FROM g.name),
          '{}'::text[], 'meant names are accepted as stream ids and event types');
SELECT is(array(SELECT convert_to(stream_id, 'UTF8') || convert_to(event_type, 'UTF8')
                FROM eventstore.events ORDER BY 1),
          array(SELECT convert_to(name, 'UTF8') || convert_to(name, 'UTF8')
                FROM good_names ORDER BY 1),
          'stored as given, byte for byte');
SELECT is((SELECT count(*)::integer FROM eventstore.streams
           WHERE normalize(stream_id, NFC) = E'caf\u00e9'), 2,
          'not normalized: NFC and NFD forms of one word are two streams');

-- inside a transaction that appended already: the refusal is an error of
-- that statement only, and the transaction's own append commits
BEGIN;
SELECT eventstore.append_event('names-2', 'Opened', '{}') IS NOT NULL AS appended \gset
SELECT throws_ok($$SELECT eventstore.append_event('names-2', E'Closed\u202e', '{}')$$,
                 '22023', NULL, 'a refusal mid-transaction is an error of that statement');
COMMIT;
SELECT is(eventstore.stream_revision('names-2'), 0::bigint,
          'the transaction''s own append is kept');

SELECT * FROM finish();

-- Leave the shared database as we found it.
DROP EXTENSION pgtap CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
