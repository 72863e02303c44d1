-- pg_eventstore 0.1.0: the event log.
\echo Use "CREATE EXTENSION pg_eventstore" to load this file. \quit

-- The script creates its schema itself, so that CREATE EXTENSION fails
-- rather than move into a schema somebody else made (and owns) beforehand.
CREATE SCHEMA eventstore;

-- Nobody but the API writes the tables; who may append or read is granted.
-- Schema usage alone grants nothing: the API functions are revoked from
-- PUBLIC below and the tables are not granted; see the README for grants.
GRANT USAGE ON SCHEMA eventstore TO PUBLIC;

-- Positions are taken only after an append's concurrency check succeeded,
-- so a losing writer burns none.
CREATE SEQUENCE eventstore.global_position_seq AS bigint;

-- Every append updates its stream's row (a HOT update), and each update
-- prunes the row's page: pages holding few rows prune cheaply, where full
-- ones made every append scan some 130 rows.
CREATE TABLE eventstore.streams (
	stream_id	text PRIMARY KEY,
	revision	bigint NOT NULL,
	created_at	timestamptz NOT NULL,
	updated_at	timestamptz NOT NULL
) WITH (fillfactor = 25);

CREATE TABLE eventstore.events (
	global_position	bigint NOT NULL PRIMARY KEY,
	transaction_id	xid8 NOT NULL,
	stream_id		text NOT NULL,
	revision		bigint NOT NULL,
	event_id		uuid NOT NULL CONSTRAINT events_event_id_key UNIQUE,
	event_type		text NOT NULL,
	data			jsonb NOT NULL,
	metadata		jsonb NOT NULL,
	created_at		timestamptz NOT NULL,
	UNIQUE (stream_id, revision)
);
ALTER SEQUENCE eventstore.global_position_seq
	OWNED BY eventstore.events.global_position;

-- The global log's order: read_all walks this index.
CREATE INDEX events_log_order_idx
	ON eventstore.events (transaction_id, global_position);

-- pg_dump keeps the log and the streams with the extension.
SELECT pg_catalog.pg_extension_config_dump('eventstore.events', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.streams', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.global_position_seq', '');

CREATE TYPE eventstore.append_result AS (
	stream_id				text,
	next_expected_revision	bigint,
	first_position			bigint,
	last_position			bigint,
	transaction_id			xid8
);

-- The log is append-only, for every role: these triggers fire even with
-- session_replication_role = replica.
CREATE FUNCTION eventstore.refuse_log_change() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_refuse_log_change';

CREATE TRIGGER events_append_only
	BEFORE UPDATE OR DELETE ON eventstore.events
	FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_log_change();
CREATE TRIGGER events_no_truncate
	BEFORE TRUNCATE ON eventstore.events
	FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_log_change();
ALTER TABLE eventstore.events ENABLE ALWAYS TRIGGER events_append_only;
ALTER TABLE eventstore.events ENABLE ALWAYS TRIGGER events_no_truncate;

CREATE FUNCTION eventstore.append_to_stream(
	stream_id text,
	events jsonb,
	expected_revision bigint DEFAULT NULL)
RETURNS eventstore.append_result
	LANGUAGE c VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_append_to_stream';

CREATE FUNCTION eventstore.append_event(
	stream_id text,
	event_type text,
	data jsonb,
	metadata jsonb DEFAULT NULL,
	expected_revision bigint DEFAULT NULL,
	event_id uuid DEFAULT NULL)
RETURNS eventstore.append_result
	LANGUAGE c VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_append_event';

CREATE FUNCTION eventstore.read_stream(
	stream_id text,
	from_revision bigint DEFAULT 0,
	max_count integer DEFAULT NULL,
	backwards boolean DEFAULT false)
RETURNS SETOF eventstore.events
	LANGUAGE c STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_read_stream';

CREATE FUNCTION eventstore.read_all(
	after_position bigint DEFAULT NULL,
	max_count integer DEFAULT 1000,
	event_types text[] DEFAULT NULL,
	group_member integer DEFAULT NULL,
	group_size integer DEFAULT NULL)
RETURNS SETOF eventstore.events
	LANGUAGE c STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_read_all';

CREATE FUNCTION eventstore.stream_revision(stream_id text)
RETURNS bigint
	LANGUAGE c STABLE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_stream_revision';

-- The consumer-group partition of a stream: read_all's group_member for
-- stream_id when the log is split into group_size parts.
CREATE FUNCTION eventstore.stream_partition(stream_id text, group_size integer)
RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'eventstore_stream_partition';

CREATE FUNCTION eventstore.uuid_v7()
RETURNS uuid
	LANGUAGE c VOLATILE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'eventstore_uuid_v7';

-- Checkpoints: where each processor (and partition of it) has got to in the
-- global log, compared in log order.  transaction_id is the checkpoint's
-- place in that order, kept so a comparison needs no look-up of its own.
CREATE TYPE eventstore.checkpoint_result AS ENUM
	('stored', 'ignored', 'further', 'older');

-- Every store updates its row (a HOT update): few rows a page keep the
-- prune each update does cheap, as for eventstore.streams.
CREATE TABLE eventstore.checkpoints (
	processor_id	text NOT NULL,
	partition		text NOT NULL,
	"position"		bigint,
	transaction_id	xid8,
	owner_instance	text,
	owner_pid		integer,
	claimed_at		timestamptz,
	updated_at		timestamptz NOT NULL,
	PRIMARY KEY (processor_id, partition)
) WITH (fillfactor = 25);
SELECT pg_catalog.pg_extension_config_dump('eventstore.checkpoints', '');

CREATE FUNCTION eventstore.store_checkpoint(
	processor_id text,
	"position" bigint,
	expected_position bigint,
	partition text DEFAULT 'default')
RETURNS eventstore.checkpoint_result
	LANGUAGE c VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_store_checkpoint';

CREATE FUNCTION eventstore.read_checkpoint(
	processor_id text,
	partition text DEFAULT 'default')
RETURNS bigint
	LANGUAGE c STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_read_checkpoint';

CREATE FUNCTION eventstore.reset_checkpoint(
	processor_id text,
	"position" bigint DEFAULT NULL,
	partition text DEFAULT 'default')
RETURNS void
	LANGUAGE c VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_reset_checkpoint';

-- One live instance per processor: a session-level lock of the extension's
-- own (an advisory lock in pg_locks, objsubid 17747) marks the live owner;
-- the row remembers who claimed it last.
CREATE FUNCTION eventstore.claim_processor(
	processor_id text,
	instance_id text,
	partition text DEFAULT 'default')
RETURNS boolean
	LANGUAGE c VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_claim_processor';

CREATE FUNCTION eventstore.release_processor(
	processor_id text,
	instance_id text,
	partition text DEFAULT 'default')
RETURNS boolean
	LANGUAGE c VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'eventstore_release_processor';

-- The claim's lock key as pg_locks shows it: (classid << 32) | objid.
CREATE FUNCTION eventstore.processor_claim_key(
	processor_id text,
	partition text DEFAULT 'default')
RETURNS bigint
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'eventstore_processor_claim_key';

-- status: 'running' while a live session holds the claim, 'stale' when the
-- row names an owner whose session ended without releasing (a crash, say),
-- 'idle' otherwise.
CREATE VIEW eventstore.processors AS
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
	   c.updated_at
FROM eventstore.checkpoints c
	LEFT JOIN (SELECT l.pid,
					  (l.classid::bigint << 32) | l.objid::bigint AS claim_key
			   FROM pg_catalog.pg_locks l
			   WHERE l.locktype = 'advisory' AND l.objsubid = 17747
				 AND l.granted
				 AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
								   WHERE d.datname = pg_catalog.current_database())) live
		ON live.claim_key = eventstore.processor_claim_key(c.processor_id, c.partition);

-- Who may append and read is granted on these functions (see README).
REVOKE ALL ON FUNCTION
	eventstore.append_to_stream(text, jsonb, bigint),
	eventstore.append_event(text, text, jsonb, jsonb, bigint, uuid),
	eventstore.read_stream(text, bigint, integer, boolean),
	eventstore.read_all(bigint, integer, text[], integer, integer),
	eventstore.stream_revision(text),
	eventstore.refuse_log_change(),
	eventstore.store_checkpoint(text, bigint, bigint, text),
	eventstore.read_checkpoint(text, text),
	eventstore.reset_checkpoint(text, bigint, text),
	eventstore.claim_processor(text, text, text),
	eventstore.release_processor(text, text, text)
FROM PUBLIC;

COMMENT ON TABLE eventstore.events IS 'The append-only event log: one row per event';
COMMENT ON TABLE eventstore.streams IS 'One row per stream, with the revision of its last event';
COMMENT ON FUNCTION eventstore.append_to_stream(text, jsonb, bigint) IS 'Append a batch of events to a stream, with an optional expected revision';
COMMENT ON FUNCTION eventstore.append_event(text, text, jsonb, jsonb, bigint, uuid) IS 'Append one event to a stream, with an optional expected revision';
COMMENT ON FUNCTION eventstore.read_stream(text, bigint, integer, boolean) IS 'Read a stream''s events by revision, forwards or backwards';
COMMENT ON FUNCTION eventstore.read_all(bigint, integer, text[], integer, integer) IS 'Read the global log after a position, never skipping a late-committing transaction';
COMMENT ON FUNCTION eventstore.stream_revision(text) IS 'The revision of a stream''s last event, NULL when the stream does not exist';
COMMENT ON FUNCTION eventstore.stream_partition(text, integer) IS 'The consumer-group member that reads a stream when the log is split in group_size parts';
COMMENT ON FUNCTION eventstore.uuid_v7() IS 'A new time-ordered UUID (RFC 9562 version 7)';
COMMENT ON TABLE eventstore.checkpoints IS 'Where each processor and partition has got to in the global log, and who claimed it';
COMMENT ON VIEW eventstore.processors IS 'Each processor''s checkpoint, owner and whether a live session holds it';
COMMENT ON FUNCTION eventstore.store_checkpoint(text, bigint, bigint, text) IS 'Store a checkpoint if the stored one is the expected one, comparing in log order';
COMMENT ON FUNCTION eventstore.read_checkpoint(text, text) IS 'The stored checkpoint, NULL when none';
COMMENT ON FUNCTION eventstore.reset_checkpoint(text, bigint, text) IS 'Set a checkpoint unconditionally (NULL: back to the start)';
COMMENT ON FUNCTION eventstore.claim_processor(text, text, text) IS 'Claim a processor for this session; false while another live session holds it';
COMMENT ON FUNCTION eventstore.release_processor(text, text, text) IS 'Release a processor this session holds for instance_id';
COMMENT ON FUNCTION eventstore.processor_claim_key(text, text) IS 'The lock key of a processor''s claim, as pg_locks shows it: (classid << 32) | objid';
