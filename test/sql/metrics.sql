-- eventstore.metrics: its columns, and the name, labels and type of every
-- metric over a log with two projections and two processors (the values,
-- and who may read the view: pgTAP tap_metrics), and the columns
-- eventstore.processors gained (lag_events, lag_seconds, lag_exact).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_eventstore CASCADE;
DROP SCHEMA IF EXISTS es_metrics CASCADE;
CREATE EXTENSION pg_eventstore;
RESET client_min_messages;
\pset null '(null)'

CREATE SCHEMA es_metrics;
CREATE FUNCTION es_metrics.noop(e eventstore.events) RETURNS void
LANGUAGE sql AS $$ SELECT $$;

SELECT attname, format_type(atttypid, atttypmod)
FROM pg_attribute WHERE attrelid = 'eventstore.metrics'::regclass AND attnum > 0
ORDER BY attnum;

-- an empty log: the log's metrics, each once, unlabelled (the counters
-- count since the server started: the other tests' appends too)
SELECT name, labels, type,
	   CASE WHEN name ~ '^eventstore_(appends|events_appended)_total$' THEN NULL
			ELSE value END AS value
FROM eventstore.metrics ORDER BY name, labels::text;

SELECT eventstore.create_projection('carts', 'es_metrics.noop', ARRAY['Opened'], 'async');
SELECT eventstore.create_projection('totals', 'es_metrics.noop', NULL, 'inline', 2);
SELECT count(*) FROM (SELECT eventstore.append_event('c-' || i, 'Opened', '{}')
					  FROM generate_series(1, 3) i) a;
SELECT eventstore.store_checkpoint('mailer', 1, NULL);
SELECT eventstore.store_checkpoint('mailer', 2, NULL, '1');

-- every metric's name, labels and type; the values but the counters and
-- the ages (the sizes: counted, on a log never analyzed and this small)
SELECT name, labels, type,
	   CASE WHEN name ~ '^eventstore_(appends|events_appended)_total$'
				 OR name ~ '_seconds$' THEN NULL
			ELSE value END AS value
FROM eventstore.metrics ORDER BY name, labels::text;

-- the counters, after three more appends
SELECT pg_catalog.sum(value) FILTER (WHERE name = 'eventstore_appends_total') AS appends,
	   pg_catalog.sum(value) FILTER (WHERE name = 'eventstore_events_appended_total') AS events
FROM eventstore.metrics \gset
SELECT eventstore.append_to_stream('c-1', '[{"type": "Added"}, {"type": "Added"}]') IS NOT NULL,
	   eventstore.append_event('c-2', 'Added', '{}') IS NOT NULL,
	   eventstore.append_event('c-3', 'Added', '{}') IS NOT NULL;
SELECT name, value - CASE name WHEN 'eventstore_appends_total' THEN :appends ELSE :events END AS more
FROM eventstore.metrics WHERE name ~ '^eventstore_(appends|events_appended)_total$' ORDER BY name;

-- the help texts, one per name
SELECT name, type, min(help) AS help, count(DISTINCT help) AS texts
FROM eventstore.metrics GROUP BY name, type ORDER BY name;

-- processors' lag
SELECT processor_id, partition, checkpoint, lag_events, lag_exact, lag_seconds > 0 AS behind
FROM eventstore.processors ORDER BY processor_id, partition;

SET client_min_messages = warning;
DROP EXTENSION pg_eventstore CASCADE;
DROP SCHEMA es_metrics CASCADE;
RESET client_min_messages;
