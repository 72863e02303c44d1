-- pgTAP: replays split in stream-hash partitions (create_projection's
-- parallel => n).  A creation over a non-empty log, a rebuild and a new
-- version split their replay in n partitions (eventstore.
-- projection_partitions) that run_projection calls take one after the
-- other, each keeping its streams' order, joined at the head; events
-- appended meanwhile are applied once; the read model is the one
-- parallel => 1 builds, on a randomized log of many streams;
-- eventstore.replaying(); on_error skip, park (with a retry during the
-- split) and stop (restarted) within partitions; an inline projection's
-- skips drained after the join; projection_status' partitions columns;
-- drop_projection.
\ir setup.psql
DROP SCHEMA IF EXISTS es_tap_par CASCADE;

CREATE SCHEMA es_tap_par;
-- what each projection applied, in the order applied
CREATE TABLE es_tap_par.applied (
	seq bigserial, tag text NOT NULL, stream_id text NOT NULL,
	revision bigint NOT NULL, replaying boolean NOT NULL);
-- order-sensitive read models: a hash chain per stream
CREATE TABLE es_tap_par.model_1 (stream_id text PRIMARY KEY, chain text NOT NULL, n integer NOT NULL);
CREATE TABLE es_tap_par.model_3 (LIKE es_tap_par.model_1 INCLUDING ALL);
-- the events a handler fails on, until cured (deleted)
CREATE TABLE es_tap_par.poison (tag text, stream_id text, revision bigint,
	PRIMARY KEY (tag, stream_id, revision));

CREATE FUNCTION es_tap_par.apply(tag text, e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT FROM es_tap_par.poison p WHERE p.tag = apply.tag
			   AND p.stream_id = e.stream_id AND p.revision = e.revision) THEN
		RAISE EXCEPTION 'poison %:%', e.stream_id, e.revision USING ERRCODE = '22012';
	END IF;
	INSERT INTO es_tap_par.applied (tag, stream_id, revision, replaying)
	VALUES (tag, e.stream_id, e.revision, eventstore.replaying());
END $$;
CREATE FUNCTION es_tap_par.chain(model regclass, e eventstore.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format($q$INSERT INTO %s AS m VALUES ($1, md5($2), 1)
		ON CONFLICT (stream_id) DO UPDATE SET chain = md5(m.chain || $2), n = m.n + 1$q$, model)
	USING e.stream_id, e.event_type || e.revision || e.data::text;
END $$;
CREATE FUNCTION es_tap_par.m1(e eventstore.events) RETURNS void
LANGUAGE sql AS $$ SELECT es_tap_par.chain('es_tap_par.model_1', e) $$;
CREATE FUNCTION es_tap_par.m3(e eventstore.events) RETURNS void
LANGUAGE sql AS $$
	SELECT es_tap_par.chain('es_tap_par.model_3', e);
	SELECT es_tap_par.apply('m3', e) $$;
DO $do$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['sk', 'pk', 'st', 'il', 'v', 'cj'] LOOP
		EXECUTE format($f$
			CREATE FUNCTION es_tap_par.%I(e eventstore.events) RETURNS void
			LANGUAGE sql AS $b$ SELECT es_tap_par.apply(%L, e) $b$$f$, t, t);
	END LOOP;
END $do$;

-- Per tag: events applied more than once, and streams applied out of order.
CREATE FUNCTION es_tap_par.doubled(tag text) RETURNS bigint
LANGUAGE sql AS $$
	SELECT count(*) FROM (SELECT a.stream_id, a.revision FROM es_tap_par.applied a
						  WHERE a.tag = doubled.tag GROUP BY 1, 2 HAVING count(*) > 1) d $$;
CREATE FUNCTION es_tap_par.out_of_order(tag text) RETURNS bigint
LANGUAGE sql AS $$
	SELECT count(*) FROM (SELECT a.revision < lag(a.revision) OVER (PARTITION BY a.stream_id ORDER BY a.seq) AS bad
						  FROM es_tap_par.applied a WHERE a.tag = out_of_order.tag) o
	WHERE bad $$;
-- Events of the log a tag should have applied but did not.
CREATE FUNCTION es_tap_par.missing(tag text, types text[] DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$
	SELECT count(*) FROM eventstore.events e
	WHERE (types IS NULL OR e.event_type = ANY (types))
	  AND NOT EXISTS (SELECT FROM es_tap_par.applied a WHERE a.tag = missing.tag
					  AND a.stream_id = e.stream_id AND a.revision = e.revision) $$;
CREATE FUNCTION es_tap_par.status(name text, OUT status text, OUT partitions integer,
	OUT partitions_done integer, OUT checkpoint bigint)
LANGUAGE sql AS $$
	SELECT s.status, s.partitions, s.partitions_done, s.checkpoint
	FROM eventstore.projection_status s WHERE s.name = status.name $$;

-- A randomized log: 4,000 events over 300 streams, in transactions of 1 to
-- 5 events, of two types.
SELECT setseed(0.42);
DO $$
BEGIN
	FOR i IN 1 .. 1000 LOOP
		PERFORM eventstore.append_event('s-' || (random() * 299)::int,
										CASE WHEN random() < 0.8 THEN 'A' ELSE 'B' END,
										jsonb_build_object('i', i, 'j', g))
		FROM generate_series(1, 1 + (random() * 3)::int) g;
	END LOOP;
END $$;
SELECT max(global_position) AS logged_head FROM eventstore.events \gset
-- a stream of partition 0 of 2 with a second event, and that partition's size
SELECT min(stream_id) AS pk_stream FROM eventstore.events
WHERE eventstore.stream_partition(stream_id, 2) = 0 AND revision = 1 \gset

SELECT plan(50);

-- a split first build
SELECT eventstore.create_projection('m3', 'es_tap_par.m3', parallel => 3,
									on_reset => 'TRUNCATE es_tap_par.model_3');
SELECT results_eq($$SELECT * FROM es_tap_par.status('m3')$$,
				  $$VALUES ('rebuilding', 3, 0, 0::bigint)$$,
				  'created over a non-empty log: rebuilding, in 3 partitions, none done');
SELECT results_eq($$SELECT partition, "position", done FROM eventstore.projection_partitions
					ORDER BY partition$$,
				  $$VALUES (0, 0::bigint, false), (1, 0::bigint, false), (2, 0::bigint, false)$$,
				  'each partition starts at the start of the log');

SELECT is(eventstore.run_projection('m3', max_events => 700), 700::bigint,
		  'run_projection applies max_events events of its partitions');
SELECT results_eq($$SELECT checkpoint, partitions_done FROM es_tap_par.status('m3')$$,
				  $$VALUES (0::bigint, 0)$$,
				  'the projection''s checkpoint waits for the join');
SELECT is((SELECT count(*) FROM eventstore.projection_partitions WHERE events_applied > 0),
		  1::bigint, 'a call takes one partition at a time');
SELECT is((SELECT count(*) FROM es_tap_par.applied a
		   WHERE eventstore.stream_partition(a.stream_id, 3) <> 0), 0::bigint,
		  'partition 0 applied only the events of its streams');
SELECT ok((SELECT rebuild_progress > 0 AND rebuild_progress < 1
		   FROM eventstore.projection_status WHERE name = 'm3'),
		  'rebuild_progress counts the partitions'' progress');

-- events appended during the split
DO $$
BEGIN
	FOR i IN 1 .. 150 LOOP
		PERFORM eventstore.append_event('s-' || (random() * 320)::int, 'A',
										jsonb_build_object('late', i));
	END LOOP;
END $$;
SELECT is(eventstore.run_projection('m3'), (SELECT count(*) FROM eventstore.events) - 700,
		  'run_projection applies the rest');
SELECT results_eq($$SELECT * FROM es_tap_par.status('m3')$$,
				  $$SELECT 'active', NULL::integer, NULL::integer, max(global_position)
					FROM eventstore.events$$,
				  'joined at the head: active at the head, no partitions shown');
SELECT is((SELECT count(*) FROM eventstore.projection_partitions), 0::bigint,
		  'the partitions are gone once joined');
SELECT is(es_tap_par.missing('m3'), 0::bigint, 'nothing lost');
SELECT is(es_tap_par.doubled('m3'), 0::bigint, 'nothing doubled');
SELECT is(es_tap_par.out_of_order('m3'), 0::bigint, 'every stream in its order');
SELECT is((SELECT count(*) FROM es_tap_par.applied a
			JOIN eventstore.events e USING (stream_id, revision)
		   WHERE a.tag = 'm3' AND a.replaying <> (e.global_position <= :logged_head)), 0::bigint,
		  'replaying() is true for the events logged before the first build only');
SELECT is((SELECT events_applied FROM eventstore.projection_status WHERE name = 'm3'),
		  (SELECT count(*) FROM eventstore.events), 'events_applied counts the partitions''');

-- the same read model as parallel => 1
SELECT eventstore.create_projection('m1', 'es_tap_par.m1');
SELECT eventstore.run_projection('m1');
SELECT results_eq($$SELECT identical, rows_a FROM eventstore.compare_read_models('es_tap_par.model_1', 'es_tap_par.model_3')$$,
				  $$SELECT true, count(DISTINCT stream_id) FROM eventstore.events$$,
				  'the read model of parallel => 3 is that of parallel => 1');

-- a rebuild splits again; a crash-free second replay gives the same
SELECT eventstore.rebuild_projection('m3');
SELECT results_eq($$SELECT * FROM es_tap_par.status('m3')$$,
				  $$VALUES ('rebuilding', 3, 0, 0::bigint)$$, 'a rebuild splits its replay again');
SELECT is((SELECT count(*) FROM es_tap_par.model_3), 0::bigint, 'after on_reset');
SELECT lives_ok($$SELECT eventstore.run_projection('m3', max_events => 1000);
				  SELECT eventstore.run_projection('m3', max_events => 1000);
				  SELECT eventstore.run_projection('m3')$$, 'replayed in three calls');
SELECT results_eq($$SELECT identical FROM eventstore.compare_read_models('es_tap_par.model_1', 'es_tap_par.model_3')$$,
				  $$VALUES (true)$$, 'the rebuilt read model is identical too');
SELECT is((SELECT status FROM es_tap_par.status('m3')), 'active', 'active again');

-- a new version splits its first build
SELECT eventstore.create_projection('m3', 'es_tap_par.v', version => 2, parallel => 2,
									event_types => ARRAY['B']);
SELECT results_eq($$SELECT status, partitions, partitions_done FROM eventstore.projection_status
					WHERE name = 'm3' AND version = 2$$,
				  $$VALUES ('rebuilding', 2, 0)$$, 'a new version splits its first build');
SELECT eventstore.run_projection('m3', 2);
SELECT is(es_tap_par.missing('v', ARRAY['B']), 0::bigint, 'the new version applied every event of its type');
SELECT is((SELECT count(*) FROM es_tap_par.applied WHERE tag = 'v'),
		  (SELECT count(*) FROM eventstore.events WHERE event_type = 'B'), '... and no other');

-- a partition done before events are appended: the join brings it on
SELECT count(*) + 1 AS p0_and_one FROM eventstore.events
WHERE eventstore.stream_partition(stream_id, 2) = 0 \gset
SELECT eventstore.create_projection('cj', 'es_tap_par.cj', parallel => 2);
SELECT eventstore.run_projection('cj', max_events => :p0_and_one);
SELECT results_eq($$SELECT partition, done FROM eventstore.projection_partitions
					ORDER BY partition$$,
				  $$VALUES (0, true), (1, false)$$, 'partition 0 done, 1 not');
SELECT count(eventstore.append_event('s-' || g, 'A', '{"after": 0}')) FROM generate_series(1, 30) g;
SELECT eventstore.run_projection('cj');
SELECT is(es_tap_par.missing('cj'), 0::bigint,
		  'the join applied what partition 0 had not seen');
SELECT is(es_tap_par.doubled('cj'), 0::bigint, '... once');

-- on_error = 'skip' within partitions
INSERT INTO es_tap_par.poison VALUES ('sk', 's-7', 1), ('pk', :'pk_stream', 1), ('st', 's-9', 1);
SELECT eventstore.create_projection('sk', 'es_tap_par.sk', parallel => 2, on_error => 'skip');
SELECT eventstore.run_projection('sk');
SELECT results_eq($$SELECT e.stream_id, e.revision FROM eventstore.projection_dead_letters d
					JOIN eventstore.events e USING (global_position)
					WHERE d.projection_id = (SELECT projection_id FROM eventstore.projections WHERE name = 'sk')$$,
				  $$VALUES ('s-7', 1::bigint)$$, 'skip: the poison event is a dead letter');
SELECT is(es_tap_par.missing('sk'), 1::bigint, 'skip: every other event applied');
SELECT is((SELECT status FROM es_tap_par.status('sk')), 'active', 'skip: active');

-- on_error = 'park' within partitions, retried during the split
SELECT eventstore.create_projection('pk', 'es_tap_par.pk', parallel => 2, on_error => 'park');
-- all of partition 0, not yet judged done: the replay stays split
SELECT count(*) AS p0_events FROM eventstore.events
WHERE eventstore.stream_partition(stream_id, 2) = 0 \gset
SELECT is(eventstore.run_projection('pk', max_events => :p0_events), :p0_events::bigint,
		  'park: partition 0 dealt with');
SELECT is((SELECT count(*) FROM es_tap_par.applied WHERE tag = 'pk' AND stream_id = :'pk_stream' AND revision > 1),
		  0::bigint, 'park: the later events of the stream wait');
SELECT is((SELECT count(*) FROM es_tap_par.applied WHERE tag = 'pk'),
		  (SELECT count(*) FROM eventstore.events WHERE stream_id <> :'pk_stream'
		   AND eventstore.stream_partition(stream_id, 2) = 0)
		  + (SELECT count(*) FROM eventstore.events WHERE stream_id = :'pk_stream' AND revision = 0),
		  'park: the other streams of the partition went on');
SELECT is((SELECT partitions FROM es_tap_par.status('pk')), 2, 'park: still split');
DELETE FROM es_tap_par.poison WHERE tag = 'pk';
SELECT is(eventstore.retry_dead_letters('pk'), 1::bigint, 'park: retried during the split');
SELECT is((SELECT count(*) FROM es_tap_par.applied WHERE tag = 'pk' AND stream_id = :'pk_stream'),
		  (SELECT count(*) FROM eventstore.events WHERE stream_id = :'pk_stream'),
		  'park: the retry released the parked events');
SELECT eventstore.run_projection('pk');
SELECT is(es_tap_par.missing('pk'), 0::bigint, 'park: nothing lost');
SELECT is(es_tap_par.doubled('pk'), 0::bigint, 'park: nothing doubled');
SELECT is(es_tap_par.out_of_order('pk'), 0::bigint, 'park: the stream kept its order');

-- on_error = 'stop' within a partition, restarted
SELECT eventstore.create_projection('st', 'es_tap_par.st', parallel => 2);
SET client_min_messages = error;	-- (its failure's WARNING)
SELECT eventstore.run_projection('st');
SET client_min_messages = warning;
SELECT results_eq($$SELECT status, partitions FROM es_tap_par.status('st')$$,
				  $$VALUES ('failed', 2)$$, 'stop: failed, still split');
SELECT is((SELECT last_error FROM eventstore.projection_status WHERE name = 'st'),
		  'poison s-9:1', 'stop: with the error');
DELETE FROM es_tap_par.poison WHERE tag = 'st';
SELECT eventstore.start_projection('st');
SELECT eventstore.run_projection('st');
SELECT is((SELECT status FROM es_tap_par.status('st')), 'active', 'stop: restarted, joined, active');
SELECT is(es_tap_par.missing('st'), 0::bigint, 'stop: nothing lost');
SELECT is(es_tap_par.doubled('st'), 0::bigint, 'stop: nothing doubled');

-- an inline projection: skips recorded during the split, drained after it
SELECT eventstore.create_projection('il', 'es_tap_par.il', mode => 'inline', parallel => 2);
SELECT eventstore.run_projection('il', max_events => 1500);
SELECT count(eventstore.append_event('s-' || g, 'A', '{"inline": true}')) FROM generate_series(1, 40) g;
SELECT is((SELECT skips_pending FROM eventstore.projection_status WHERE name = 'il'), 40::bigint,
		  'inline: appends during the split record skips');
SELECT eventstore.run_projection('il');
SELECT results_eq($$SELECT status, skips_pending FROM eventstore.projection_status WHERE name = 'il'$$,
				  $$VALUES ('active', 0::bigint)$$, 'inline: joined, active, skips drained');
SELECT is(es_tap_par.missing('il'), 0::bigint, 'inline: nothing lost');
SELECT is(es_tap_par.doubled('il'), 0::bigint, 'inline: nothing doubled');
SELECT is(es_tap_par.out_of_order('il'), 0::bigint, 'inline: every stream in its order');

-- dropping a split projection drops its partitions
SELECT eventstore.rebuild_projection('m3', 1);
SELECT eventstore.drop_projection('m3', 1);
SELECT is((SELECT count(*) FROM eventstore.projection_partitions), 0::bigint,
		  'drop_projection drops the partitions');

SELECT * FROM finish();
SELECT eventstore.drop_projection(name) FROM (SELECT DISTINCT name FROM eventstore.projections) p;
DROP SCHEMA es_tap_par CASCADE;
DROP EXTENSION pgtap;
DROP EXTENSION pg_eventstore;
