-- Stream ids and event types no one means are refused on every append path
-- (append_event, append_to_stream's argument, each event of its batch) with
-- 22023, before anything is written; ids are compared as bytes.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
CREATE EXTENSION pg_eventstore;
RESET client_min_messages;
\set VERBOSITY default

-- whitespace only: ASCII spaces, and Unicode spaces (no-break, ideographic)
SELECT eventstore.append_event('   ', 'Opened', '{}');
SELECT eventstore.append_event(E'\u00a0\u2003\u3000', 'Opened', '{}');
SELECT eventstore.append_to_stream(' ', '[{"type": "Opened"}]');
SELECT eventstore.append_event('names-1', ' ', '{}');
SELECT eventstore.append_to_stream('names-1', '[{"type": "Opened"}, {"type": "\u2009"}]');

-- control characters: C0 (U+0001-U+001F), DEL and C1 (U+007F-U+009F)
SELECT eventstore.append_event(E'names\t1', 'Opened', '{}');
SELECT eventstore.append_event(E'names-1\n', 'Opened', '{}');
SELECT eventstore.append_to_stream(E'\u0001names', '[{"type": "Opened"}]');
SELECT eventstore.append_event('names-1', E'Opened\u007f', '{}');
SELECT eventstore.append_event('names-1', E'Op\u0085ened', '{}');
SELECT eventstore.append_to_stream('names-1', '[{"type": "Opened\u001f"}]');
SELECT eventstore.append_to_stream('names-1', '[{"type": "A"}, {"type": "B"}, {"type": "\u009fC"}]');

-- bidirectional embeddings, overrides (U+202A-U+202E) and isolates (U+2066-U+2069)
SELECT eventstore.append_event(E'names-\u202e1', 'Opened', '{}');
SELECT eventstore.append_to_stream(E'\u2066names-1\u2069', '[{"type": "Opened"}]');
SELECT eventstore.append_event('names-1', E'\u202aOpened', '{}');
SELECT eventstore.append_to_stream('names-1', '[{"type": "Opened\u2068"}]');

-- a length limit: both are index keys
SELECT eventstore.append_event(repeat('s', 1001), 'Opened', '{}');
SELECT eventstore.append_event('names-1', repeat('T', 1001), '{}');
SELECT eventstore.append_to_stream('names-1', jsonb_build_array(jsonb_build_object('type', repeat('T', 1001))));

-- none of them wrote anything
SELECT count(*) AS events FROM eventstore.events;
SELECT count(*) AS streams FROM eventstore.streams;

-- what people mean is taken as it is: letters of any script, inner, leading
-- and trailing spaces, the longest ids, characters next to the refused ones
SELECT stream_id, next_expected_revision
FROM eventstore.append_event('Käse-Übersicht 名前', 'Заказ создан', '{}');
SELECT stream_id, next_expected_revision
FROM eventstore.append_to_stream(' spaced ', '[{"type": " Item Added "}]');
SELECT stream_id, next_expected_revision
FROM eventstore.append_event(E'\u00a0x\u2029', E'\u00a0\u200bT\u2029', '{}');
SELECT stream_id, next_expected_revision
FROM eventstore.append_event(E'~\u00a0\u2029\u202f\u206a', '~', '{}');
SELECT length(stream_id), next_expected_revision
FROM eventstore.append_event(repeat('s', 1000), repeat('T', 1000), '{}');

-- compared as bytes, not normalized: "é" as one character (NFC) and as "e"
-- with a combining accent (NFD) are two streams, and so are two cases
SELECT stream_id, next_expected_revision
FROM eventstore.append_event(E'caf\u00e9', 'Opened', '{}');
SELECT stream_id, next_expected_revision
FROM eventstore.append_event(E'cafe\u0301', 'Opened', '{}');
SELECT stream_id, next_expected_revision
FROM eventstore.append_event('CAFÉ', 'Opened', '{}');
SELECT stream_id, convert_to(stream_id, 'UTF8') AS bytes, revision
FROM eventstore.streams WHERE stream_id IN (E'caf\u00e9', E'cafe\u0301', 'CAFÉ')
ORDER BY bytes;
