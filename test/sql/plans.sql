--
-- Plans stay right as the log grows: a session whose first append and
-- read ran when the log was small keeps using the indexes once it is large
-- (no plan made for a few pages outlives them).  Counted by the scans this
-- transaction made of each table (pg_stat_xact_user_tables), in a database
-- of its own, so that the log starts small.
--
CREATE DATABASE eventstore_plans;
\c eventstore_plans
SET client_min_messages = warning;
CREATE EXTENSION pg_eventstore;
RESET client_min_messages;

-- The scans of the log and of the streams since mark_scans() in this
-- transaction (the counts of pg_stat_xact_user_tables are flushed only
-- between transactions).
CREATE TABLE marks (relname name PRIMARY KEY, seq_scan bigint, idx_scan bigint);
CREATE FUNCTION mark_scans() RETURNS void LANGUAGE sql AS $$
	DELETE FROM marks;
	INSERT INTO marks SELECT relname, seq_scan, coalesce(idx_scan, 0)
	FROM pg_stat_xact_user_tables
	WHERE schemaname = 'eventstore' AND relname IN ('events', 'streams')
$$;
CREATE FUNCTION scans(OUT relname name, OUT seq_scans bigint, OUT index_scans bigint)
RETURNS SETOF record LANGUAGE sql AS $$
	SELECT m.relname, t.seq_scan - m.seq_scan, coalesce(t.idx_scan, 0) - m.idx_scan
	FROM marks m JOIN pg_stat_xact_user_tables t
		ON t.schemaname = 'eventstore' AND t.relname = m.relname
	ORDER BY relname
$$;

-- A small log, and this session's first append with an explicit id, first
-- read of a stream and first page of the log while it is small.
SELECT count(*) FROM generate_series(1, 300) i,
	LATERAL eventstore.append_event('small-' || i % 10, 'Small', '{}');
SELECT (eventstore.append_event('first', 'Small', '{}', NULL, -1,
		'00000000-0000-7000-8000-000000000001')).next_expected_revision;
SELECT count(*) FROM eventstore.read_stream('small-1');
SELECT count(*) FROM eventstore.read_all(NULL, 100);

-- An ANALYZE of the small log (autovacuum's first, say) invalidates the
-- kept plans: the next run plans them again, by statistics that say the
-- log is small.
ANALYZE eventstore.events;
ANALYZE eventstore.streams;
SELECT (eventstore.append_event('first', 'Small', '{}', NULL, 0,
		'00000000-0000-7000-8000-000000000002')).next_expected_revision;
SELECT count(*) FROM eventstore.read_stream('small-2');
SELECT count(*) FROM eventstore.read_all(NULL, 100);

-- The log grows a hundredfold; nothing analyzes it again (autovacuum is
-- off here; elsewhere its next ANALYZE may be far off).
SELECT count(*) FROM generate_series(1, 300) s,
	LATERAL eventstore.append_to_stream('big-' || s,
		(SELECT jsonb_agg(jsonb_build_object('type', 'Big', 'data', '{}'))
		 FROM generate_series(1, 100)));

-- The same statements in this session now use the indexes: no
-- sequential scan of the log or of the streams.
BEGIN;
SELECT mark_scans();
SELECT (eventstore.append_event('second', 'Small', '{}', NULL, -1,
		'00000000-0000-7000-8000-000000000003')).next_expected_revision;
SELECT * FROM scans();
COMMIT;
BEGIN;
SELECT mark_scans();
SELECT count(*) FROM eventstore.read_stream('big-7');
SELECT count(*) FROM eventstore.read_all(NULL, 100);
SELECT * FROM scans();
COMMIT;

\c contrib_regression
DROP DATABASE eventstore_plans;
