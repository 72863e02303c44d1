-- pg_eventstore 0.2.0 -> 0.3.0: a registry that pg_upgrade accepts and a
-- restore keeps row by row; the log's own clock, and subscriber mode.
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

-- What the handler runs with, whoever drives it (see the current schema).
-- A projection created before 0.3.0 ran with the API's search_path: it
-- keeps it, with the other settings (src/projections/owner_settings.c
-- lists them) of the session that runs the update.
ALTER TABLE eventstore.projections ADD COLUMN settings text[];
UPDATE eventstore.projections SET settings = array_remove(ARRAY[
	'search_path=pg_catalog, pg_temp',
	'DateStyle=' || current_setting('DateStyle'),
	'IntervalStyle=' || current_setting('IntervalStyle'),
	'TimeZone=' || current_setting('TimeZone'),
	'timezone_abbreviations=' || current_setting('timezone_abbreviations'),
	'standard_conforming_strings=' || current_setting('standard_conforming_strings'),
	'extra_float_digits=' || current_setting('extra_float_digits'),
	'bytea_output=' || current_setting('bytea_output'),
	'lc_monetary=' || current_setting('lc_monetary'),
	'lc_numeric=' || current_setting('lc_numeric'),
	'lc_time=' || current_setting('lc_time'),
	'default_text_search_config=' || current_setting('default_text_search_config'),
	'xmlbinary=' || current_setting('xmlbinary'),
	'xmloption=' || current_setting('xmloption'),
	'transform_null_equals=' || current_setting('transform_null_equals'),
	'array_nulls=' || current_setting('array_nulls'),
	'backslash_quote=' || current_setting('backslash_quote'),
	'quote_all_identifiers=' || current_setting('quote_all_identifiers'),
	'gin_fuzzy_search_limit=' || current_setting('gin_fuzzy_search_limit'),
	'row_security=' || current_setting('row_security'),
	-- NULL, and removed, unless plpgsql is loaded
	'plpgsql.variable_conflict=' || current_setting('plpgsql.variable_conflict', true)],
	NULL);
ALTER TABLE eventstore.projections ALTER COLUMN settings SET NOT NULL;

-- create_projection captures its caller's search_path, then pins the API's.
ALTER FUNCTION eventstore.create_projection(text, regproc, text[], text, integer, text, text)
	RESET search_path;

-- The log's own clock.  An event's transaction_id is a log key: its
-- transaction's id plus the xid_offset of the cluster it was written on,
-- raised to the key of its stream's previous event.  pg_dump keeps these
-- rows with the log; a copy of the log without a row of its own for its
-- cluster and timeline (a restore, a pg_upgrade, a promoted standby's new
-- timeline, a subscriber) takes one at its first write, with an offset
-- that puts its keys after every key in the log and its positions at a
-- fresh block from first_position on.
CREATE TABLE eventstore.log_incarnations (
	system_identifier	bigint NOT NULL,
	log_oid				oid NOT NULL,	-- of eventstore.events: a restore changes it
	timeline_id			integer NOT NULL,
	xid_offset			bigint NOT NULL CHECK (xid_offset >= 0),
	first_position		bigint NOT NULL,
	started_at			timestamptz NOT NULL,
	reason				text NOT NULL CHECK (reason IN
		('first write', 'upgrade', 'new timeline', 'new cluster',
		 'restored', 'subscriber')),
	PRIMARY KEY (system_identifier, log_oid, timeline_id)
);
SELECT pg_catalog.pg_extension_config_dump('eventstore.log_incarnations', '');

-- On a subscriber of the log, each replicated event takes this node's own
-- place in the log order, and its stream's row is kept here (streams is
-- not published).  Off until set_subscriber_mode(true) enables it for the
-- replication workers (ENABLE REPLICA).
CREATE FUNCTION eventstore.take_replicated_event() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_take_replicated_event';
CREATE TRIGGER events_from_publisher
	BEFORE INSERT ON eventstore.events
	FOR EACH ROW EXECUTE FUNCTION eventstore.take_replicated_event();
ALTER TABLE eventstore.events DISABLE TRIGGER events_from_publisher;
REVOKE ALL ON FUNCTION eventstore.take_replicated_event() FROM PUBLIC;

COMMENT ON TABLE eventstore.log_incarnations IS 'Each cluster, copy and timeline that wrote the log: its transaction id offset and first position';

-- This cluster's row, with offset 0: the keys written so far are its own
-- transaction ids, and an append already running when the update commits
-- keeps writing them.  Its positions go on from where the log is.
INSERT INTO eventstore.log_incarnations
	(system_identifier, log_oid, timeline_id, xid_offset, first_position,
	 started_at, reason)
SELECT s.system_identifier, 'eventstore.events'::regclass,
	   c.timeline_id, 0,
	   (SELECT coalesce(max(e.global_position), 0) + 1 FROM eventstore.events e),
	   now(), 'upgrade'
FROM pg_control_system() s, pg_control_checkpoint() c;

-- The log across nodes (see the README's chapter for operators).
CREATE FUNCTION eventstore.log_horizon()
RETURNS xid8
	LANGUAGE c STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_log_horizon';

CREATE FUNCTION eventstore.node_role()
RETURNS text
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	RETURN CASE
		WHEN pg_is_in_recovery() THEN 'standby'
		WHEN EXISTS (SELECT FROM pg_trigger t
					 WHERE t.tgrelid = 'eventstore.events'::regclass
					   AND t.tgname = 'events_from_publisher'
					   AND t.tgenabled = 'R') THEN 'subscriber'
		ELSE 'primary'
	END;

CREATE FUNCTION eventstore.create_log_publication(
	publication_name name DEFAULT 'eventstore_log')
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_create_log_publication';

CREATE FUNCTION eventstore.set_subscriber_mode(enabled boolean)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_set_subscriber_mode';

-- Run as their caller, who must be allowed what they do (create a
-- publication of eventstore.events; alter it): the extension's owner.
REVOKE ALL ON FUNCTION
	eventstore.create_log_publication(name),
	eventstore.set_subscriber_mode(boolean)
FROM PUBLIC;

COMMENT ON FUNCTION eventstore.log_horizon() IS 'The read horizon of the log as a key: read_all returns events keyed below it';
COMMENT ON FUNCTION eventstore.node_role() IS 'What this database is to the log: primary, standby or subscriber';
COMMENT ON FUNCTION eventstore.create_log_publication(name) IS 'Create the publication a subscriber of the log needs: eventstore.events, inserts only';
COMMENT ON FUNCTION eventstore.set_subscriber_mode(boolean) IS 'Make this database a subscriber of the log (replicated events take its own order, appends are refused), or not';

--
-- Checked promotion and stable read-model names (README: Checked promotion
-- and stable names)
--

-- Per version: how it is promoted, the relation it writes and the stable
-- view consumers query, and the checks' results at its last automatic
-- promotion or promotion.  Names, not oids, as in the registry: a restore
-- into another cluster keeps them.  The rows go with their projection.
CREATE TABLE eventstore.read_models (
	name			text NOT NULL,
	version			integer NOT NULL,
	promote			text NOT NULL DEFAULT 'manual'
		CHECK (promote IN ('manual', 'auto')),
	relation		text,	-- schema-qualified and quoted, e.g. app.sales_v2
	view_name		text,	-- likewise, e.g. app.sales
	checked_at		timestamptz,
	checks_passed	boolean,
	check_results	jsonb,	-- [{check_name, passed, failing_rows, sample[, error, sqlstate]}]
	-- why the last automatic promotion did not happen although the checks
	-- passed (the view could not be re-pointed, or was in use: then it is
	-- tried again); NULL when it did
	promotion_error	text,
	-- promote => 'auto': the runner is to run the checks and promote the
	-- version when it runs it active at the head (set when the version is
	-- created and when it reaches the head again, kept while its view is in
	-- use, cleared once its checks were run for it)
	promotion_pending	boolean NOT NULL DEFAULT false,
	PRIMARY KEY (name, version),
	FOREIGN KEY (name, version) REFERENCES eventstore.projections (name, version)
		ON DELETE CASCADE
);

-- The checks of a version: queries returning the rows that fail.
CREATE TABLE eventstore.projection_checks (
	name			text NOT NULL,
	version			integer NOT NULL,
	check_name		text NOT NULL,
	query			text NOT NULL,
	created_by		text NOT NULL,	-- a role name
	created_at		timestamptz NOT NULL,
	PRIMARY KEY (name, version, check_name),
	FOREIGN KEY (name, version) REFERENCES eventstore.projections (name, version)
		ON DELETE CASCADE
);

-- Every promotion, forced and automatic ones included, as history (kept
-- when a version is dropped).  A name's promoted version is that of its
-- last promotion to a projection (by projection_id, never reused) that
-- still exists.
CREATE TABLE eventstore.projection_promotions (
	promotion_id	bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name			text NOT NULL,
	from_version	integer,	-- the version promoted before; NULL: none
	to_version		integer NOT NULL,
	projection_id	integer NOT NULL,	-- of to_version
	forced			boolean NOT NULL,
	automatic		boolean NOT NULL,
	promoted_by		text NOT NULL,	-- a role name
	promoted_at		timestamptz NOT NULL,
	relation		text,	-- what view_name was pointed at; NULL: no view
	view_name		text,
	check_results	jsonb NOT NULL
);
CREATE INDEX projection_promotions_name_idx
	ON eventstore.projection_promotions (name, promotion_id);

CREATE FUNCTION eventstore.add_projection_check(
	name text, version integer, check_name text, query text)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_add_projection_check';

CREATE FUNCTION eventstore.drop_projection_check(
	name text, version integer, check_name text)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_drop_projection_check';

CREATE FUNCTION eventstore.check_projection(name text, version integer)
RETURNS TABLE (check_name text, passed boolean, failing_rows bigint,
			   sample jsonb)
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_check_projection';

CREATE FUNCTION eventstore.promote_projection(
	name text, version integer, force boolean DEFAULT false)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_promote_projection';

CREATE FUNCTION eventstore.set_read_model(
	name text, version integer, relation regclass, view_name text)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_set_read_model';

REVOKE ALL ON FUNCTION
	eventstore.add_projection_check(text, integer, text, text),
	eventstore.drop_projection_check(text, integer, text),
	eventstore.check_projection(text, integer),
	eventstore.promote_projection(text, integer, boolean),
	eventstore.set_read_model(text, integer, regclass, text)
FROM PUBLIC;

COMMENT ON TABLE eventstore.read_models IS 'Per projection version: manual or automatic promotion, the relation it writes, the stable view, and its last check results';
COMMENT ON TABLE eventstore.projection_checks IS 'Checks of projection versions: queries returning the rows that fail';
COMMENT ON TABLE eventstore.projection_promotions IS 'Every promotion of a projection version: who, when, from which version, forced or automatic, the check results';
COMMENT ON FUNCTION eventstore.add_projection_check(text, integer, text, text) IS 'Add a check to a projection version: a query returning the rows that fail';
COMMENT ON FUNCTION eventstore.drop_projection_check(text, integer, text) IS 'Remove a check of a projection version';
COMMENT ON FUNCTION eventstore.check_projection(text, integer) IS 'Run a caught-up projection version''s checks as its owner: per check, passed, the count of failing rows and a sample';
COMMENT ON FUNCTION eventstore.promote_projection(text, integer, boolean) IS 'Run the checks and promote a projection version, re-pointing its stable view; force skips the checks';
COMMENT ON FUNCTION eventstore.set_read_model(text, integer, regclass, text) IS 'Name the relation a projection version writes and the stable view consumers query';


-- The lag and rebuild progress projection_status shows, cheap to read on a
-- log of any size (README, projection_status): the events of its types
-- after the checkpoint, by log_backlog.  While rebuilding, progress is the
-- share of the replay's target done, by the same estimate from positions,
-- and the time left the time taken so far at that pace.  No JIT: a read
-- must stay cheap.  Run as the extension's owner by projection_progress.
CREATE FUNCTION eventstore.projection_progress_of(projection_id integer,
	OUT lag_events bigint, OUT lag_exact boolean, OUT oldest timestamptz,
	OUT rebuild_progress double precision, OUT rebuild_time_left interval)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	AS $$
DECLARE
	p eventstore.projections;
	target bigint;
	ranks bigint[];
	parts bigint[];
BEGIN
	SELECT * INTO p FROM eventstore.projections r
	WHERE r.projection_id = projection_progress_of.projection_id;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	lag_events := 0;
	lag_exact := true;
	-- a caught-up inline projection's pending events are its pending skips
	IF NOT (p.mode = 'inline' AND p.caught_up) THEN
		SELECT b.lag_events, b.lag_exact, b.oldest
		INTO lag_events, lag_exact, oldest
		FROM eventstore.log_backlog(p.transaction_id, p."position",
									p.event_types) b;
	END IF;
	IF p.status = 'rebuilding' THEN
		SELECT e.global_position INTO target FROM eventstore.events e
		WHERE e.transaction_id <= p.replay_until
		ORDER BY e.transaction_id DESC, e.global_position DESC
		LIMIT 1;
		IF target IS NULL THEN
			rebuild_progress := 1;
		ELSE
			-- a replay split in partitions (parallel): their mean share
			SELECT array_agg(CASE WHEN q.done THEN target
								  ELSE GREATEST(q."position", p."position") END)
			INTO parts
			FROM eventstore.projection_partitions q
			WHERE q.projection_id = p.projection_id;
			ranks := eventstore.log_ranks(ARRAY[target]
										  || COALESCE(parts, ARRAY[p."position"]));
			rebuild_progress := CASE WHEN ranks[1] > 0
				THEN LEAST((SELECT avg(r::double precision) FROM unnest(ranks[2:]) r)
						   / ranks[1], 1)
				ELSE 1 END;
		END IF;
		IF rebuild_progress > 0 THEN
			rebuild_time_left := (now() - p.rebuild_started_at)
				* ((1 - rebuild_progress) / rebuild_progress);
		END IF;
	END IF;
END
$$;

-- For each position, about how many events the log has up to it: within
-- each block of positions (one per start of an incarnation), its events up
-- to there, as if every position in the block up to its last event held
-- one (positions an aborted append took are counted too).  An index probe
-- per block.
CREATE FUNCTION eventstore.log_ranks(positions bigint[]) RETURNS bigint[]
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	AS $$
	WITH blocks AS (
		SELECT s.first,
			   (SELECT max(e.global_position) FROM eventstore.events e
				WHERE e.global_position >= s.first
				  AND e.global_position < s.next) AS last
		FROM (SELECT f.first,
					 COALESCE(lead(f.first) OVER (ORDER BY f.first),
							  9223372036854775807) AS next
			  FROM (SELECT 1::bigint AS first
					UNION
					SELECT i.first_position FROM eventstore.log_incarnations i) f) s)
	SELECT array_agg((SELECT COALESCE(sum(GREATEST(LEAST(q.pos, b.last) - b.first + 1, 0)), 0)
					  FROM blocks b WHERE b.last IS NOT NULL)::bigint
					 ORDER BY q.n)
	FROM unnest(positions) WITH ORDINALITY AS q(pos, n)
	$$;
-- projection_progress_of for the roles that may read projection_status
-- (it checks), as the extension's owner; the view calls it as its reader.
CREATE FUNCTION eventstore.projection_progress(projection_id integer,
	OUT lag_events bigint, OUT lag_exact boolean, OUT oldest timestamptz,
	OUT rebuild_progress double precision, OUT rebuild_time_left interval)
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'eventstore_projection_progress';

-- (run as the extension's owner, from projection_progress)
REVOKE ALL ON FUNCTION eventstore.log_ranks(bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.projection_progress_of(integer) FROM PUBLIC;
COMMENT ON FUNCTION eventstore.log_ranks(bigint[]) IS 'For each position, about how many events the log has up to it, block by block of positions';
COMMENT ON FUNCTION eventstore.projection_progress(integer) IS 'A projection''s lag (exact up to 10,000 log entries past its checkpoint, estimated beyond) and rebuild progress, as projection_status shows them';
COMMENT ON FUNCTION eventstore.projection_progress_of(integer) IS 'The work of projection_progress, run as the extension''s owner';



-- Every processor belongs to a role (see the current schema); rows from
-- before 0.3.0 have none until the first store, reset or claim.  The
-- checkpoint functions learn their caller: no longer SECURITY DEFINER.
ALTER TABLE eventstore.checkpoints ADD COLUMN owner text;
ALTER FUNCTION eventstore.store_checkpoint(text, bigint, bigint, text) SECURITY INVOKER;
ALTER FUNCTION eventstore.read_checkpoint(text, text) SECURITY INVOKER;
ALTER FUNCTION eventstore.reset_checkpoint(text, bigint, text) SECURITY INVOKER;
ALTER FUNCTION eventstore.claim_processor(text, text, text) SECURITY INVOKER;
ALTER FUNCTION eventstore.release_processor(text, text, text) SECURITY INVOKER;
-- The events after a place in log order (of some types; NULL: all), cheap
-- on a log of any size: read in log order up to window_size log entries,
-- so lag_events is exact while they lie within them (lag_exact); beyond,
-- the rest is estimated from positions, block by block (an incarnation
-- starts its positions at a new block of 2^40: a plain difference would
-- count the gap), at the share of the types among the entries read.
-- oldest is when the oldest of them was appended (of the oldest entry
-- read, when none of them is of the types and the window is full).  A
-- backlog of every type whose positions span more than the window is
-- estimated at once from those positions, and its oldest looked for among
-- its first sample_size entries: processors (and projections without
-- event types) take every type, and a read of the processors view must not
-- cost 10,000 entries per lagging processor.
-- No JIT: a read must stay cheap.  Run as the extension's owner, by
-- projection_progress_of and processor_progress_of.
CREATE FUNCTION eventstore.log_backlog(after_xid xid8, after_position bigint,
	event_types text[],
	OUT lag_events bigint, OUT lag_exact boolean, OUT oldest timestamptz)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	AS $$
DECLARE
	window_size CONSTANT integer := 10000;
	sample_size CONSTANT integer := 100;
	seen bigint;
	window_first timestamptz;
	window_last bigint;
	head bigint;
	ranks bigint[];
BEGIN
	IF event_types IS NULL THEN
		SELECT max(e.global_position) INTO head FROM eventstore.events e;
		ranks := eventstore.log_ranks(ARRAY[after_position, head]);
		IF ranks[2] - ranks[1] > window_size THEN
			lag_exact := false;
			lag_events := ranks[2] - ranks[1];
			SELECT min(w.created_at) INTO oldest
			FROM (SELECT e.created_at
				  FROM eventstore.events e
				  WHERE (e.transaction_id, e.global_position) > (after_xid, after_position)
				  ORDER BY e.transaction_id, e.global_position
				  LIMIT sample_size) w;
			RETURN;
		END IF;
	END IF;
	lag_exact := true;
	SELECT count(*),
		   count(*) FILTER (WHERE log_backlog.event_types IS NULL
								  OR w.event_type = ANY (log_backlog.event_types)),
		   min(w.created_at) FILTER (WHERE log_backlog.event_types IS NULL
										   OR w.event_type = ANY (log_backlog.event_types)),
		   min(w.created_at), max(w.global_position)
	INTO seen, lag_events, oldest, window_first, window_last
	FROM (SELECT e.event_type, e.created_at, e.global_position
		  FROM eventstore.events e
		  WHERE (e.transaction_id, e.global_position) > (after_xid, after_position)
		  ORDER BY e.transaction_id, e.global_position
		  LIMIT window_size + 1) w;
	IF seen > window_size THEN
		lag_exact := false;
		IF head IS NULL THEN
			SELECT max(e.global_position) INTO head FROM eventstore.events e;
		END IF;
		ranks := eventstore.log_ranks(ARRAY[window_last, head]);
		lag_events := lag_events +
			round(GREATEST(ranks[2] - ranks[1], 0) * lag_events::double precision
				  / seen)::bigint;
		-- none of its types in the entries read: the oldest is no older
		oldest := COALESCE(oldest, window_first);
	END IF;
END
$$;
REVOKE ALL ON FUNCTION eventstore.log_backlog(xid8, bigint, text[]) FROM PUBLIC;
COMMENT ON FUNCTION eventstore.log_backlog(xid8, bigint, text[]) IS 'The events after a place in log order (of some types): counted up to 10,000 log entries, estimated beyond, and when the oldest was appended';

-- A processor's lag, as processors shows it: the events after its
-- checkpoint (none stored: the whole log), by log_backlog.  Run as the
-- extension's owner by processor_progress.
CREATE FUNCTION eventstore.processor_progress_of(processor_id text, partition text,
	OUT lag_events bigint, OUT lag_exact boolean, OUT oldest timestamptz)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	AS $$
	SELECT b.lag_events, b.lag_exact, b.oldest
	FROM eventstore.checkpoints c,
		LATERAL eventstore.log_backlog(
			COALESCE(c.transaction_id,
					 (SELECT e.transaction_id FROM eventstore.events e
					  WHERE e.global_position = c."position"),
					 '0'),
			COALESCE(c."position", 0), NULL) b
	WHERE c.processor_id = processor_progress_of.processor_id
	  AND c.partition = processor_progress_of.partition
	$$;
-- processor_progress_of for the roles that may read processors (it
-- checks), as the extension's owner; the view calls it as its reader.
CREATE FUNCTION eventstore.processor_progress(processor_id text, partition text,
	OUT lag_events bigint, OUT lag_exact boolean, OUT oldest timestamptz)
	LANGUAGE c STABLE STRICT
	AS 'MODULE_PATHNAME', 'eventstore_processor_progress';
REVOKE ALL ON FUNCTION eventstore.processor_progress_of(text, text) FROM PUBLIC;
COMMENT ON FUNCTION eventstore.processor_progress_of(text, text) IS 'The work of processor_progress, run as the extension''s owner';
COMMENT ON FUNCTION eventstore.processor_progress(text, text) IS 'A processor''s lag (exact up to 10,000 log entries past its checkpoint, estimated beyond), as processors shows it';

-- status: 'running' while a live session holds the claim, 'stale' when the
-- row names an owner whose session ended without releasing (a crash, say),
-- 'idle' otherwise.
CREATE OR REPLACE VIEW eventstore.processors AS
SELECT c.processor_id,
	   c.partition,
	   c."position" AS checkpoint,
	   c.transaction_id AS checkpoint_transaction_id,
	   c.owner_instance,
	   COALESCE(live.pid, c.owner_pid) AS owner_pid,
	   CASE
		   WHEN live.pid IS NOT NULL THEN 'running'
		   WHEN c.owner_instance IS NOT NULL THEN 'stale'
		   ELSE 'idle'
	   END AS status,
	   c.claimed_at,
	   c.updated_at,
	   c.owner AS owner_role,
	   -- the events after the checkpoint: exact up to 10,000 log entries
	   -- past it, estimated beyond (lag_exact), and the age of the oldest
	   lag.lag_events,
	   COALESCE(EXTRACT(epoch FROM now() - lag.oldest), 0)::double precision
		   AS lag_seconds,
	   lag.lag_exact
FROM eventstore.checkpoints c
	LEFT JOIN (SELECT l.pid,
					  (l.classid::bigint << 32) | l.objid::bigint AS claim_key
			   FROM pg_catalog.pg_locks l
			   WHERE l.locktype = 'advisory' AND l.objsubid = 17747
				 AND l.granted
				 AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
								   WHERE d.datname = pg_catalog.current_database())) live
		ON live.claim_key = eventstore.processor_claim_key(c.processor_id, c.partition)
	LEFT JOIN LATERAL eventstore.processor_progress(c.processor_id, c.partition) lag
		ON true;

-- A skip knows its stream (see the current schema): those still pending
-- get theirs from the log, which keeps each stream's order through drains.
ALTER TABLE eventstore.projection_skips ADD COLUMN stream_id text;
UPDATE eventstore.projection_skips k SET stream_id = e.stream_id
FROM eventstore.events e
WHERE e.global_position = k.global_position AND k.drained_at IS NULL;
CREATE INDEX projection_skips_stream_idx
	ON eventstore.projection_skips (projection_id, stream_id)
	WHERE drained_at IS NULL;

-- Every row written pending passes this trigger, which invalidates what
-- each backend knows of the projections that have no pending skip (their
-- inline applications check the stream's pending skips without a probe
-- while a projection has none: src/projections/pending_skips.c).  Enabled
-- ALWAYS, so that it fires under every session_replication_role.
CREATE FUNCTION eventstore.note_pending_skip() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_note_pending_skip';
REVOKE ALL ON FUNCTION eventstore.note_pending_skip() FROM PUBLIC;
COMMENT ON FUNCTION eventstore.note_pending_skip() IS 'Trigger of projection_skips: a row written pending invalidates the backends'' knowledge of projections without pending skips';
CREATE TRIGGER projection_skips_pending
	BEFORE INSERT OR UPDATE ON eventstore.projection_skips
	FOR EACH ROW EXECUTE FUNCTION eventstore.note_pending_skip();
ALTER TABLE eventstore.projection_skips ENABLE ALWAYS TRIGGER projection_skips_pending;
COMMENT ON TRIGGER projection_skips_pending ON eventstore.projection_skips IS 'A row written pending invalidates what sessions know of projections without pending skips';

-- A stream's row keeps the key of its last event (see the current schema);
-- rows from before stay NULL until their next append, which looks it up in
-- the log once: nothing is rewritten here.
ALTER TABLE eventstore.streams ADD COLUMN transaction_id xid8;

-- Stream deletion's tombstone (see the current schema): NULLs, so nothing
-- is rewritten either.
ALTER TABLE eventstore.streams
	ADD COLUMN deleted_revision bigint,
	ADD COLUMN deleted_at timestamptz,
	ADD COLUMN hard_deleted boolean;


-- The parity check of a re-implemented read model: whether two relations
-- hold the same rows as multisets (see the README).  It runs as its
-- caller, reading both relations as a SELECT would, so PUBLIC may call it.
-- Not STRICT: a NULL argument is an error, not an empty answer a check
-- would take for a pass.
CREATE FUNCTION eventstore.compare_read_models(a regclass, b regclass)
RETURNS TABLE (rows_a bigint, rows_b bigint, only_in_a bigint,
			   only_in_b bigint, identical boolean)
	LANGUAGE c STABLE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_compare_read_models';

COMMENT ON FUNCTION eventstore.compare_read_models(regclass, regclass) IS 'Compare two relations'' rows as multisets: row counts, rows each lacks of the other, and whether they are identical';

-- on_error = 'park', and dead letters that are resolved (see the current
-- schema): existing dead letters are unresolved, existing skips not parked.
ALTER TABLE eventstore.projections DROP CONSTRAINT projections_on_error_check;
ALTER TABLE eventstore.projections ADD CONSTRAINT projections_on_error_check
	CHECK (on_error IN ('stop', 'skip', 'park'));
ALTER TABLE eventstore.projection_skips DROP CONSTRAINT projection_skips_outcome_check;
ALTER TABLE eventstore.projection_skips ADD CONSTRAINT projection_skips_outcome_check
	CHECK (outcome IN ('applied', 'already applied', 'discarded', 'rebuilt'));
-- (parked is filled by an UPDATE rather than a default on ADD COLUMN, which
-- would leave a "missing value" that a new install does not have)
ALTER TABLE eventstore.projection_skips
	ADD COLUMN parked boolean,
	ADD COLUMN dead_letter_id bigint;
ALTER TABLE eventstore.projection_skips ALTER COLUMN parked SET DEFAULT false;
UPDATE eventstore.projection_skips SET parked = false;
ALTER TABLE eventstore.projection_skips ALTER COLUMN parked SET NOT NULL;
CREATE INDEX projection_skips_parked_idx
	ON eventstore.projection_skips (projection_id, stream_id)
	WHERE drained_at IS NULL AND dead_letter_id IS NOT NULL;
ALTER TABLE eventstore.projection_dead_letters
	ADD COLUMN resolution text CHECK (resolution IN ('retried', 'discarded', 'rebuilt')),
	ADD COLUMN resolved_by text,
	ADD COLUMN resolved_at timestamptz;

CREATE FUNCTION eventstore.retry_dead_letters(
	name text,
	version integer DEFAULT NULL,
	stream_id text DEFAULT NULL)
RETURNS bigint
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_retry_dead_letters';

CREATE FUNCTION eventstore.discard_dead_letters(
	name text,
	version integer DEFAULT NULL,
	stream_id text DEFAULT NULL)
RETURNS bigint
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_discard_dead_letters';

-- For handlers: is the event being applied applied again (see README)?
-- PUBLIC may call it: it tells nothing but that.
CREATE FUNCTION eventstore.replaying()
RETURNS boolean
	LANGUAGE c VOLATILE PARALLEL RESTRICTED
	AS 'MODULE_PATHNAME', 'eventstore_replaying';

REVOKE ALL ON FUNCTION
	eventstore.retry_dead_letters(text, integer, text),
	eventstore.discard_dead_letters(text, integer, text)
FROM PUBLIC;


COMMENT ON TABLE eventstore.projection_skips IS 'Events an inline projection skipped while rebuilding or locked, events parked behind a dead letter, and how each was drained';
COMMENT ON TABLE eventstore.projection_dead_letters IS 'Events a projection with on_error = skip or park could not apply, with the error and how each was resolved';
COMMENT ON FUNCTION eventstore.retry_dead_letters(text, integer, text) IS 'Apply a projection''s unresolved dead letters again, in log order, with the events parked behind them; returns how many were applied';
COMMENT ON FUNCTION eventstore.discard_dead_letters(text, integer, text) IS 'Give up a projection''s unresolved dead letters and apply the events they parked; returns how many were discarded';
COMMENT ON FUNCTION eventstore.replaying() IS 'True while the event being applied is applied again by a rebuild, a backfill or a new version''s first build';

-- create_projection gains promote, upcast, backfill and parallel, last.  A new signature is a new
-- function: the EXECUTE grants users made on the old one are given to the
-- new one, and kept out of pg_init_privs (where grants made by this script
-- would land), so that pg_dump still dumps them as the users' own.
SELECT pg_catalog.set_config('eventstore_upgrade.create_projection_acl',
	COALESCE((SELECT f.proacl::text FROM pg_catalog.pg_proc f
			  WHERE f.oid = 'eventstore.create_projection(text, regproc, text[], text, integer, text, text)'::pg_catalog.regprocedure),
			 ''),
	true);
DROP FUNCTION eventstore.create_projection(text, regproc, text[], text, integer, text, text);
CREATE FUNCTION eventstore.create_projection(
	name text,
	handler regproc,
	event_types text[] DEFAULT NULL,
	mode text DEFAULT 'async',
	version integer DEFAULT 1,
	on_reset text DEFAULT NULL,
	on_error text DEFAULT 'stop',
	promote text DEFAULT 'manual',
	upcast boolean DEFAULT true,
	backfill text DEFAULT NULL,
	parallel integer DEFAULT 1)
RETURNS void
	LANGUAGE c VOLATILE
	-- no SET search_path: it captures its caller's, then pins the API's
	AS 'MODULE_PATHNAME', 'eventstore_create_projection';
REVOKE ALL ON FUNCTION eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer) FROM PUBLIC;
COMMENT ON FUNCTION eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer) IS 'Register a projection; its handler runs as the calling role and, unless upcast is false, receives events upcast to their type''s latest schema version; backfill is a set-based first build, parallel the stream-hash partitions of a replay';
DO $$
DECLARE
	fn CONSTANT pg_catalog.regprocedure :=
		'eventstore.create_projection(text, regproc, text[], text, integer, text, text, text, boolean, text, integer)';
	initial pg_catalog.aclitem[];
	g record;
BEGIN
	SELECT f.proacl INTO initial FROM pg_catalog.pg_proc f WHERE f.oid = fn;
	FOR g IN
		SELECT a.grantee, a.is_grantable
		FROM pg_catalog.aclexplode(NULLIF(pg_catalog.current_setting('eventstore_upgrade.create_projection_acl'),
										  '')::pg_catalog.aclitem[]) a
		WHERE a.privilege_type = 'EXECUTE'
		  AND a.grantee <> (SELECT f.proowner FROM pg_catalog.pg_proc f WHERE f.oid = fn)
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', fn,
			CASE WHEN g.grantee = 0 THEN 'PUBLIC'
				 ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
			CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
	UPDATE pg_catalog.pg_init_privs SET initprivs = initial
	WHERE objoid = fn AND classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass
	  AND objsubid = 0;
END $$;

-- current_version: the promoted version first (CREATE OR REPLACE keeps its
-- grants).
CREATE OR REPLACE FUNCTION eventstore.current_version(name text)
RETURNS integer
	LANGUAGE sql STABLE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	-- the version of the name's last promotion to a version that still
	-- exists; else (never promoted, or all those dropped) the highest active
	RETURN COALESCE(
		(SELECT p.version FROM eventstore.projection_promotions pr
			JOIN eventstore.projections p ON p.projection_id = pr.projection_id
		 WHERE pr.name = current_version.name
		 ORDER BY pr.promotion_id DESC LIMIT 1),
		(SELECT max(p.version) FROM eventstore.projections p
		 WHERE p.name = current_version.name AND p.status = 'active'));

COMMENT ON FUNCTION eventstore.current_version(text) IS 'The promoted version of a projection; while none is, the highest active one; NULL when neither';

-- Last, in the order of the current schema.
SELECT pg_catalog.pg_extension_config_dump('eventstore.read_models', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.projection_checks', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.projection_promotions', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.projection_promotions_promotion_id_seq', '');

-- What a rebuild applies again (see the current schema): NULL, as for a
-- first build, until the next rebuild.
ALTER TABLE eventstore.projections
	ADD COLUMN replayed_xid xid8,
	ADD COLUMN replayed_position bigint;

-- Whether a projection's handler receives upcast events: true for the
-- existing ones (filled by an UPDATE rather than a default on ADD COLUMN,
-- which would leave a missing value a fresh install does not have).
ALTER TABLE eventstore.projections ADD COLUMN upcast boolean;
ALTER TABLE eventstore.projections ALTER COLUMN upcast SET DEFAULT true;
UPDATE eventstore.projections SET upcast = true;
ALTER TABLE eventstore.projections ALTER COLUMN upcast SET NOT NULL;

-- A projection's set-based first build and the partitions of its replays
-- (see the current schema): none and 1 for the existing ones.
ALTER TABLE eventstore.projections ADD COLUMN backfill text;
ALTER TABLE eventstore.projections ADD COLUMN parallel integer;
ALTER TABLE eventstore.projections ALTER COLUMN parallel SET DEFAULT 1;
UPDATE eventstore.projections SET parallel = 1;
ALTER TABLE eventstore.projections ALTER COLUMN parallel SET NOT NULL;
ALTER TABLE eventstore.projections
	ADD CONSTRAINT projections_parallel_check CHECK (parallel BETWEEN 1 AND 64);
-- When the current build's backfill committed (see the current schema).
ALTER TABLE eventstore.projections ADD COLUMN backfilled_at timestamptz;
-- Whether its build from the start reads the archive too (see the current
-- schema): not for the existing ones.
ALTER TABLE eventstore.projections ADD COLUMN replay_archive boolean;
ALTER TABLE eventstore.projections ALTER COLUMN replay_archive SET DEFAULT false;
UPDATE eventstore.projections SET replay_archive = false;
ALTER TABLE eventstore.projections ALTER COLUMN replay_archive SET NOT NULL;


-- The schema version of each event: a nullable column without a default,
-- which ALTER TABLE adds to the catalog only (no rewrite or scan of the
-- log, whatever its size); events written before it read NULL.
ALTER TABLE eventstore.events ADD COLUMN schema_version integer;

--
-- Event schemas: the registry of each event type's versions
--

-- One row per (event_type, version).  Appends validate an event of a
-- registered type against its latest version; upcast() brings older data
-- to it through each later version's upcaster.  Appends read the registry
-- through a per-backend cache that every change invalidates (the trigger
-- below).  The upcaster, its owner and the registrant are kept by name (a
-- schema-qualified signature, role names), as eventstore.projections
-- keeps its handlers: a restore into another cluster or pg_upgrade keeps
-- every row, and one whose function or role is missing stays, its
-- upcasting failing with an error that names what is missing.
CREATE TABLE eventstore.event_schema_versions (
	event_type		text NOT NULL,
	version			integer NOT NULL CHECK (version >= 1),
	schema			jsonb NOT NULL,
	upcast			text,	-- e.g. app.cart_v2(jsonb); NULL: data as is
	upcast_owner	text,	-- the upcaster's owner at registration
	registered_by	text NOT NULL,	-- a role name: upcasters run as it
	registered_at	timestamptz NOT NULL,
	PRIMARY KEY (event_type, version),
	CHECK (version > 1 OR upcast IS NULL),
	CHECK ((upcast IS NULL) = (upcast_owner IS NULL))
);

-- Every change to the registry, whoever makes it (the API, a restore's
-- COPY, a superuser), invalidates the backends' caches at commit.
CREATE FUNCTION eventstore.event_schemas_changed() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_event_schemas_changed';
CREATE TRIGGER event_schema_versions_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON eventstore.event_schema_versions
	FOR EACH STATEMENT EXECUTE FUNCTION eventstore.event_schemas_changed();
ALTER TABLE eventstore.event_schema_versions
	ENABLE ALWAYS TRIGGER event_schema_versions_changed;
REVOKE ALL ON FUNCTION eventstore.event_schemas_changed() FROM PUBLIC;

-- Not SECURITY DEFINER: the caller is recorded as the registrant, whom the
-- upcaster runs as; the bookkeeping is done as the extension's owner.
CREATE FUNCTION eventstore.register_event_schema(
	event_type text,
	version integer,
	schema jsonb,
	upcast regprocedure DEFAULT NULL)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_register_event_schema';

CREATE FUNCTION eventstore.drop_event_schema(event_type text, version integer)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_drop_event_schema';

-- No SET search_path, which would cost every call (one a row of a read):
-- it pins the API's itself where it looks anything up, and runs upcasters
-- as owner code, which has it too.
CREATE FUNCTION eventstore.upcast(event eventstore.events)
RETURNS eventstore.events
	LANGUAGE c STABLE STRICT
	AS 'MODULE_PATHNAME', 'eventstore_upcast';

-- The registry as users read it: the upcaster as a function (NULL when it
-- is missing), and which version appends validate against.
CREATE VIEW eventstore.event_schemas AS
SELECT s.event_type,
	   s.version,
	   s.version = max(s.version) OVER (PARTITION BY s.event_type) AS latest,
	   s.schema,
	   to_regprocedure(s.upcast) AS upcast,
	   s.upcast AS upcast_signature,
	   to_regrole(s.registered_by) AS registered_by,
	   s.registered_at
FROM eventstore.event_schema_versions s;

-- Who may register, drop and upcast is granted (see README).
REVOKE ALL ON FUNCTION
	eventstore.register_event_schema(text, integer, jsonb, regprocedure),
	eventstore.drop_event_schema(text, integer),
	eventstore.upcast(eventstore.events)
FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('eventstore.event_schema_versions', '');

COMMENT ON COLUMN eventstore.events.schema_version IS 'The version of its type''s registered schema the event was validated against; NULL when its type had none';
COMMENT ON TABLE eventstore.event_schema_versions IS 'Registered JSON Schemas, one row per (event_type, version), with the upcaster from the previous version';
COMMENT ON FUNCTION eventstore.event_schemas_changed() IS 'Invalidate the backends'' caches of the event schema registry';
COMMENT ON FUNCTION eventstore.register_event_schema(text, integer, jsonb, regprocedure) IS 'Register the next version of an event type''s JSON Schema, with the upcaster from the previous version';
COMMENT ON FUNCTION eventstore.drop_event_schema(text, integer) IS 'Remove the latest version of an event type''s schema, when no stored event was written with it';
COMMENT ON FUNCTION eventstore.upcast(eventstore.events) IS 'The event with its data brought to its type''s latest schema version through the upcasters';
COMMENT ON VIEW eventstore.event_schemas IS 'Each registered event schema version, its upcaster and whether appends validate against it';


-- Removal from the log (archival, retention, deletion, redaction) happens
-- only through the maintenance functions, each call recorded here: who,
-- when, what, how many, why.  A row is written when the work starts and
-- finished when it ends, so that work spread over several transactions
-- shows as running (finished_at NULL) with its count so far.
CREATE TABLE eventstore.maintenance_log (
	maintenance_id	bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	action			text NOT NULL,	-- the function or the retention run
	target			text,			-- a stream id, a prefix, a time
	events			bigint NOT NULL DEFAULT 0,
	reason			text,
	performed_by	text NOT NULL,	-- a role name
	started_at		timestamptz NOT NULL,
	finished_at		timestamptz,
	details			jsonb
);
CREATE INDEX maintenance_log_started_at_idx
	ON eventstore.maintenance_log (started_at);
SELECT pg_catalog.pg_extension_config_dump('eventstore.maintenance_log', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.maintenance_log_maintenance_id_seq', '');
COMMENT ON TABLE eventstore.maintenance_log IS 'Every removal from the event log: archival, retention, stream deletion and redaction, with who, when, what, how many and why';


-- The place in log order of every event removed from eventstore.events
-- (archived, removed by retention, or hard-deleted with its stream), so that
-- a cursor or checkpoint at one still resumes where it was.  Its first two
-- columns are those of the log.
CREATE TABLE eventstore.removed_log_places (
	global_position	bigint NOT NULL PRIMARY KEY,
	transaction_id	xid8 NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('eventstore.removed_log_places', '');
COMMENT ON TABLE eventstore.removed_log_places IS 'The log place (transaction_id, global_position) of each event removed from the log, for cursors and checkpoints at it';


COMMENT ON FUNCTION eventstore.refuse_log_change() IS 'Trigger keeping eventstore.events append-only: refuses UPDATE, DELETE and TRUNCATE, except a maintenance function''s own';
COMMENT ON FUNCTION eventstore.take_replicated_event() IS 'Trigger of a subscriber''s log: gives each replicated event this node''s own place in the log order and keeps its stream''s row';
-- The stream-hash partitions of a projection's replay from the start
-- (parallel > 1): partition k applies the events of the streams whose
-- stream_partition(stream_id, parallel) is k, from its own checkpoint;
-- done once it has passed the replay's horizon (replay_until).  The rows
-- exist from the start of the replay until its partitions are joined at
-- the head, when the projection's checkpoint becomes the join point and
-- they are deleted.
CREATE TABLE eventstore.projection_partitions (
	projection_id	integer NOT NULL
		REFERENCES eventstore.projections (projection_id) ON DELETE CASCADE,
	partition		integer NOT NULL CHECK (partition BETWEEN 0 AND 63),
	"position"		bigint NOT NULL DEFAULT 0,
	transaction_id	xid8 NOT NULL DEFAULT '0',
	done			boolean NOT NULL DEFAULT false,
	events_applied	bigint NOT NULL DEFAULT 0,
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	PRIMARY KEY (projection_id, partition)
) WITH (fillfactor = 50);
COMMENT ON TABLE eventstore.projection_partitions IS 'The stream-hash partitions of a parallel replay from the start, each with its checkpoint, until they are joined at the head';
SELECT pg_catalog.pg_extension_config_dump('eventstore.projection_partitions', '');
-- Stream deletion and erasure (README: Retention and erasure).  Not
-- SECURITY DEFINER: the caller is recorded in maintenance_log as who did
-- it; the work is done as the extension's owner.  Nobody may call them
-- until granted.
CREATE FUNCTION eventstore.delete_stream(
	stream_id text,
	hard boolean DEFAULT false,
	expected_revision bigint DEFAULT NULL)
RETURNS bigint
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_delete_stream';

CREATE FUNCTION eventstore.redact_events(
	stream_id text,
	keys text[] DEFAULT NULL,
	reason text DEFAULT NULL)
RETURNS bigint
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_redact_events';

REVOKE ALL ON FUNCTION
	eventstore.delete_stream(text, boolean, bigint),
	eventstore.redact_events(text, text[], text)
FROM PUBLIC;

COMMENT ON FUNCTION eventstore.delete_stream(text, boolean, bigint) IS 'Delete a stream: soft (a tombstone; it reads as deleted and may be re-created, its revisions continuing) or hard (its events removed from the log, its id never used again); returns the events deleted';
COMMENT ON FUNCTION eventstore.redact_events(text, text[], text) IS 'Replace the data of a stream''s events, or only the given top-level keys, with the redaction marker {"$redacted": true}, keeping the envelope; returns the events changed';
COMMENT ON COLUMN eventstore.streams.deleted_revision IS 'delete_stream: the stream''s events up to this revision read as deleted; NULL when never deleted';
COMMENT ON COLUMN eventstore.streams.deleted_at IS 'When delete_stream last deleted the stream';
COMMENT ON COLUMN eventstore.streams.hard_deleted IS 'Deleted for good: its events are removed and its id is never used again (NULL until its first deletion)';
-- The set-based first build (src/projections/backfill.c): a projection's
-- backfill statement reads eventstore.backfill_events(), the events below
-- the read horizon of the snapshot it runs in that the projection takes,
-- upcast as its handler would receive them, in log order.  The function is
-- SQL without SET or SECURITY DEFINER, so that it is inlined into the
-- statement, whose plan then reads the log as directly as an INSERT ...
-- SELECT over eventstore.events; the view reads the log as the extension's
-- owner (the projection's owner needs no privilege on it), and its
-- functions answer only inside a backfill, to the role it runs as (SE020
-- otherwise): so they, the view and the function are granted to PUBLIC.
CREATE FUNCTION eventstore.backfill_horizon()
RETURNS xid8
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'eventstore_backfill_horizon';

CREATE FUNCTION eventstore.backfill_types()
RETURNS text[]
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'eventstore_backfill_types';

CREATE FUNCTION eventstore.backfill_upcasts()
RETURNS boolean
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'eventstore_backfill_upcasts';

CREATE FUNCTION eventstore.backfill_data(event_type text,
										 schema_version integer, data jsonb)
RETURNS jsonb
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'eventstore_backfill_data';

CREATE FUNCTION eventstore.backfill_schema_version(event_type text,
												   schema_version integer)
RETURNS integer
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'eventstore_backfill_schema_version';

-- The one-time filter (a call without columns) refuses outside a backfill
-- before any row is read, also over an empty log; the horizon, the types
-- and whether to upcast are read once (init plans): an event is passed
-- through a function only when it may need upcasting.
CREATE VIEW eventstore.backfill_log WITH (security_barrier) AS
SELECT e.global_position,
	   e.transaction_id,
	   e.stream_id,
	   e.revision,
	   e.event_id,
	   e.event_type,
	   CASE WHEN (SELECT eventstore.backfill_upcasts())
			THEN eventstore.backfill_data(e.event_type, e.schema_version, e.data)
			ELSE e.data END AS data,
	   e.metadata,
	   e.created_at,
	   CASE WHEN (SELECT eventstore.backfill_upcasts())
			THEN eventstore.backfill_schema_version(e.event_type, e.schema_version)
			ELSE e.schema_version END AS schema_version
FROM eventstore.events e
WHERE eventstore.backfill_horizon() IS NOT NULL
  AND e.transaction_id < (SELECT eventstore.backfill_horizon())
  AND ((SELECT eventstore.backfill_types()) IS NULL
	   OR e.event_type = ANY ((SELECT eventstore.backfill_types())::text[]))
ORDER BY e.transaction_id, e.global_position;

CREATE FUNCTION eventstore.backfill_events()
RETURNS SETOF eventstore.events
	LANGUAGE sql STABLE
	AS $$ SELECT * FROM eventstore.backfill_log $$;

GRANT SELECT ON eventstore.backfill_log TO PUBLIC;

COMMENT ON FUNCTION eventstore.backfill_events() IS 'Inside a projection''s backfill statement: the events up to the build''s read horizon that the projection takes, upcast as its handler receives them, in log order';
COMMENT ON VIEW eventstore.backfill_log IS 'What eventstore.backfill_events() returns; readable only inside a projection''s backfill';
COMMENT ON FUNCTION eventstore.backfill_horizon() IS 'Inside a projection''s backfill: the read horizon below which backfill_events() returns events';
COMMENT ON FUNCTION eventstore.backfill_types() IS 'Inside a projection''s backfill: the event types backfill_events() returns (NULL: every type)';
COMMENT ON FUNCTION eventstore.backfill_upcasts() IS 'Inside a projection''s backfill: whether backfill_events() upcasts (the projection upcasts and some type has a schema)';
COMMENT ON FUNCTION eventstore.backfill_data(text, integer, jsonb) IS 'Inside a projection''s backfill: an event''s data as its handler would receive it (upcast unless upcast => false)';
COMMENT ON FUNCTION eventstore.backfill_schema_version(text, integer) IS 'Inside a projection''s backfill: the schema version of the data backfill_data returns';
--
-- Metrics (README: Metrics): one row per metric, Prometheus-style, for
-- postgres_exporter's custom queries (scripts/postgres_exporter.yml)
--

-- The appends and events this database committed since the server started,
-- counted in shared memory at commit (src/worker/append_counts.c).
CREATE FUNCTION eventstore.append_counts(OUT appends bigint, OUT events bigint)
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'eventstore_append_counts';

-- A table's rows as the planner estimates them: its density at the last
-- VACUUM or ANALYZE times its pages now.  Never analyzed (or empty then):
-- counted while at most 10,000, else pg_stat's count of live rows.
CREATE FUNCTION eventstore.estimated_rows(relation regclass)
RETURNS double precision
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	c pg_class;
	counted bigint;
BEGIN
	SELECT * INTO c FROM pg_class r WHERE r.oid = relation;
	IF c.reltuples >= 0 AND c.relpages > 0 THEN
		RETURN round(c.reltuples / c.relpages *
					 (pg_relation_size(relation) / current_setting('block_size')::double precision));
	END IF;
	EXECUTE format('SELECT count(*) FROM (SELECT FROM %s LIMIT 10001) r', relation)
		INTO counted;
	IF counted <= 10000 THEN
		RETURN counted;
	END IF;
	RETURN pg_stat_get_live_tuples(relation);
END
$$;

-- Every metric, as the extension's owner (metrics_rows runs it for the
-- readers of eventstore.metrics): counters from shared memory, sizes as
-- the planner estimates them, positions by index probes, lags by
-- projection_status and processors (log_backlog: never the whole backlog
-- counted).  No error text, handler or event type: only names and numbers.
-- Planned afresh at each call: a plan for any horizon would scan the whole
-- log for the events at or above it.
CREATE FUNCTION eventstore.metrics_of()
RETURNS TABLE (name text, labels jsonb, value double precision, type text,
			   help text)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	SET jit = off
	SET plan_cache_mode = force_custom_plan
	AS $$
DECLARE
	horizon xid8 := eventstore.log_horizon();
BEGIN
	RETURN QUERY
	WITH counts AS (SELECT * FROM eventstore.append_counts()),
	sizes AS (
		SELECT eventstore.estimated_rows('eventstore.events') AS events,
			   eventstore.estimated_rows('eventstore.streams') AS streams),
	log AS (
		SELECT (SELECT max(e.global_position) FROM eventstore.events e) AS head,
			   (SELECT e.global_position FROM eventstore.events e
				WHERE e.transaction_id < horizon
				ORDER BY e.transaction_id DESC, e.global_position DESC
				LIMIT 1) AS readable,
			   (SELECT EXTRACT(epoch FROM h.xact_age)
				FROM eventstore.log_holder() h
				WHERE EXISTS (SELECT FROM eventstore.events e
							  WHERE e.transaction_id >= horizon
							  ORDER BY e.transaction_id LIMIT 1)) AS held),
	status AS (SELECT * FROM eventstore.projection_status)
	SELECT v.name, '{}'::jsonb, v.value, v.type, v.help
	FROM counts, sizes, log,
		LATERAL (VALUES
			('eventstore_appends_total', counts.appends::double precision, 'counter',
			 'Appends that committed events in this database since the server started'),
			('eventstore_events_appended_total', counts.events::double precision, 'counter',
			 'Events those appends committed'),
			('eventstore_events', COALESCE(sizes.events, 0), 'gauge',
			 'Events in the log, as the planner estimates it'),
			('eventstore_streams', COALESCE(sizes.streams, 0), 'gauge',
			 'Streams, as the planner estimates it'),
			('eventstore_log_head_position', COALESCE(log.head, 0)::double precision, 'gauge',
			 'The highest global_position in the log'),
			('eventstore_log_readable_position', COALESCE(log.readable, 0)::double precision, 'gauge',
			 'The global_position of the last event read_all returns now, in log order (the payload of NOTIFY eventstore_events)'),
			('eventstore_log_held_seconds', COALESCE(log.held, 0)::double precision, 'gauge',
			 'How long the running transaction that holds committed events back from readers has run; 0 when none waits'),
			('eventstore_projections_failed',
			 (SELECT count(*) FROM status s WHERE s.status = 'failed')::double precision, 'gauge',
			 'Projections whose status is failed')) v(name, value, type, help)
	UNION ALL
	SELECT v.name,
		   jsonb_build_object('projection', s.name, 'version', s.version::text,
							  'mode', s.mode),
		   v.value, v.type, v.help
	FROM status s,
		LATERAL (VALUES
			('eventstore_projection_lag_events', s.lag_events::double precision, 'gauge',
			 'Events of its types still to apply (exact up to 10,000 log entries past its checkpoint, estimated beyond)'),
			('eventstore_projection_lag_seconds', s.lag_seconds, 'gauge',
			 'Age of the oldest event it has still to apply'),
			('eventstore_projection_skips_pending', s.skips_pending::double precision, 'gauge',
			 'Skipped or parked events not drained yet'),
			('eventstore_projection_dead_letters', s.unresolved_dead_letters::double precision, 'gauge',
			 'Dead letters not yet retried, discarded or rebuilt'),
			('eventstore_projection_parked_events', s.parked_events::double precision, 'gauge',
			 'Events waiting behind the dead letters of parked streams'),
			('eventstore_projection_failed', (s.status = 'failed')::integer::double precision, 'gauge',
			 '1 while the projection is failed, else 0'),
			('eventstore_projection_events_applied_total', s.events_applied::double precision, 'counter',
			 'Events applied by replays, batches and drains since its creation')) v(name, value, type, help)
	UNION ALL
	SELECT v.name,
		   jsonb_build_object('processor', p.processor_id, 'partition', p.partition),
		   v.value, v.type, v.help
	FROM eventstore.processors p,
		LATERAL (VALUES
			('eventstore_processor_lag_events', COALESCE(p.lag_events, 0)::double precision, 'gauge',
			 'Events after its checkpoint (exact up to 10,000 log entries past it, estimated beyond)'),
			('eventstore_processor_lag_seconds', p.lag_seconds, 'gauge',
			 'Age of the oldest event after its checkpoint'),
			('eventstore_processor_running', (p.status = 'running')::integer::double precision, 'gauge',
			 '1 while a live session holds its claim, else 0')) v(name, value, type, help);
END
$$;

-- metrics_of for the roles that may read eventstore.metrics (it checks),
-- as the extension's owner; the view calls it as its reader.
CREATE FUNCTION eventstore.metrics_rows()
RETURNS TABLE (name text, labels jsonb, value double precision, type text,
			   help text)
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'eventstore_metrics_rows';

-- Granted to nobody: GRANT SELECT to the monitoring role (pg_monitor, say).
CREATE VIEW eventstore.metrics AS
SELECT m.name, m.labels, m.value, m.type, m.help
FROM eventstore.metrics_rows() m;

REVOKE ALL ON FUNCTION eventstore.append_counts() FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.metrics_of() FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.estimated_rows(regclass) FROM PUBLIC;
COMMENT ON FUNCTION eventstore.estimated_rows(regclass) IS 'A table''s rows as the planner estimates them (counted while at most 10,000 and never analyzed)';
COMMENT ON FUNCTION eventstore.append_counts() IS 'The appends and events this database committed since the server started';
COMMENT ON FUNCTION eventstore.metrics_of() IS 'The work of metrics_rows, run as the extension''s owner';
COMMENT ON FUNCTION eventstore.metrics_rows() IS 'The rows of eventstore.metrics, for the roles that may read it';
COMMENT ON VIEW eventstore.metrics IS 'One row per metric, Prometheus-style (name, labels, value, counter or gauge, help), for postgres_exporter';


-- Each type's events in log order: a projection or read_all that takes a
-- few types reads them by one scan of this index per type, merged, instead
-- of walking the whole log (src/log/type_scan.c).  Building it here blocks
-- appends for as long as the build takes (README: Upgrading); to avoid
-- that on a large log, build it first with CREATE INDEX CONCURRENTLY under
-- this name and definition: the update then keeps it.
CREATE INDEX IF NOT EXISTS events_type_order_idx
	ON eventstore.events (event_type, transaction_id, global_position);
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_index i
				   WHERE i.indexrelid = 'eventstore.events_type_order_idx'::regclass
				   AND i.indrelid = 'eventstore.events'::regclass
				   AND i.indisvalid AND NOT i.indisunique AND i.indpred IS NULL
				   AND i.indexprs IS NULL
				   AND pg_catalog.pg_get_indexdef(i.indexrelid) =
					   'CREATE INDEX events_type_order_idx ON eventstore.events'
					   ' USING btree (event_type, transaction_id, global_position)')
	THEN
		RAISE EXCEPTION 'index eventstore.events_type_order_idx is not the one pg_eventstore 0.3.0 needs'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'It must be a valid btree index on eventstore.events (event_type, transaction_id, global_position).',
				  HINT = 'Drop it (DROP INDEX CONCURRENTLY eventstore.events_type_order_idx), create it again with that definition or let the update create it, then update again.';
	END IF;
END
$$;

--
-- Archival and retention (README: Retention and erasure)
--

-- Events moved out of the live log by archive_events, with the columns of
-- eventstore.events in the same order, append-only like it: a cursor or
-- checkpoint at an archived event resolves its place here (by the primary
-- key).  Its event ids and stream revisions stay unique; it has no
-- log-order index (each index is paid for by every event archived).
CREATE TABLE eventstore.events_archive (
	global_position	bigint NOT NULL PRIMARY KEY,
	transaction_id	xid8 NOT NULL,
	stream_id		text NOT NULL,
	revision		bigint NOT NULL,
	event_id		uuid NOT NULL CONSTRAINT events_archive_event_id_key UNIQUE,
	event_type		text NOT NULL,
	data			jsonb NOT NULL,
	metadata		jsonb NOT NULL,
	created_at		timestamptz NOT NULL,
	schema_version	integer,
	UNIQUE (stream_id, revision)
);
CREATE TRIGGER events_archive_append_only
	BEFORE UPDATE OR DELETE ON eventstore.events_archive
	FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_log_change();
CREATE TRIGGER events_archive_no_truncate
	BEFORE TRUNCATE ON eventstore.events_archive
	FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_log_change();
ALTER TABLE eventstore.events_archive ENABLE ALWAYS TRIGGER events_archive_append_only;
ALTER TABLE eventstore.events_archive ENABLE ALWAYS TRIGGER events_archive_no_truncate;
SELECT pg_catalog.pg_extension_config_dump('eventstore.events_archive', '');
COMMENT ON TABLE eventstore.events_archive IS 'Events archive_events moved out of the live log, with the columns of eventstore.events; append-only';

-- The retention rules the worker enforces: a stream keeps at most
-- max_count events and none older than max_age (NULL: no bound), under the
-- rule of the longest prefix of its id.
CREATE TABLE eventstore.retention_rules (
	stream_prefix	text PRIMARY KEY,
	max_age			interval CHECK (max_age > interval '0'),
	max_count		bigint CHECK (max_count >= 0),
	set_by			text NOT NULL,	-- a role name
	set_at			timestamptz NOT NULL,
	CHECK (max_age IS NOT NULL OR max_count IS NOT NULL)
);
SELECT pg_catalog.pg_extension_config_dump('eventstore.retention_rules', '');
COMMENT ON TABLE eventstore.retention_rules IS 'Retention per stream-id prefix: at most max_count events and none older than max_age, enforced by the worker';

CREATE FUNCTION eventstore.archive_events(before timestamptz)
RETURNS bigint
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_archive_events';

CREATE FUNCTION eventstore.set_retention(
	stream_prefix text,
	max_age interval DEFAULT NULL,
	max_count bigint DEFAULT NULL)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_set_retention';

CREATE FUNCTION eventstore.run_maintenance(max_events bigint DEFAULT NULL)
RETURNS bigint
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_run_maintenance';

-- Run as their caller (recorded in maintenance_log), doing the work as the
-- extension's owner: for the administrators the owner grants them to.
REVOKE ALL ON FUNCTION
	eventstore.archive_events(timestamptz),
	eventstore.set_retention(text, interval, bigint),
	eventstore.run_maintenance(bigint)
FROM PUBLIC;

COMMENT ON FUNCTION eventstore.archive_events(timestamptz) IS 'Queue the move of the events created before a time into eventstore.events_archive, done in small transactions by the worker (or run_maintenance); returns how many it queued';
COMMENT ON FUNCTION eventstore.set_retention(text, interval, bigint) IS 'Set the retention of streams whose id starts with a prefix (NULL max_age and max_count: remove the rule)';
COMMENT ON FUNCTION eventstore.run_maintenance(bigint) IS 'Do queued archival and a retention pass in the caller''s transaction, as the worker does them in its own; returns the events moved or removed';


-- A rebuild that includes the archive (README: Retention and erasure): its
-- replay from the start reads eventstore.events_archive and the log merged
-- in log order, through this index of the archive's.  Without defaults, so
-- that rebuild_projection(name) and (name, version) stay the other one.
CREATE INDEX events_archive_log_order_idx
	ON eventstore.events_archive (transaction_id, global_position);
CREATE FUNCTION eventstore.rebuild_projection(name text, version integer,
											  include_archive boolean)
RETURNS void
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_rebuild_projection';
REVOKE ALL ON FUNCTION eventstore.rebuild_projection(text, integer, boolean) FROM PUBLIC;
COMMENT ON FUNCTION eventstore.rebuild_projection(text, integer, boolean) IS 'Run on_reset and replay the log from the start into a projection, with include_archive the archived events too (version NULL: every version)';

-- projection_status as the current schema has it (last: it reads the
-- columns and tables added above).
CREATE OR REPLACE VIEW eventstore.projection_status AS
SELECT p.name,
	   p.version,
	   p.mode,
	   p.status,
	   p."position" AS checkpoint,
	   head.global_position AS head,
	   COALESCE(lag.lag_events, 0) AS lag_events,
	   COALESCE(EXTRACT(epoch FROM now() - lag.oldest), 0)::double precision
		   AS lag_seconds,
	   (SELECT count(*) FROM eventstore.projection_skips s
		WHERE s.projection_id = p.projection_id AND s.drained_at IS NULL)
		   AS skips_pending,
	   (SELECT count(*) FROM eventstore.projection_dead_letters d
		WHERE d.projection_id = p.projection_id) AS dead_letters,
	   -- errors, handler and event details: for members of its owner only
	   CASE WHEN who.is_member THEN p.last_error END AS last_error,
	   CASE WHEN who.is_member THEN p.error_position END AS error_position,
	   p.events_applied,
	   -- looked up by name; NULL when missing (the projection then fails)
	   to_regrole(p.owner) AS owner,
	   CASE WHEN who.is_member THEN to_regprocedure(p.handler)::regproc END AS handler,
	   CASE WHEN who.is_member THEN p.event_types END AS event_types,
	   CASE WHEN who.is_member THEN p.on_error END AS on_error,
	   w.worker_pid,
	   COALESCE(w.events_per_second, 0) AS events_per_second,
	   holder.pid AS log_held_by_pid,
	   holder.xact_age AS log_held_for,
	   p.rebuild_started_at,
	   p.caught_up_at,
	   p.updated_at,
	   COALESCE(lag.lag_exact, true) AS lag_exact,
	   lag.rebuild_progress,
	   lag.rebuild_time_left,
	   (SELECT count(*) FROM eventstore.projection_dead_letters d
		WHERE d.projection_id = p.projection_id AND d.resolution IS NULL)
		   AS unresolved_dead_letters,
	   -- on_error = 'park': the streams parked behind a dead letter, and the
	   -- events waiting behind them (among skips_pending)
	   (SELECT count(*) FROM eventstore.projection_skips m
		WHERE m.projection_id = p.projection_id AND m.drained_at IS NULL
		  AND m.dead_letter_id IS NOT NULL) AS parked_streams,
	   (SELECT count(*) FROM eventstore.projection_skips m
		  JOIN eventstore.projection_skips s
			ON s.projection_id = m.projection_id AND s.stream_id = m.stream_id
		   AND s.drained_at IS NULL
		   AND (s.transaction_id, s.global_position) >
			   (m.transaction_id, m.global_position)
		WHERE m.projection_id = p.projection_id AND m.drained_at IS NULL
		  AND m.dead_letter_id IS NOT NULL) AS parked_events,
	   -- checked promotion: promoted is whether this is the name's promoted
	   -- version; promoted_* describe this version's last promotion
	   COALESCE(rm.promote, 'manual') AS promote,
	   COALESCE(promo.projection_id = p.projection_id, false) AS promoted,
	   rm.relation AS read_model,
	   rm.view_name,
	   last_to.promoted_at,
	   last_to.promoted_by,
	   last_to.from_version AS promoted_from,
	   last_to.forced AS promotion_forced,
	   rm.checked_at,
	   CASE WHEN who.is_member THEN rm.checks_passed END AS checks_passed,
	   CASE WHEN who.is_member THEN rm.check_results END AS check_results,
	   CASE WHEN who.is_member THEN rm.promotion_error END AS promotion_error,
	   p.upcast,
	   -- a replay split in stream-hash partitions (parallel): how many, and
	   -- how many have reached the head; NULL when not split
	   part.partitions,
	   part.partitions_done,
	   -- where its build from the start is: backfill (its backfill statement
	   -- is still to run, or running), replay (its handler applies the log),
	   -- live (caught up)
	   CASE WHEN p.caught_up THEN 'live'
			WHEN p.backfill IS NOT NULL AND p.backfilled_at IS NULL THEN 'backfill'
			ELSE 'replay' END AS phase,
	   p.backfilled_at
FROM eventstore.projections p
	-- (an owner role that is missing leaves them to superusers)
	CROSS JOIN LATERAL (SELECT COALESCE(pg_has_role(to_regrole(p.owner), 'MEMBER'),
										current_setting('is_superuser')::boolean)
						AS is_member) who
	CROSS JOIN LATERAL (SELECT max(e.global_position) AS global_position
						FROM eventstore.events e) head
	-- exact up to 10,000 log entries past the checkpoint, estimated beyond
	LEFT JOIN LATERAL eventstore.projection_progress(p.projection_id) lag ON true
	-- it holds the log back when events committed after it are waiting
	LEFT JOIN LATERAL (SELECT h.* FROM eventstore.log_holder() h
					   WHERE EXISTS (SELECT FROM eventstore.events e
									 WHERE e.transaction_id >=
										   eventstore.log_horizon())) holder
		ON true
	LEFT JOIN eventstore.worker_activity() w
		ON w.projection_id = p.projection_id
	LEFT JOIN eventstore.read_models rm
		ON rm.name = p.name AND rm.version = p.version
	LEFT JOIN LATERAL (SELECT pr.projection_id
					   FROM eventstore.projection_promotions pr
						   JOIN eventstore.projections q
						   ON q.projection_id = pr.projection_id
					   WHERE pr.name = p.name
					   ORDER BY pr.promotion_id DESC LIMIT 1) promo ON true
	LEFT JOIN LATERAL (SELECT pr.promoted_at, pr.promoted_by, pr.from_version,
							  pr.forced
					   FROM eventstore.projection_promotions pr
					   WHERE pr.projection_id = p.projection_id
					   ORDER BY pr.promotion_id DESC LIMIT 1) last_to ON true
	LEFT JOIN LATERAL (SELECT count(*)::integer AS partitions,
							  (count(*) FILTER (WHERE q.done))::integer AS partitions_done
					   FROM eventstore.projection_partitions q
					   WHERE q.projection_id = p.projection_id
					   HAVING count(*) > 0) part ON true;
