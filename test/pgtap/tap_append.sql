-- pgTAP: append_to_stream and append_event, their guarantees and errors.
\ir setup.psql

-- The last position handed out (the sequence is never reset by a rollback).
CREATE FUNCTION pg_temp.last_position_taken() RETURNS bigint
LANGUAGE sql AS $$ SELECT last_value FROM eventstore.global_position_seq $$;

-- The millisecond timestamp of a version 7 UUID.
CREATE FUNCTION pg_temp.uuid_ms(u uuid) RETURNS bigint
LANGUAGE sql AS $$
	SELECT ('x' || lpad(substr(replace(u::text, '-', ''), 1, 12), 16, '0'))::bit(64)::bigint
$$;

SELECT plan(153);

------------------------------------------------------------------------
-- A first append: result, stored events, stream row.
------------------------------------------------------------------------
BEGIN;
CREATE TEMP TABLE first_append AS
SELECT * FROM eventstore.append_to_stream('cart-1',
  '[{"type": "CartOpened", "data": {"customer": "c-7"}},
    {"type": "ItemAdded", "data": {"sku": "A1", "qty": 2}, "metadata": {"by": "web"}}]');
SELECT is((SELECT (stream_id, next_expected_revision, first_position, last_position)::text
           FROM first_append),
          '(cart-1,1,1,2)',
          'a first append of two events: next_expected_revision 1, positions 1 and 2');
SELECT is((SELECT transaction_id FROM first_append), pg_current_xact_id(),
          'append_result.transaction_id is the appending transaction');
SELECT results_eq(
  $$SELECT global_position, transaction_id, stream_id, revision, event_type,
           data, metadata, created_at
    FROM eventstore.events ORDER BY global_position$$,
  $$VALUES (1::bigint, pg_current_xact_id(), 'cart-1'::text, 0::bigint,
            'CartOpened'::text, '{"customer": "c-7"}'::jsonb, '{}'::jsonb, now()),
           (2, pg_current_xact_id(), 'cart-1', 1, 'ItemAdded',
            '{"sku": "A1", "qty": 2}', '{"by": "web"}', now())$$,
  'events are stored with revisions from 0, the transaction id, metadata defaulting to {} and created_at = now()');
SELECT results_eq(
  $$SELECT stream_id, revision, created_at, updated_at FROM eventstore.streams$$,
  $$VALUES ('cart-1'::text, 1::bigint, now(), now())$$,
  'the stream row holds the last revision and created_at = updated_at = now()');
COMMIT;

------------------------------------------------------------------------
-- Every expected_revision mode that matches, on both paths: generated ids
-- (one UPDATE checks and advances) and caller-chosen ids (lock, then check).
------------------------------------------------------------------------
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_event('cart-1', 'ItemAdded', '{"sku": "B2"}', NULL, 1)),
          '(2,3,3)', 'expected revision n = current revision appends');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_event('cart-1', 'ItemRemoved', '{"sku": "B2"}', NULL, -2)),
          '(3,4,4)', 'expected revision -2 appends to an existing stream');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_event('cart-2', 'CartOpened', '{}', NULL, -1)),
          '(0,5,5)', 'expected revision -1 creates a new stream');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_event('cart-2', 'ItemAdded', NULL)),
          '(1,6,6)', 'expected revision NULL appends to an existing stream');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_event('cart-3', 'CartOpened', NULL)),
          '(0,7,7)', 'expected revision NULL creates a new stream');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_event('cart-3', 'ItemAdded', '{}', NULL, 0)),
          '(1,8,8)', 'expected revision 0 appends after the first event');
SELECT is((SELECT (data, metadata)::text FROM eventstore.events WHERE global_position = 6),
          '({},{})', 'append_event: data NULL and metadata NULL are stored as {}');

SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_to_stream('cart-1',
             '[{"type": "Noted", "id": "0190e3a0-0000-7000-8000-000000000101"}]', 3)),
          '(4,9,9)', 'with an id: expected revision n = current revision appends');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_to_stream('cart-1',
             '[{"type": "Noted", "id": "0190e3a0-0000-7000-8000-000000000102"}]', -2)),
          '(5,10,10)', 'with an id: expected revision -2 appends to an existing stream');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_to_stream('cart-4',
             '[{"type": "CartOpened", "id": "0190e3a0-0000-7000-8000-000000000103"}]', -1)),
          '(0,11,11)', 'with an id: expected revision -1 creates a new stream');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_to_stream('cart-5',
             '[{"type": "CartOpened", "id": "0190e3a0-0000-7000-8000-000000000104"}]')),
          '(0,12,12)', 'with an id: expected revision NULL creates a new stream');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_to_stream('cart-5',
             '[{"type": "ItemAdded", "id": "0190e3a0-0000-7000-8000-000000000105"},
               {"type": "ItemAdded", "id": "0190e3a0-0000-7000-8000-000000000106"}]')),
          '(2,13,14)', 'with ids: expected revision NULL appends a batch to an existing stream');
SELECT is((SELECT (next_expected_revision, first_position, last_position)::text
           FROM eventstore.append_event('cart-4', 'ItemAdded', '{}', NULL, 0,
                                        '0190e3a0-0000-7000-8000-000000000107')),
          '(1,15,15)', 'append_event with an id: expected revision 0 appends');
SELECT is((SELECT array_agg(event_id::text ORDER BY global_position)
           FROM eventstore.events WHERE global_position BETWEEN 11 AND 15),
          ARRAY['0190e3a0-0000-7000-8000-000000000103', '0190e3a0-0000-7000-8000-000000000104',
                '0190e3a0-0000-7000-8000-000000000105', '0190e3a0-0000-7000-8000-000000000106',
                '0190e3a0-0000-7000-8000-000000000107'],
          'caller-chosen ids are stored as given');
SELECT results_eq(
  $$SELECT stream_id, eventstore.stream_revision(stream_id) FROM
    (VALUES ('cart-1'), ('cart-2'), ('cart-3'), ('cart-4'), ('cart-5'), ('ghost')) s(stream_id)$$,
  $$VALUES ('cart-1', 5::bigint), ('cart-2', 1), ('cart-3', 1), ('cart-4', 1), ('cart-5', 2),
           ('ghost', NULL)$$,
  'stream_revision gives each stream''s last revision, NULL for none');

------------------------------------------------------------------------
-- Every mode that does not match: SE001 naming the stream, a detail with
-- expected and actual revision, nothing written, no position taken.
------------------------------------------------------------------------
CREATE TEMP TABLE conflicts (n int, sql text, stream text, detail text);
INSERT INTO conflicts VALUES
 (1, $$SELECT eventstore.append_event('cart-1', 'X', '{}', NULL, 0)$$, 'cart-1',
  'Expected revision 0, actual revision 5.'),
 (2, $$SELECT eventstore.append_event('cart-1', 'X', '{}', NULL, 6)$$, 'cart-1',
  'Expected revision 6, actual revision 5.'),
 (3, $$SELECT eventstore.append_event('cart-1', 'X', '{}', NULL, -1)$$, 'cart-1',
  'Expected revision -1 (no stream), actual revision 5.'),
 (4, $$SELECT eventstore.append_event('ghost', 'X', '{}', NULL, -2)$$, 'ghost',
  'Expected revision -2 (any existing stream), actual revision none (the stream does not exist).'),
 (5, $$SELECT eventstore.append_event('ghost', 'X', '{}', NULL, 0)$$, 'ghost',
  'Expected revision 0, actual revision none (the stream does not exist).'),
 (6, $$SELECT eventstore.append_to_stream('cart-1', '[{"type": "X", "id": "0190e3a0-0000-7000-8000-000000000f01"}]', 0)$$, 'cart-1',
  'Expected revision 0, actual revision 5.'),
 (7, $$SELECT eventstore.append_to_stream('cart-1', '[{"type": "X", "id": "0190e3a0-0000-7000-8000-000000000f01"}]', 6)$$, 'cart-1',
  'Expected revision 6, actual revision 5.'),
 (8, $$SELECT eventstore.append_to_stream('cart-1', '[{"type": "X", "id": "0190e3a0-0000-7000-8000-000000000f01"}]', -1)$$, 'cart-1',
  'Expected revision -1 (no stream), actual revision 5.'),
 (9, $$SELECT eventstore.append_to_stream('ghost', '[{"type": "X", "id": "0190e3a0-0000-7000-8000-000000000f01"}]', -2)$$, 'ghost',
  'Expected revision -2 (any existing stream), actual revision none (the stream does not exist).'),
 (10, $$SELECT eventstore.append_to_stream('ghost', '[{"type": "X", "id": "0190e3a0-0000-7000-8000-000000000f01"}]', 0)$$, 'ghost',
  'Expected revision 0, actual revision none (the stream does not exist).'),
 (11, $$SELECT eventstore.append_to_stream('cart-2', '[{"type": "X"}, {"type": "Y"}]', -1)$$, 'cart-2',
  'Expected revision -1 (no stream), actual revision 1.'),
 (12, $$SELECT eventstore.append_to_stream('cart-2', '[{"type": "X"}, {"type": "Y"}]', 0)$$, 'cart-2',
  'Expected revision 0, actual revision 1.');
SELECT throws_ok(sql, 'SE001', format('wrong expected revision for stream "%s"', stream),
                 format('conflict %s raises SE001 naming the stream', n))
FROM conflicts ORDER BY n;
SELECT is((pg_temp.error_of(sql))[3], detail,
          format('conflict %s: the detail gives expected and actual revision', n))
FROM conflicts ORDER BY n;
SELECT is((pg_temp.error_of(sql))[4],
          'Read the stream to decide again, then retry with its current revision.',
          'a conflict hints at what to do')
FROM conflicts WHERE n = 1;

SELECT throws_ok($$SELECT eventstore.append_event('cart-1', 'X', '{}', NULL, -3)$$,
                 '22023', 'expected_revision must be NULL, -1, -2 or a revision >= 0',
                 'expected revision -3 is invalid (22023)');
SELECT throws_ok($$SELECT eventstore.append_to_stream('cart-1',
                   '[{"type": "X", "id": "0190e3a0-0000-7000-8000-000000000f01"}]', -100)$$,
                 '22023', 'expected_revision must be NULL, -1, -2 or a revision >= 0',
                 'expected revision -100 with an id is invalid (22023)');

SELECT is((SELECT count(*) FROM eventstore.events), 15::bigint,
          'no event was written by a failed append');
SELECT is((SELECT count(*) FROM eventstore.streams), 5::bigint,
          'no stream was created by a failed append');
SELECT is(eventstore.stream_revision('cart-1'), 5::bigint,
          'a failed append does not advance the stream');
SELECT is(pg_temp.last_position_taken(), 15::bigint,
          'a losing concurrency check takes no global position');
SELECT is((SELECT (next_expected_revision, first_position)::text
           FROM eventstore.append_event('cart-1', 'CheckedOut', '{}', NULL, 5)),
          '(6,16)', 'the next append after the failures gets the next position, without a gap');

------------------------------------------------------------------------
-- Bad input: an errcode of its own, a lowercase message, a hint, no trace.
------------------------------------------------------------------------
CREATE TEMP TABLE bad_calls (n int, what text, sql text, code text, msg text, ours boolean DEFAULT true);
INSERT INTO bad_calls (n, what, sql, code, msg) VALUES
 (1, 'NULL stream_id', $$SELECT eventstore.append_to_stream(NULL, '[{"type": "A"}]')$$,
  '22004', 'stream_id must not be null'),
 (2, 'NULL stream_id (append_event)', $$SELECT eventstore.append_event(NULL, 'A', '{}')$$,
  '22004', 'stream_id must not be null'),
 (3, 'empty stream_id', $$SELECT eventstore.append_to_stream('', '[{"type": "A"}]')$$,
  '22023', 'stream_id must not be empty'),
 (4, 'empty stream_id (append_event)', $$SELECT eventstore.append_event('', 'A', '{}')$$,
  '22023', 'stream_id must not be empty'),
 (5, 'NULL events', $$SELECT eventstore.append_to_stream('s', NULL)$$,
  '22004', 'events must not be null'),
 (6, 'events an object', $$SELECT eventstore.append_to_stream('s', '{"type": "A"}')$$,
  '22023', 'events must be a JSON array of event objects'),
 (7, 'events a string', $$SELECT eventstore.append_to_stream('s', '"A"')$$,
  '22023', 'events must be a JSON array of event objects'),
 (8, 'events a number', $$SELECT eventstore.append_to_stream('s', '5')$$,
  '22023', 'events must be a JSON array of event objects'),
 (9, 'events JSON null', $$SELECT eventstore.append_to_stream('s', 'null')$$,
  '22023', 'events must be a JSON array of event objects'),
 (10, 'events empty', $$SELECT eventstore.append_to_stream('s', '[]')$$,
  '22023', 'events must not be an empty array'),
 (11, 'an event not an object', $$SELECT eventstore.append_to_stream('s', '[{"type": "A"}, 7]')$$,
  '22023', 'event 1 is not a JSON object'),
 (12, 'an event an array', $$SELECT eventstore.append_to_stream('s', '[[{"type": "A"}]]')$$,
  '22023', 'event 0 is not a JSON object'),
 (13, 'no type', $$SELECT eventstore.append_to_stream('s', '[{"data": {}}]')$$,
  '22023', 'event 0 has no "type"'),
 (14, 'empty type', $$SELECT eventstore.append_to_stream('s', '[{"type": ""}]')$$,
  '22023', 'event 0 has a "type" that is not a non-empty string'),
 (15, 'numeric type', $$SELECT eventstore.append_to_stream('s', '[{"type": 5}]')$$,
  '22023', 'event 0 has a "type" that is not a non-empty string'),
 (16, 'null type', $$SELECT eventstore.append_to_stream('s', '[{"type": "A"}, {"type": null}]')$$,
  '22023', 'event 1 has a "type" that is not a non-empty string'),
 (17, 'metadata an array', $$SELECT eventstore.append_to_stream('s', '[{"type": "A", "metadata": [1]}]')$$,
  '22023', 'event 0 has "metadata" that is not a JSON object'),
 (18, 'metadata a string', $$SELECT eventstore.append_to_stream('s', '[{"type": "A", "metadata": "m"}]')$$,
  '22023', 'event 0 has "metadata" that is not a JSON object'),
 (19, 'metadata null', $$SELECT eventstore.append_to_stream('s', '[{"type": "A", "metadata": null}]')$$,
  '22023', 'event 0 has "metadata" that is not a JSON object'),
 (20, 'id not a uuid', $$SELECT eventstore.append_to_stream('s', '[{"type": "A", "id": "not-a-uuid"}]')$$,
  '22P02', 'event 0 has an "id" that is not a UUID: "not-a-uuid"'),
 (21, 'id with a bad digit', $$SELECT eventstore.append_to_stream('s', '[{"type": "A"}, {"type": "B", "id": "0190e3a0-0000-7000-8000-00000000000g"}]')$$,
  '22P02', 'event 1 has an "id" that is not a UUID: "0190e3a0-0000-7000-8000-00000000000g"'),
 (22, 'id too long', $$SELECT eventstore.append_to_stream('s', '[{"type": "A", "id": "0190e3a0-0000-7000-8000-0000000000011"}]')$$,
  '22P02', 'event 0 has an "id" that is not a UUID: "0190e3a0-0000-7000-8000-0000000000011"'),
 (23, 'id misplaced hyphen', $$SELECT eventstore.append_to_stream('s', '[{"type": "A", "id": "0190e3a00-000-7000-8000-000000000001"}]')$$,
  '22P02', 'event 0 has an "id" that is not a UUID: "0190e3a00-000-7000-8000-000000000001"'),
 (24, 'id a number', $$SELECT eventstore.append_to_stream('s', '[{"type": "A", "id": 12}]')$$,
  '22023', 'event 0 has an "id" that is not a string'),
 (25, 'id null', $$SELECT eventstore.append_to_stream('s', '[{"type": "A", "id": null}]')$$,
  '22023', 'event 0 has an "id" that is not a string'),
 (26, 'unknown key', $$SELECT eventstore.append_to_stream('s', '[{"type": "A", "payload": {}}]')$$,
  '22023', 'event 0 has a key other than "type", "data", "metadata" and "id"'),
 (27, 'an id twice in a batch', $$SELECT eventstore.append_to_stream('s',
  '[{"type": "A", "id": "0190e3a0-0000-7000-8000-000000000f02"}, {"type": "B"},
    {"type": "C", "id": "0190e3a0-0000-7000-8000-000000000F02"}]')$$,
  '22023', 'events 0 and 2 have the same id'),
 (28, 'NULL event_type', $$SELECT eventstore.append_event('s', NULL, '{}')$$,
  '22004', 'event_type must not be null'),
 (29, 'empty event_type', $$SELECT eventstore.append_event('s', '', '{}')$$,
  '22023', 'event_type must not be empty'),
 (30, 'metadata a JSON string', $$SELECT eventstore.append_event('s', 'A', '{}', '"text"')$$,
  '22023', 'metadata must be a JSON object'),
 (31, 'metadata a JSON array', $$SELECT eventstore.append_event('s', 'A', '{}', '[1]')$$,
  '22023', 'metadata must be a JSON object'),
 (32, 'expected revision -3 on a new stream', $$SELECT eventstore.append_event('s', 'A', '{}', NULL, -3)$$,
  '22023', 'expected_revision must be NULL, -1, -2 or a revision >= 0');
INSERT INTO bad_calls (n, what, sql, code, msg, ours) VALUES
 (33, 'malformed event_id (append_event)', $$SELECT eventstore.append_event('s', 'A', '{}', NULL, NULL, 'not-a-uuid')$$,
  '22P02', 'invalid input syntax for type uuid: "not-a-uuid"', false);

SELECT throws_ok(sql, code, msg, format('bad input, %s: %s', what, code))
FROM bad_calls ORDER BY n;
SELECT is(ARRAY(SELECT format('%s: %s', b.what, e)
                FROM bad_calls b, pg_temp.error_of(b.sql) e
                WHERE b.ours
                  AND (e[1] IN ('XX000', 'P0001') OR e[2] !~ '^[a-z]' OR e[2] ~ '\.$'
                       OR (e[3] IS NULL AND e[4] IS NULL))
                ORDER BY b.n),
          '{}'::text[],
          'every bad-input error has a proper errcode, a lowercase message without a period and a detail or hint');
SELECT is((SELECT count(*) FROM eventstore.events), 16::bigint, 'bad input writes no event');
SELECT is((SELECT count(*) FROM eventstore.streams WHERE stream_id IN ('s', '')), 0::bigint,
          'bad input creates no stream');
SELECT is(pg_temp.last_position_taken(), 16::bigint, 'bad input takes no global position');

------------------------------------------------------------------------
-- Accepted shapes: data is any JSON value, ids in any case or bare hex.
------------------------------------------------------------------------
SELECT is((SELECT next_expected_revision FROM eventstore.append_to_stream('json',
             '[{"type": "A", "data": [1, "two"]}, {"type": "B", "data": 3},
               {"type": "C", "data": null}, {"type": "D", "data": "x"}, {"type": "E"}]')),
          4::bigint, 'a batch of five events with data of every JSON kind');
SELECT results_eq(
  $$SELECT data FROM eventstore.read_stream('json')$$,
  $$VALUES ('[1, "two"]'::jsonb), ('3'), ('null'), ('"x"'), ('{}')$$,
  'data is stored as given, {} when absent');
SELECT is((SELECT next_expected_revision FROM eventstore.append_to_stream('json',
             '[{"type": "F", "id": "0190E3A0-0000-7000-8000-0000000001AA"},
               {"type": "G", "id": "0190e3a00000700080000000000001bb"}]', 4)),
          6::bigint, 'ids in upper case and as 32 bare hex digits are accepted');
SELECT is((SELECT array_agg(event_id ORDER BY revision) FROM eventstore.read_stream('json', 5)),
          ARRAY['0190e3a0-0000-7000-8000-0000000001aa', '0190e3a0-0000-7000-8000-0000000001bb']::uuid[],
          '... and stored as those UUIDs');

------------------------------------------------------------------------
-- Idempotent retry.
------------------------------------------------------------------------
CREATE TEMP TABLE original AS
SELECT * FROM eventstore.append_to_stream('order-1',
  '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
    {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}}]', -1);
SELECT is((SELECT (stream_id, next_expected_revision, first_position, last_position)::text FROM original),
          '(order-1,1,24,25)', 'a batch with ids appends');
SELECT is((SELECT r::text FROM eventstore.append_to_stream('order-1',
             '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
               {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}}]', -1) r),
          (SELECT o::text FROM original o),
          'a retry with the same expected revision returns the identical append_result, transaction_id included');
SELECT is((SELECT r::text FROM eventstore.append_to_stream('order-1',
             '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
               {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}}]') r),
          (SELECT o::text FROM original o),
          'a retry with expected revision NULL returns the identical append_result');
SELECT is((SELECT r::text FROM eventstore.append_to_stream('order-1',
             '[{"type": "OrderPlaced", "id": "0190E3A0-0000-7000-8000-000000000001"},
               {"type": "OrderPaid", "id": "0190e3a0000070008000000000000002", "data": {"eur": 10}}]', -2) r),
          (SELECT o::text FROM original o),
          'a retry with expected revision -2, ids spelt differently, returns the identical append_result');
SELECT is((SELECT count(*) FROM eventstore.events WHERE stream_id = 'order-1'), 2::bigint,
          'retries append nothing');
SELECT is(pg_temp.last_position_taken(), 25::bigint, 'retries take no global position');

CREATE TEMP TABLE original_2 AS
SELECT * FROM eventstore.append_event('order-1', 'OrderShipped', '{}', NULL, 1,
                                      '0190e3a0-0000-7000-8000-000000000003');
SELECT is((SELECT (next_expected_revision, first_position)::text FROM original_2), '(2,26)',
          'append_event with an id appends');
SELECT is((SELECT r::text FROM eventstore.append_to_stream('order-1',
             '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
               {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}}]', -1) r),
          (SELECT o::text FROM original o),
          'a retry of an older batch, after the stream moved on, still returns its original result');
SELECT is((SELECT r::text FROM eventstore.append_event('order-1', 'OrderShipped', '{}', NULL, 1,
                                                       '0190e3a0-0000-7000-8000-000000000003') r),
          (SELECT o::text FROM original_2 o),
          'a retried append_event returns its original result');
SELECT is((SELECT count(*) FROM eventstore.events WHERE stream_id = 'order-1'), 3::bigint,
          'the stream holds each event once');

-- Every other reuse of a stored id is SE002, and writes nothing.
CREATE TEMP TABLE reuses (n int, what text, sql text);
INSERT INTO reuses VALUES
 (1, 'a stored id in another stream', $$SELECT eventstore.append_event('order-2', 'OrderShipped', '{}', NULL, NULL,
     '0190e3a0-0000-7000-8000-000000000003')$$),
 (2, 'a stored id and a new id', $$SELECT eventstore.append_to_stream('order-1',
     '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
       {"type": "OrderNoted", "id": "0190e3a0-0000-7000-8000-000000000009"}]')$$),
 (3, 'a new id and a stored id', $$SELECT eventstore.append_to_stream('order-1',
     '[{"type": "OrderNoted", "id": "0190e3a0-0000-7000-8000-000000000009"},
       {"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"}]')$$),
 (4, 'a stored batch and an event without id', $$SELECT eventstore.append_to_stream('order-1',
     '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
       {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}},
       {"type": "OrderNoted"}]')$$),
 (5, 'stored ids not contiguous in the stream', $$SELECT eventstore.append_to_stream('order-1',
     '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
       {"type": "OrderShipped", "id": "0190e3a0-0000-7000-8000-000000000003"}]')$$),
 (6, 'stored ids of two appends', $$SELECT eventstore.append_to_stream('order-1',
     '[{"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}},
       {"type": "OrderShipped", "id": "0190e3a0-0000-7000-8000-000000000003"}]')$$),
 (7, 'stored ids in another order', $$SELECT eventstore.append_to_stream('order-1',
     '[{"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}},
       {"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"}]')$$),
 (8, 'a stored id with another type', $$SELECT eventstore.append_to_stream('order-1',
     '[{"type": "OrderCancelled", "id": "0190e3a0-0000-7000-8000-000000000001"},
       {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}}]')$$),
 (9, 'a stored id with other data', $$SELECT eventstore.append_to_stream('order-1',
     '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
       {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 11}}]')$$),
 (10, 'a stored batch at another expected revision', $$SELECT eventstore.append_to_stream('order-1',
     '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
       {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}}]', 0)$$),
 (11, 'a stored event at another expected revision', $$SELECT eventstore.append_event('order-1', 'OrderShipped', '{}', NULL, 2,
     '0190e3a0-0000-7000-8000-000000000003')$$),
 (12, 'a stored id in a new stream with -1', $$SELECT eventstore.append_to_stream('order-3',
     '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"}]', -1)$$);
SELECT throws_ok(sql, 'SE002', NULL, format('reuse %s, %s: SE002', n, what))
FROM reuses ORDER BY n;
SELECT is((pg_temp.error_of(sql))[2:3],
          ARRAY['event id 0190e3a0-0000-7000-8000-000000000003 is already stored',
                'It is stored at revision 2 of stream "order-1".'],
          'SE002 names the id and says where it is stored')
FROM reuses WHERE n = 1;
SELECT is((SELECT count(*) FROM eventstore.events WHERE stream_id = 'order-1'), 3::bigint,
          'a refused reuse appends nothing to the stream');
SELECT is((SELECT count(*) FROM eventstore.streams WHERE stream_id IN ('order-2', 'order-3')), 0::bigint,
          'a refused reuse creates no stream');
SELECT is((SELECT count(*) FROM eventstore.events
           WHERE event_id = '0190e3a0-0000-7000-8000-000000000009'), 0::bigint,
          'the new event of a partial batch is not stored');
SELECT is(pg_temp.last_position_taken(), 26::bigint, 'a refused reuse takes no global position');

------------------------------------------------------------------------
-- All or nothing, inside a caller's transaction.
------------------------------------------------------------------------
BEGIN;
SELECT is((SELECT next_expected_revision FROM eventstore.append_event('tx', 'A', '{}')), 0::bigint,
          'an append in an open transaction');
SELECT throws_ok($$SELECT eventstore.append_to_stream('tx',
                   '[{"type": "B"}, {"type": "C", "id": "0190e3a0-0000-7000-8000-000000000003"}]')$$,
                 'SE002', NULL, 'a failing batch in the same transaction');
SELECT is((SELECT count(*) FROM eventstore.read_stream('tx')), 1::bigint,
          'the failing batch left none of its events');
SELECT is((SELECT (next_expected_revision, first_position)::text
           FROM eventstore.append_event('tx', 'B', '{}', NULL, 0)),
          '(1,28)', 'the transaction goes on at the next revision and position');
SELECT is((SELECT array_agg(DISTINCT transaction_id)
           FROM eventstore.events WHERE stream_id = 'tx'),
          ARRAY[pg_current_xact_id()], 'both appends carry the one transaction id');
COMMIT;
SELECT results_eq($$SELECT revision, event_type FROM eventstore.read_stream('tx')$$,
                  $$VALUES (0::bigint, 'A'::text), (1, 'B')$$,
                  'after commit the stream holds the two committed appends');

BEGIN;
SELECT is((SELECT next_expected_revision FROM eventstore.append_event('rolled-back', 'A', '{}')), 0::bigint,
          'an append in a transaction that will roll back');
ROLLBACK;
SELECT is(eventstore.stream_revision('rolled-back'), NULL::bigint,
          'a rolled-back append leaves no stream');
SELECT is((SELECT count(*) FROM eventstore.events WHERE stream_id = 'rolled-back'), 0::bigint,
          'a rolled-back append leaves no event');

------------------------------------------------------------------------
-- The stream row is maintained.
------------------------------------------------------------------------
CREATE TEMP TABLE cart_1_before AS SELECT * FROM eventstore.streams WHERE stream_id = 'cart-1';
BEGIN;
SELECT is((SELECT next_expected_revision FROM eventstore.append_to_stream('cart-1',
             '[{"type": "Paid"}, {"type": "Shipped"}]', 6)), 8::bigint,
          'a batch of two after revision 6');
SELECT is((SELECT (revision, created_at, updated_at)::text FROM eventstore.streams WHERE stream_id = 'cart-1'),
          (SELECT (8, created_at, now())::text FROM cart_1_before),
          'the stream row: revision of the last event, created_at kept, updated_at = now()');
SELECT ok((SELECT created_at < now() FROM cart_1_before), 'created_at is the first append''s time');
COMMIT;

------------------------------------------------------------------------
-- Revisions have no holes; streams agree with the log.
------------------------------------------------------------------------
SELECT is(ARRAY(SELECT stream_id FROM eventstore.events GROUP BY stream_id
                HAVING min(revision) <> 0 OR max(revision) <> count(*) - 1
                    OR count(DISTINCT revision) <> count(*)
                ORDER BY stream_id),
          '{}'::text[], 'every stream''s revisions are 0, 1, 2, ... without holes');
SELECT bag_eq($$SELECT stream_id, revision FROM eventstore.streams$$,
              $$SELECT stream_id, max(revision) FROM eventstore.events GROUP BY stream_id$$,
              'every stream row holds its last event''s revision');
SELECT is((SELECT count(*) FROM eventstore.events e
           WHERE (SELECT count(*) FROM eventstore.events f
                  WHERE f.stream_id = e.stream_id AND f.revision < e.revision
                    AND f.global_position > e.global_position) > 0),
          0::bigint, 'within a stream, revision order is position order');

------------------------------------------------------------------------
-- Generated ids: UUIDv7, time-ordered, increasing.
------------------------------------------------------------------------
SELECT is((SELECT last_position - first_position FROM eventstore.append_to_stream('ids',
             (SELECT jsonb_agg(jsonb_build_object('type', 'Tick')) FROM generate_series(1, 50)))),
          49::bigint, 'a batch of 50 events without ids');
SELECT is((SELECT count(eventstore.append_event('ids', 'Tock', jsonb_build_object('n', g)))
           FROM generate_series(1, 5) g),
          5::bigint, 'five more single appends');
SELECT is((SELECT count(*) FROM eventstore.read_stream('ids')
           WHERE substr(event_id::text, 15, 1) = '7'
             AND substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b')),
          55::bigint, 'generated ids have version 7 and the RFC variant');
SELECT ok((SELECT array_agg(event_id ORDER BY global_position) = array_agg(event_id ORDER BY event_id)
           FROM eventstore.read_stream('ids')),
          'generated ids increase with the position, within a batch and across appends');
SELECT is((SELECT count(*) FROM eventstore.read_stream('ids')
           WHERE pg_temp.uuid_ms(event_id)
                 NOT BETWEEN (extract(epoch FROM created_at) * 1000)::bigint - 1000
                         AND (extract(epoch FROM created_at) * 1000)::bigint + 60000),
          0::bigint, 'a generated id carries the time of its append in milliseconds');
SELECT is((SELECT count(DISTINCT event_id) FROM eventstore.events),
          (SELECT count(*) FROM eventstore.events), 'event ids are unique');
SELECT ok((SELECT array_agg(u ORDER BY n) = array_agg(u ORDER BY u)
                  AND bool_and(substr(u::text, 15, 1) = '7')
           FROM (SELECT n, eventstore.uuid_v7() AS u FROM generate_series(1, 20) n) x),
          'eventstore.uuid_v7() gives increasing version 7 UUIDs');

------------------------------------------------------------------------
-- The log is append-only, for the owner too, whatever the replication role.
------------------------------------------------------------------------
CREATE TEMP TABLE log_before AS SELECT * FROM eventstore.events;
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}' WHERE stream_id = 'cart-1'$$,
                 'SE004', 'the event log is append-only: UPDATE of eventstore.events is not allowed',
                 'UPDATE of events raises SE004');
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}' WHERE false$$,
                 'SE004', 'the event log is append-only: UPDATE of eventstore.events is not allowed',
                 'an UPDATE of events that matches no row raises SE004 too');
SELECT throws_ok($$DELETE FROM eventstore.events WHERE stream_id = 'cart-1'$$,
                 'SE004', 'the event log is append-only: DELETE of eventstore.events is not allowed',
                 'DELETE from events raises SE004');
SELECT throws_ok($$TRUNCATE eventstore.events$$,
                 'SE004', 'the event log is append-only: TRUNCATE of eventstore.events is not allowed',
                 'TRUNCATE of events raises SE004');
SELECT throws_ok($$TRUNCATE eventstore.streams, eventstore.events$$,
                 'SE004', NULL, 'TRUNCATE of events together with streams raises SE004');
SELECT throws_ok($$WITH d AS (DELETE FROM eventstore.events RETURNING 1) SELECT count(*) FROM d$$,
                 'SE004', NULL, 'a DELETE in a CTE raises SE004');
SELECT throws_ok($$INSERT INTO eventstore.events SELECT * FROM eventstore.events WHERE revision = 0 AND stream_id = 'cart-1'
                   ON CONFLICT (global_position) DO UPDATE SET data = '{}'$$,
                 'SE004', NULL, 'INSERT ... ON CONFLICT DO UPDATE on events raises SE004');
SET session_replication_role = replica;
SELECT throws_ok($$UPDATE eventstore.events SET data = '{}'$$, 'SE004', NULL,
                 'UPDATE raises SE004 with session_replication_role = replica');
SELECT throws_ok($$DELETE FROM eventstore.events$$, 'SE004', NULL,
                 'DELETE raises SE004 with session_replication_role = replica');
SELECT throws_ok($$TRUNCATE eventstore.events$$, 'SE004', NULL,
                 'TRUNCATE raises SE004 with session_replication_role = replica');
RESET session_replication_role;
SELECT is((pg_temp.error_of($$DELETE FROM eventstore.events$$))[3:4],
          ARRAY['Stored events are facts; they are never changed or removed in place.',
                'Append a compensating event to the stream instead; events are removed or erased only by eventstore.delete_stream, eventstore.redact_events, eventstore.archive_events and retention (eventstore.set_retention).'],
          'SE004 has a detail and a hint');
SELECT bag_eq($$SELECT * FROM eventstore.events$$, $$SELECT * FROM log_before$$,
              'the log is unchanged');

SELECT * FROM finish();

-- Leave the shared database as we found it.
DROP EXTENSION pgtap CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
