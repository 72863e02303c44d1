-- What the demo watches while it runs: a sample a second of the log's head
-- and of every projection's progress, kept for the closing report (append
-- rate, rebuild times) and the HTML report's plots, each sample also
-- printed as one progress line.
CREATE TABLE demo.samples (
	taken_at	timestamptz NOT NULL DEFAULT clock_timestamp(),
	head		bigint NOT NULL,			-- events in the log
	projections	jsonb NOT NULL				-- {"name vN": {status, lag, progress}}
);

-- Moments worth marking on the plots (a rebuild started, a promotion).
CREATE TABLE demo.milestones (
	taken_at	timestamptz NOT NULL DEFAULT clock_timestamp(),
	label		text NOT NULL,
	head		bigint NOT NULL				-- events in the log then
);

CREATE FUNCTION demo.mark(label text) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO demo.milestones (label, head)
	SELECT label, count(*) FROM eventstore.events
$$;

-- Take a sample and return the progress line: seconds since the start,
-- events in the log, the append rate since the last sample, and each
-- projection that lags or rebuilds (name:version; the rest are counted):
--     6s   9,412 ev  1,120/s  sku-sales:2 rebuilding 41%  +3 at head
CREATE FUNCTION demo.sample() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	now_head	bigint := (SELECT count(*) FROM eventstore.events);
	prev		demo.samples;
	first_at	timestamptz;
	rate		numeric;
	state		jsonb;
	busy		text;
	at_head		integer;
BEGIN
	SELECT * INTO prev FROM demo.samples ORDER BY taken_at DESC LIMIT 1;
	SELECT min(taken_at) INTO first_at FROM demo.samples;
	SELECT jsonb_object_agg(name || ' v' || version,
			jsonb_build_object('status', status, 'lag', lag_events,
							   'progress', rebuild_progress)),
		   string_agg(CASE
				WHEN status = 'rebuilding' THEN format('%s:%s rebuilding %s%%',
					name, version, floor(coalesce(rebuild_progress, 0) * 100))
				WHEN status <> 'active' THEN format('%s:%s %s', name, version, status)
				WHEN lag_events > 0 THEN format('%s:%s lag %s', name, version, lag_events)
				END, '  ' ORDER BY name, version),
		   count(*) FILTER (WHERE status = 'active' AND lag_events = 0)
	INTO state, busy, at_head
	FROM eventstore.projection_status;
	INSERT INTO demo.samples (head, projections)
	VALUES (now_head, coalesce(state, '{}'));
	rate := CASE WHEN prev.taken_at IS NOT NULL
				 THEN (now_head - prev.head)
					  / greatest(extract(epoch FROM clock_timestamp() - prev.taken_at), 0.001)
			END;
	RETURN format('%4ss %7s ev %8s  %s%s',
		round(extract(epoch FROM clock_timestamp() - coalesce(first_at, clock_timestamp()))),
		to_char(now_head, 'FM999,999,999'),
		CASE WHEN rate IS NULL THEN '' ELSE to_char(rate, 'FM999,999,990') || '/s' END,
		coalesce(busy || '  ', ''),
		CASE WHEN busy IS NULL THEN 'all projections at the head'
			 ELSE '+' || at_head || ' at head' END);
END $$;

-- Everything the HTML report plots, as one JSON document: the samples
-- (seconds since the first), and the milestones.
CREATE FUNCTION demo.report_json() RETURNS jsonb
LANGUAGE sql AS $$
	WITH t0 AS (SELECT min(taken_at) AS at FROM demo.samples)
	SELECT jsonb_build_object(
		'samples', (SELECT coalesce(jsonb_agg(jsonb_build_object(
							't', round(extract(epoch FROM s.taken_at - t0.at)::numeric, 2),
							'head', s.head, 'projections', s.projections)
						ORDER BY s.taken_at), '[]')
					FROM demo.samples s, t0),
		'milestones', (SELECT coalesce(jsonb_agg(jsonb_build_object(
							't', round(extract(epoch FROM m.taken_at - t0.at)::numeric, 2),
							'label', m.label, 'head', m.head)
						ORDER BY m.taken_at), '[]')
					   FROM demo.milestones m, t0))
$$;
