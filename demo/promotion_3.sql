-- After version 3 promoted itself (demo.sh waits for it).
\pset footer off
SELECT * FROM eventstore.compare_read_models('demo.sku_sales_v2', 'demo.sku_sales_v3');
SELECT eventstore.current_version('sku-sales') AS serving_version,
	   substring(pg_get_viewdef('demo.sales') FROM 'FROM (\S+);') AS demo_sales_reads;

\echo '== a rollback: promoting version 2 again points demo.sales back at it'
SELECT eventstore.promote_projection('sku-sales', 2) \g /dev/null
SELECT eventstore.current_version('sku-sales') AS serving_version,
	   substring(pg_get_viewdef('demo.sales') FROM 'FROM (\S+);') AS demo_sales_reads;

\echo '== every promotion is recorded (eventstore.projection_promotions)'
SELECT to_version, from_version, forced, automatic, promoted_by,
	   jsonb_path_query_array(check_results, '$[*].passed') AS checks_passed
FROM eventstore.projection_promotions
WHERE name = 'sku-sales' ORDER BY promoted_at;
