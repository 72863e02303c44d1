-- pgTAP: reading a few event types (read_all's event_types, a projection's
-- event_types) by merged scans per type returns exactly what the scan of
-- the whole log with a filter returns, in log order, below the horizon,
-- with read_all's consumer groups too.  The log is random (its seed is in
-- the first test's name), with transactions that took their ids early and
-- commit late.
\ir setup.psql
DROP EXTENSION IF EXISTS dblink CASCADE;
CREATE EXTENSION dblink;

SELECT plan(16);

\if :{?seed}
\else
SELECT (random() * 1000000)::int AS seed \gset
\endif
SELECT setseed(:seed / 1000000.0);

-- A type of a skewed mix: T1 half the log, T2 a quarter, ..., T8 and T9
-- under 1% each.
CREATE FUNCTION pg_temp.random_type() RETURNS text LANGUAGE sql AS $$
	SELECT 'T' || least(9, floor(-ln(greatest(random(), 1e-9)) / ln(2))::int + 1)
$$;

-- Append `rounds` transactions, each of 1 to 4 events to each of 8 of 60
-- streams.  Every 5th round, a second session begins a transaction and
-- takes its id; two rounds later it appends to a stream and commits, so
-- its events come before events that younger transactions committed
-- earlier at lower positions.
CREATE PROCEDURE pg_temp.fill(rounds int) LANGUAGE plpgsql AS $$
DECLARE
	conn text := format('dbname=%L port=%s host=%L', current_database(),
						current_setting('port'),
						COALESCE(NULLIF(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
								 'localhost'));
	events jsonb;
BEGIN
	PERFORM dblink_connect('late', conn);
	FOR r IN 1 .. rounds LOOP
		IF r % 5 = 0 THEN
			PERFORM dblink_exec('late', 'BEGIN');
			PERFORM * FROM dblink('late', 'SELECT pg_current_xact_id()::text') AS t(x text);
		END IF;
		FOR s IN 1 .. 8 LOOP
			SELECT jsonb_agg(jsonb_build_object('type', pg_temp.random_type(),
												'data', jsonb_build_object('r', r, 'i', i)))
			INTO events FROM generate_series(1, 1 + (random() * 3)::int) i;
			PERFORM eventstore.append_to_stream('s-' || (random() * 59)::int, events);
		END LOOP;
		COMMIT;
		IF r % 5 = 2 AND r > 2 THEN
			SELECT jsonb_agg(jsonb_build_object('type', pg_temp.random_type(),
												'data', jsonb_build_object('late', r, 'i', i)))
			INTO events FROM generate_series(1, 3) i;
			PERFORM * FROM dblink('late', format(
				'SELECT (eventstore.append_to_stream(%L, %L::jsonb)).first_position',
				's-' || (random() * 59)::int, events)) AS t(p bigint);
			PERFORM dblink_exec('late', 'COMMIT');
		END IF;
	END LOOP;
	PERFORM dblink_disconnect('late');
END $$;

-- A random set of types: 1 to 4 of T1 .. T9 and an unknown one, sometimes
-- with a duplicate or a NULL.
CREATE FUNCTION pg_temp.random_types() RETURNS text[] LANGUAGE sql VOLATILE AS $$
	SELECT array_agg(t) FROM (
		SELECT CASE WHEN random() < 0.1 THEN 'Unknown' ELSE pg_temp.random_type() END AS t
		FROM generate_series(1, 1 + (random() * 3)::int)
		UNION ALL SELECT NULL WHERE random() < 0.15) x
$$;

-- A consumer: the whole log below the horizon, page by page, each time
-- passing the position of the last event received; the events' rows as
-- text, in the order received.
CREATE FUNCTION pg_temp.consume(page int, types text[], member int, size int)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	cursor_pos bigint;
	got int;
	e eventstore.events;
BEGIN
	LOOP
		got := 0;
		FOR e IN SELECT * FROM eventstore.read_all(cursor_pos, page, types, member, size) LOOP
			got := got + 1;
			cursor_pos := e.global_position;
			RETURN NEXT e::text;
		END LOOP;
		EXIT WHEN got = 0;
	END LOOP;
END $$;

-- The same through the scan of the whole log: read_all of every type,
-- filtered here.
CREATE FUNCTION pg_temp.filtered(types text[], member int, size int)
RETURNS SETOF text LANGUAGE sql AS $$
	SELECT e::text FROM eventstore.read_all(NULL, NULL, NULL, member, size) e
	WHERE e.event_type = ANY (types)
$$;

-- n random trials of consume against filtered; the trials that differ.
CREATE FUNCTION pg_temp.trials(n int) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	types text[];
	page int;
	size int;
	member int;
BEGIN
	FOR i IN 1 .. n LOOP
		types := pg_temp.random_types();
		page := 1 + (random() * 60)::int;
		size := CASE WHEN random() < 0.4 THEN 1 + (random() * 3)::int END;
		member := CASE WHEN size IS NOT NULL THEN (random() * (size - 1))::int END;
		IF ARRAY(SELECT pg_temp.consume(page, types, member, size))
		   IS DISTINCT FROM ARRAY(SELECT pg_temp.filtered(types, member, size)) THEN
			RETURN NEXT format('types %s, page %s, group %s of %s', types, page, member, size);
		END IF;
	END LOOP;
END $$;

CALL pg_temp.fill(60);
-- (the seed in the name of the first test, which a failure prints)
SELECT cmp_ok((SELECT count(*) FROM eventstore.events), '>', 1000::bigint,
			  format('setup: a random log (seed %s: psql -v seed=%s makes it again)', :seed, :seed));
SELECT ok(EXISTS (SELECT FROM eventstore.events a, eventstore.events b
				  WHERE a.transaction_id < b.transaction_id AND a.global_position > b.global_position),
		  'setup: the log order is not the order of positions (late commits)');

------------------------------------------------------------------------
-- read_all
------------------------------------------------------------------------
SELECT is(ARRAY(SELECT pg_temp.trials(60)), '{}'::text[],
		  'read_all with event_types, page by page, returns what the whole log filtered by type returns (60 random trials)');

-- from every cursor, one page of a few types
SELECT is(ARRAY(SELECT format('after %s, types %s', c.global_position, t.types)
				FROM eventstore.events c,
					 (VALUES ('{T2,T5}'::text[]), ('{T8}'), ('{T9,T1,T9}'), ('{T3,T4,T6,T7}')) t(types)
				WHERE ARRAY(SELECT e::text FROM eventstore.read_all(c.global_position, 7, t.types) e)
					  IS DISTINCT FROM
					  ARRAY(SELECT e::text FROM eventstore.events e
							WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)
							AND e.event_type = ANY (t.types)
							ORDER BY e.transaction_id, e.global_position LIMIT 7)),
		  '{}'::text[],
		  'from every cursor, read_all returns the next events of the types in (transaction_id, global_position) order');

-- more types than are merged: the filtered scan, the same answer
SELECT is(ARRAY(SELECT pg_temp.consume(25, '{T8,T9}'::text[] || ARRAY(SELECT 'U' || i FROM generate_series(1, 40) i), 1, 2)),
		  ARRAY(SELECT pg_temp.consume(25, '{T8,T9}', 1, 2)),
		  'read_all with 42 types (one filtered scan) returns what it returns with the 2 that occur (merged scans)');
SELECT is(ARRAY(SELECT pg_temp.consume(10, '{T3,T3,NULL,T3}', NULL, NULL)),
		  ARRAY(SELECT pg_temp.filtered('{T3}', NULL, NULL)),
		  'a type given twice, and a NULL, return each event of the type once');
SELECT is((SELECT count(*) FROM eventstore.read_all(NULL, NULL, '{}')), 0::bigint,
		  'an empty event_types returns nothing');
SELECT is((SELECT count(*) FROM eventstore.read_all(NULL, NULL, '{NULL}')), 0::bigint,
		  'an event_types of NULL only returns nothing');

-- below the horizon: a transaction that took its id and has not committed
-- holds back everything committed after it, of every type
SELECT dblink_connect('held', format('dbname=%L port=%s host=%L', current_database(),
									 current_setting('port'),
									 COALESCE(NULLIF(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
											  'localhost'))) IS NOT NULL AS connected \gset
SELECT dblink_exec('held', 'BEGIN') = 'BEGIN' AS begun \gset
SELECT count(*) >= 0 AS took FROM dblink('held', 'SELECT pg_current_xact_id()::text') AS t(x text) \gset
SELECT max(global_position) AS before_held FROM eventstore.events \gset
CALL pg_temp.fill(10);
SELECT is(ARRAY(SELECT pg_temp.trials(30)), '{}'::text[],
		  'while an older transaction runs, read_all with event_types returns what the whole log filtered returns (30 random trials)');
SELECT is((SELECT count(*) FROM eventstore.read_all(NULL, NULL, '{T1,T2,T3,T4,T5,T6,T7,T8,T9}')
		   WHERE global_position > :before_held), 0::bigint,
		  '... and none of the events committed after it');
SELECT is(dblink_exec('held', 'COMMIT'), 'COMMIT', 'the older transaction commits');
SELECT dblink_disconnect('held') = 'OK' AS disconnected \gset
SELECT is(ARRAY(SELECT pg_temp.trials(30)), '{}'::text[],
		  'then read_all with event_types returns them too, as the whole log filtered does (30 random trials)');

------------------------------------------------------------------------
-- Projections: a projection of some types applies what a projection of
-- every type applies of them, in the same order
------------------------------------------------------------------------
CREATE TABLE public.sparse_applied (projection text, n bigserial, global_position bigint);
CREATE FUNCTION public.sparse_one(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.sparse_applied (projection, global_position) VALUES ('one', e.global_position)
$$;
CREATE FUNCTION public.sparse_batch(es eventstore.events[]) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.sparse_applied (projection, global_position)
	SELECT 'batch', (es[k]).global_position FROM generate_subscripts(es, 1) k ORDER BY k
$$;
CREATE FUNCTION public.sparse_all(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.sparse_applied (projection, global_position)
	SELECT 'all', e.global_position WHERE e.event_type IN ('T2', 'T7', 'T9')
$$;
SELECT eventstore.create_projection('sparse-one', 'public.sparse_one', '{T9,T2,T7}');
SELECT eventstore.create_projection('sparse-batch', 'public.sparse_batch', '{T7,T2,T9,T2}');
SELECT eventstore.create_projection('sparse-all', 'public.sparse_all');

-- Run each projection in random chunks (batches end anywhere) until it is
-- at the head.
CREATE FUNCTION pg_temp.run_in_chunks(name text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	total bigint := 0;
	got bigint;
BEGIN
	LOOP
		got := eventstore.run_projection(name, max_events => 1 + (random() * 40)::int);
		total := total + got;
		EXIT WHEN got = 0;
	END LOOP;
	RETURN total;
END $$;
SELECT pg_temp.run_in_chunks('sparse-one') + pg_temp.run_in_chunks('sparse-batch')
	   + pg_temp.run_in_chunks('sparse-all') AS applied \gset
SELECT is(ARRAY(SELECT global_position FROM public.sparse_applied WHERE projection = 'one' ORDER BY n),
		  ARRAY(SELECT global_position FROM public.sparse_applied WHERE projection = 'all' ORDER BY n),
		  'a projection of three types, per event, applies what one of every type takes of them, in the same order');
SELECT is(ARRAY(SELECT global_position FROM public.sparse_applied WHERE projection = 'batch' ORDER BY n),
		  ARRAY(SELECT global_position FROM public.sparse_applied WHERE projection = 'all' ORDER BY n),
		  '... and so does one with a batch handler (a type listed twice)');
SELECT is(ARRAY(SELECT global_position FROM public.sparse_applied WHERE projection = 'all' ORDER BY n),
		  ARRAY(SELECT global_position FROM eventstore.events WHERE event_type IN ('T2', 'T7', 'T9')
				ORDER BY transaction_id, global_position),
		  'which is every event of the types, in log order');
SELECT is(ARRAY(SELECT name || ' ' || status FROM eventstore.projection_status
				WHERE name LIKE 'sparse-%' ORDER BY name),
		  '{"sparse-all active","sparse-batch active","sparse-one active"}'::text[],
		  'the projections are active at the head');

SELECT * FROM finish();
SELECT eventstore.drop_projection(name) FROM unnest('{sparse-one,sparse-batch,sparse-all}'::text[]) name;
DROP FUNCTION public.sparse_one(eventstore.events), public.sparse_batch(eventstore.events[]),
	public.sparse_all(eventstore.events);
DROP TABLE public.sparse_applied;
DROP EXTENSION dblink;
