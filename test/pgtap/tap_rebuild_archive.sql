-- pgTAP: a rebuild that includes the archive.  rebuild_projection(name,
-- version, include_archive => true) replays the archived events and the
-- log merged in log order (split in partitions too); without it a rebuild
-- sees the live log only; a backfill cannot include the archive.
\ir setup.psql

SELECT plan(10);

CREATE SCHEMA es_tap_ra;
CREATE TABLE es_tap_ra.applied (projection text, global_position bigint, stream_id text,
	revision bigint, seq bigint GENERATED ALWAYS AS IDENTITY);
CREATE FUNCTION es_tap_ra.apply_one(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO es_tap_ra.applied (projection, global_position, stream_id, revision)
	VALUES ('one', e.global_position, e.stream_id, e.revision) $$;
CREATE FUNCTION es_tap_ra.apply_split(e eventstore.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO es_tap_ra.applied (projection, global_position, stream_id, revision)
	VALUES ('split', e.global_position, e.stream_id, e.revision) $$;
SELECT eventstore.create_projection('ra_one', 'es_tap_ra.apply_one',
	on_reset => $$DELETE FROM es_tap_ra.applied WHERE projection = 'one'$$) \g /dev/null
SELECT eventstore.create_projection('ra_split', 'es_tap_ra.apply_split', parallel => 2,
	on_reset => $$DELETE FROM es_tap_ra.applied WHERE projection = 'split'$$) \g /dev/null
SELECT eventstore.create_projection('ra_bf', 'es_tap_ra.apply_one',
	backfill => $$SELECT count(*) FROM eventstore.backfill_events()$$) \g /dev/null

SELECT eventstore.append_to_stream('s-' || i,
	'[{"type": "A"}, {"type": "B"}, {"type": "A"}]') IS NOT NULL
FROM generate_series(1, 5) i \g /dev/null
SELECT pg_sleep(0.01) \g /dev/null
CREATE TABLE pg_temp.cutoff AS SELECT clock_timestamp() AS at;
SELECT pg_sleep(0.01) \g /dev/null
SELECT eventstore.append_event('s-' || i, 'C', '{}') IS NOT NULL FROM generate_series(1, 5) i \g /dev/null
SELECT eventstore.run_projection('ra_one') + eventstore.run_projection('ra_split')
	+ eventstore.run_projection('ra_bf') \g /dev/null

SELECT eventstore.archive_events((SELECT at FROM pg_temp.cutoff)) \g /dev/null
SELECT is(eventstore.run_maintenance(), 15::bigint, 'the 15 events before the cutoff are archived');
-- every event, in log order, wherever it is now
CREATE TABLE pg_temp.whole AS
	SELECT global_position, transaction_id FROM eventstore.events
	UNION ALL SELECT global_position, transaction_id FROM eventstore.events_archive;

SELECT eventstore.rebuild_projection('ra_one') \g /dev/null
SELECT eventstore.run_projection('ra_one') \g /dev/null
SELECT is((SELECT array_agg(global_position ORDER BY seq) FROM es_tap_ra.applied WHERE projection = 'one'),
	(SELECT array_agg(global_position ORDER BY transaction_id, global_position) FROM eventstore.events),
	'a rebuild sees the live log only');

SELECT eventstore.rebuild_projection('ra_one', NULL, true) \g /dev/null
SELECT is((SELECT replay_archive FROM eventstore.projections WHERE name = 'ra_one'), true,
	'rebuild_projection(name, version, true) marks the build to include the archive');
SELECT eventstore.run_projection('ra_one') \g /dev/null
SELECT is((SELECT array_agg(global_position ORDER BY seq) FROM es_tap_ra.applied WHERE projection = 'one'),
	(SELECT array_agg(global_position ORDER BY transaction_id, global_position) FROM pg_temp.whole),
	'... and it replays the archived events and the log, merged in log order');
SELECT eventstore.append_event('s-1', 'D', '{}') \g /dev/null
SELECT eventstore.run_projection('ra_one') \g /dev/null
SELECT is((SELECT count(*) FROM es_tap_ra.applied WHERE projection = 'one'),
	(SELECT count(*) + 1 FROM pg_temp.whole),
	'once at the head it applies new events once, as always');

SELECT eventstore.rebuild_projection('ra_split', NULL, true) \g /dev/null
SELECT eventstore.run_projection('ra_split') \g /dev/null
SELECT is((SELECT array_agg(global_position ORDER BY global_position) FROM es_tap_ra.applied WHERE projection = 'split'),
	(SELECT array_agg(global_position ORDER BY global_position) FROM
		(SELECT global_position FROM pg_temp.whole UNION ALL
		 SELECT max(global_position) FROM eventstore.events) w),
	'a split replay includes the archive too, every event once');
SELECT is((SELECT count(*) FROM (SELECT stream_id, array_agg(revision ORDER BY seq) AS r
	FROM es_tap_ra.applied WHERE projection = 'split' GROUP BY stream_id) s
	WHERE r <> (SELECT array_agg(x ORDER BY x) FROM unnest(r) x)), 0::bigint,
	'... each stream in order');

SELECT eventstore.rebuild_projection('ra_one', NULL, false) \g /dev/null
SELECT is((SELECT replay_archive FROM eventstore.projections WHERE name = 'ra_one'), false,
	'a rebuild without include_archive reads the live log again');

SELECT is(pg_temp.error_of($$SELECT eventstore.rebuild_projection('ra_one', NULL, NULL)$$),
	ARRAY['22004', 'include_archive must not be null',
		  NULL, 'Pass true to replay the archived events too, false for the live log only.'],
	'include_archive NULL is refused');
SELECT is((pg_temp.error_of($$SELECT eventstore.rebuild_projection('ra_bf', NULL, true)$$))[1:2],
	ARRAY['0A000', 'projection "ra_bf" has a backfill, which does not read the archive'],
	'a projection with a backfill cannot include the archive');

SELECT * FROM finish();
DROP SCHEMA es_tap_ra CASCADE;
