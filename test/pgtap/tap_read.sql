-- pgTAP: read_stream, read_all, stream_revision and stream_partition.
\ir setup.psql
DROP EXTENSION IF EXISTS dblink CASCADE;
CREATE EXTENSION dblink;

-- A consumer: read the whole log page by page, each time passing the
-- position of the last event received; returns the positions in the order
-- received.
CREATE FUNCTION pg_temp.consume(page int, types text[] DEFAULT NULL,
                                member int DEFAULT NULL, size int DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
DECLARE
	cursor_pos bigint;
	got bigint;
	e record;
BEGIN
	LOOP
		got := 0;
		FOR e IN SELECT * FROM eventstore.read_all(cursor_pos, page, types, member, size) LOOP
			got := got + 1;
			cursor_pos := e.global_position;
			RETURN NEXT e.global_position;
		END LOOP;
		EXIT WHEN got = 0;
	END LOOP;
END $$;

-- The log in its order, as the SQL definition of read_all has it.
CREATE FUNCTION pg_temp.log_order(types text[] DEFAULT NULL,
                                  member int DEFAULT NULL, size int DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE sql AS $$
	SELECT global_position FROM eventstore.events
	WHERE (types IS NULL OR event_type = ANY (types))
	  AND (member IS NULL OR eventstore.stream_partition(stream_id, size) = member)
	ORDER BY transaction_id, global_position
$$;

SELECT plan(96);

------------------------------------------------------------------------
-- A small log: streams a and b, then twenty two-event streams in one
-- transaction.
------------------------------------------------------------------------
SELECT is((SELECT last_position FROM eventstore.append_to_stream('a',
             '[{"type": "A0"}, {"type": "A1"}, {"type": "A2"}]')), 3::bigint, 'setup: stream a');
SELECT is((SELECT last_position FROM eventstore.append_to_stream('b',
             '[{"type": "B0"}, {"type": "B1"}]')), 5::bigint, 'setup: stream b');
SELECT is((SELECT last_position FROM eventstore.append_event('a', 'A3', '{"n": 3}')), 6::bigint,
          'setup: a fourth event in stream a');
SELECT is((SELECT count(eventstore.append_to_stream(format('s-%s', lpad(i::text, 2, '0')),
                                                    '[{"type": "Tick"}, {"type": "Tock"}]'))
           FROM generate_series(1, 20) i), 20::bigint, 'setup: twenty streams in one transaction');
SELECT is((SELECT max(global_position) FROM eventstore.events), 46::bigint, 'setup: 46 events');

------------------------------------------------------------------------
-- read_stream
------------------------------------------------------------------------
SELECT results_eq($$SELECT revision, event_type FROM eventstore.read_stream('a')$$,
                  $$VALUES (0::bigint, 'A0'::text), (1, 'A1'), (2, 'A2'), (3, 'A3')$$,
                  'read_stream reads a stream forwards from revision 0');
SELECT results_eq($$SELECT * FROM eventstore.read_stream('a')$$,
                  $$SELECT * FROM eventstore.events WHERE stream_id = 'a' ORDER BY revision$$,
                  'read_stream returns the stored rows whole');
SELECT results_eq($$SELECT revision FROM eventstore.read_stream('a', 1, 2)$$,
                  $$VALUES (1::bigint), (2)$$, 'from_revision and max_count');
SELECT results_eq($$SELECT revision FROM eventstore.read_stream('a', NULL)$$,
                  $$VALUES (0::bigint), (1), (2), (3)$$, 'forwards, from_revision NULL reads from the start');
SELECT results_eq($$SELECT revision FROM eventstore.read_stream('a', 2, NULL)$$,
                  $$VALUES (2::bigint), (3)$$, 'max_count NULL reads to the end');
SELECT is_empty($$SELECT * FROM eventstore.read_stream('a', 4)$$, 'forwards past the end is empty');
SELECT results_eq($$SELECT revision FROM eventstore.read_stream('a', NULL, NULL, true)$$,
                  $$VALUES (3::bigint), (2), (1), (0)$$, 'backwards with from_revision NULL starts at the end');
SELECT results_eq($$SELECT revision FROM eventstore.read_stream('a', -1, 2, true)$$,
                  $$VALUES (3::bigint), (2)$$, 'backwards with from_revision -1 starts at the end, max_count applies');
SELECT results_eq($$SELECT revision FROM eventstore.read_stream('a', 1, NULL, true)$$,
                  $$VALUES (1::bigint), (0)$$, 'backwards from a revision');
SELECT results_eq($$SELECT revision FROM eventstore.read_stream('a', 100, 1, true)$$,
                  $$VALUES (3::bigint)$$, 'backwards from past the end starts at the last event');
SELECT results_eq($$SELECT revision FROM eventstore.read_stream('a', 0, 10, true)$$,
                  $$VALUES (0::bigint)$$, 'backwards from revision 0 reads just it');
SELECT results_eq($$SELECT revision FROM eventstore.read_stream(stream_id => 'a', backwards => true)$$,
                  $$VALUES (0::bigint)$$, 'backwards with the default from_revision, 0, reads just revision 0');
SELECT is_empty($$SELECT * FROM eventstore.read_stream('nope')$$, 'a stream that does not exist reads as empty');
SELECT is_empty($$SELECT * FROM eventstore.read_stream('nope', NULL, NULL, true)$$,
                'a stream that does not exist reads as empty backwards');

SELECT throws_ok($$SELECT * FROM eventstore.read_stream('a', 0, 0)$$,
                 '22023', 'max_count must be at least 1', 'read_stream: max_count 0 is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream('a', 0, -5)$$,
                 '22023', 'max_count must be at least 1', 'read_stream: a negative max_count is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream('a', -1)$$,
                 '22023', 'from_revision must be a revision >= 0', 'forwards, from_revision -1 is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream('a', -2, NULL, true)$$,
                 '22023', 'from_revision must be a revision >= 0', 'backwards, from_revision -2 is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream(NULL)$$,
                 '22004', 'stream_id must not be null', 'read_stream: a NULL stream is 22004');
SELECT throws_ok($$SELECT * FROM eventstore.read_stream('')$$,
                 '22023', 'stream_id must not be empty', 'read_stream: an empty stream id is 22023');

------------------------------------------------------------------------
-- stream_revision and stream_partition
------------------------------------------------------------------------
SELECT is(eventstore.stream_revision('a'), 3::bigint, 'stream_revision: the last event''s revision');
SELECT is(eventstore.stream_revision('s-20'), 1::bigint, 'stream_revision of a two-event stream');
SELECT is(eventstore.stream_revision('nope'), NULL::bigint, 'stream_revision: NULL for a stream that does not exist');
SELECT is(eventstore.stream_revision(NULL), NULL::bigint, 'stream_revision(NULL) is NULL');

SELECT results_eq($$SELECT eventstore.stream_partition(s, n) FROM
                    (VALUES ('a', 1000), ('', 1000), ('foobar', 1000), ('a', 7), ('cart-1', 7), ('a', 1)) v(s, n)$$,
                  $$VALUES (220), (261), (720), (5), (1), (0)$$,
                  'stream_partition is the 32-bit FNV-1a of the stream id modulo group_size');
SELECT is(eventstore.stream_partition(NULL, 3), NULL::int, 'stream_partition of NULL is NULL');
SELECT throws_ok($$SELECT eventstore.stream_partition('a', 0)$$,
                 '22023', 'group_size must be at least 1', 'stream_partition: group_size 0 is 22023');
SELECT throws_ok($$SELECT eventstore.stream_partition('a', -4)$$,
                 '22023', 'group_size must be at least 1', 'stream_partition: a negative group_size is 22023');

------------------------------------------------------------------------
-- read_all: order, cursor, max_count
------------------------------------------------------------------------
SELECT results_eq($$SELECT * FROM eventstore.read_all(NULL, NULL)$$,
                  $$SELECT * FROM eventstore.events ORDER BY transaction_id, global_position$$,
                  'read_all returns the whole log in (transaction_id, global_position) order');
SELECT results_eq($$SELECT global_position FROM eventstore.read_all()$$,
                  $$SELECT * FROM pg_temp.log_order()$$, 'read_all() with the defaults');
SELECT results_eq($$SELECT global_position FROM eventstore.read_all(NULL, 2)$$,
                  $$VALUES (1::bigint), (2)$$, 'max_count limits the page');
SELECT results_eq($$SELECT global_position FROM eventstore.read_all(0, 2)$$,
                  $$VALUES (1::bigint), (2)$$, 'after_position 0 reads from the start');
SELECT results_eq($$SELECT global_position FROM eventstore.read_all(2, 3)$$,
                  $$VALUES (3::bigint), (4), (5)$$, 'the page after a cursor');
SELECT results_eq($$SELECT global_position FROM eventstore.read_all(45)$$,
                  $$VALUES (46::bigint)$$, 'the last event after the one before it');
SELECT is_empty($$SELECT * FROM eventstore.read_all(46)$$, 'nothing after the last event');
SELECT results_eq($$SELECT * FROM pg_temp.consume(7)$$, $$SELECT * FROM pg_temp.log_order()$$,
                  'a consumer paging by 7 receives the whole log once, in order');
SELECT results_eq($$SELECT * FROM pg_temp.consume(1)$$, $$SELECT * FROM pg_temp.log_order()$$,
                  'a consumer paging by 1 receives the whole log once, in order');

------------------------------------------------------------------------
-- read_all: event_types
------------------------------------------------------------------------
SELECT results_eq($$SELECT event_type, global_position FROM eventstore.read_all(NULL, NULL, '{B1,A1}')$$,
                  $$VALUES ('A1'::text, 2::bigint), ('B1', 5)$$, 'event_types filters by type');
SELECT results_eq($$SELECT global_position FROM eventstore.read_all(NULL, 3, '{Tock}')$$,
                  $$VALUES (8::bigint), (10), (12)$$, 'max_count counts the events that pass the filter');
SELECT results_eq($$SELECT global_position FROM eventstore.read_all(1, NULL, '{A3}')$$,
                  $$VALUES (6::bigint)$$, 'the cursor may be an event the filter leaves out');
SELECT is_empty($$SELECT * FROM eventstore.read_all(NULL, NULL, '{Nope}')$$, 'an unknown type matches nothing');
SELECT results_eq($$SELECT * FROM pg_temp.consume(3, '{Tick,A0}')$$,
                  $$SELECT * FROM pg_temp.log_order('{Tick,A0}')$$,
                  'a filtered consumer receives exactly the events of its types, in order');

------------------------------------------------------------------------
-- read_all: consumer groups
------------------------------------------------------------------------
SELECT bag_eq($$SELECT r.global_position FROM generate_series(0, 2) m,
                  LATERAL eventstore.read_all(NULL, NULL, NULL, m, 3) r$$,
              $$SELECT global_position FROM eventstore.events$$,
              'the 3 partitions are disjoint and together the whole log');
SELECT is(ARRAY(SELECT format('%s in member %s', r.stream_id, m)
                FROM generate_series(0, 2) m, LATERAL eventstore.read_all(NULL, NULL, NULL, m, 3) r
                WHERE eventstore.stream_partition(r.stream_id, 3) <> m),
          '{}'::text[], 'member m of 3 reads the streams with stream_partition(stream_id, 3) = m');
SELECT is((SELECT count(DISTINCT m) FROM generate_series(0, 2) m,
                  LATERAL eventstore.read_all(NULL, NULL, NULL, m, 3) r), 3::bigint,
          'each of the 3 members has events of its own');
SELECT bag_eq($$SELECT r.global_position FROM generate_series(0, 6) m,
                  LATERAL eventstore.read_all(NULL, NULL, NULL, m, 7) r$$,
              $$SELECT global_position FROM eventstore.events$$,
              'the 7 partitions are disjoint and together the whole log');
SELECT is(ARRAY(SELECT format('%s in member %s', r.stream_id, m)
                FROM generate_series(0, 6) m, LATERAL eventstore.read_all(NULL, NULL, NULL, m, 7) r
                WHERE eventstore.stream_partition(r.stream_id, 7) <> m),
          '{}'::text[], 'member m of 7 reads the streams with stream_partition(stream_id, 7) = m');
SELECT results_eq($$SELECT global_position FROM eventstore.read_all(NULL, NULL, NULL, 0, 1)$$,
                  $$SELECT * FROM pg_temp.log_order()$$, 'a group of one reads the whole log');
SELECT results_eq($$SELECT * FROM pg_temp.consume(4, NULL, 2, 3)$$,
                  $$SELECT * FROM pg_temp.log_order(NULL, 2, 3)$$,
                  'a group member paging by 4 receives its partition once, in order');
SELECT results_eq($$SELECT * FROM pg_temp.consume(2, '{Tock}', 1, 3)$$,
                  $$SELECT * FROM pg_temp.log_order('{Tock}', 1, 3)$$,
                  'event_types and groups combine');

------------------------------------------------------------------------
-- read_all: errors
------------------------------------------------------------------------
SELECT throws_ok($$SELECT * FROM eventstore.read_all(NULL, 10, NULL, 1, NULL)$$,
                 '22023', 'group_member and group_size must be given together', 'group_member without group_size is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_all(NULL, 10, NULL, NULL, 2)$$,
                 '22023', 'group_member and group_size must be given together', 'group_size without group_member is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_all(NULL, 10, NULL, 2, 2)$$,
                 '22023', 'group_member must be between 0 and group_size - 1', 'group_member = group_size is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_all(NULL, 10, NULL, -1, 2)$$,
                 '22023', 'group_member must be between 0 and group_size - 1', 'a negative group_member is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_all(NULL, 10, NULL, 0, 0)$$,
                 '22023', 'group_member must be between 0 and group_size - 1', 'group_size 0 is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_all(NULL, 0)$$,
                 '22023', 'max_count must be at least 1', 'read_all: max_count 0 is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_all(NULL, -1)$$,
                 '22023', 'max_count must be at least 1', 'read_all: a negative max_count is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_all(-1)$$,
                 '22023', 'after_position must not be negative', 'a negative after_position is 22023');
SELECT throws_ok($$SELECT * FROM eventstore.read_all(999)$$,
                 'SE003', 'position 999 is not in the event log', 'a position past the log is SE003');

-- A position taken by a transaction that rolled back is in no log.
BEGIN;
SELECT is((SELECT first_position FROM eventstore.append_event('rolled-back', 'X', '{}')), 47::bigint,
          'an append that will roll back takes position 47');
ROLLBACK;
SELECT throws_ok($$SELECT * FROM eventstore.read_all(47)$$,
                 'SE003', 'position 47 is not in the event log', 'the position of a rolled-back event is SE003');

SELECT is(ARRAY(SELECT format('%s: %s', sql, e)
                FROM unnest(ARRAY[
                  $$SELECT * FROM eventstore.read_stream('a', 0, 0)$$,
                  $$SELECT * FROM eventstore.read_stream('a', -1)$$,
                  $$SELECT * FROM eventstore.read_stream('a', -2, NULL, true)$$,
                  $$SELECT * FROM eventstore.read_stream(NULL)$$,
                  $$SELECT * FROM eventstore.read_stream('')$$,
                  $$SELECT * FROM eventstore.read_all(NULL, 10, NULL, 1, NULL)$$,
                  $$SELECT * FROM eventstore.read_all(NULL, 10, NULL, 2, 2)$$,
                  $$SELECT * FROM eventstore.read_all(NULL, 0)$$,
                  $$SELECT * FROM eventstore.read_all(-1)$$,
                  $$SELECT * FROM eventstore.read_all(47)$$,
                  $$SELECT eventstore.stream_partition('a', 0)$$]) sql,
                     pg_temp.error_of(sql) e
                WHERE e IS NULL OR e[1] IN ('XX000', 'P0001') OR e[2] !~ '^[a-z]' OR e[2] ~ '\.$'
                   OR (e[3] IS NULL AND e[4] IS NULL)),
          '{}'::text[],
          'every read error has a proper errcode, a lowercase message without a period and a detail or hint');
SELECT is((pg_temp.error_of($$SELECT * FROM eventstore.read_all(47)$$))[4],
          'Pass the global_position of the last event received, or NULL to read from the start.',
          'SE003 hints at what to pass');

------------------------------------------------------------------------
-- read_all only returns events of transactions older than every running
-- one: not the reader's own open transaction...
------------------------------------------------------------------------
BEGIN;
SELECT is((SELECT first_position FROM eventstore.append_event('mine', 'Mine', '{}')), 48::bigint,
          'an append in the reader''s open transaction');
SELECT is_empty($$SELECT * FROM eventstore.read_all(46)$$,
                'read_all does not return the events of the reader''s own open transaction');
SELECT is((SELECT count(*) FROM eventstore.read_all(NULL, NULL)), 46::bigint,
          '... not even from the start');
SELECT is((SELECT count(*) FROM eventstore.read_all(NULL, NULL, '{Mine}')), 0::bigint,
          '... nor filtered by its type');
SELECT is((SELECT count(*) FROM eventstore.read_stream('mine')), 1::bigint,
          'read_stream does show the transaction its own event');
SELECT is(eventstore.stream_revision('mine'), 0::bigint,
          'stream_revision does show the transaction its own stream');
COMMIT;
SELECT results_eq($$SELECT stream_id, global_position FROM eventstore.read_all(46)$$,
                  $$VALUES ('mine'::text, 48::bigint)$$, 'once committed, read_all returns it');

------------------------------------------------------------------------
-- ...nor anything committed after an older transaction that still runs:
-- a transaction that took its id early and appends late is not skipped.
------------------------------------------------------------------------
SELECT max(global_position) AS cursor FROM eventstore.events \gset
SELECT is(dblink_connect('late',
            format('dbname=%L port=%s host=%L', current_database(), current_setting('port'),
                   COALESCE(NULLIF(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
                            'localhost'))),
          'OK', 'a second session connects');
SELECT is(dblink_exec('late', 'BEGIN'), 'BEGIN', 'the second session begins a transaction');
SELECT ok((SELECT x IS NOT NULL FROM dblink('late', 'SELECT pg_current_xact_id()::text') AS t(x text)),
          '... and takes its transaction id');
SELECT is((SELECT first_position FROM eventstore.append_event('early', 'Early', '{}')), (:cursor + 1)::bigint,
          'a younger transaction appends and commits');
SELECT is_empty(format('SELECT * FROM eventstore.read_all(%s)', :cursor),
                'read_all holds back what a younger transaction committed while an older one runs');
SELECT is((SELECT p FROM dblink('late',
             $$SELECT first_position FROM eventstore.append_event('late', 'Late', '{}')$$) AS t(p bigint)),
          (:cursor + 2)::bigint, 'the older transaction appends after it, at a higher position');
SELECT is_empty(format('SELECT * FROM eventstore.read_all(%s)', :cursor),
                'read_all still holds back both');
SELECT is((SELECT count(*) FROM eventstore.read_stream('early')), 1::bigint,
          'read_stream shows the committed event of the younger transaction');
SELECT is(dblink_exec('late', 'COMMIT'), 'COMMIT', 'the older transaction commits');
SELECT results_eq(format('SELECT stream_id, global_position FROM eventstore.read_all(%s)', :cursor),
                  format('VALUES (%L::text, %s::bigint), (%L, %s)', 'late', :cursor + 2, 'early', :cursor + 1),
                  'read_all then returns both in transaction order, not position order');
SELECT results_eq(format('SELECT stream_id FROM eventstore.read_all(%s)', :cursor + 2),
                  $$VALUES ('early'::text)$$,
                  'a cursor at the older transaction''s event resolves to its place in the log order');
SELECT is_empty(format('SELECT * FROM eventstore.read_all(%s)', :cursor + 1),
                'the younger transaction''s event is the last in the log');
SELECT is(dblink_disconnect('late'), 'OK', 'the second session disconnects');

SELECT is(ARRAY(SELECT c.global_position FROM eventstore.events c
                WHERE ARRAY(SELECT global_position FROM eventstore.read_all(c.global_position, 5))
                      IS DISTINCT FROM
                      ARRAY(SELECT e.global_position FROM eventstore.events e
                            WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)
                            ORDER BY e.transaction_id, e.global_position LIMIT 5)
                ORDER BY 1),
          '{}'::bigint[], 'from every cursor, read_all returns the next events in (transaction_id, global_position) order');
SELECT results_eq($$SELECT * FROM pg_temp.consume(5)$$, $$SELECT * FROM pg_temp.log_order()$$,
                  'a consumer receives the whole log once, in log order');
SELECT bag_eq($$SELECT r FROM generate_series(0, 2) m,
                  LATERAL pg_temp.consume(3, NULL, m, 3) r$$,
              $$SELECT global_position FROM eventstore.events$$,
              'three group consumers together receive the whole log once');

------------------------------------------------------------------------
-- max_count defaults to 1000.
------------------------------------------------------------------------
SELECT is((SELECT last_position - first_position + 1 FROM eventstore.append_to_stream('bulk',
             (SELECT jsonb_agg(jsonb_build_object('type', 'Bulk')) FROM generate_series(1, 1100)))),
          1100::bigint, 'setup: a batch of 1100 events');
SELECT is((SELECT count(*) FROM eventstore.read_all()), 1000::bigint, 'read_all returns at most 1000 events by default');
SELECT is((SELECT count(*) FROM eventstore.read_all(NULL, NULL)), (SELECT count(*) FROM eventstore.events),
          'max_count NULL returns the whole log');
SELECT is((SELECT count(*) FROM eventstore.read_stream('bulk')), 1100::bigint,
          'read_stream has no default limit');
SELECT results_eq($$SELECT revision FROM eventstore.read_stream('bulk', NULL, 3, true)$$,
                  $$VALUES (1099::bigint), (1098), (1097)$$, 'backwards from the end of a long stream');

SELECT * FROM finish();

-- Leave the shared database as we found it.
DROP EXTENSION dblink CASCADE;
DROP EXTENSION pgtap CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
