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
	LANGUAGE c VOLATILE STRICT
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_create_log_publication';

CREATE FUNCTION eventstore.set_subscriber_mode(enabled boolean)
RETURNS void
	LANGUAGE c VOLATILE STRICT
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
	   p.updated_at
FROM eventstore.projections p
	-- (an owner role that is missing leaves them to superusers)
	CROSS JOIN LATERAL (SELECT COALESCE(pg_has_role(to_regrole(p.owner), 'MEMBER'),
										current_setting('is_superuser')::boolean)
						AS is_member) who
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
									 WHERE e.transaction_id >=
										   eventstore.log_horizon())) holder
		ON true
	LEFT JOIN eventstore.worker_activity() w
		ON w.projection_id = p.projection_id;

-- Every processor belongs to a role (see the current schema); rows from
-- before 0.3.0 have none until the first store, reset or claim.  The
-- checkpoint functions learn their caller: no longer SECURITY DEFINER.
ALTER TABLE eventstore.checkpoints ADD COLUMN owner text;
ALTER FUNCTION eventstore.store_checkpoint(text, bigint, bigint, text) SECURITY INVOKER;
ALTER FUNCTION eventstore.read_checkpoint(text, text) SECURITY INVOKER;
ALTER FUNCTION eventstore.reset_checkpoint(text, bigint, text) SECURITY INVOKER;
ALTER FUNCTION eventstore.claim_processor(text, text, text) SECURITY INVOKER;
ALTER FUNCTION eventstore.release_processor(text, text, text) SECURITY INVOKER;
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
	   c.owner AS owner_role
FROM eventstore.checkpoints c
	LEFT JOIN (SELECT l.pid,
					  (l.classid::bigint << 32) | l.objid::bigint AS claim_key
			   FROM pg_catalog.pg_locks l
			   WHERE l.locktype = 'advisory' AND l.objsubid = 17747
				 AND l.granted
				 AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
								   WHERE d.datname = pg_catalog.current_database())) live
		ON live.claim_key = eventstore.processor_claim_key(c.processor_id, c.partition);

-- A skip knows its stream (see the current schema): those still pending
-- get theirs from the log, which keeps each stream's order through drains.
ALTER TABLE eventstore.projection_skips ADD COLUMN stream_id text;
UPDATE eventstore.projection_skips k SET stream_id = e.stream_id
FROM eventstore.events e
WHERE e.global_position = k.global_position AND k.drained_at IS NULL;
CREATE INDEX projection_skips_stream_idx
	ON eventstore.projection_skips (projection_id, stream_id)
	WHERE drained_at IS NULL;

-- A stream's row keeps the key of its last event (see the current schema);
-- rows from before stay NULL until their next append, which looks it up in
-- the log once: nothing is rewritten here.
ALTER TABLE eventstore.streams ADD COLUMN transaction_id xid8;


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
