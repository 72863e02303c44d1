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
SELECT processor_id, checkpoint, status, owner_instance,
       (SELECT count(*) FROM eventstore.events) AS events_in_log
FROM eventstore.processors;

\echo '== projections kept in-database: eventstore.projection_status'
SELECT name, version, mode, status, checkpoint, head, lag_events,
       skips_pending, dead_letters, events_applied
FROM eventstore.projection_status ORDER BY name, version;

\echo '== skips recorded by inline appends during the rebuild, and how they were drained'
SELECT outcome, count(*) AS skips FROM eventstore.projection_skips
GROUP BY outcome ORDER BY outcome;

\echo '== the inline cart-summary equals the log, cart for cart (nothing lost, nothing doubled)'
WITH from_log AS (
	SELECT stream_id AS cart,
	       sum(CASE event_type WHEN 'ItemAdded' THEN (data->>'qty')::int
	                           WHEN 'ItemRemoved' THEN -1 ELSE 0 END) AS items,
	       sum(CASE WHEN event_type = 'ItemAdded'
	                THEN (data->>'qty')::int * (data->>'price_cents')::bigint
	                ELSE 0 END) AS value_cents
	FROM eventstore.events GROUP BY stream_id)
SELECT (SELECT count(*) FROM demo.cart_summary) AS carts,
       (SELECT sum(items) FROM demo.cart_summary) AS items,
       NOT EXISTS (SELECT cart, items, value_cents FROM from_log
                   EXCEPT SELECT cart, items, value_cents FROM demo.cart_summary)
       AND (SELECT count(*) FROM from_log) = (SELECT count(*) FROM demo.cart_summary)
           AS equals_log;

\echo '== sku-sales, versions 1 and 2, each equal to the log'
SELECT 1 AS version, count(*) AS skus, sum(units) AS units,
       round(sum(revenue_cents) / 100.0, 2) AS revenue_eur,
       NOT EXISTS (SELECT data->>'sku', sum((data->>'qty')::int)
                   FROM eventstore.events WHERE event_type = 'ItemAdded' GROUP BY 1
                   EXCEPT SELECT sku, units FROM demo.sku_sales) AS equals_log
FROM demo.sku_sales
UNION ALL
SELECT 2, count(*), sum(units), round(sum(revenue_cents) / 100.0, 2),
       NOT EXISTS (SELECT data->>'sku',
                          coalesce(sum((data->>'qty')::int) FILTER (WHERE event_type = 'ItemAdded'), 0),
                          count(*) FILTER (WHERE event_type = 'ItemRemoved')
                   FROM eventstore.events
                   WHERE event_type IN ('ItemAdded', 'ItemRemoved') GROUP BY 1
                   EXCEPT SELECT sku, units, removals FROM demo.sku_sales_v2)
FROM demo.sku_sales_v2;

\echo '== sku-sales version 3 (per event) is bit-identical to version 2 (set-based)'
SELECT * FROM eventstore.compare_read_models('demo.sku_sales_v2', 'demo.sku_sales_v3');

\echo '== checkout-mails was rebuilt under load: its counts equal the log, and each checkout queued one mail'
SELECT (SELECT count(*) FROM eventstore.events WHERE event_type = 'CheckedOut') AS checkouts_in_log,
       (SELECT sum(checkouts) FROM demo.checkouts_per_cart) AS checkouts_counted,
       count(*) AS mails_queued, count(DISTINCT event_id) AS distinct_mails,
       count(*) = (SELECT count(*) FROM eventstore.events WHERE event_type = 'CheckedOut')
       AND count(*) = count(DISTINCT event_id) AS once_each
FROM demo.outbox;

\echo '== the worker as pg_stat_activity shows it'
SELECT pid, backend_type, application_name, state, query
FROM pg_stat_activity WHERE backend_type LIKE 'pg_eventstore%';
