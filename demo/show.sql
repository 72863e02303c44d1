-- What the demo prints once the workload has run.
\pset footer off
\echo
\echo '== streams: one per cart (eventstore.streams)'
SELECT count(*) AS streams, sum(revision + 1) AS events,
       max(revision) AS longest_cart_revision
FROM eventstore.streams;

\echo '== events by type (eventstore.events)'
SELECT event_type, count(*) AS events FROM eventstore.events
GROUP BY event_type ORDER BY events DESC;

\echo '== optimistic concurrency: appends refused with SE001 and retried later'
SELECT count(*) AS conflicts, min(detail) AS example FROM demo.conflicts;

\echo '== one cart, read as a stream: eventstore.read_stream(''cart-1'')'
SELECT revision, global_position, event_type, data
FROM eventstore.read_stream('cart-1');

\echo '== the global log, first page: eventstore.read_all(NULL, 8)'
SELECT global_position, transaction_id, stream_id, revision, event_type
FROM eventstore.read_all(NULL, 8);
\echo '   read_all returns the log in commit order, (transaction_id, global_position):'
\echo '   a position is taken when an event is appended, so one whose transaction'
\echo '   committed later comes later, even with a smaller position.  A reader that'
\echo '   paged by position alone would skip it; read_all''s cursor never does.'

\echo '== following the global log page by page never skips or repeats an event'
WITH RECURSIVE pages(n, cursor_position, received) AS (
	SELECT 0, NULL::bigint, 0::bigint
	UNION ALL
	SELECT n + 1, page.last_position, received + page.count
	FROM pages,
	LATERAL (SELECT count(*) AS count,
	                (array_agg(global_position
	                           ORDER BY transaction_id DESC, global_position DESC))[1]
	                AS last_position
	         FROM eventstore.read_all(pages.cursor_position, 500)) page
	WHERE page.count > 0
)
SELECT max(n) AS pages_read, max(received) AS events_received,
       (SELECT count(*) FROM eventstore.events) AS events_in_log
FROM pages;

\echo '== consumer groups: the log split in 3 by stream, disjoint and complete'
SELECT m AS group_member, count(*) AS events,
       count(DISTINCT stream_id) AS streams
FROM generate_series(0, 2) m, eventstore.read_all(NULL, NULL, NULL, m, 3)
GROUP BY m ORDER BY m;

\echo '== a read model kept by a checkpointed consumer: CALL demo.follow_cart_totals(...)'
CALL demo.follow_cart_totals('demo-1');
SELECT count(*) AS carts, sum(items) AS items_in_carts,
       round(sum(value_cents) / 100.0, 2) AS added_value_eur,
       count(*) FILTER (WHERE checked_out) AS checked_out
FROM demo.cart_totals;
SELECT processor_id, checkpoint, status FROM eventstore.processors;

\echo '== skips recorded by inline appends during the rebuild, and how they were drained'
SELECT outcome, count(*) AS skips FROM eventstore.projection_skips
GROUP BY outcome ORDER BY outcome;

\echo '== the worker as pg_stat_activity shows it'
SELECT pid, state, replace(query, 'pg_eventstore: ', '') AS last_activity
FROM pg_stat_activity WHERE backend_type LIKE 'pg_eventstore%';
