-- pgTAP: projections.  Inline and async, per-event and batch handlers,
-- event_types, every read model against the set-based answer from the log
-- (nothing lost, nothing doubled), rebuilds with skips drained, on_error
-- stop and skip, stop/start, blue/green versions, max_events, small
-- batches, projections created over a non-empty log, and drop.
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_proj CASCADE;

------------------------------------------------------------------------
-- Read models.  Every handler records the events it is given in
-- es_tap_proj.seen under its own tag, without any key: an event applied
-- twice shows up twice.  Batch handlers also record each call's batch.
------------------------------------------------------------------------
CREATE SCHEMA es_tap_proj;
CREATE TABLE es_tap_proj.seen (
	seq bigserial, tag text NOT NULL, global_position bigint NOT NULL,
	stream_id text NOT NULL, qty bigint NOT NULL);
CREATE TABLE es_tap_proj.batches (
	call bigserial, tag text NOT NULL, positions bigint[] NOT NULL);
-- a read model as one would keep it: quantities and event counts per stream
CREATE TABLE es_tap_proj.totals (
	stream_id text PRIMARY KEY, qty bigint NOT NULL, events bigint NOT NULL);
-- events a fragile handler no longer fails on
CREATE TABLE es_tap_proj.cured (tag text, global_position bigint, PRIMARY KEY (tag, global_position));
-- what a handler sees of its environment
CREATE TABLE es_tap_proj.probe (tag text, who text, search_path text);

DO $do$
DECLARE
	t text;
BEGIN
	-- per-event handlers
	FOREACH t IN ARRAY ARRAY['in_ev', 'as_ev', 'late', 'bg1'] LOOP
		EXECUTE format($f$
			CREATE FUNCTION es_tap_proj.%I(e eventstore.events) RETURNS void
			LANGUAGE sql AS $b$
				INSERT INTO es_tap_proj.seen (tag, global_position, stream_id, qty)
				VALUES (%L, e.global_position, e.stream_id, COALESCE((e.data ->> 'qty')::bigint, 0))
			$b$$f$, t, t);
	END LOOP;
	-- batch handlers
	FOREACH t IN ARRAY ARRAY['in_batch', 'as_batch', 'bg2'] LOOP
		EXECUTE format($f$
			CREATE FUNCTION es_tap_proj.%I(es eventstore.events[]) RETURNS void
			LANGUAGE sql AS $b$
				INSERT INTO es_tap_proj.batches (tag, positions)
				SELECT %L, pg_catalog.array_agg(e.global_position ORDER BY o)
				FROM pg_catalog.unnest(es) WITH ORDINALITY AS e(global_position, transaction_id,
				     stream_id, revision, event_id, event_type, data, metadata, created_at, o);
				INSERT INTO es_tap_proj.seen (tag, global_position, stream_id, qty)
				SELECT %L, e.global_position, e.stream_id, COALESCE((e.data ->> 'qty')::bigint, 0)
				FROM pg_catalog.unnest(es) e
			$b$$f$, t, t, t);
	END LOOP;
	-- fragile handlers: fail on {"poison": "yes"} unless cured for their tag
	FOREACH t IN ARRAY ARRAY['f_stop', 'f_skip', 'f_in_stop', 'f_in_skip'] LOOP
		EXECUTE format($f$
			CREATE FUNCTION es_tap_proj.%I(e eventstore.events) RETURNS void
			LANGUAGE plpgsql AS $b$
			BEGIN
				IF e.data ->> 'poison' = 'yes' AND NOT EXISTS (
						SELECT FROM es_tap_proj.cured c
						WHERE c.tag = %L AND c.global_position = e.global_position) THEN
					RAISE EXCEPTION 'poison event at %%', e.global_position USING ERRCODE = 'P0042';
				END IF;
				INSERT INTO es_tap_proj.seen (tag, global_position, stream_id, qty)
				VALUES (%L, e.global_position, e.stream_id, COALESCE((e.data ->> 'qty')::bigint, 0));
			END $b$$f$, t, t, t);
	END LOOP;
	FOREACH t IN ARRAY ARRAY['f_batch_stop', 'f_batch_skip'] LOOP
		EXECUTE format($f$
			CREATE FUNCTION es_tap_proj.%I(es eventstore.events[]) RETURNS void
			LANGUAGE plpgsql AS $b$
			BEGIN
				INSERT INTO es_tap_proj.batches (tag, positions)
				VALUES (%L, ARRAY(SELECT e.global_position FROM pg_catalog.unnest(es) e));
				IF EXISTS (SELECT FROM pg_catalog.unnest(es) e WHERE e.data ->> 'poison' = 'yes') THEN
					RAISE EXCEPTION 'poison in the batch' USING ERRCODE = 'P0042';
				END IF;
				INSERT INTO es_tap_proj.seen (tag, global_position, stream_id, qty)
				SELECT %L, e.global_position, e.stream_id, COALESCE((e.data ->> 'qty')::bigint, 0)
				FROM pg_catalog.unnest(es) e;
			END $b$$f$, t, t, t);
	END LOOP;
END $do$;

-- keeps es_tap_proj.totals, one batch at a time
CREATE FUNCTION es_tap_proj.keep_totals(es eventstore.events[]) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO es_tap_proj.totals
	SELECT e.stream_id, sum(COALESCE((e.data ->> 'qty')::bigint, 0)), count(*)
	FROM pg_catalog.unnest(es) e GROUP BY e.stream_id
	ON CONFLICT (stream_id) DO UPDATE
	SET qty = es_tap_proj.totals.qty + excluded.qty,
	    events = es_tap_proj.totals.events + excluded.events
$$;
-- names its table without its schema
CREATE FUNCTION es_tap_proj.unqualified(e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO seen (tag, global_position, stream_id, qty) VALUES ('unq', e.global_position, e.stream_id, 0);
END $$;
-- the same with a search_path of its own, pg_temp last
CREATE FUNCTION es_tap_proj.with_path(e eventstore.events) RETURNS void
LANGUAGE plpgsql SET search_path = es_tap_proj, pg_temp AS $$
BEGIN
	INSERT INTO seen (tag, global_position, stream_id, qty) VALUES ('with_path', e.global_position, e.stream_id, 0);
END $$;
-- and one whose own search_path would search a caller's temporary schema first
CREATE FUNCTION es_tap_proj.with_bad_path(e eventstore.events) RETURNS void
LANGUAGE plpgsql SET search_path = es_tap_proj AS $$
BEGIN
	INSERT INTO seen (tag, global_position, stream_id, qty) VALUES ('with_path', e.global_position, e.stream_id, 0);
END $$;
CREATE FUNCTION es_tap_proj.probe(e eventstore.events) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO es_tap_proj.probe VALUES (e.stream_id, current_user, pg_catalog.current_setting('search_path'))
$$;

------------------------------------------------------------------------
-- Helpers.
------------------------------------------------------------------------
-- Append n events of four types over five streams, a transaction per
-- append of 1 to 3 events.
CREATE PROCEDURE pg_temp.workload(n int, seed int DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
	i int := 0;
	k int;
	batch jsonb;
BEGIN
	WHILE i < n LOOP
		k := least(1 + (i + seed) % 3, n - i);
		SELECT jsonb_agg(jsonb_build_object(
		         'type', (ARRAY['CartOpened', 'ItemAdded', 'ItemRemoved', 'CheckedOut'])[1 + (i + j + seed) % 4],
		         'data', jsonb_build_object('qty', (i + j + seed) % 7)))
		INTO batch FROM generate_series(0, k - 1) j;
		PERFORM eventstore.append_to_stream('cart-' || ((i + seed) % 5), batch);
		COMMIT;
		i := i + k;
	END LOOP;
END $$;
-- The positions a read model has, each as many times as it was applied.
CREATE FUNCTION pg_temp.seen(t text) RETURNS SETOF bigint
LANGUAGE sql AS $$
	SELECT global_position FROM es_tap_proj.seen WHERE tag = t ORDER BY 1
$$;
-- The positions of the log's events of those types (NULL: all), except
-- some, and before a position when given.
CREATE FUNCTION pg_temp.log(types text[] DEFAULT NULL, excluding bigint[] DEFAULT '{}',
                            before bigint DEFAULT NULL) RETURNS SETOF bigint
LANGUAGE sql AS $$
	SELECT global_position FROM eventstore.events
	WHERE (types IS NULL OR event_type = ANY (types))
	  AND global_position <> ALL (excluding)
	  AND (before IS NULL OR global_position < before)
	ORDER BY 1
$$;
-- The read model of tag is exactly the log's events of those types.
CREATE FUNCTION pg_temp.model_is(t text, types text[], description text,
                                 excluding bigint[] DEFAULT '{}', before bigint DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
	SELECT results_eq(format('SELECT * FROM pg_temp.seen(%L)', t),
	                  format('SELECT * FROM pg_temp.log(%L, %L, %L)', types, excluding, before),
	                  description)
$$;
CREATE FUNCTION pg_temp.status(n text, v int DEFAULT 1) RETURNS text
LANGUAGE sql AS $$
	SELECT status FROM eventstore.projections WHERE name = n AND version = v
$$;
CREATE FUNCTION pg_temp.skips(n text, pending boolean DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE sql AS $$
	SELECT s.global_position FROM eventstore.projection_skips s
	JOIN eventstore.projections p USING (projection_id)
	WHERE p.name = n AND (pending IS NULL OR (s.drained_at IS NULL) = pending)
	ORDER BY 1
$$;
CREATE FUNCTION pg_temp.head() RETURNS bigint LANGUAGE sql AS $$
	SELECT max(global_position) FROM eventstore.events
$$;
CREATE FUNCTION pg_temp.events(types text[] DEFAULT NULL) RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM eventstore.events WHERE types IS NULL OR event_type = ANY (types)
$$;

-- Positions this test notes as it goes (psql variables do not reach into
-- the quoted queries of results_eq).
CREATE TEMP TABLE marks (name text PRIMARY KEY, pos bigint NOT NULL);
CREATE FUNCTION pg_temp.mark(n text, p bigint) RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO marks VALUES (n, p) ON CONFLICT (name) DO UPDATE SET pos = excluded.pos RETURNING pos
$$;
CREATE FUNCTION pg_temp.m(n text) RETURNS bigint LANGUAGE sql STABLE AS $$
	SELECT pos FROM marks WHERE name = n
$$;

SELECT plan(226);

------------------------------------------------------------------------
-- Over an empty log a projection starts active.
------------------------------------------------------------------------
SELECT lives_ok($$SELECT eventstore.create_projection('as_ev', 'es_tap_proj.as_ev',
                    on_reset => 'DELETE FROM es_tap_proj.seen WHERE tag = ''as_ev''')$$,
                'an async per-event projection');
SELECT lives_ok($$SELECT eventstore.create_projection('as_batch', 'es_tap_proj.as_batch',
                    ARRAY['ItemAdded', 'CheckedOut'],
                    on_reset => 'DELETE FROM es_tap_proj.seen WHERE tag = ''as_batch''; DELETE FROM es_tap_proj.batches WHERE tag = ''as_batch''')$$,
                'an async batch projection of two event types');
SELECT lives_ok($$SELECT eventstore.create_projection('never', 'es_tap_proj.late', ARRAY['Never'], 'inline')$$,
                'an inline projection');
SELECT results_eq($$SELECT name, mode, status, caught_up, "position" FROM eventstore.projections ORDER BY name$$,
                  $$VALUES ('as_batch', 'async', 'active', true, 0::bigint),
                           ('as_ev', 'async', 'active', true, 0),
                           ('never', 'inline', 'active', true, 0)$$,
                  'over an empty log every projection starts active');
SELECT is(eventstore.current_version('as_ev'), 1, 'current_version is the active version');
SELECT lives_ok($$SELECT eventstore.drop_projection('never')$$, 'drop the inline one');

-- The streams of the workload, each opened by an append of its own.
SELECT is(count(eventstore.append_event(s, 'StreamOpened', '{}')), 6::bigint, 'setup: six streams')
FROM unnest(ARRAY['cart-0', 'cart-1', 'cart-2', 'cart-3', 'cart-4', 'bad']) s;
SELECT pg_temp.mark('opened', pg_temp.head()) AS opened \gset

------------------------------------------------------------------------
-- Inline projections, per-event and batch; async ones: run_projection.
------------------------------------------------------------------------
SELECT lives_ok($$SELECT eventstore.create_projection('in_ev', 'es_tap_proj.in_ev', mode => 'inline',
                    on_reset => 'DELETE FROM es_tap_proj.seen WHERE tag = ''in_ev''')$$,
                'an inline per-event projection');
SELECT lives_ok($$SELECT eventstore.create_projection('in_batch', 'es_tap_proj.in_batch',
                    ARRAY['ItemAdded', 'ItemRemoved'], 'inline',
                    on_reset => 'DELETE FROM es_tap_proj.seen WHERE tag = ''in_batch''; DELETE FROM es_tap_proj.batches WHERE tag = ''in_batch''')$$,
                'an inline batch projection of two event types');
SELECT lives_ok($$SELECT eventstore.create_projection('totals', 'es_tap_proj.keep_totals', mode => 'inline',
                    on_reset => 'TRUNCATE es_tap_proj.totals')$$,
                'an inline read model of totals per stream');
SELECT results_eq($$SELECT name, status FROM eventstore.projections WHERE mode = 'inline' ORDER BY name$$,
                  $$VALUES ('in_batch', 'rebuilding'), ('in_ev', 'rebuilding'), ('totals', 'rebuilding')$$,
                  'over a non-empty log a projection starts rebuilding');
SELECT is(eventstore.run_projection('in_ev'), :opened::bigint, 'backfilled');
SELECT is(eventstore.run_projection('in_batch'), 0::bigint, 'backfilled: none of its types');
SELECT is(eventstore.run_projection('totals'), :opened::bigint, 'backfilled');
SELECT results_eq($$SELECT name, status FROM eventstore.projections WHERE mode = 'inline' ORDER BY name$$,
                  $$VALUES ('in_batch', 'active'), ('in_ev', 'active'), ('totals', 'active')$$,
                  'backfilled, they are active');
-- appends that create their streams apply the inline projections too
SELECT lives_ok($$SELECT eventstore.append_to_stream('fresh-' || i,
                    '[{"type": "ItemAdded", "data": {"qty": 1}}, {"type": "Other"}]') FROM generate_series(1, 5) i$$,
                'five appends, each creating its stream');
SELECT pg_temp.model_is('in_ev', NULL, 'the first append of a stream applies the inline projection');
SELECT pg_temp.model_is('in_batch', '{ItemAdded,ItemRemoved}', '... and the inline batch projection');
DO $$ BEGIN PERFORM eventstore.append_event('fresh-6', 'ItemAdded', '{"qty": 1}'); END $$;
SELECT pg_temp.model_is('in_ev', NULL, '... also from a DO block');
SELECT pg_temp.mark('base', pg_temp.head()) AS base \gset

CALL pg_temp.workload(40);
SELECT is(pg_temp.head(), (:base + 40)::bigint, 'setup: 40 events appended');

-- inline: applied by the appends themselves
SELECT pg_temp.model_is('in_ev', NULL, 'the inline per-event projection has every event, once');
SELECT pg_temp.model_is('in_batch', '{ItemAdded,ItemRemoved}', 'the inline batch projection has every event of its types, once');
SELECT is((SELECT count(*) FROM es_tap_proj.batches WHERE tag = 'in_batch'),
          (SELECT count(DISTINCT (transaction_id, stream_id)) FROM eventstore.events WHERE event_type IN ('ItemAdded', 'ItemRemoved')),
          'the inline batch handler was called once per append that had events of its types');
SELECT ok((SELECT bool_and(positions = ARRAY(SELECT unnest(positions) ORDER BY 1)) FROM es_tap_proj.batches),
          'each batch is in log order');
SELECT results_eq($$SELECT stream_id, qty, events FROM es_tap_proj.totals ORDER BY stream_id$$,
                  $$SELECT stream_id, sum(COALESCE((data ->> 'qty')::bigint, 0))::bigint, count(*) FROM eventstore.events
                    GROUP BY stream_id ORDER BY stream_id$$,
                  'the totals read model is the set-based answer');
-- async: nothing until run_projection
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag IN ('as_ev', 'as_batch')), 0::bigint,
          'async projections apply nothing by themselves');
SELECT results_eq($$SELECT name, checkpoint, head, lag_events, skips_pending, dead_letters
                    FROM eventstore.projection_status ORDER BY name$$,
                  $$VALUES ('as_batch', 0::bigint, pg_temp.head(), pg_temp.events('{ItemAdded,CheckedOut}'), 0::bigint, 0::bigint),
                           ('as_ev', 0, pg_temp.head(), pg_temp.head(), 0, 0),
                           ('in_batch', pg_temp.m('opened'), pg_temp.head(), 0, 0, 0),
                           ('in_ev', pg_temp.m('opened'), pg_temp.head(), 0, 0, 0),
                           ('totals', pg_temp.m('opened'), pg_temp.head(), 0, 0, 0)$$,
                  'projection_status: async projections lag by the events of their types, inline ones by none');
SELECT is((SELECT bool_and(lag_exact) FROM eventstore.projection_status), true,
          '... counted exactly, on a log this small');
SELECT is(eventstore.run_projection('as_ev'), pg_temp.head(), 'run_projection applies the async per-event projection');
SELECT pg_temp.model_is('as_ev', NULL, 'the async per-event projection has every event, once');
SELECT ok((SELECT bool_and(ordered) FROM (
             SELECT global_position > lag(global_position, 1, 0::bigint) OVER (ORDER BY seq) AS ordered
             FROM es_tap_proj.seen WHERE tag = 'as_ev') s),
          'the per-event handler was called in log order');
SELECT is(eventstore.run_projection('as_batch'), pg_temp.events('{ItemAdded,CheckedOut}'),
          'run_projection returns the events of the projection''s types applied');
SELECT pg_temp.model_is('as_batch', '{ItemAdded,CheckedOut}', 'the async batch projection has every event of its types, once');
SELECT is((SELECT count(*) FROM es_tap_proj.batches WHERE tag = 'as_batch'), 1::bigint,
          'with the default batch_size, one batch');
SELECT is(eventstore.run_projection('as_ev'), 0::bigint, 'run again: nothing more to apply');
SELECT is(eventstore.run_projection('as_batch'), 0::bigint, 'run again: nothing more to apply (batch)');
SELECT pg_temp.model_is('as_ev', NULL, 'nothing doubled by running again');
SELECT pg_temp.model_is('as_batch', '{ItemAdded,CheckedOut}', 'nothing doubled by running again (batch)');
SELECT results_eq($$SELECT checkpoint, lag_events, events_applied FROM eventstore.projection_status
                    WHERE name IN ('as_ev', 'as_batch') ORDER BY name$$,
                  $$VALUES (pg_temp.head(), 0::bigint, pg_temp.events('{ItemAdded,CheckedOut}')),
                           (pg_temp.head(), 0, pg_temp.head())$$,
                  'the checkpoint is at the head, even when the last event is not of the projection''s types');

------------------------------------------------------------------------
-- max_events and a small batch_size
------------------------------------------------------------------------
CALL pg_temp.workload(30, 1);
SELECT is(eventstore.run_projection('as_ev', NULL, 12), 12::bigint, 'max_events: run_projection applies that many');
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'as_ev'), (:base + 52)::bigint, '... and no more');
SELECT is((SELECT checkpoint FROM eventstore.projection_status WHERE name = 'as_ev'), (:base + 52)::bigint,
          '... and the checkpoint is after the last of them');
SELECT pg_temp.model_is('as_ev', NULL, '... the first events of the log, once', before => :base + 53);
SELECT is(eventstore.run_projection('as_ev', NULL, 1000), 18::bigint, 'max_events more than there is: the rest');
SELECT pg_temp.model_is('as_ev', NULL, 'the async projection is whole again');

SET pg_eventstore.batch_size = 7;
-- at the head first: a rebuild hands a batch handler the events it applies
-- again and those it applies for the first time in calls of their own
SELECT eventstore.run_projection('as_batch') >= 0 AS caught_up;
SELECT lives_ok($$SELECT eventstore.rebuild_projection('as_batch')$$, 'rebuild an async batch projection');
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'as_batch'), 0::bigint, 'on_reset ran');
SELECT results_eq($$SELECT status, checkpoint FROM eventstore.projection_status WHERE name = 'as_batch'$$,
                  $$VALUES ('rebuilding', 0::bigint)$$, 'a rebuild starts from the start, rebuilding');
SELECT is(eventstore.current_version('as_batch'), NULL, 'a rebuilding projection is not a current version');
SELECT is(eventstore.run_projection('as_batch'), pg_temp.events('{ItemAdded,CheckedOut}'),
          'with batch_size 7 run_projection applies every event of its types');
SELECT pg_temp.model_is('as_batch', '{ItemAdded,CheckedOut}', 'with batch_size 7 the read model is whole, nothing doubled');
SELECT ok((SELECT max(cardinality(positions)) = 7 AND count(*) = ceil(pg_temp.events('{ItemAdded,CheckedOut}') / 7.0)
           FROM es_tap_proj.batches WHERE tag = 'as_batch'),
          'batches of 7 events');
SELECT ok((SELECT bool_and(b.positions[1] > (SELECT max(p) FROM unnest(a.positions) p))
           FROM es_tap_proj.batches a JOIN es_tap_proj.batches b ON b.tag = a.tag AND b.call = (
             SELECT min(call) FROM es_tap_proj.batches c WHERE c.tag = a.tag AND c.call > a.call)
           WHERE a.tag = 'as_batch'),
          'batch after batch in log order');
SELECT results_eq($$SELECT status, checkpoint FROM eventstore.projection_status WHERE name = 'as_batch'$$,
                  $$VALUES ('active', pg_temp.head())$$, 'at the head the rebuilt projection is active');
SELECT is(eventstore.current_version('as_batch'), 1, '... and current');
-- max_events across batches
SELECT lives_ok($$SELECT eventstore.rebuild_projection('as_ev')$$, 'rebuild the async per-event projection');
SELECT is(eventstore.run_projection('as_ev', NULL, 10), 10::bigint, 'max_events 10 with batch_size 7');
SELECT pg_temp.model_is('as_ev', NULL, '... the first 10 events', before => 11);
SELECT is(pg_temp.status('as_ev'), 'rebuilding', '... still rebuilding');
SELECT is(eventstore.run_projection('as_ev', NULL, pg_temp.head() - 10), pg_temp.head() - 10, 'max_events exactly what is left');
SELECT pg_temp.model_is('as_ev', NULL, '... the whole log');
SELECT is(eventstore.run_projection('as_ev'), 0::bigint, 'then nothing is left to apply');
SELECT is(pg_temp.status('as_ev'), 'active', '... and the projection is active');
SELECT pg_temp.model_is('as_ev', NULL, 'the rebuilt async projection has every event once');
RESET pg_eventstore.batch_size;

------------------------------------------------------------------------
-- Rebuilding an inline projection: skips, drained as already applied
------------------------------------------------------------------------
SELECT lives_ok($$SELECT eventstore.rebuild_projection('in_ev')$$, 'rebuild the inline projection');
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'in_ev'), 0::bigint, 'on_reset emptied its read model');
SELECT is(pg_temp.status('in_ev'), 'rebuilding', 'it is rebuilding');
SELECT pg_temp.mark('before', pg_temp.head()) AS before \gset
CALL pg_temp.workload(10, 2);
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'in_ev'), 0::bigint,
          'appends while it is rebuilding do not apply it');
SELECT results_eq($$SELECT * FROM pg_temp.skips('in_ev', true)$$,
                  $$SELECT generate_series(pg_temp.m('before') + 1, pg_temp.head())$$,
                  '... but record a skip for each of its events');
SELECT is((SELECT skips_pending FROM eventstore.projection_status WHERE name = 'in_ev'), 10::bigint,
          'projection_status counts the skips pending');
SELECT pg_temp.model_is('in_batch', '{ItemAdded,ItemRemoved}', 'the other inline projections went on');
SELECT is(eventstore.run_projection('in_ev', NULL, 5), 5::bigint, 'a part of the replay');
SELECT is(pg_temp.status('in_ev'), 'rebuilding', '... still rebuilding');
CALL pg_temp.workload(3, 3);
SELECT is((SELECT count(*) FROM pg_temp.skips('in_ev', true)), 13::bigint, 'three more skips');
SELECT is(eventstore.run_projection('in_ev'), pg_temp.head() - 5, 'the rest of the replay');
SELECT is(pg_temp.status('in_ev'), 'active', 'at the head the inline projection is active');
SELECT is((SELECT count(*) FROM pg_temp.skips('in_ev', true)), 0::bigint, 'no skip is pending');
SELECT results_eq($$SELECT outcome, count(*) FROM eventstore.projection_skips GROUP BY 1$$,
                  $$VALUES ('already applied', 13::bigint)$$,
                  'the skips the replay covered are drained as already applied');
SELECT pg_temp.model_is('in_ev', NULL, 'the rebuilt inline projection has every event once');
CALL pg_temp.workload(2, 4);
SELECT pg_temp.model_is('in_ev', NULL, 'appends apply the active inline projection again');
SELECT is((SELECT count(*) FROM eventstore.projection_skips), 13::bigint, '... without skips');

-- the inline batch projection and the totals, rebuilt in batches of 7
SET pg_eventstore.batch_size = 7;
SELECT lives_ok($$SELECT eventstore.rebuild_projection('in_batch')$$, 'rebuild the inline batch projection');
SELECT lives_ok($$SELECT eventstore.rebuild_projection('totals')$$, 'rebuild the totals');
CALL pg_temp.workload(4, 5);
SELECT is(eventstore.run_projection('in_batch'), pg_temp.events('{ItemAdded,ItemRemoved}'),
          'the inline batch projection replays every event of its types');
SELECT pg_temp.model_is('in_batch', '{ItemAdded,ItemRemoved}', '... once');
SELECT ok((SELECT max(cardinality(positions)) <= 7 FROM es_tap_proj.batches WHERE tag = 'in_batch'),
          '... in batches of at most 7');
SELECT is(eventstore.run_projection('totals'), pg_temp.events(), 'the totals replay every event');
SELECT results_eq($$SELECT stream_id, qty, events FROM es_tap_proj.totals ORDER BY stream_id$$,
                  $$SELECT stream_id, sum(COALESCE((data ->> 'qty')::bigint, 0))::bigint, count(*) FROM eventstore.events
                    GROUP BY stream_id ORDER BY stream_id$$,
                  'the rebuilt totals are the set-based answer');
SELECT results_eq($$SELECT name, status, skips_pending FROM eventstore.projection_status
                    WHERE mode = 'inline' ORDER BY name$$,
                  $$VALUES ('in_batch', 'active', 0::bigint), ('in_ev', 'active', 0), ('totals', 'active', 0)$$,
                  'the inline projections are active, nothing pending');
RESET pg_eventstore.batch_size;

------------------------------------------------------------------------
-- Stop and start
------------------------------------------------------------------------
-- inline: skips while stopped, drained as applied
SELECT lives_ok($$SELECT eventstore.stop_projection('in_ev')$$, 'stop the inline projection');
SELECT is(eventstore.current_version('in_ev'), NULL, 'a stopped projection is not current');
SELECT pg_temp.mark('before', pg_temp.head()) AS before \gset
CALL pg_temp.workload(4, 6);
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'in_ev' AND global_position > :before), 0::bigint,
          'a stopped inline projection is not applied');
SELECT results_eq($$SELECT * FROM pg_temp.skips('in_ev', true)$$,
                  $$SELECT generate_series(pg_temp.m('before') + 1, pg_temp.head())$$,
                  '... its events are skipped');
SELECT lives_ok($$SELECT eventstore.start_projection('in_ev')$$, 'start it');
SELECT results_eq($$SELECT status, lag_events, skips_pending FROM eventstore.projection_status WHERE name = 'in_ev'$$,
                  $$VALUES ('active', 0::bigint, 4::bigint)$$, 'started: active, with its skips pending');
CALL pg_temp.workload(1, 8);   -- to cart-3, which has no skip pending
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'in_ev' AND global_position = pg_temp.head()), 1::bigint,
          'appends to a stream without a pending skip apply it at once');
SELECT eventstore.append_event('cart-2', 'ItemAdded', '{"qty": 1}') IS NOT NULL AS appended \g /dev/null
SELECT pg_temp.mark('ordered', pg_temp.head()) AS ordered \gset
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'in_ev' AND global_position = pg_temp.head()), 0::bigint,
          'an append to a stream with a skip pending skips too: the stream keeps its order');
SELECT is(eventstore.run_projection('in_ev'), 5::bigint, 'run_projection drains the skips');
SELECT results_eq($$SELECT s.global_position, s.outcome FROM eventstore.projection_skips s
                    WHERE s.global_position > pg_temp.m('before') ORDER BY 1$$,
                  $$SELECT p, 'applied' FROM generate_series(pg_temp.m('before') + 1, pg_temp.m('before') + 4) p
                    UNION ALL SELECT pg_temp.m('ordered'), 'applied'$$,
                  'skips the replay did not cover are drained as applied');
SELECT pg_temp.model_is('in_ev', NULL, 'the inline projection has every event once');
SELECT is(eventstore.run_projection('in_ev'), 0::bigint, 'nothing more to drain');

-- async: nothing applied while stopped
SELECT lives_ok($$SELECT eventstore.stop_projection('as_ev')$$, 'stop the async projection');
SELECT is(eventstore.run_projection('as_ev'), 0::bigint, 'run_projection applies nothing to a stopped projection');
SELECT results_eq($$SELECT status, lag_events FROM eventstore.projection_status WHERE name = 'as_ev'$$,
                  $$VALUES ('stopped', 25::bigint)$$, 'stopped, and lagging');
SELECT lives_ok($$SELECT eventstore.start_projection('as_ev')$$, 'start it');
SELECT is(pg_temp.status('as_ev'), 'active', 'started: active');
SELECT is(eventstore.run_projection('as_ev'), 25::bigint, 'run_projection applies what it missed');
SELECT pg_temp.model_is('as_ev', NULL, 'the async projection has every event once');
-- stopped in the middle of a rebuild, it starts rebuilding
SELECT lives_ok($$SELECT eventstore.rebuild_projection('as_ev')$$, 'rebuild the async projection');
SELECT is(eventstore.run_projection('as_ev', NULL, 50), 50::bigint, 'half of the replay');
SELECT lives_ok($$SELECT eventstore.stop_projection('as_ev')$$, 'stop it');
SELECT lives_ok($$SELECT eventstore.start_projection('as_ev')$$, 'start it');
SELECT is(pg_temp.status('as_ev'), 'rebuilding', 'started: rebuilding again, the replay is not done');
SELECT is(eventstore.run_projection('as_ev'), pg_temp.head() - 50, 'the rest of the replay');
SELECT pg_temp.model_is('as_ev', NULL, 'the async projection has every event once');

------------------------------------------------------------------------
-- Created over a non-empty log: rebuilding, inline applications skip
------------------------------------------------------------------------
SELECT lives_ok($$SELECT eventstore.create_projection('late', 'es_tap_proj.late', mode => 'inline')$$,
                'an inline projection created over a non-empty log');
SELECT results_eq($$SELECT status, checkpoint, lag_events FROM eventstore.projection_status WHERE name = 'late'$$,
                  $$VALUES ('rebuilding', 0::bigint, pg_temp.head())$$, 'it starts rebuilding from the start');
SELECT is(eventstore.current_version('late'), NULL, 'it is not current');
SELECT pg_temp.mark('before', pg_temp.head()) AS before \gset
CALL pg_temp.workload(3, 8);
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'late'), 0::bigint, 'appends do not apply it yet');
SELECT results_eq($$SELECT * FROM pg_temp.skips('late', true)$$,
                  $$SELECT generate_series(pg_temp.m('before') + 1, pg_temp.head())$$,
                  '... they record skips');
SELECT is(eventstore.run_projection('late'), pg_temp.head(), 'run_projection backfills it');
SELECT results_eq($$SELECT status, checkpoint, skips_pending FROM eventstore.projection_status WHERE name = 'late'$$,
                  $$VALUES ('active', pg_temp.head(), 0::bigint)$$, 'then it is active with nothing pending');
SELECT is(eventstore.current_version('late'), 1, 'and current');
SELECT results_eq($$SELECT DISTINCT outcome FROM eventstore.projection_skips s
                    JOIN eventstore.projections p USING (projection_id) WHERE p.name = 'late'$$,
                  $$VALUES ('already applied')$$, 'its skips were already applied by the backfill');
SELECT pg_temp.model_is('late', NULL, 'it has every event once');
CALL pg_temp.workload(2, 9);
SELECT pg_temp.model_is('late', NULL, 'then appends apply it');
SELECT is((SELECT count(*) FROM pg_temp.skips('late')), 3::bigint, '... without skips');

------------------------------------------------------------------------
-- Blue/green versions
------------------------------------------------------------------------
SELECT lives_ok($$SELECT eventstore.create_projection('bg', 'es_tap_proj.bg1', mode => 'inline')$$, 'bg version 1');
SELECT is(eventstore.run_projection('bg'), pg_temp.head(), 'version 1 backfilled');
SELECT is(eventstore.current_version('bg'), 1, 'version 1 is current');
SELECT lives_ok($$SELECT eventstore.create_projection('bg', 'es_tap_proj.bg2', ARRAY['ItemAdded'], version => 2)$$,
                'bg version 2, async, batches, one event type');
SELECT results_eq($$SELECT version, mode, status FROM eventstore.projection_status WHERE name = 'bg' ORDER BY 1$$,
                  $$VALUES (1, 'inline', 'active'), (2, 'async', 'rebuilding')$$,
                  'version 2 builds from the start, version 1 stays active');
SELECT is(eventstore.current_version('bg'), 1, 'version 1 is still current');
CALL pg_temp.workload(5, 10);
SELECT pg_temp.model_is('bg1', NULL, 'version 1 keeps serving');
SELECT is(eventstore.run_projection('bg', 2, 10), 10::bigint, 'version 2 replays a part');
SELECT is(eventstore.current_version('bg'), 1, 'version 1 is still current');
SELECT is(eventstore.run_projection('bg', 2), pg_temp.events('{ItemAdded}') - 10, 'version 2 replays the rest');
SELECT is(eventstore.current_version('bg'), 2, 'version 2 is current once active');
SELECT pg_temp.model_is('bg2', '{ItemAdded}', 'version 2 has its events once');
SELECT pg_temp.model_is('bg1', NULL, 'version 1 still has every event once');
SELECT lives_ok($$SELECT eventstore.stop_projection('bg', 2)$$, 'stop version 2 only');
SELECT results_eq($$SELECT version, status FROM eventstore.projection_status WHERE name = 'bg' ORDER BY 1$$,
                  $$VALUES (1, 'active'), (2, 'stopped')$$, 'version 1 is not stopped');
SELECT is(eventstore.current_version('bg'), 1, 'version 1 is current again');
SELECT lives_ok($$SELECT eventstore.start_projection('bg', 2)$$, 'start version 2');
SELECT lives_ok($$SELECT eventstore.rebuild_projection('bg', 1)$$, 'rebuild version 1');
SELECT results_eq($$SELECT version, status FROM eventstore.projection_status WHERE name = 'bg' ORDER BY 1$$,
                  $$VALUES (1, 'rebuilding'), (2, 'active')$$, 'version 2 is not rebuilt');
SELECT is(eventstore.run_projection('bg'), pg_temp.head(), 'run_projection with version NULL runs every version');
-- bg1 has no on_reset: the rebuild applied every event a second time
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'bg1'), 2 * pg_temp.head(),
          'without on_reset a rebuild replays over the read model as it is');
DELETE FROM es_tap_proj.seen WHERE tag = 'bg1';
SELECT lives_ok($$SELECT eventstore.drop_projection('bg', 1)$$, 'drop version 1');
SELECT pg_temp.mark('before', pg_temp.head()) AS before \gset
CALL pg_temp.workload(3, 11);
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'bg1'), 0::bigint, 'a dropped version is applied no more');
SELECT is(eventstore.run_projection('bg'),
          (SELECT count(*) FROM eventstore.events WHERE event_type = 'ItemAdded' AND global_position > :before),
          'version 2 goes on');
SELECT pg_temp.model_is('bg2', '{ItemAdded}', 'version 2 has its events once');
SELECT is(eventstore.current_version('bg'), 2, 'version 2 is current');

------------------------------------------------------------------------
-- on_error, async
------------------------------------------------------------------------
SELECT pg_temp.mark('poison', last_position - 1) AS poison
FROM eventstore.append_to_stream('bad',
  '[{"type": "Good", "data": {"qty": 1}}, {"type": "Good", "data": {"qty": 2}},
    {"type": "Bad", "data": {"poison": "yes"}}, {"type": "Good", "data": {"qty": 3}}]') \gset
CALL pg_temp.workload(6, 12);

-- stop: the events before it applied, nothing after, the projection failed
SELECT lives_ok($$SELECT eventstore.create_projection('f_stop', 'es_tap_proj.f_stop')$$, 'a fragile projection, on_error stop');
SELECT is(eventstore.run_projection('f_stop'), (:poison - 1)::bigint, 'run_projection applies the events before the poison one');
SELECT results_eq($$SELECT status, checkpoint, last_error, error_position FROM eventstore.projection_status WHERE name = 'f_stop'$$,
                  $$VALUES ('failed', pg_temp.m('poison') - 1, 'poison event at ' || pg_temp.m('poison'), pg_temp.m('poison'))$$,
                  'the projection failed at the poison event, with its error and position');
SELECT results_eq($$SELECT p.error_sqlstate, p.error_event_id FROM eventstore.projections p WHERE name = 'f_stop'$$,
                  $$SELECT 'P0042', event_id FROM eventstore.events WHERE global_position = pg_temp.m('poison')$$,
                  'the registry keeps the SQLSTATE and the event''s id');
SELECT pg_temp.model_is('f_stop', NULL, 'the good events before it are applied, nothing after', before => :poison);
SELECT is(eventstore.run_projection('f_stop'), 0::bigint, 'a failed projection applies nothing more');
SELECT is(eventstore.current_version('f_stop'), NULL, 'a failed projection is not current');
SELECT lives_ok($$SELECT eventstore.start_projection('f_stop')$$, 'start the failed projection');
SELECT is(pg_temp.status('f_stop'), 'rebuilding', 'it never caught up: it starts rebuilding');
SELECT is(eventstore.run_projection('f_stop'), 0::bigint, 'it tries the poison event again, and fails again');
SELECT results_eq($$SELECT status, error_position FROM eventstore.projection_status WHERE name = 'f_stop'$$,
                  $$VALUES ('failed', pg_temp.m('poison'))$$, '... at the same event');
INSERT INTO es_tap_proj.cured VALUES ('f_stop', :poison);
SELECT lives_ok($$SELECT eventstore.start_projection('f_stop')$$, 'start it again, once its handler copes');
SELECT is(eventstore.run_projection('f_stop'), pg_temp.head() - :poison + 1, 'it applies the poison event and the rest');
SELECT results_eq($$SELECT status, last_error, error_position FROM eventstore.projection_status WHERE name = 'f_stop'$$,
                  $$VALUES ('active', NULL::text, NULL::bigint)$$, 'active, the failure cleared');
SELECT pg_temp.model_is('f_stop', NULL, 'every event once');
-- a failed projection that had caught up starts active
SELECT pg_temp.mark('poison2', last_position) AS poison2
FROM eventstore.append_to_stream('bad', '[{"type": "Good"}, {"type": "Bad", "data": {"poison": "yes"}}]') \gset
SELECT is(eventstore.run_projection('f_stop'), 1::bigint, 'the event before it is applied');
SELECT results_eq($$SELECT status, error_position FROM eventstore.projection_status WHERE name = 'f_stop'$$,
                  $$VALUES ('failed', pg_temp.m('poison2'))$$, 'failed at the second poison event');
SELECT lives_ok($$SELECT eventstore.start_projection('f_stop')$$, 'start it');
SELECT is(pg_temp.status('f_stop'), 'active', 'a caught-up projection starts active');
INSERT INTO es_tap_proj.cured VALUES ('f_stop', :poison2);
SELECT is(eventstore.run_projection('f_stop'), 1::bigint, 'it applies the event it failed on');
SELECT pg_temp.model_is('f_stop', NULL, 'every event once');

-- a batch handler, on_error stop: the good events of the batch stay applied
SELECT lives_ok($$SELECT eventstore.create_projection('f_batch_stop', 'es_tap_proj.f_batch_stop')$$,
                'a fragile batch projection, on_error stop');
SELECT is(eventstore.run_projection('f_batch_stop'), (:poison - 1)::bigint, 'the events before the poison one');
SELECT results_eq($$SELECT status, checkpoint, error_position FROM eventstore.projection_status WHERE name = 'f_batch_stop'$$,
                  $$VALUES ('failed', pg_temp.m('poison') - 1, pg_temp.m('poison'))$$, 'failed at the poison event');
SELECT pg_temp.model_is('f_batch_stop', NULL, 'the events before it applied, nothing after', before => :poison);

-- skip: the poison events are dead letters, the rest is applied
SELECT lives_ok($$SELECT eventstore.create_projection('f_skip', 'es_tap_proj.f_skip', on_error => 'skip')$$,
                'a fragile projection, on_error skip');
SELECT is(eventstore.run_projection('f_skip'), pg_temp.head(), 'run_projection deals with every event');
SELECT results_eq($$SELECT status, checkpoint, dead_letters, last_error FROM eventstore.projection_status WHERE name = 'f_skip'$$,
                  $$VALUES ('active', pg_temp.head(), 2::bigint, NULL::text)$$, 'active, two dead letters');
SELECT results_eq($$SELECT d.global_position, d.event_id = e.event_id, d.stream_id, d.event_type, d.error_sqlstate, d.error_message
                    FROM eventstore.projection_dead_letters d JOIN eventstore.projections p USING (projection_id)
                    JOIN eventstore.events e USING (global_position) WHERE p.name = 'f_skip' ORDER BY 1$$,
                  $$VALUES (pg_temp.m('poison'), true, 'bad', 'Bad', 'P0042', 'poison event at ' || pg_temp.m('poison')),
                           (pg_temp.m('poison2'), true, 'bad', 'Bad', 'P0042', 'poison event at ' || pg_temp.m('poison2'))$$,
                  'the dead letters name the events and the errors');
SELECT pg_temp.model_is('f_skip', NULL, 'every other event is applied once', excluding => ARRAY[:poison, :poison2]::bigint[]);
SELECT lives_ok($$SELECT eventstore.create_projection('f_batch_skip', 'es_tap_proj.f_batch_skip', on_error => 'skip')$$,
                'a fragile batch projection, on_error skip');
SELECT is(eventstore.run_projection('f_batch_skip'), pg_temp.head(), 'run_projection deals with every event');
SELECT results_eq($$SELECT d.global_position FROM eventstore.projection_dead_letters d
                    JOIN eventstore.projections p USING (projection_id) WHERE p.name = 'f_batch_skip' ORDER BY 1$$,
                  $$VALUES (pg_temp.m('poison')), (pg_temp.m('poison2'))$$, 'only the poison events are dead letters');
SELECT pg_temp.model_is('f_batch_skip', NULL, 'every other event is applied once', excluding => ARRAY[:poison, :poison2]::bigint[]);

------------------------------------------------------------------------
-- on_error, inline
------------------------------------------------------------------------
INSERT INTO es_tap_proj.cured SELECT t, global_position FROM eventstore.events, unnest(ARRAY['f_in_stop', 'f_in_skip']) t
WHERE data ->> 'poison' = 'yes';
SELECT lives_ok($$SELECT eventstore.create_projection('f_in_stop', 'es_tap_proj.f_in_stop', mode => 'inline')$$,
                'a fragile inline projection, on_error stop');
SELECT is(eventstore.run_projection('f_in_stop'), pg_temp.head(), 'backfilled');
SELECT pg_temp.mark('before', pg_temp.head()) AS before \gset
SELECT eventstore.stream_revision('bad') AS bad_revision \gset
SELECT throws_ok($$SELECT eventstore.append_to_stream('bad', '[{"type": "Good"}, {"type": "Bad", "data": {"poison": "yes"}}]')$$,
                 'P0042', NULL, 'a poison event fails the append');
SELECT results_eq($$SELECT count(*), max(global_position) FROM eventstore.events$$,
                  $$VALUES (pg_temp.m('before'), pg_temp.m('before'))$$, 'the failed append left no event');
SELECT is(eventstore.stream_revision('bad'), :bad_revision::bigint, '... and the stream as it was');
SELECT lives_ok($$SELECT eventstore.append_to_stream('bad', '[{"type": "Good"}]')$$, 'a good event is appended');
SELECT pg_temp.model_is('f_in_stop', NULL, 'the inline projection has every event once');
SELECT results_eq($$SELECT status, last_error FROM eventstore.projection_status WHERE name = 'f_in_stop'$$,
                  $$VALUES ('active', NULL::text)$$, 'the projection is still active');
SELECT lives_ok($$SELECT eventstore.drop_projection('f_in_stop')$$, 'drop it');
SELECT lives_ok($$SELECT eventstore.create_projection('f_in_skip', 'es_tap_proj.f_in_skip', mode => 'inline', on_error => 'skip')$$,
                'a fragile inline projection, on_error skip');
SELECT is(eventstore.run_projection('f_in_skip'), pg_temp.events(), 'backfilled');
SELECT lives_ok($$SELECT eventstore.append_to_stream('bad', '[{"type": "Good"}, {"type": "Bad", "data": {"poison": "yes"}}, {"type": "Good"}]')$$,
                'a poison event does not fail the append');
SELECT pg_temp.mark('poison3', pg_temp.head() - 1) AS poison3 \gset
SELECT results_eq($$SELECT d.global_position, d.error_message FROM eventstore.projection_dead_letters d
                    JOIN eventstore.projections p USING (projection_id) WHERE p.name = 'f_in_skip'$$,
                  $$VALUES (pg_temp.m('poison3'), 'poison event at ' || pg_temp.m('poison3'))$$, 'it is a dead letter');
SELECT pg_temp.model_is('f_in_skip', NULL, 'the events around it are applied once', excluding => ARRAY[:poison3]::bigint[]);
SELECT pg_temp.model_is('in_ev', NULL, 'the other inline projections have it');

------------------------------------------------------------------------
-- Handlers run with their creator's search_path, pg_temp last
------------------------------------------------------------------------
SELECT lives_ok($$SELECT eventstore.create_projection('probe', 'es_tap_proj.probe', mode => 'inline')$$, 'a probe');
SELECT is(eventstore.run_projection('probe'), pg_temp.events(), 'run');
SELECT lives_ok($$SELECT eventstore.append_event('cart-0', 'P', '{}')$$, 'applied inline');
SELECT results_eq($$SELECT DISTINCT who = current_user::text, search_path FROM es_tap_proj.probe$$,
                  $$VALUES (true, '"$user", public, pg_temp')$$,
                  'handlers run with their creator''s search_path, pg_temp last, replayed or inline');
SELECT lives_ok($$SELECT eventstore.drop_projection('probe')$$, 'drop the probe');
SELECT lives_ok($$SELECT eventstore.create_projection('unq', 'es_tap_proj.unqualified')$$, 'a handler without schemas');
SELECT is(eventstore.run_projection('unq'), 0::bigint, 'run');
SELECT results_eq($$SELECT status, last_error FROM eventstore.projection_status WHERE name = 'unq'$$,
                  $$VALUES ('failed', 'relation "seen" does not exist')$$,
                  'a handler that does not name its tables'' schema fails');
SELECT throws_ok($$SELECT eventstore.create_projection('with_bad_path', 'es_tap_proj.with_bad_path')$$,
                 '42P13', 'handler es_tap_proj.with_bad_path(eventstore.events) sets search_path to "es_tap_proj", which does not end with pg_temp',
                 'a handler whose own search_path does not end with pg_temp is refused');
SELECT lives_ok($$SELECT eventstore.create_projection('with_path', 'es_tap_proj.with_path')$$, 'a handler with its own search_path, pg_temp last');
SELECT is(eventstore.run_projection('with_path'), pg_temp.events(), 'run');
SELECT pg_temp.model_is('with_path', NULL, 'a handler with its own search_path works');

------------------------------------------------------------------------
-- drop_projection removes the projection, its skips and dead letters
------------------------------------------------------------------------
SELECT (SELECT projection_id FROM eventstore.projections WHERE name = 'in_ev') AS in_ev_id \gset
SELECT ok((SELECT count(*) FROM eventstore.projection_skips WHERE projection_id = :in_ev_id) > 0, 'setup: in_ev has skip rows');
SELECT lives_ok($$SELECT eventstore.drop_projection('in_ev')$$, 'drop the inline projection');
SELECT is((SELECT count(*) FROM eventstore.projections WHERE name = 'in_ev'), 0::bigint, 'its row is gone');
SELECT is((SELECT count(*) FROM eventstore.projection_skips WHERE projection_id = :in_ev_id), 0::bigint, 'its skips are gone');
SELECT lives_ok($$SELECT eventstore.append_event('cart-1', 'ItemAdded', '{"qty": 1}')$$, 'append after the drop');
SELECT is((SELECT count(*) FROM es_tap_proj.seen WHERE tag = 'in_ev' AND global_position = pg_temp.head()), 0::bigint,
          'a dropped inline projection is applied no more');
SELECT is((SELECT count(*) FROM eventstore.projection_skips WHERE projection_id = :in_ev_id), 0::bigint, '... nor skipped');
SELECT (SELECT projection_id FROM eventstore.projections WHERE name = 'f_skip') AS f_skip_id \gset
SELECT lives_ok($$SELECT eventstore.drop_projection('f_skip')$$, 'drop the projection with dead letters');
SELECT is((SELECT count(*) FROM eventstore.projection_dead_letters WHERE projection_id = :f_skip_id),
          0::bigint, 'its dead letters are gone');
SELECT is((SELECT count(*) FROM eventstore.projection_dead_letters), 3::bigint, 'the others'' are kept');
SELECT lives_ok($$SELECT eventstore.drop_projection(name) FROM eventstore.projections$$, 'drop every projection');
SELECT results_eq($$SELECT (SELECT count(*) FROM eventstore.projections), (SELECT count(*) FROM eventstore.projection_skips),
                           (SELECT count(*) FROM eventstore.projection_dead_letters)$$,
                  $$VALUES (0::bigint, 0::bigint, 0::bigint)$$, 'nothing is left');

SELECT * FROM finish();

-- Leave the shared database as we found it.
DROP SCHEMA es_tap_proj CASCADE;
DROP EXTENSION pgtap CASCADE;
DROP EXTENSION pg_eventstore CASCADE;
