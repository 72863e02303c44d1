-- store_checkpoint, read_checkpoint, reset_checkpoint, claim_processor,
-- release_processor and eventstore.processors: exact results and errors.
-- Each test file starts from an empty store (the tests share one database).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
DROP EXTENSION IF EXISTS dblink CASCADE;
CREATE EXTENSION pg_eventstore;
CREATE EXTENSION dblink;
RESET client_min_messages;
\set VERBOSITY default
\pset null '(null)'

-- A checkpoint row: its position, and whether its transaction_id is the
-- transaction of the event at that position (NULL when there is none).
CREATE FUNCTION pg_temp.cp(processor text, part text DEFAULT 'default')
RETURNS TABLE ("position" bigint, transaction_id_is_the_events boolean)
LANGUAGE sql AS $$
	SELECT c."position", c.transaction_id = (SELECT e.transaction_id FROM eventstore.events e
	                                         WHERE e.global_position = c."position")
	FROM eventstore.checkpoints c WHERE c.processor_id = processor AND c.partition = part
$$;

-- claims() and ended(); pg_regress feeds this file to psql on stdin, from
-- the top of the tree
\i test/include/sessions.psql

-- A log of five events: stream a at 1-3, stream b at 4-5.
SELECT last_position FROM eventstore.append_to_stream('a', '[{"type": "A0"}, {"type": "A1"}, {"type": "A2"}]');
SELECT last_position FROM eventstore.append_to_stream('b', '[{"type": "B0"}, {"type": "B1"}]');

------------------------------------------------------------------------
-- store_checkpoint: stored, ignored, further, older
------------------------------------------------------------------------
-- never stored: NULL, and reading creates no row
SELECT eventstore.read_checkpoint('totals');
SELECT eventstore.read_checkpoint('totals', 'default');
SELECT count(*) FROM eventstore.checkpoints;
-- the first store expects NULL
SELECT eventstore.store_checkpoint('totals', 2, NULL);
SELECT eventstore.read_checkpoint('totals'), eventstore.read_checkpoint('totals', 'default');
SELECT * FROM pg_temp.cp('totals');
-- a retry: already there, whatever it expected
SELECT eventstore.store_checkpoint('totals', 2, NULL);
SELECT eventstore.store_checkpoint('totals', 2, 1);
SELECT eventstore.store_checkpoint('totals', 2, 4);
-- progress from the stored checkpoint
SELECT eventstore.store_checkpoint('totals', 4, 2);
SELECT eventstore.read_checkpoint('totals');
-- further: the stored checkpoint (4) is ahead of the expected one
SELECT eventstore.store_checkpoint('totals', 3, 2);
SELECT eventstore.store_checkpoint('totals', 5, 1);
SELECT eventstore.store_checkpoint('totals', 5, NULL);
SELECT eventstore.store_checkpoint('totals', 5, 0);
-- older: the stored checkpoint (4) is behind the expected one
SELECT eventstore.store_checkpoint('totals', 5, 5);
-- nothing changed
SELECT * FROM pg_temp.cp('totals');
-- expected_position 0 means "none yet", like NULL
SELECT eventstore.store_checkpoint('zero', 3, 0);
SELECT eventstore.store_checkpoint('zero', 3, 0);
SELECT eventstore.store_checkpoint('zero', 5, 0);
SELECT eventstore.read_checkpoint('zero');
-- nothing stored yet and an expected position: older
SELECT eventstore.store_checkpoint('fresh', 3, 2);
SELECT eventstore.read_checkpoint('fresh');
-- the stored checkpoint may also move back when it is the expected one
SELECT eventstore.store_checkpoint('zero', 1, 3);
SELECT * FROM pg_temp.cp('zero');

------------------------------------------------------------------------
-- log order, not raw position: a transaction that takes its id first and
-- appends last (session "early") is before one that appends and commits
-- while it runs.
------------------------------------------------------------------------
SELECT dblink_connect('early',
         format('dbname=%L port=%s host=%L', current_database(), current_setting('port'),
                COALESCE(NULLIF(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
                         'localhost')));
SELECT dblink_exec('early', 'BEGIN');
SELECT x IS NOT NULL AS took_its_id FROM dblink('early', 'SELECT pg_current_xact_id()::text') AS t(x text);
SELECT first_position FROM eventstore.append_event('c', 'Later', '{}');
SELECT p FROM dblink('early', $$SELECT first_position FROM eventstore.append_event('d', 'Earlier', '{}')$$) AS t(p bigint);
SELECT dblink_exec('early', 'COMMIT');
SELECT dblink_disconnect('early');
-- 7 is before 6 in the log
SELECT global_position, stream_id FROM eventstore.read_all(5);
-- stored 6 (late transaction), expected 7 (early one): 6 is further
SELECT eventstore.store_checkpoint('order', 6, NULL);
SELECT eventstore.store_checkpoint('order', 5, 7);
-- stored 7, expected 6: 7 is older
SELECT eventstore.store_checkpoint('order-2', 7, NULL);
SELECT eventstore.store_checkpoint('order-2', 5, 6);
-- the consumer's way: 7, then 6
SELECT eventstore.store_checkpoint('order-3', 7, 5);
SELECT eventstore.store_checkpoint('order-3', 5, NULL);
SELECT eventstore.store_checkpoint('order-3', 7, NULL);
SELECT eventstore.store_checkpoint('order-3', 7, 5);
SELECT eventstore.store_checkpoint('order-3', 6, 7);
SELECT eventstore.store_checkpoint('order-3', 6, 5);
-- stored 6 is further than 7
SELECT eventstore.store_checkpoint('order-3', 5, 7);
SELECT * FROM pg_temp.cp('order'), pg_temp.cp('order-2') AS o2, pg_temp.cp('order-3') AS o3;
SELECT eventstore.read_checkpoint('order'), eventstore.read_checkpoint('order-2'),
       eventstore.read_checkpoint('order-3');

------------------------------------------------------------------------
-- transactions: a store is part of the caller's transaction
------------------------------------------------------------------------
CREATE TEMP TABLE model (position bigint);
BEGIN;
INSERT INTO model VALUES (5);
SELECT eventstore.store_checkpoint('totals', 5, 4);
SELECT eventstore.read_checkpoint('totals');
ROLLBACK;
SELECT eventstore.read_checkpoint('totals'), (SELECT count(*) FROM model) AS model_rows;
BEGIN;
INSERT INTO model VALUES (5);
SELECT eventstore.store_checkpoint('totals', 5, 4);
COMMIT;
SELECT eventstore.read_checkpoint('totals'), (SELECT count(*) FROM model) AS model_rows;
-- a first store rolled back leaves no checkpoint
BEGIN;
SELECT eventstore.store_checkpoint('never', 1, NULL);
ROLLBACK;
SELECT eventstore.read_checkpoint('never');
DROP TABLE model;

------------------------------------------------------------------------
-- partitions are independent
------------------------------------------------------------------------
SELECT eventstore.store_checkpoint('totals', 1, NULL, '0');
SELECT eventstore.store_checkpoint('totals', 3, NULL, '1');
SELECT eventstore.store_checkpoint('totals', 2, 1, '0');
SELECT eventstore.store_checkpoint('totals', 2, 1, '1');
SELECT eventstore.read_checkpoint('totals', 'default') AS "default",
       eventstore.read_checkpoint('totals', '0') AS "0",
       eventstore.read_checkpoint('totals', '1') AS "1",
       eventstore.read_checkpoint('totals', '2') AS "2";

------------------------------------------------------------------------
-- reset_checkpoint: unconditionally, to NULL (or 0: the start) or a position
------------------------------------------------------------------------
SELECT eventstore.reset_checkpoint('totals');
SELECT * FROM pg_temp.cp('totals');
SELECT eventstore.store_checkpoint('totals', 1, NULL);
SELECT eventstore.reset_checkpoint('totals', 7);
SELECT * FROM pg_temp.cp('totals');
SELECT eventstore.store_checkpoint('totals', 5, 6);
SELECT eventstore.reset_checkpoint('totals', 0);
SELECT * FROM pg_temp.cp('totals');
SELECT eventstore.reset_checkpoint('totals', 3, '1');
SELECT eventstore.reset_checkpoint('new', 4);
SELECT eventstore.reset_checkpoint(processor_id => 'new-2', partition => '7');
SELECT processor_id, partition, "position" FROM eventstore.checkpoints ORDER BY 1, 2;

------------------------------------------------------------------------
-- errors
------------------------------------------------------------------------
SELECT eventstore.store_checkpoint(NULL, 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.store_checkpoint('', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.store_checkpoint(repeat('x', 1001), 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.store_checkpoint('totals', 1, NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.store_checkpoint('totals', 1, NULL, '');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.store_checkpoint('totals', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.store_checkpoint('totals', -1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.store_checkpoint('totals', 99, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.store_checkpoint('totals', 1, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.store_checkpoint('totals', 1, 99);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.read_checkpoint(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.read_checkpoint('');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.read_checkpoint('totals', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.read_checkpoint('totals', '');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.reset_checkpoint(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.reset_checkpoint('');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.reset_checkpoint('totals', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.reset_checkpoint('totals', 1, '');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.reset_checkpoint('totals', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.reset_checkpoint('totals', 99);
\echo :LAST_ERROR_SQLSTATE
-- a position that rolled back is in no log
BEGIN;
SELECT first_position FROM eventstore.append_event('gone', 'Gone', '{}');
ROLLBACK;
SELECT eventstore.reset_checkpoint('totals', 8);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.claim_processor(NULL, 'i');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.claim_processor('', 'i');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.claim_processor('totals', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.claim_processor('totals', '');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.claim_processor('totals', 'i', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.claim_processor('totals', 'i', '');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.release_processor(NULL, 'i');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.release_processor('totals', '');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.release_processor('totals', 'i', NULL);
\echo :LAST_ERROR_SQLSTATE
-- no error changed anything, nor claimed anything
SELECT processor_id, partition, "position", owner_instance FROM eventstore.checkpoints ORDER BY 1, 2;
SELECT count(*) AS claims FROM pg_temp.claims();

------------------------------------------------------------------------
-- claim_processor and release_processor in one session
------------------------------------------------------------------------
SELECT eventstore.claim_processor('totals', 'worker-1');
SELECT eventstore.claim_processor('totals', 'worker-1');
SELECT eventstore.claim_processor('totals', 'worker-2');
SELECT eventstore.release_processor('totals', 'worker-2');
SELECT processor_id, partition, checkpoint, owner_instance, owner_pid = pg_backend_pid() AS owner_is_me,
       status, claimed_at IS NOT NULL AS claimed
FROM eventstore.processors WHERE processor_id = 'totals' ORDER BY partition;
SELECT l.mode, l.granted, l.pid = pg_backend_pid() AS mine
FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.objsubid = 17747
  AND (l.classid::bigint << 32) | l.objid::bigint = eventstore.processor_claim_key('totals');
SELECT eventstore.processor_claim_key('totals') = eventstore.processor_claim_key('totals', 'default') AS same_key,
       eventstore.processor_claim_key('totals') <> eventstore.processor_claim_key('totals', '1') AS other_partition_other_key,
       eventstore.processor_claim_key('ab', 'c') <> eventstore.processor_claim_key('a', 'bc') AS names_kept_apart,
       eventstore.processor_claim_key(NULL) AS of_null;
SELECT eventstore.release_processor('totals', 'worker-1');
SELECT eventstore.release_processor('totals', 'worker-1');
SELECT processor_id, partition, checkpoint, owner_instance, owner_pid, status
FROM eventstore.processors WHERE processor_id = 'totals' ORDER BY partition;
SELECT eventstore.claim_processor('totals', 'worker-2');
-- another partition is another claim
SELECT eventstore.claim_processor('totals', 'worker-3', '1');
-- a processor without a checkpoint row gets one
SELECT eventstore.claim_processor('unseen', 'worker-1');
SELECT processor_id, partition, checkpoint, owner_instance, owner_pid = pg_backend_pid() AS owner_is_me, status
FROM eventstore.processors ORDER BY 1, 2;
SELECT eventstore.release_processor('totals', 'worker-2'),
       eventstore.release_processor('totals', 'worker-3', '1'),
       eventstore.release_processor('unseen', 'worker-1');
SELECT count(*) AS claims FROM pg_temp.claims();
SELECT processor_id, partition, owner_instance, status FROM eventstore.processors ORDER BY 1, 2;

------------------------------------------------------------------------
-- claims across sessions: running, then stale when the owner's session
-- ends without releasing
------------------------------------------------------------------------
SELECT dblink_connect('other',
         format('dbname=%L port=%s host=%L', current_database(), current_setting('port'),
                COALESCE(NULLIF(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
                         'localhost')));
SELECT p AS other_pid FROM dblink('other', 'SELECT pg_backend_pid()') AS t(p int) \gset
SELECT eventstore.claim_processor('totals', 'worker-1');
SELECT c AS claimed FROM dblink('other', $$SELECT eventstore.claim_processor('totals', 'worker-9')$$) AS t(c boolean);
SELECT eventstore.release_processor('totals', 'worker-1');
SELECT c AS claimed FROM dblink('other', $$SELECT eventstore.claim_processor('totals', 'worker-9')$$) AS t(c boolean);
SELECT eventstore.claim_processor('totals', 'worker-1');
SELECT r AS stored FROM dblink('other', $$SELECT eventstore.store_checkpoint('totals', 3, NULL)$$) AS t(r text);
SELECT processor_id, partition, checkpoint, owner_instance, owner_pid = :other_pid AS owner_is_other, status
FROM eventstore.processors WHERE processor_id = 'totals' AND partition = 'default';
SELECT dblink_disconnect('other');
SELECT pg_temp.ended(:other_pid);
SELECT processor_id, partition, checkpoint, owner_instance, owner_pid = :other_pid AS owner_is_other, status
FROM eventstore.processors WHERE processor_id = 'totals' AND partition = 'default';
SELECT eventstore.claim_processor('totals', 'worker-1');
SELECT processor_id, partition, checkpoint, owner_instance, owner_pid = pg_backend_pid() AS owner_is_me, status
FROM eventstore.processors WHERE processor_id = 'totals' AND partition = 'default';
SELECT eventstore.release_processor('totals', 'worker-1');
SELECT count(*) AS claims FROM pg_temp.claims();

-- A claim cannot be prepared: a prepared transaction outlives the session's
-- next transactions, whose outcome the claim would follow instead.
BEGIN;
SELECT eventstore.claim_processor('prepared', 'worker-1');
PREPARE TRANSACTION 'claims';
SELECT count(*) AS claims FROM pg_temp.claims();
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'claims';

-- Leave the shared database as we found it.
DROP EXTENSION dblink;
DROP EXTENSION pg_eventstore CASCADE;
