-- pg_eventstore 0.2.0 -> 0.3.0: a registry that pg_upgrade accepts and a
-- restore keeps row by row.
\echo Use "ALTER EXTENSION pg_eventstore UPDATE TO '0.3.0'" to load this file. \quit

-- Names print schema-qualified, whatever the caller's search_path.
SET LOCAL search_path = pg_catalog, pg_temp;

-- projection_status reads the two columns: point it elsewhere for the
-- change (CREATE OR REPLACE keeps its grants), then back.
CREATE OR REPLACE VIEW eventstore.projection_status AS
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
	   NULL::regrole AS owner,
	   NULL::regproc AS handler,
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

-- The handler by its signature and the owner by its name, instead of
-- regproc and regrole: pg_upgrade refuses regproc columns (function oids
-- are not kept), and a restored row naming a role or function that is
-- missing fails the whole COPY of the registry.  And who owned the handler
-- (see the current schema).
ALTER TABLE eventstore.projections ADD COLUMN handler_owner text;
-- a handler dropped before the update (its projection fails already) is
-- recorded as owned by nobody, so no function of its name is ever run
UPDATE eventstore.projections p
SET handler_owner = COALESCE((SELECT pg_get_userbyid(f.proowner)::text
							  FROM pg_proc f WHERE f.oid = p.handler), '');
ALTER TABLE eventstore.projections
	-- a dropped one keeps a signature that names nothing, and its oid
	ALTER COLUMN handler TYPE text USING
		CASE WHEN handler::regprocedure::text ~ '^[0-9]+$'
			THEN format('%I(eventstore.events)', 'dropped function ' || handler::oid)
			ELSE handler::regprocedure::text
		END,
	ALTER COLUMN owner TYPE text USING pg_get_userbyid(owner)::text,
	ALTER COLUMN handler_owner SET NOT NULL;

CREATE OR REPLACE VIEW eventstore.projection_status AS
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
	   -- looked up by name; NULL when missing (the projection then fails)
	   to_regrole(p.owner) AS owner,
	   to_regprocedure(p.handler)::regproc AS handler,
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
