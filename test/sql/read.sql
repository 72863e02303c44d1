-- read_stream, read_all and stream_revision: exact results and errors.
-- Each test file starts from an empty store (the tests share one database).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
CREATE EXTENSION pg_eventstore;
RESET client_min_messages;
\pset null '(null)'

SELECT count(*) FROM eventstore.append_to_stream('a', '[{"type": "A0"}, {"type": "A1"}, {"type": "A2"}]');
SELECT count(*) FROM eventstore.append_to_stream('b', '[{"type": "B0"}, {"type": "B1"}]');
SELECT count(*) FROM eventstore.append_event('a', 'A3', '{"n": 3}');

-- forwards, from a revision, with a limit
SELECT revision, event_type FROM eventstore.read_stream('a');
SELECT revision, event_type FROM eventstore.read_stream('a', 1, 2);
-- backwards from the end (NULL or -1), or from a revision
SELECT revision, event_type FROM eventstore.read_stream('a', NULL, 2, true);
SELECT revision, event_type FROM eventstore.read_stream('a', -1, NULL, true);
SELECT revision, event_type FROM eventstore.read_stream('a', 1, NULL, true);
-- past the end, and a stream that does not exist: empty
SELECT count(*) FROM eventstore.read_stream('a', 10);
SELECT count(*) FROM eventstore.read_stream('nope');
SELECT eventstore.stream_revision('a'), eventstore.stream_revision('nope');

-- errors
SELECT * FROM eventstore.read_stream(NULL);
SELECT * FROM eventstore.read_stream('a', -1);
SELECT * FROM eventstore.read_stream('a', -2, NULL, true);
SELECT * FROM eventstore.read_stream('a', 0, 0);

-- the global log in log order, paged by the last position received
SELECT global_position, stream_id, revision, event_type FROM eventstore.read_all();
SELECT global_position, event_type FROM eventstore.read_all(NULL, 2);
SELECT global_position, event_type FROM eventstore.read_all(2, 2);
SELECT global_position, event_type FROM eventstore.read_all(4, 2);
SELECT global_position, event_type FROM eventstore.read_all(6);
SELECT global_position, event_type FROM eventstore.read_all(0, 1);
SELECT global_position, event_type FROM eventstore.read_all(NULL, NULL, '{A1,B1}');

-- consumer groups: each stream in exactly one member's part
SELECT eventstore.stream_partition('a', 2) AS a_in, eventstore.stream_partition('b', 2) AS b_in,
       eventstore.stream_partition('cart-42', 1000) AS cart_42_of_1000;
SELECT m, string_agg(event_type, ',' ORDER BY global_position)
FROM generate_series(0, 1) m, eventstore.read_all(NULL, NULL, NULL, m, 2) GROUP BY m ORDER BY m;

-- an open transaction's own events are not in the log yet
BEGIN;
SELECT count(*) FROM eventstore.append_event('c', 'C0', '{}');
SELECT count(*) FILTER (WHERE stream_id = 'c') AS own_events_seen,
       count(*) AS others FROM eventstore.read_all(6);
COMMIT;
SELECT global_position, event_type FROM eventstore.read_all(6);

-- errors
SELECT * FROM eventstore.read_all(999);
SELECT * FROM eventstore.read_all(-1);
SELECT * FROM eventstore.read_all(NULL, 0);
SELECT * FROM eventstore.read_all(NULL, 10, NULL, 1, NULL);
SELECT * FROM eventstore.read_all(NULL, 10, NULL, 2, 2);
SELECT * FROM eventstore.read_all(NULL, 10, NULL, -1, 2);
SELECT eventstore.stream_partition('a', 0);
