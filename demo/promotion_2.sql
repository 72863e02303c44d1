-- After version 2's rebuild reached the head (demo.sh waits for it).
\pset footer off
\echo '== version 2 rebuilt: its check passes, and the promotion re-points demo.sales'
SELECT check_name, passed, failing_rows FROM eventstore.check_projection('sku-sales', 2);
SELECT eventstore.promote_projection('sku-sales', 2) \g /dev/null
SELECT eventstore.current_version('sku-sales') AS serving_version,
	   substring(pg_get_viewdef('demo.sales') FROM 'FROM (\S+);') AS demo_sales_reads;
SELECT * FROM demo.sales ORDER BY units DESC LIMIT 3;

\echo '== version 3, a per-event re-implementation of version 2, promotes itself once bit-identical'
BEGIN;
SELECT eventstore.create_projection('sku-sales', 'demo.apply_sku_sales_v3',
	ARRAY['ItemAdded', 'ItemRemoved'], version => 3,
	on_reset => 'TRUNCATE demo.sku_sales_v3', promote => 'auto') \g /dev/null
SELECT eventstore.set_read_model('sku-sales', 3, 'demo.sku_sales_v3', 'demo.sales') \g /dev/null
SELECT eventstore.add_projection_check('sku-sales', 3, 'bit-identical to version 2',
	$$SELECT * FROM eventstore.compare_read_models('demo.sku_sales_v2', 'demo.sku_sales_v3')
	  WHERE NOT identical$$) \g /dev/null
COMMIT;
