-- pg_eventstore 0.1.0 -> 0.2.0: projections.
-- A new install runs the 0.1.0 script and then this one.
\echo Use "ALTER EXTENSION pg_eventstore UPDATE TO '0.2.0'" to load this file. \quit

-- The registry: one row per (name, version).  Appends read it through a
-- per-backend cache that every change invalidates at commit; the columns
-- "position" and transaction_id are the projection's place in log order.
CREATE TABLE eventstore.projections (
	projection_id	integer GENERATED ALWAYS AS IDENTITY UNIQUE,
	name			text NOT NULL,
	version			integer NOT NULL CHECK (version >= 1),
	handler			regproc NOT NULL,
	batch_handler	boolean NOT NULL,
	event_types		text[],
	mode			text NOT NULL CHECK (mode IN ('inline', 'async')),
	on_reset		text,
	on_error		text NOT NULL CHECK (on_error IN ('stop', 'skip')),
	owner			regrole NOT NULL,
	status			text NOT NULL
		CHECK (status IN ('active', 'rebuilding', 'failed', 'stopped')),
	caught_up		boolean NOT NULL,	-- the replay from the start is done
	-- a replay is done only once its read horizon has passed this xid: every
	-- event committed before the rebuild (or creation) is below it
	replay_until	xid8 NOT NULL DEFAULT '0',
	"position"		bigint NOT NULL DEFAULT 0,
	transaction_id	xid8 NOT NULL DEFAULT '0',
	events_applied	bigint NOT NULL DEFAULT 0,
	last_error		text,
	error_sqlstate	text,
	error_position	bigint,
	error_event_id	uuid,
	failed_at		timestamptz,
	rebuild_started_at timestamptz,
	caught_up_at	timestamptz,
	created_at		timestamptz NOT NULL,
	updated_at		timestamptz NOT NULL,
	PRIMARY KEY (name, version)
) WITH (fillfactor = 50);
SELECT pg_catalog.pg_extension_config_dump('eventstore.projections', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.projections_projection_id_seq', '');

-- Events an inline projection did not apply (its lock was taken or it was
-- not active), to be drained once it is active.  A drained row stays, with
-- its outcome, as the record of what happened.  No foreign key: an append
-- recording a skip must not wait for, or fail on, a concurrent
-- drop_projection, which deletes the projection's rows itself.
CREATE TABLE eventstore.projection_skips (
	projection_id	integer NOT NULL,
	global_position	bigint NOT NULL,
	transaction_id	xid8 NOT NULL,
	skipped_at		timestamptz NOT NULL,
	drained_at		timestamptz,
	outcome			text CHECK (outcome IN ('applied', 'already applied')),
	PRIMARY KEY (projection_id, global_position)
);
CREATE INDEX projection_skips_pending_idx
	ON eventstore.projection_skips (projection_id, transaction_id, global_position)
	WHERE drained_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('eventstore.projection_skips', '');

-- Events a projection with on_error = 'skip' could not apply (no foreign
-- key, for the same reason).
CREATE TABLE eventstore.projection_dead_letters (
	dead_letter_id	bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	projection_id	integer NOT NULL,
	global_position	bigint NOT NULL,
	event_id		uuid NOT NULL,
	stream_id		text NOT NULL,
	event_type		text NOT NULL,
	error_sqlstate	text NOT NULL,
	error_message	text NOT NULL,
	error_detail	text,
	error_context	text,
	failed_at		timestamptz NOT NULL
);
CREATE INDEX projection_dead_letters_projection_idx
	ON eventstore.projection_dead_letters (projection_id, global_position);
SELECT pg_catalog.pg_extension_config_dump('eventstore.projection_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.projection_dead_letters_dead_letter_id_seq', '');

-- The C functions below name their caller as the projection's owner, so
-- they are not SECURITY DEFINER: they switch to the extension's owner for
-- their own bookkeeping and to the projection's owner for its handler.
CREATE FUNCTION eventstore.create_projection(
	name text,
	handler regproc,
	event_types text[] DEFAULT NULL,
	mode text DEFAULT 'async',
	version integer DEFAULT 1,
	on_reset text DEFAULT NULL,
	on_error text DEFAULT 'stop')
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_create_projection';

CREATE FUNCTION eventstore.drop_projection(name text, version integer DEFAULT NULL)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_drop_projection';

CREATE FUNCTION eventstore.rebuild_projection(name text, version integer DEFAULT NULL)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_rebuild_projection';

CREATE FUNCTION eventstore.run_projection(
	name text,
	version integer DEFAULT NULL,
	max_events bigint DEFAULT NULL)
RETURNS bigint
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_run_projection';

CREATE FUNCTION eventstore.stop_projection(name text, version integer DEFAULT NULL)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_stop_projection';

CREATE FUNCTION eventstore.start_projection(name text, version integer DEFAULT NULL)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_start_projection';

CREATE FUNCTION eventstore.current_version(name text)
RETURNS integer
	LANGUAGE sql STABLE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN (SELECT max(p.version) FROM eventstore.projections p
			WHERE p.name = current_version.name AND p.status = 'active');

-- The transaction at the log's read horizon: the oldest one with an xid
-- still running.  It runs as its caller, so it shows another role's session
-- only to those pg_stat_activity shows it to (pg_read_all_stats: all).
CREATE FUNCTION eventstore.log_holder(OUT pid integer, OUT xact_age interval)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT a.pid, now() - a.xact_start
			FROM pg_stat_activity a
			WHERE a.backend_xid IS NOT NULL
			  AND a.backend_xid::text::numeric =
				  pg_snapshot_xmin(pg_current_snapshot())::text::numeric % 4294967296
			LIMIT 1
	$$;

-- What the background workers did in the last minute, per projection of
-- this database: the worker's pid and the events per second it applied.
CREATE FUNCTION eventstore.worker_activity(
	OUT projection_id integer, OUT worker_pid integer,
	OUT events_per_second double precision)
RETURNS SETOF record
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'eventstore_worker_activity';

-- One row per projection.  lag_events counts the events of its types it has
-- still to apply; an active inline projection applies them as they are
-- appended and has none.  lag_seconds is the age of the oldest of them.
CREATE VIEW eventstore.projection_status AS
SELECT p.name,
	   p.version,
	   p.mode,
	   p.status,
	   p."position" AS checkpoint,
	   head.global_position AS head,
	   COALESCE(lag.events, 0) AS lag_events,
	   COALESCE(EXTRACT(epoch FROM now() - lag.oldest), 0)::double precision
		   AS lag_seconds,
	   (SELECT count(*) FROM eventstore.projection_skips s
		WHERE s.projection_id = p.projection_id AND s.drained_at IS NULL)
		   AS skips_pending,
	   (SELECT count(*) FROM eventstore.projection_dead_letters d
		WHERE d.projection_id = p.projection_id) AS dead_letters,
	   p.last_error,
	   p.error_position,
	   p.events_applied,
	   p.owner,
	   p.handler,
	   p.event_types,
	   p.on_error,
	   w.worker_pid,
	   COALESCE(w.events_per_second, 0) AS events_per_second,
	   holder.pid AS log_held_by_pid,
	   holder.xact_age AS log_held_for,
	   p.rebuild_started_at,
	   p.caught_up_at,
	   p.updated_at
FROM eventstore.projections p
	CROSS JOIN LATERAL (SELECT max(e.global_position) AS global_position
						FROM eventstore.events e) head
	LEFT JOIN LATERAL (SELECT count(*) AS events, min(e.created_at) AS oldest
					   FROM eventstore.events e
					   WHERE (e.transaction_id, e.global_position) >
							 (p.transaction_id, p."position")
						 AND (p.event_types IS NULL
							  OR e.event_type = ANY (p.event_types))
						 -- a caught-up inline projection's are its pending skips
						 AND NOT (p.mode = 'inline' AND p.caught_up)) lag ON true
	-- it holds the log back when events committed after it are waiting
	LEFT JOIN LATERAL (SELECT h.* FROM eventstore.log_holder() h
					   WHERE EXISTS (SELECT FROM eventstore.events e
									 WHERE e.transaction_id >
										   pg_snapshot_xmin(pg_current_snapshot()))) holder
		ON true
	LEFT JOIN eventstore.worker_activity() w
		ON w.projection_id = p.projection_id;

REVOKE ALL ON FUNCTION
	eventstore.create_projection(text, regproc, text[], text, integer, text, text),
	eventstore.drop_projection(text, integer),
	eventstore.rebuild_projection(text, integer),
	eventstore.run_projection(text, integer, bigint),
	eventstore.stop_projection(text, integer),
	eventstore.start_projection(text, integer)
FROM PUBLIC;
-- whoever is granted SELECT on projection_status may call these through it:
-- worker_activity shows pids and rates, and log_holder runs as its caller,
-- so it shows a transaction only to those pg_stat_activity shows it to.
REVOKE ALL ON FUNCTION eventstore.current_version(text) FROM PUBLIC;

COMMENT ON TABLE eventstore.projections IS 'Registered projections, one row per (name, version), with status and checkpoint';
COMMENT ON TABLE eventstore.projection_skips IS 'Events an inline projection skipped while rebuilding or locked, and how each was drained';
COMMENT ON TABLE eventstore.projection_dead_letters IS 'Events a projection with on_error = skip could not apply, with the error';
COMMENT ON VIEW eventstore.projection_status IS 'Each projection''s status, checkpoint, lag, pending skips, dead letters and last error';
COMMENT ON FUNCTION eventstore.create_projection(text, regproc, text[], text, integer, text, text) IS 'Register a projection; its handler runs as the calling role';
COMMENT ON FUNCTION eventstore.drop_projection(text, integer) IS 'Remove a projection (one version, or all of them)';
COMMENT ON FUNCTION eventstore.rebuild_projection(text, integer) IS 'Run on_reset and replay the log from the start into a projection';
COMMENT ON FUNCTION eventstore.run_projection(text, integer, bigint) IS 'Apply the events a projection has not applied yet, in batches; returns how many';
COMMENT ON FUNCTION eventstore.stop_projection(text, integer) IS 'Pause a projection until start_projection';
COMMENT ON FUNCTION eventstore.start_projection(text, integer) IS 'Resume a stopped or failed projection from its checkpoint';
COMMENT ON FUNCTION eventstore.current_version(text) IS 'The highest active version of a projection, NULL when none is active';
COMMENT ON FUNCTION eventstore.worker_activity() IS 'Per projection a worker drove in the last minute: its pid and events per second';
COMMENT ON FUNCTION eventstore.log_holder() IS 'The oldest running transaction with an xid: the read horizon of the log';
