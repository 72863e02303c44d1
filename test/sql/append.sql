-- append_to_stream and append_event: results, expected revisions, errors.
-- Each test file starts from an empty store (the tests share one database).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
CREATE EXTENSION pg_eventstore;
RESET client_min_messages;
\set VERBOSITY default

-- The extension makes its schema itself: one somebody made beforehand
-- (and would own) makes CREATE EXTENSION fail.
DROP EXTENSION pg_eventstore;
CREATE SCHEMA eventstore;
CREATE EXTENSION pg_eventstore;
DROP SCHEMA eventstore;
CREATE EXTENSION pg_eventstore;
\pset null '(null)'

-- A new stream: revisions from 0, positions from 1.
SELECT stream_id, next_expected_revision, first_position, last_position,
       transaction_id = pg_current_xact_id() AS own_transaction
FROM eventstore.append_to_stream('cart-1',
  '[{"type": "CartOpened", "data": {"customer": "c-7"}},
    {"type": "ItemAdded", "data": {"sku": "A1", "qty": 2}, "metadata": {"by": "web"}}]');

SELECT global_position, stream_id, revision, event_type, data, metadata
FROM eventstore.events ORDER BY global_position;
SELECT stream_id, revision, created_at = updated_at AS unchanged
FROM eventstore.streams;

-- Each expected revision mode that matches.
SELECT next_expected_revision, first_position
FROM eventstore.append_event('cart-1', 'ItemAdded', '{"sku": "B2"}', NULL, 1);
SELECT next_expected_revision FROM eventstore.append_event('cart-1', 'ItemRemoved', '{"sku": "B2"}', NULL, -2);
SELECT next_expected_revision FROM eventstore.append_event('cart-2', 'CartOpened', '{}', NULL, -1);
SELECT next_expected_revision FROM eventstore.append_event('cart-2', 'ItemAdded', NULL);
SELECT eventstore.stream_revision('cart-1'), eventstore.stream_revision('cart-2'),
       eventstore.stream_revision('nope');

-- Each mode that does not match: SE001, nothing written, no position burnt.
SELECT eventstore.append_event('cart-1', 'ItemAdded', '{}', NULL, 0);
SELECT eventstore.append_event('cart-1', 'CartOpened', '{}', NULL, -1);
SELECT eventstore.append_event('cart-9', 'ItemAdded', '{}', NULL, -2);
SELECT eventstore.append_event('cart-9', 'ItemAdded', '{}', NULL, 4);
SELECT eventstore.append_event('cart-1', 'ItemAdded', '{}', NULL, -3);
SELECT count(*) AS events, max(global_position) AS last_position FROM eventstore.events;
SELECT first_position FROM eventstore.append_event('cart-1', 'CheckedOut', '{}');

-- Bad input: a clear error, no trace.
SELECT eventstore.append_to_stream(NULL, '[{"type": "A"}]');
SELECT eventstore.append_to_stream('', '[{"type": "A"}]');
SELECT eventstore.append_to_stream('s', NULL);
SELECT eventstore.append_to_stream('s', '{"type": "A"}');
SELECT eventstore.append_to_stream('s', '[]');
SELECT eventstore.append_to_stream('s', '[{"type": "A"}, 7]');
SELECT eventstore.append_to_stream('s', '[{"data": {}}]');
SELECT eventstore.append_to_stream('s', '[{"type": ""}]');
SELECT eventstore.append_to_stream('s', '[{"type": 5}]');
SELECT eventstore.append_to_stream('s', '[{"type": "A", "metadata": [1]}]');
SELECT eventstore.append_to_stream('s', '[{"type": "A", "id": "not-a-uuid"}]');
SELECT eventstore.append_to_stream('s', '[{"type": "A", "id": 12}]');
SELECT eventstore.append_to_stream('s', '[{"type": "A", "payload": {}}]');
SELECT eventstore.append_to_stream('s',
  '[{"type": "A", "id": "00000000-0000-4000-8000-000000000001"},
    {"type": "B", "id": "00000000-0000-4000-8000-000000000001"}]');
SELECT eventstore.append_event(repeat('x', 1001), 'A', '{}');
SELECT eventstore.append_event('s', NULL, '{}');
SELECT eventstore.append_event('s', '', '{}');
SELECT eventstore.append_event('s', 'A', '{}', '"text"');
SELECT count(*) FROM eventstore.streams WHERE stream_id = 's';

-- data may be any JSON value; metadata defaults to {}.
SELECT next_expected_revision FROM eventstore.append_to_stream('json',
  '[{"type": "A", "data": [1, "two"]}, {"type": "B", "data": 3}, {"type": "C", "data": null}]');
SELECT revision, data, metadata FROM eventstore.read_stream('json');

-- Generated ids are version 7, time-ordered within a batch.
SELECT last_position - first_position AS span FROM eventstore.append_to_stream('ids',
  (SELECT jsonb_agg(jsonb_build_object('type', 'Tick')) FROM generate_series(1, 50)));
SELECT bool_and(substr(event_id::text, 15, 1) = '7') AS version_7,
       bool_and(substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS variant,
       array_agg(event_id ORDER BY revision) = array_agg(event_id ORDER BY event_id) AS ordered
FROM eventstore.read_stream('ids');

-- Idempotent retry: the same batch again appends nothing and returns the
-- original positions.
SELECT next_expected_revision, first_position, last_position
FROM eventstore.append_to_stream('order-1',
  '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
    {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}}]', -1);
SELECT next_expected_revision, first_position, last_position
FROM eventstore.append_to_stream('order-1',
  '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
    {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}}]', -1);
SELECT next_expected_revision, first_position
FROM eventstore.append_event('order-1', 'OrderShipped', '{}', NULL, 1,
                             '0190e3a0-0000-7000-8000-000000000003');
-- the retry of an older batch still succeeds, with its original result
SELECT next_expected_revision, first_position, last_position
FROM eventstore.append_to_stream('order-1',
  '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
    {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}}]');
SELECT count(*) FROM eventstore.read_stream('order-1');

-- a leading part of a stored batch, at its place, is a retry as well
SELECT next_expected_revision, first_position, last_position
FROM eventstore.append_to_stream('order-1',
  '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"}]', -1);

-- ...but every other reuse of a stored id is SE002.
-- not contiguous in the stream
SELECT eventstore.append_to_stream('order-1',
  '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
    {"type": "OrderShipped", "id": "0190e3a0-0000-7000-8000-000000000003"}]');
-- from two transactions
SELECT eventstore.append_to_stream('order-1',
  '[{"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}},
    {"type": "OrderShipped", "id": "0190e3a0-0000-7000-8000-000000000003"}]');
-- same ids and data, other metadata
SELECT eventstore.append_to_stream('order-1',
  '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001", "metadata": {"by": "x"}}]');
-- stored events and new ones
SELECT eventstore.append_to_stream('order-1',
  '[{"type": "OrderPlaced", "id": "0190e3a0-0000-7000-8000-000000000001"},
    {"type": "OrderPaid", "id": "0190e3a0-0000-7000-8000-000000000002", "data": {"eur": 10}},
    {"type": "OrderNoted"}]');
-- another stream
SELECT eventstore.append_event('order-2', 'OrderShipped', '{}', NULL, NULL,
                               '0190e3a0-0000-7000-8000-000000000003');
-- same id, other content
SELECT eventstore.append_event('order-1', 'OrderShipped', '{"late": true}', NULL, NULL,
                               '0190e3a0-0000-7000-8000-000000000003');
-- same batch at another place than expected
SELECT eventstore.append_event('order-1', 'OrderShipped', '{}', NULL, 0,
                               '0190e3a0-0000-7000-8000-000000000003');
SELECT count(*) FROM eventstore.read_stream('order-1');
SELECT count(*) FROM eventstore.streams WHERE stream_id = 'order-2';

-- An append is all its events or none: a failing statement leaves nothing.
BEGIN;
SELECT next_expected_revision FROM eventstore.append_event('tx', 'A', '{}');
SAVEPOINT s;
SELECT eventstore.append_to_stream('tx',
  '[{"type": "B"}, {"type": "C", "id": "0190e3a0-0000-7000-8000-000000000003"}]');
ROLLBACK TO s;
SELECT next_expected_revision FROM eventstore.append_event('tx', 'B', '{}', NULL, 0);
COMMIT;
SELECT revision, event_type FROM eventstore.read_stream('tx');

-- Appends nest: a user trigger that appends from inside an append.
CREATE FUNCTION pg_temp.audit_stream() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM eventstore.append_event('audit', 'StreamCreated',
									jsonb_build_object('stream', NEW.stream_id));
	RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER INSERT ON eventstore.streams
	FOR EACH ROW WHEN (NEW.stream_id <> 'audit') EXECUTE FUNCTION pg_temp.audit_stream();
SELECT next_expected_revision FROM eventstore.append_event('nest-1', 'A', '{}');
DO $$ BEGIN
	FOR i IN 2..4 LOOP
		PERFORM eventstore.append_event('nest-' || i, 'A', '{}');
	END LOOP;
END $$;
SELECT revision, data FROM eventstore.read_stream('audit');
DROP TRIGGER audit ON eventstore.streams;

-- Appends write, so a read-only transaction refuses them.
BEGIN READ ONLY;
SELECT eventstore.append_event('ro', 'A', '{}');
ROLLBACK;

-- The log is append-only, for the owner too.
UPDATE eventstore.events SET data = '{}' WHERE stream_id = 'cart-1';
DELETE FROM eventstore.events WHERE stream_id = 'cart-1';
TRUNCATE eventstore.events;
SET session_replication_role = replica;
DELETE FROM eventstore.events;
RESET session_replication_role;
SELECT count(*) FROM eventstore.events WHERE stream_id = 'cart-1';
