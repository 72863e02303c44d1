-- Checked promotion, run by demo.sh once the workload has stopped and
-- every projection is at the head.  Consumers read the stable view
-- demo.sales throughout (demo.sh keeps a reader on it meanwhile).
\pset footer off

\echo '== version 2 of sku-sales is at the head; a check gates its promotion:'
\echo '   the rows where its units differ from those of version 1 (it passes when there is none)'
SELECT eventstore.set_read_model('sku-sales', 2, 'demo.sku_sales_v2', 'demo.sales') \g /dev/null
SELECT eventstore.add_projection_check('sku-sales', 2, 'units agree with version 1',
	$$SELECT sku, v1.units AS v1_units, v2.units AS v2_units
	  FROM demo.sku_sales v1 FULL JOIN demo.sku_sales_v2 v2 USING (sku)
	  WHERE v1.units IS DISTINCT FROM v2.units ORDER BY sku$$) \g /dev/null
SELECT check_name, passed, failing_rows FROM eventstore.check_projection('sku-sales', 2);

\echo '== promoting version 2 is refused (SE011), with the failing rows; demo.sales stays on version 1'
\set ON_ERROR_STOP off
SELECT eventstore.promote_projection('sku-sales', 2) \g /dev/null
\set ON_ERROR_STOP on
SELECT demo.mark(format('refused: v2 failed "%s" (%s rows), was fixed and rebuilt',
					   check_name, failing_rows))
FROM eventstore.check_projection('sku-sales', 2) WHERE NOT passed \g /dev/null
SELECT eventstore.current_version('sku-sales') AS serving_version,
	   substring(pg_get_viewdef('demo.sales') FROM 'FROM (\S+);') AS demo_sales_reads;

\echo '== the fix: units count additions only; version 2 is rebuilt from the start'
CREATE OR REPLACE FUNCTION demo.apply_sku_sales_v2(events eventstore.events[])
RETURNS void LANGUAGE sql AS $$
	INSERT INTO demo.sku_sales_v2 AS s (sku, units, revenue_cents, removals)
	SELECT e.data->>'sku',
		   coalesce(sum((e.data->>'qty')::int) FILTER (WHERE e.event_type = 'ItemAdded'), 0),
		   coalesce(sum((e.data->>'qty')::int * (e.data->>'price_cents')::bigint)
					FILTER (WHERE e.event_type = 'ItemAdded'), 0),
		   count(*) FILTER (WHERE e.event_type = 'ItemRemoved')
	FROM pg_catalog.unnest(events) e
	GROUP BY 1
	ON CONFLICT (sku) DO UPDATE SET
		units = s.units + excluded.units,
		revenue_cents = s.revenue_cents + excluded.revenue_cents,
		removals = s.removals + excluded.removals;
$$;
SELECT eventstore.rebuild_projection('sku-sales', 2) \g /dev/null
SELECT demo.mark('sku-sales v2 rebuilt') \g /dev/null
-- A re-implementation of version 2, per event in PL/pgSQL, that must be
-- bit-identical to it: its check is the parity of the two read models, and
-- it promotes itself when it reaches the head with its checks passed.
CREATE TABLE demo.sku_sales_v3 (LIKE demo.sku_sales_v2 INCLUDING ALL);
CREATE FUNCTION demo.apply_sku_sales_v3(e eventstore.events)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO demo.sku_sales_v3 AS s (sku, units, revenue_cents, removals)
	VALUES (e.data->>'sku',
			CASE WHEN e.event_type = 'ItemAdded' THEN (e.data->>'qty')::int ELSE 0 END,
			CASE WHEN e.event_type = 'ItemAdded'
				 THEN (e.data->>'qty')::int * (e.data->>'price_cents')::bigint ELSE 0 END,
			CASE WHEN e.event_type = 'ItemRemoved' THEN 1 ELSE 0 END)
	ON CONFLICT (sku) DO UPDATE SET
		units = s.units + excluded.units,
		revenue_cents = s.revenue_cents + excluded.revenue_cents,
		removals = s.removals + excluded.removals;
END $$;
