-- The demo's closing report, run by demo.sh at the end with the psql
-- variables clients, seconds, commands (pgbench's transactions), reads and
-- failed_reads (the consumer of demo.sales during the promotions).  Every
-- read model is checked against the log; the last line is the verdict,
-- "PASS" only when every check holds and every projection is active at the
-- head (demo.sh fails otherwise, and the test command asserts it).

-- Each read model of the demo against what the log says it must hold.
CREATE OR REPLACE FUNCTION demo.read_model_checks()
RETURNS TABLE (read_model text, equals_log boolean, detail text)
LANGUAGE sql AS $$
	WITH carts AS (
		SELECT stream_id AS cart,
			   sum(CASE event_type WHEN 'ItemAdded' THEN (data->>'qty')::int
								   WHEN 'ItemRemoved' THEN -1 ELSE 0 END) AS items,
			   sum(CASE WHEN event_type = 'ItemAdded'
						THEN (data->>'qty')::int * (data->>'price_cents')::bigint
						ELSE 0 END) AS value_cents,
			   bool_or(event_type = 'CheckedOut') AS checked_out
		FROM eventstore.events GROUP BY stream_id),
	skus AS (
		SELECT data->>'sku' AS sku,
			   coalesce(sum((data->>'qty')::int) FILTER (WHERE event_type = 'ItemAdded'), 0) AS units,
			   coalesce(sum((data->>'qty')::int * (data->>'price_cents')::bigint)
						FILTER (WHERE event_type = 'ItemAdded'), 0) AS revenue_cents,
			   count(*) FILTER (WHERE event_type = 'ItemRemoved') AS removals
		FROM eventstore.events
		WHERE event_type IN ('ItemAdded', 'ItemRemoved') GROUP BY 1)
	SELECT 'cart-summary (inline)',
		   NOT EXISTS (SELECT cart, items, value_cents FROM carts
					   EXCEPT SELECT cart, items, value_cents FROM demo.cart_summary)
		   AND (SELECT count(*) FROM carts) = (SELECT count(*) FROM demo.cart_summary),
		   format('%s carts', (SELECT count(*) FROM demo.cart_summary))
	UNION ALL
	SELECT 'sku-sales v1 (async, batches)',
		   NOT EXISTS (SELECT sku, units, revenue_cents FROM skus WHERE units > 0
					   EXCEPT SELECT sku, units, revenue_cents FROM demo.sku_sales)
		   AND (SELECT count(*) FROM skus WHERE units > 0) = (SELECT count(*) FROM demo.sku_sales),
		   format('%s SKUs', (SELECT count(*) FROM demo.sku_sales))
	UNION ALL
	SELECT 'sku-sales v2 (rebuilt, fixed)',
		   NOT EXISTS (SELECT sku, units, revenue_cents, removals FROM skus
					   EXCEPT SELECT sku, units, revenue_cents, removals FROM demo.sku_sales_v2)
		   AND (SELECT count(*) FROM skus) = (SELECT count(*) FROM demo.sku_sales_v2),
		   format('%s SKUs', (SELECT count(*) FROM demo.sku_sales_v2))
	UNION ALL
	SELECT 'sku-sales v3 (per event)', c.identical,
		   format('bit-identical to v2: %s rows', c.rows_b)
	FROM eventstore.compare_read_models('demo.sku_sales_v2', 'demo.sku_sales_v3') c
	UNION ALL
	SELECT 'checkout-mails (inline, outbox)',
		   (SELECT count(*) FROM demo.outbox) = n AND
		   (SELECT count(DISTINCT event_id) FROM demo.outbox) = n AND
		   (SELECT coalesce(sum(checkouts), 0) FROM demo.checkouts_per_cart) = n,
		   format('%s checkouts, %s mails queued', n, (SELECT count(*) FROM demo.outbox))
	FROM (SELECT count(*) AS n FROM eventstore.events WHERE event_type = 'CheckedOut') c
	UNION ALL
	SELECT 'cart-totals (client consumer)',
		   NOT EXISTS (SELECT cart, items, value_cents, checked_out FROM carts
					   EXCEPT SELECT cart, items, value_cents, checked_out FROM demo.cart_totals)
		   AND (SELECT count(*) FROM carts) = (SELECT count(*) FROM demo.cart_totals),
		   format('checkpoint %s', (SELECT checkpoint FROM eventstore.processors
									WHERE processor_id = 'cart-totals'))
$$;

\pset format unaligned
\pset tuples_only on
\pset footer off
\pset fieldsep ' '

\echo
\echo '================== pg_eventstore demo: the closing report =================='
WITH w AS (
	SELECT (SELECT head FROM demo.milestones WHERE label = 'workload started') AS head0,
		   (SELECT head FROM demo.milestones WHERE label = 'workload ended') AS head1,
		   extract(epoch FROM (SELECT taken_at FROM demo.milestones WHERE label = 'workload ended')
							- (SELECT taken_at FROM demo.milestones WHERE label = 'workload started'))
			   AS seconds)
SELECT format('%-13s%s events in %s streams (%s event types)', 'log',
			  to_char((SELECT count(*) FROM eventstore.events), 'FM999,999,990'),
			  to_char((SELECT count(*) FROM eventstore.streams), 'FM999,999,990'),
			  (SELECT count(DISTINCT event_type) FROM eventstore.events))
UNION ALL
SELECT format('%-13s%s events in %s s by %s clients: %s events/s (%s commands/s)', 'appends',
			  to_char(head1 - head0, 'FM999,999,990'), round(seconds::numeric, 1), :'clients',
			  to_char((head1 - head0) / greatest(seconds, 0.001), 'FM999,999,990'),
			  to_char(:'commands'::numeric / greatest(seconds, 0.001), 'FM999,999,990'))
FROM w
UNION ALL
SELECT format('%-13s%s appends refused with SE001 (a stale expected revision), none lost',
			  'conflicts', (SELECT count(*) FROM demo.conflicts));

\echo
\echo 'projection          mode    status  lag  last (re)build'
SELECT format('%-20s%-8s%-8s%-5s%s', name || ' v' || version, mode, status, lag_events,
			  CASE WHEN caught_up_at IS NOT NULL AND rebuild_started_at IS NOT NULL
						AND caught_up_at >= rebuild_started_at
				   THEN round(extract(epoch FROM caught_up_at - rebuild_started_at)::numeric, 2)
						|| ' s to the head'
				   ELSE 'none (built as appended)' END)
FROM eventstore.projection_status ORDER BY name, version;

\echo
SELECT format('%-13ssku-sales serves version %s through the view demo.sales', 'promotion',
			  eventstore.current_version('sku-sales'));
SELECT format('%-13s%s', '', line) FROM (
	SELECT promoted_at AS at,
		   format('%s v%s%s, checks: %s',
				  coalesce('v' || from_version || ' ->', 'to'), to_version,
				  CASE WHEN automatic THEN ' (automatic)' WHEN forced THEN ' (forced)'
					   WHEN from_version > to_version THEN ' (a rollback)' ELSE '' END,
				  coalesce((SELECT string_agg(format('"%s" %s', r->>'check_name',
													 CASE WHEN (r->>'passed')::boolean
														  THEN 'passed' ELSE 'failed' END), ', ')
							FROM jsonb_array_elements(check_results) r), 'none')) AS line
	FROM eventstore.projection_promotions WHERE name = 'sku-sales'
	UNION ALL
	SELECT taken_at, label FROM demo.milestones WHERE label LIKE 'refused%') p
ORDER BY at;
SELECT format('%-13s%s reads of demo.sales during the promotions, %s failed', 'consumers',
			  :'reads', :'failed_reads');

\echo
\echo 'read model                        equals the log'
SELECT format('%-34s%-6s%s', read_model, CASE WHEN equals_log THEN 'yes' ELSE 'NO' END, detail)
FROM demo.read_model_checks();

\echo
SELECT CASE WHEN ok THEN 'verdict      PASS: every read model equals the log, every projection is active at the head'
			ELSE 'verdict      FAIL: ' || why END
FROM (SELECT coalesce(bool_and(ok), false) AS ok,
			 string_agg(why, '; ') FILTER (WHERE NOT ok) AS why
	  FROM (SELECT equals_log AS ok, read_model || ' differs from the log' AS why
			FROM demo.read_model_checks()
			UNION ALL
			SELECT status = 'active' AND lag_events = 0 AND skips_pending = 0,
				   format('%s v%s is %s with lag %s', name, version, status, lag_events)
			FROM eventstore.projection_status
			UNION ALL
			SELECT :'failed_reads' = '0', 'reads of demo.sales failed') checks) v;
\echo '============================================================================'
