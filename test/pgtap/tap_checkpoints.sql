-- pgTAP: store_checkpoint, read_checkpoint, reset_checkpoint in log order;
-- claim_processor, release_processor and eventstore.processors across
-- sessions; a consumer group checkpointing per partition.
\ir setup.psql
DROP EXTENSION IF EXISTS dblink CASCADE;
CREATE EXTENSION dblink;

-- How a second session connects to this database.
CREATE FUNCTION pg_temp.connstr() RETURNS text LANGUAGE sql AS $$
	SELECT format('dbname=%L port=%s host=%L', current_database(), current_setting('port'),
	              COALESCE(NULLIF(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
	                       'localhost'))
$$;

-- A checkpoint row whole, timestamps included: to show that nothing changed.
CREATE FUNCTION pg_temp.cp_row(processor text, part text DEFAULT 'default') RETURNS text
LANGUAGE sql AS $$
	SELECT c::text FROM eventstore.checkpoints c
	WHERE c.processor_id = processor AND c.partition = part
$$;

-- Is the session with this pid waiting for a lock?  Waits up to 10 s for it.
CREATE FUNCTION pg_temp.waits_for_lock(p int) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..1000 LOOP
		IF EXISTS (SELECT 1 FROM pg_locks WHERE pid = p AND NOT granted) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN false;
END $$;

\ir ../include/sessions.psql

-- The log in its order, as read_all has it.
CREATE FUNCTION pg_temp.log_order(member int DEFAULT NULL, size int DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE sql AS $$
	SELECT global_position FROM eventstore.events
	WHERE member IS NULL OR eventstore.stream_partition(stream_id, size) = member
	ORDER BY transaction_id, global_position
$$;

SELECT plan(195);

------------------------------------------------------------------------
-- A log: stream a at 1-3, stream b at 4-5.
------------------------------------------------------------------------
SELECT is((SELECT last_position FROM eventstore.append_to_stream('a',
             '[{"type": "A0"}, {"type": "A1"}, {"type": "A2"}]')), 3::bigint, 'setup: stream a');
SELECT is((SELECT last_position FROM eventstore.append_to_stream('b',
             '[{"type": "B0"}, {"type": "B1"}]')), 5::bigint, 'setup: stream b');

------------------------------------------------------------------------
-- stored, ignored, further, older
------------------------------------------------------------------------
SELECT is(eventstore.read_checkpoint('p'), NULL::bigint, 'read_checkpoint is NULL when never stored');
SELECT is((SELECT count(*) FROM eventstore.checkpoints), 0::bigint, 'reading a checkpoint creates no row');
SELECT is(eventstore.store_checkpoint('p', 2, NULL), 'stored',
          'stored: the first store, expecting NULL');
SELECT is(eventstore.read_checkpoint('p'), 2::bigint, 'read_checkpoint returns the stored position');
SELECT is(eventstore.read_checkpoint('p', 'default'), 2::bigint, 'the default partition is ''default''');
SELECT is((SELECT transaction_id FROM eventstore.checkpoints WHERE processor_id = 'p'),
          (SELECT transaction_id FROM eventstore.events WHERE global_position = 2),
          'the checkpoint row keeps its event''s transaction id, its place in log order');

SELECT pg_temp.cp_row('p') AS row_p \gset
SELECT is(eventstore.store_checkpoint('p', 2, NULL), 'ignored', 'ignored: a retry of the first store');
SELECT is(eventstore.store_checkpoint('p', 2, 1), 'ignored', 'ignored: the stored checkpoint is the position, whatever was expected');
SELECT is(pg_temp.cp_row('p'), :'row_p', 'ignored changes nothing, not even updated_at');

SELECT is(eventstore.store_checkpoint('p', 4, 2), 'stored', 'stored: the stored checkpoint was the expected one');
SELECT is(eventstore.read_checkpoint('p'), 4::bigint, '... and is now the new position');
SELECT pg_temp.cp_row('p') AS row_p \gset
SELECT is(eventstore.store_checkpoint('p', 3, 2), 'further', 'further: the stored checkpoint is ahead of the expected one');
SELECT is(eventstore.store_checkpoint('p', 5, NULL), 'further', 'further: expected NULL (the start) while one is stored');
SELECT is(eventstore.store_checkpoint('p', 5, 0), 'further', 'further: expected 0 (the start) while one is stored');
SELECT is(pg_temp.cp_row('p'), :'row_p', 'further changes nothing');
SELECT is(eventstore.store_checkpoint('p', 3, 5), 'older', 'older: the stored checkpoint is behind the expected one');
SELECT is(eventstore.store_checkpoint('p', 5, 5), 'older', 'older: ... also when storing the expected position');
SELECT is(pg_temp.cp_row('p'), :'row_p', 'older changes nothing');
SELECT is(eventstore.read_checkpoint('p'), 4::bigint, 'the checkpoint is still 4');

SELECT is(eventstore.store_checkpoint('zero', 3, 0), 'stored', 'expected 0 stores a first checkpoint, like NULL');
SELECT is(eventstore.store_checkpoint('none-yet', 3, 2), 'older', 'older: nothing stored yet and a position expected');
SELECT is(eventstore.read_checkpoint('none-yet'), NULL::bigint, '... and still nothing is stored');
SELECT is((SELECT count(*) FROM eventstore.checkpoints WHERE processor_id = 'none-yet'), 0::bigint,
          '... nor is a row written: a store that stores nothing writes nothing');

------------------------------------------------------------------------
-- Log order, not raw position.  Session "early" takes its transaction id,
-- this session appends and commits (position 6), then "early" appends
-- (position 7) and commits: 7 is before 6 in the log.
------------------------------------------------------------------------
SELECT is(dblink_connect('early', pg_temp.connstr()), 'OK', 'a second session connects');
SELECT is(dblink_exec('early', 'BEGIN'), 'BEGIN', 'the second session begins a transaction');
SELECT ok((SELECT x IS NOT NULL FROM dblink('early', 'SELECT pg_current_xact_id()::text') AS t(x text)),
          '... and takes its transaction id');
SELECT is((SELECT first_position FROM eventstore.append_event('late', 'Late', '{}')), 6::bigint,
          'a younger transaction appends at 6 and commits');
SELECT is((SELECT p FROM dblink('early', $$SELECT first_position FROM eventstore.append_event('early', 'Early', '{}')$$)
             AS t(p bigint)), 7::bigint, 'the older transaction appends at 7');
SELECT is(dblink_exec('early', 'COMMIT'), 'COMMIT', '... and commits');
SELECT results_eq($$SELECT global_position FROM eventstore.read_all(5)$$, $$VALUES (7::bigint), (6)$$,
                  'the log has 7 before 6');

SELECT is(eventstore.store_checkpoint('lo-a', 6, NULL), 'stored', 'a checkpoint at 6');
SELECT is(eventstore.store_checkpoint('lo-a', 5, 7), 'further',
          'stored 6, expected 7: further, though 6 < 7 (6 is after 7 in the log)');
SELECT is(eventstore.read_checkpoint('lo-a'), 6::bigint, '... and it is still 6');
SELECT is(eventstore.store_checkpoint('lo-b', 7, NULL), 'stored', 'a checkpoint at 7');
SELECT is(eventstore.store_checkpoint('lo-b', 5, 6), 'older',
          'stored 7, expected 6: older, though 7 > 6 (7 is before 6 in the log)');
SELECT is(eventstore.read_checkpoint('lo-b'), 7::bigint, '... and it is still 7');
SELECT is((SELECT transaction_id FROM eventstore.checkpoints WHERE processor_id = 'lo-b'),
          (SELECT transaction_id FROM eventstore.events WHERE global_position = 7),
          'the checkpoint at 7 keeps the older transaction''s id');

SELECT is(eventstore.store_checkpoint('lo-c', 5, NULL), 'stored', 'a consumer of the log stores 5');
SELECT is(eventstore.store_checkpoint('lo-c', 7, 5), 'stored', '... then 7, the next in the log');
SELECT is(eventstore.store_checkpoint('lo-c', 6, 7), 'stored', '... then 6');
SELECT is(eventstore.store_checkpoint('lo-c', 6, 7), 'ignored', '... a retry of it is ignored');
SELECT is(eventstore.store_checkpoint('lo-c', 5, 7), 'further', 'an instance still at 7 finds 6 further');

SELECT lives_ok($$SELECT eventstore.reset_checkpoint('lo-d', 7)$$, 'reset_checkpoint to 7');
SELECT is(eventstore.store_checkpoint('lo-d', 5, 6), 'older', 'a reset checkpoint at 7 is behind 6');
SELECT lives_ok($$SELECT eventstore.reset_checkpoint('lo-d', 6)$$, 'reset_checkpoint to 6');
SELECT is(eventstore.store_checkpoint('lo-d', 5, 7), 'further', 'a reset checkpoint at 6 is ahead of 7');

-- Every pair of places: stored s (0: none), expected x.
CREATE FUNCTION pg_temp.pair_mismatches() RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
	s bigint; x bigint; got eventstore.checkpoint_result; want eventstore.checkpoint_result;
BEGIN
	FOR s IN SELECT 0 UNION ALL SELECT global_position FROM eventstore.events LOOP
		FOR x IN SELECT 0 UNION ALL SELECT global_position FROM eventstore.events LOOP
			PERFORM eventstore.reset_checkpoint('pairs', NULLIF(s, 0));
			-- store x itself: stored when s = x, else the order decides
			got := eventstore.store_checkpoint('pairs', x, NULLIF(x, 0));
			want := CASE
				WHEN s = x THEN 'stored'
				WHEN s = 0 THEN 'older'
				WHEN x = 0 THEN 'further'
				WHEN (SELECT (a.transaction_id, a.global_position) > (b.transaction_id, b.global_position)
				      FROM eventstore.events a, eventstore.events b
				      WHERE a.global_position = s AND b.global_position = x) THEN 'further'
				ELSE 'older' END;
			IF got IS DISTINCT FROM want THEN
				RETURN NEXT format('stored %s, expected %s: %s, not %s', s, x, got, want);
			END IF;
		END LOOP;
	END LOOP;
	PERFORM eventstore.reset_checkpoint('pairs');
END $$;
SELECT is(ARRAY(SELECT pg_temp.pair_mismatches()), '{}'::text[],
          'for every pair of places, further/older follow (transaction_id, global_position)');

------------------------------------------------------------------------
-- A store is part of the caller's transaction.
------------------------------------------------------------------------
CREATE TEMP TABLE model (global_position bigint);
BEGIN;
INSERT INTO model VALUES (5);
SELECT is(eventstore.store_checkpoint('p', 5, 4), 'stored', 'in a transaction: the read model and the checkpoint');
SELECT is(eventstore.read_checkpoint('p'), 5::bigint, 'the transaction sees its checkpoint');
SELECT is((SELECT p FROM dblink('early', $$SELECT eventstore.read_checkpoint('p')$$) AS t(p bigint)), 4::bigint,
          'another session does not, before the commit');
ROLLBACK;
SELECT is(eventstore.read_checkpoint('p'), 4::bigint, 'a store rolled back leaves the checkpoint as it was');
SELECT is((SELECT count(*) FROM model), 0::bigint, '... with the read model');
SELECT is(pg_temp.cp_row('p'), :'row_p', '... the row unchanged');
BEGIN;
INSERT INTO model VALUES (5);
SELECT is(eventstore.store_checkpoint('p', 5, 4), 'stored', 'again, to commit');
COMMIT;
SELECT is(eventstore.read_checkpoint('p'), 5::bigint, 'the committed checkpoint is stored');
SELECT is((SELECT count(*) FROM model), 1::bigint, '... with the read model');
BEGIN;
SELECT is(eventstore.store_checkpoint('first', 3, NULL), 'stored', 'a first store');
ROLLBACK;
SELECT is(eventstore.read_checkpoint('first'), NULL::bigint, 'a first store rolled back leaves no checkpoint');
DROP TABLE model;

-- Two instances race from the same checkpoint: the second waits for the
-- first, then finds it further (or stores, when the first rolls back).
SELECT p AS early_pid FROM dblink('early', 'SELECT pg_backend_pid()') AS t(p int) \gset
BEGIN;
SELECT is(eventstore.store_checkpoint('p', 6, 5), 'stored', 'instance 1 stores 6 over 5, not yet committed');
SELECT is(dblink_send_query('early', $$SELECT eventstore.store_checkpoint('p', 7, 5)$$), 1,
          'instance 2 stores 7 over 5');
SELECT ok(pg_temp.waits_for_lock(:early_pid), '... and waits for instance 1');
COMMIT;
SELECT is((SELECT r FROM dblink_get_result('early') AS t(r text)), 'further',
          'when instance 1 commits, instance 2 finds 6: further');
SELECT is((SELECT count(*) FROM dblink_get_result('early') AS t(r text)), 0::bigint, '... (its only result)');
SELECT is(eventstore.read_checkpoint('p'), 6::bigint, 'the checkpoint is instance 1''s');
BEGIN;
SELECT is(eventstore.store_checkpoint('p', 7, 6), 'stored', 'instance 1 stores 7 over 6, not yet committed');
SELECT is(dblink_send_query('early', $$SELECT eventstore.store_checkpoint('p', 7, 6)$$), 1,
          'instance 2 stores 7 over 6');
SELECT ok(pg_temp.waits_for_lock(:early_pid), '... and waits for instance 1');
ROLLBACK;
SELECT is((SELECT r FROM dblink_get_result('early') AS t(r text)), 'stored',
          'when instance 1 rolls back, instance 2 stores');
SELECT is((SELECT count(*) FROM dblink_get_result('early') AS t(r text)), 0::bigint, '... (its only result)');
SELECT is(eventstore.read_checkpoint('p'), 7::bigint, 'the checkpoint is instance 2''s');
BEGIN;
SELECT is(eventstore.store_checkpoint('race', 3, NULL), 'stored', 'instance 1 stores a first checkpoint, not yet committed');
SELECT is(dblink_send_query('early', $$SELECT eventstore.store_checkpoint('race', 4, NULL)$$), 1,
          'instance 2 stores a first checkpoint too');
SELECT ok(pg_temp.waits_for_lock(:early_pid), '... and waits for instance 1');
COMMIT;
SELECT is((SELECT r FROM dblink_get_result('early') AS t(r text)), 'further',
          'when instance 1 commits, instance 2 finds its checkpoint further');
SELECT is((SELECT count(*) FROM dblink_get_result('early') AS t(r text)), 0::bigint, '... (its only result)');
SELECT is(eventstore.read_checkpoint('race'), 3::bigint, 'the first checkpoint is instance 1''s');
-- REPEATABLE READ cannot build on a checkpoint its snapshot does not see.
SELECT is(dblink_exec('early', 'BEGIN ISOLATION LEVEL REPEATABLE READ'), 'BEGIN', 'instance 2 begins a repeatable read transaction');
SELECT is((SELECT p FROM dblink('early', $$SELECT eventstore.read_checkpoint('race')$$) AS t(p bigint)), 3::bigint,
          '... and reads the checkpoint, 3');
SELECT is(eventstore.store_checkpoint('race', 4, 3), 'stored', 'instance 1 stores 4 over 3');
SELECT throws_ok($$SELECT * FROM dblink('early', 'SELECT eventstore.store_checkpoint(''race'', 5, 3)') AS t(r text)$$,
                 '40001', 'could not serialize access due to concurrent update of the checkpoint of processor "race", partition "default"',
                 'instance 2 storing over 3 then fails with 40001');
SELECT is(dblink_exec('early', 'ROLLBACK'), 'ROLLBACK', 'instance 2 rolls back');
SELECT is(eventstore.read_checkpoint('race'), 4::bigint, 'the checkpoint is instance 1''s');

------------------------------------------------------------------------
-- Partitions are independent.
------------------------------------------------------------------------
SELECT is(eventstore.store_checkpoint('parts', 2, NULL), 'stored', 'partition default: 2');
SELECT is(eventstore.store_checkpoint('parts', 4, NULL, '0'), 'stored', 'partition 0: 4');
SELECT is(eventstore.store_checkpoint('parts', 7, NULL, '1'), 'stored', 'partition 1: 7');
SELECT is(eventstore.store_checkpoint('parts', 3, 2, '1'), 'further', 'partition 1 compares with its own checkpoint: 7 is further than 2');
SELECT results_eq($$SELECT eventstore.read_checkpoint('parts', p) FROM unnest('{default,0,1,2}'::text[]) p$$,
                  $$VALUES (2::bigint), (4), (7), (NULL)$$, 'each partition has its own checkpoint');
SELECT is(eventstore.store_checkpoint('parts', 3, 2, '0'), 'further', 'partition 0 is at 4, further than 2');
SELECT is(eventstore.store_checkpoint('parts', 3, 2), 'stored', 'partition default is at 2');
SELECT lives_ok($$SELECT eventstore.reset_checkpoint('parts', NULL, '0')$$, 'reset partition 0');
SELECT results_eq($$SELECT eventstore.read_checkpoint('parts', p) FROM unnest('{default,0,1,2}'::text[]) p$$,
                  $$VALUES (3::bigint), (NULL), (7), (NULL)$$, 'storing or resetting one partition leaves the others');

------------------------------------------------------------------------
-- reset_checkpoint
------------------------------------------------------------------------
SELECT lives_ok($$SELECT eventstore.reset_checkpoint('p')$$, 'reset_checkpoint with no position');
SELECT is(eventstore.read_checkpoint('p'), NULL::bigint, '... puts the processor back at the start: NULL');
SELECT is(eventstore.store_checkpoint('p', 1, NULL), 'stored', '... from where a store expecting NULL starts again');
SELECT lives_ok($$SELECT eventstore.reset_checkpoint('p', 0)$$, 'reset_checkpoint to 0');
SELECT is(eventstore.read_checkpoint('p'), 0::bigint, '... is stored as 0, the start');
SELECT lives_ok($$SELECT eventstore.reset_checkpoint('p', 5)$$, 'reset_checkpoint to 5');
SELECT is(eventstore.read_checkpoint('p'), 5::bigint, '... sets it whatever it was');
SELECT lives_ok($$SELECT eventstore.reset_checkpoint('never-stored', 3)$$, 'reset_checkpoint of a processor never stored');
SELECT is(eventstore.read_checkpoint('never-stored'), 3::bigint, '... stores it');

------------------------------------------------------------------------
-- Errors
------------------------------------------------------------------------
SELECT throws_ok($$SELECT eventstore.store_checkpoint(NULL, 1, NULL)$$, '22004', 'processor_id must not be null',
                 'store_checkpoint: a NULL processor_id is 22004');
SELECT throws_ok($$SELECT eventstore.store_checkpoint('', 1, NULL)$$, '22023', 'processor_id must not be empty',
                 'store_checkpoint: an empty processor_id is 22023');
SELECT throws_ok($$SELECT eventstore.store_checkpoint('p', 1, NULL, NULL)$$, '22004', 'partition must not be null',
                 'store_checkpoint: a NULL partition is 22004');
SELECT throws_ok($$SELECT eventstore.store_checkpoint('p', 1, NULL, '')$$, '22023', 'partition must not be empty',
                 'store_checkpoint: an empty partition is 22023');
SELECT throws_ok($$SELECT eventstore.store_checkpoint('p', NULL, 5)$$, '22004', 'position must not be null',
                 'store_checkpoint: a NULL position is 22004');
SELECT throws_ok($$SELECT eventstore.store_checkpoint('p', -1, 5)$$, '22023', 'position must not be negative',
                 'store_checkpoint: a negative position is 22023');
SELECT throws_ok($$SELECT eventstore.store_checkpoint('p', 1, -5)$$, '22023', 'expected_position must not be negative',
                 'store_checkpoint: a negative expected_position is 22023');
SELECT throws_ok($$SELECT eventstore.store_checkpoint('p', 99, 5)$$, 'SE003', 'position 99 is not in the event log',
                 'store_checkpoint: a position not in the log is SE003');
SELECT throws_ok($$SELECT eventstore.store_checkpoint('p', 1, 99)$$, 'SE003', 'position 99 is not in the event log',
                 'store_checkpoint: an expected_position not in the log is SE003');
SELECT throws_ok($$SELECT eventstore.read_checkpoint(NULL)$$, '22004', 'processor_id must not be null',
                 'read_checkpoint: a NULL processor_id is 22004');
SELECT throws_ok($$SELECT eventstore.read_checkpoint('')$$, '22023', 'processor_id must not be empty',
                 'read_checkpoint: an empty processor_id is 22023');
SELECT throws_ok($$SELECT eventstore.read_checkpoint('p', NULL)$$, '22004', 'partition must not be null',
                 'read_checkpoint: a NULL partition is 22004');
SELECT throws_ok($$SELECT eventstore.read_checkpoint('p', '')$$, '22023', 'partition must not be empty',
                 'read_checkpoint: an empty partition is 22023');
SELECT throws_ok($$SELECT eventstore.reset_checkpoint(NULL)$$, '22004', 'processor_id must not be null',
                 'reset_checkpoint: a NULL processor_id is 22004');
SELECT throws_ok($$SELECT eventstore.reset_checkpoint('p', 1, '')$$, '22023', 'partition must not be empty',
                 'reset_checkpoint: an empty partition is 22023');
SELECT throws_ok($$SELECT eventstore.reset_checkpoint('p', -1)$$, '22023', 'position must not be negative',
                 'reset_checkpoint: a negative position is 22023');
SELECT throws_ok($$SELECT eventstore.reset_checkpoint('p', 99)$$, 'SE003', 'position 99 is not in the event log',
                 'reset_checkpoint: a position not in the log is SE003');
SELECT throws_ok($$SELECT eventstore.claim_processor('p', NULL)$$, '22004', 'instance_id must not be null',
                 'claim_processor: a NULL instance_id is 22004');
SELECT throws_ok($$SELECT eventstore.release_processor('p', 'i', '')$$, '22023', 'partition must not be empty',
                 'release_processor: an empty partition is 22023');
SELECT is(eventstore.read_checkpoint('p'), 5::bigint, 'no error changed the checkpoint');
SELECT is(ARRAY(SELECT format('%s: %s', sql, e)
                FROM unnest(ARRAY[
                  $$SELECT eventstore.store_checkpoint(NULL, 1, NULL)$$,
                  $$SELECT eventstore.store_checkpoint('', 1, NULL)$$,
                  $$SELECT eventstore.store_checkpoint(repeat('x', 1001), 1, NULL)$$,
                  $$SELECT eventstore.store_checkpoint('p', 1, NULL, NULL)$$,
                  $$SELECT eventstore.store_checkpoint('p', NULL, 5)$$,
                  $$SELECT eventstore.store_checkpoint('p', -1, 5)$$,
                  $$SELECT eventstore.store_checkpoint('p', 1, -5)$$,
                  $$SELECT eventstore.store_checkpoint('p', 99, 5)$$,
                  $$SELECT eventstore.store_checkpoint('p', 1, 99)$$,
                  $$SELECT eventstore.read_checkpoint('p', '')$$,
                  $$SELECT eventstore.reset_checkpoint(NULL)$$,
                  $$SELECT eventstore.reset_checkpoint('p', -1)$$,
                  $$SELECT eventstore.reset_checkpoint('p', 99)$$,
                  $$SELECT eventstore.claim_processor('', 'i')$$,
                  $$SELECT eventstore.claim_processor('p', NULL)$$,
                  $$SELECT eventstore.release_processor('p', 'i', NULL)$$]) sql,
                     pg_temp.error_of(sql) e
                WHERE e IS NULL OR e[1] IN ('XX000', 'P0001') OR e[2] !~ '^[a-z]' OR e[2] ~ '\.$'
                   OR (e[3] IS NULL AND e[4] IS NULL)),
          '{}'::text[],
          'every checkpoint and claim error has a proper errcode, a lowercase message without a period and a detail or hint');
SELECT is((pg_temp.error_of($$SELECT eventstore.store_checkpoint('p', 99, 5)$$))[4],
          'A checkpoint is the global_position of an event received from the log, or 0 for its start.',
          'SE003 hints at what a checkpoint is');

-- The arguments are checked whatever the stored checkpoint is.
SELECT throws_ok($$SELECT eventstore.store_checkpoint('p', -1, 1)$$, '22023', 'position must not be negative',
                 'store_checkpoint: a negative position is 22023 also when the checkpoint is not the expected one');
SELECT throws_ok($$SELECT eventstore.store_checkpoint('p', 99, 1)$$, 'SE003', 'position 99 is not in the event log',
                 'store_checkpoint: a position not in the log is SE003 also when the checkpoint is not the expected one');

------------------------------------------------------------------------
-- Claims in one session
------------------------------------------------------------------------
SELECT ok(eventstore.claim_processor('p', 'worker-1'), 'claim_processor: true for a free processor');
SELECT ok(eventstore.claim_processor('p', 'worker-1'), '... and again for the instance that holds it');
SELECT ok(NOT eventstore.claim_processor('p', 'worker-2'), '... false for another instance, even from the same session');
SELECT ok(NOT eventstore.release_processor('p', 'worker-2'), 'release_processor: false for an instance that does not hold it');
SELECT results_eq($$SELECT checkpoint, owner_instance, owner_pid, status FROM eventstore.processors
                    WHERE processor_id = 'p' AND partition = 'default'$$,
                  $$VALUES (5::bigint, 'worker-1'::text, pg_backend_pid(), 'running'::text)$$,
                  'processors: the checkpoint, the owner instance and pid, running');
SELECT results_eq($$SELECT pid FROM pg_temp.claims() WHERE claim_key = eventstore.processor_claim_key('p')$$,
                  $$VALUES (pg_backend_pid())$$, 'the claim is an advisory lock with processor_claim_key''s key');
SELECT ok(eventstore.release_processor('p', 'worker-1'), 'release_processor: true for the instance that holds it');
SELECT ok(NOT eventstore.release_processor('p', 'worker-1'), '... then false');
SELECT results_eq($$SELECT checkpoint, owner_instance, owner_pid, status FROM eventstore.processors
                    WHERE processor_id = 'p' AND partition = 'default'$$,
                  $$VALUES (5::bigint, NULL::text, NULL::int, 'idle'::text)$$,
                  'processors: released, idle');
SELECT is_empty($$SELECT * FROM pg_temp.claims()$$, 'no claim is held');
SELECT ok(eventstore.claim_processor('p', 'worker-2'), 'another instance claims it after the release');
SELECT ok(eventstore.claim_processor('p', 'worker-3', '1'), 'partition 1 of the same processor is another claim');
SELECT bag_eq($$SELECT partition, owner_instance, status FROM eventstore.processors WHERE processor_id = 'p'$$,
              $$VALUES ('default'::text, 'worker-2'::text, 'running'::text), ('1', 'worker-3', 'running')$$,
              'processors: one row per partition');

------------------------------------------------------------------------
-- Claims across sessions
------------------------------------------------------------------------
SELECT is(dblink_connect('other', pg_temp.connstr()), 'OK', 'another session connects');
SELECT p AS other_pid FROM dblink('other', 'SELECT pg_backend_pid()') AS t(p int) \gset
SELECT ok(NOT (SELECT c FROM dblink('other', $$SELECT eventstore.claim_processor('p', 'worker-9')$$) AS t(c boolean)),
          'another live session cannot claim a held processor');
SELECT ok(NOT (SELECT c FROM dblink('other', $$SELECT eventstore.claim_processor('p', 'worker-2')$$) AS t(c boolean)),
          '... not even for the holding instance''s id');
SELECT ok(NOT (SELECT c FROM dblink('other', $$SELECT eventstore.release_processor('p', 'worker-2')$$) AS t(c boolean)),
          '... nor release it');
SELECT ok((SELECT c FROM dblink('other', $$SELECT eventstore.claim_processor('p', 'worker-9', '0')$$) AS t(c boolean)),
          '... but can claim another partition');
SELECT ok(eventstore.release_processor('p', 'worker-2'), 'the holder releases');
SELECT ok((SELECT c FROM dblink('other', $$SELECT eventstore.claim_processor('p', 'worker-9')$$) AS t(c boolean)),
          'then the other session claims it');
SELECT ok(NOT eventstore.claim_processor('p', 'worker-2'), '... and the first session cannot');
SELECT results_eq($$SELECT checkpoint, owner_instance, owner_pid, status FROM eventstore.processors
                    WHERE processor_id = 'p' AND partition = 'default'$$,
                  format($$VALUES (5::bigint, 'worker-9'::text, %s, 'running'::text)$$, :other_pid),
                  'processors: the other session''s instance and pid, running');
SELECT is((SELECT r FROM dblink('other', $$SELECT eventstore.store_checkpoint('p', 7, 5)$$) AS t(r text)), 'stored',
          'the owner stores a checkpoint');
SELECT is((SELECT checkpoint FROM eventstore.processors WHERE processor_id = 'p' AND partition = 'default'),
          7::bigint, 'processors shows it');
SELECT ok((SELECT c FROM dblink('other', $$SELECT eventstore.release_processor('p', 'worker-9')$$) AS t(c boolean)),
          'the other session releases');
SELECT is((SELECT status FROM eventstore.processors WHERE processor_id = 'p' AND partition = 'default'), 'idle',
          'processors: idle');
SELECT ok((SELECT c FROM dblink('other', $$SELECT eventstore.claim_processor('p', 'worker-9')$$) AS t(c boolean)),
          'the other session claims it again');
SELECT is(dblink_disconnect('other'), 'OK', '... and disconnects without releasing');
SELECT ok(pg_temp.ended(:other_pid), '... its session ends');
SELECT results_eq($$SELECT partition, checkpoint, owner_instance, owner_pid, status FROM eventstore.processors
                    WHERE processor_id = 'p' ORDER BY partition$$,
                  format($$VALUES ('0'::text, NULL::bigint, 'worker-9'::text, %s, 'stale'::text),
                                  ('1', NULL, 'worker-3', pg_backend_pid(), 'running'),
                                  ('default', 7, 'worker-9', %s, 'stale')$$, :other_pid, :other_pid),
                  'processors: the ended session''s claims are stale, with the checkpoint and the last owner');
SELECT ok(eventstore.claim_processor('p', 'worker-2'), 'the claim is free at once: the first session claims it');
SELECT results_eq($$SELECT checkpoint, owner_instance, owner_pid, status FROM eventstore.processors
                    WHERE processor_id = 'p' AND partition = 'default'$$,
                  $$VALUES (7::bigint, 'worker-2'::text, pg_backend_pid(), 'running'::text)$$,
                  'processors: running again, under the new owner');
SELECT ok(eventstore.release_processor('p', 'worker-2') AND eventstore.release_processor('p', 'worker-3', '1'),
          'this session releases its claims');
SELECT is_empty($$SELECT * FROM pg_temp.claims()$$, 'no claim is held');

-- A claim and the owner it records go together: a claim in a transaction
-- that rolls back must not leave the processor held for no instance.
BEGIN;
SELECT ok(eventstore.claim_processor('p', 'worker-4'), 'a claim in a transaction that will roll back');
ROLLBACK;
SELECT ok(EXISTS (SELECT 1 FROM pg_temp.claims() WHERE claim_key = eventstore.processor_claim_key('p'))
          = EXISTS (SELECT 1 FROM eventstore.checkpoints WHERE processor_id = 'p' AND partition = 'default'
                      AND owner_instance IS NOT NULL),
          'after the rollback, the processor is held exactly when an owner is recorded');
SELECT ok(eventstore.claim_processor('p', 'worker-4'), 'the instance can claim it again');
SELECT ok(eventstore.release_processor('p', 'worker-4'), '... and release it');
SELECT lives_ok($$SELECT pg_advisory_unlock_all()$$, 'cleanup: drop this session''s locks');
SELECT is_empty($$SELECT * FROM pg_temp.claims()$$, 'no claim is held');
-- A claim that fails claims nothing.
BEGIN READ ONLY;
SELECT throws_ok($$SELECT eventstore.claim_processor('read-only', 'worker-4')$$, '25006', NULL,
                 'a claim in a read-only transaction fails');
ROLLBACK;
SELECT is((SELECT count(*) FROM pg_temp.claims()), 0::bigint, 'a claim that failed holds nothing');
SELECT lives_ok($$SELECT pg_advisory_unlock_all()$$, 'cleanup: drop this session''s locks');

------------------------------------------------------------------------
-- A consumer group: member m of 2 reads its part of the log from its own
-- checkpoint (partition m), applies it and stores the checkpoint in the same
-- transaction.
------------------------------------------------------------------------
CREATE TEMP TABLE applied (seq bigserial, member int, global_position bigint, stream_id text);

-- One batch of a member from checkpoint cp; a checkpoint not stored undoes
-- the batch (the exception rolls it back).  Returns the events applied.
CREATE FUNCTION pg_temp.batch(member int, page int, cp bigint) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	e eventstore.events; last bigint; n int := 0; outcome eventstore.checkpoint_result;
BEGIN
	FOR e IN SELECT * FROM eventstore.read_all(cp, page, NULL, member, 2) LOOP
		INSERT INTO applied (member, global_position, stream_id) VALUES (member, e.global_position, e.stream_id);
		last := e.global_position;
		n := n + 1;
	END LOOP;
	IF last IS NULL THEN
		RETURN 0;
	END IF;
	outcome := eventstore.store_checkpoint('group', last, cp, member::text);
	IF outcome <> 'stored' THEN
		RAISE EXCEPTION 'member %: %', member, outcome;
	END IF;
	RETURN n;
END $$;
-- Both members take turns, a batch each, until both are caught up.
CREATE FUNCTION pg_temp.run_group(page int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	total int := 0; got int;
BEGIN
	LOOP
		got := pg_temp.batch(0, page, eventstore.read_checkpoint('group', '0'))
		     + pg_temp.batch(1, page, eventstore.read_checkpoint('group', '1'));
		EXIT WHEN got = 0;
		total := total + got;
	END LOOP;
	RETURN total;
END $$;

SELECT ok(eventstore.claim_processor('group', 'member-0', '0') AND eventstore.claim_processor('group', 'member-1', '1'),
          'each member claims its partition');
SELECT is(dblink_exec('early', 'BEGIN'), 'BEGIN', 'an older transaction begins');
SELECT ok((SELECT x IS NOT NULL FROM dblink('early', 'SELECT pg_current_xact_id()::text') AS t(x text)),
          '... and takes its transaction id');
SELECT is((SELECT count(eventstore.append_to_stream(format('order-%s', i), '[{"type": "Placed"}, {"type": "Paid"}]'))
           FROM generate_series(1, 8) i), 8::bigint, 'younger transactions append to eight streams');
SELECT is((SELECT count(eventstore.append_event(format('order-%s', i), 'Shipped', '{}'))
           FROM generate_series(1, 8, 3) i), 3::bigint, '... and more');
SELECT is(pg_temp.run_group(3), 7, 'the group applies the log up to the older transaction: events 1 to 7');
SELECT is(pg_temp.run_group(3), 0, 'running again applies nothing');
SELECT COALESCE(eventstore.read_checkpoint('group', '0'), 0) AS cp0_before \gset
SELECT is((SELECT p FROM dblink('early', $$SELECT last_position FROM eventstore.append_to_stream('order-2',
             '[{"type": "Refunded"}, {"type": "Closed"}]')$$) AS t(p bigint)), 28::bigint,
          'the older transaction appends at 27 and 28');
SELECT is(dblink_exec('early', 'COMMIT'), 'COMMIT', '... and commits');
SELECT is(pg_temp.run_group(2), 21, 'the group applies the other 21 events');
SELECT is((SELECT count(DISTINCT member) FROM applied), 2::bigint, 'both members applied events');
SELECT bag_eq($$SELECT global_position FROM applied$$, $$SELECT global_position FROM eventstore.events$$,
              'together the members applied every event exactly once');
SELECT is(ARRAY(SELECT format('%s in member %s', stream_id, member) FROM applied
                WHERE eventstore.stream_partition(stream_id, 2) <> member),
          '{}'::text[], 'each member applied only its streams');
SELECT results_eq($$SELECT global_position FROM applied WHERE member = 0 ORDER BY seq$$,
                  $$SELECT * FROM pg_temp.log_order(0, 2)$$, 'member 0 applied its part in log order');
SELECT results_eq($$SELECT global_position FROM applied WHERE member = 1 ORDER BY seq$$,
                  $$SELECT * FROM pg_temp.log_order(1, 2)$$, 'member 1 applied its part in log order');
SELECT results_eq($$SELECT eventstore.read_checkpoint('group', m::text) FROM generate_series(0, 1) m$$,
                  $$SELECT (SELECT p FROM pg_temp.log_order(m, 2) WITH ORDINALITY AS t(p, n) ORDER BY n DESC LIMIT 1)
                    FROM generate_series(0, 1) m$$,
                  'each member''s checkpoint is the last event of its part in log order');
SELECT bag_eq($$SELECT partition, owner_instance, status FROM eventstore.processors WHERE processor_id = 'group'$$,
              $$VALUES ('0'::text, 'member-0'::text, 'running'::text), ('1', 'member-1', 'running')$$,
              'processors: both members running');
-- A stale second instance of member 0, at the checkpoint it read before.
SELECT ok(NOT (SELECT c FROM dblink('early', $$SELECT eventstore.claim_processor('group', 'member-0b', '0')$$)
                 AS t(c boolean)), 'a second instance of member 0 cannot claim its partition');
SELECT throws_ok(format('SELECT pg_temp.batch(0, 1, %s)', :cp0_before), 'P0001', 'member 0: further',
                 'a stale instance of member 0 finds the checkpoint further and undoes its batch');
SELECT throws_ok(format('SELECT pg_temp.batch(0, 100, %s)', :cp0_before), 'P0001', 'member 0: ignored',
                 '... or, catching up to the same checkpoint, ignored: a retry, and undoes its batch too');
SELECT is((SELECT count(*) FROM applied), (SELECT count(*) FROM eventstore.events), '... nothing applied twice');
SELECT is((SELECT count(eventstore.append_event(format('order-%s', i), 'Archived', '{}'))
           FROM generate_series(1, 8) i), 8::bigint, 'more events');
SELECT is(pg_temp.run_group(5), 8, 'the group applies just them');
SELECT bag_eq($$SELECT global_position FROM applied$$, $$SELECT global_position FROM eventstore.events$$,
              'still every event exactly once');
SELECT ok(eventstore.release_processor('group', 'member-0', '0') AND eventstore.release_processor('group', 'member-1', '1'),
          'the members release their partitions');
SELECT is(dblink_disconnect('early'), 'OK', 'the second session disconnects');

SELECT * FROM finish();

-- Leave the shared database as we found it.
DROP EXTENSION dblink CASCADE;
DROP EXTENSION pgtap CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
