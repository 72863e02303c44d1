/*
 * core/catalog.h
 *		Facts about the extension's own objects, each written once: the
 *		schema, the search_path its SQL functions pin, the column numbers of
 *		every table, and the words its tables use for statuses and modes.
 *
 * The column numbers follow the current schema (sql/pg_eventstore.sql).
 * The table writer and the event rows check a table's column count against
 * *_NATTS when they open it, so a layout this library does not know is an
 * error, never a misread; queries read by number only what they select in
 * the table's own order (SELECT *, or PROJECTIONS_COLUMN_LIST).
 */
#ifndef ES_CATALOG_H
#define ES_CATALOG_H

/* The schema the install script creates and every object lives in. */
#define EVENTSTORE_SCHEMA "eventstore"

/*
 * The search_path every API function pins, and that owner code and the
 * workers run with: nothing of a caller's schemas is found by accident.
 */
#define API_SEARCH_PATH "pg_catalog, pg_temp"

/* eventstore.streams */
enum
{
	STREAMS_STREAM_ID = 1,
	STREAMS_REVISION,
	STREAMS_CREATED_AT,
	STREAMS_UPDATED_AT,
	STREAMS_TRANSACTION_ID,		/* since 0.3.0: its last event's log key */
	STREAMS_DELETED_REVISION,	/* since 0.3.0: delete_stream's tombstone */
	STREAMS_DELETED_AT,			/* since 0.3.0 */
	STREAMS_HARD_DELETED,		/* since 0.3.0 */
	STREAMS_NATTS = STREAMS_HARD_DELETED
};

/* eventstore.events, also the composite type handlers receive */
enum
{
	EVENTS_GLOBAL_POSITION = 1,
	EVENTS_TRANSACTION_ID,
	EVENTS_STREAM_ID,
	EVENTS_REVISION,
	EVENTS_EVENT_ID,
	EVENTS_EVENT_TYPE,
	EVENTS_DATA,
	EVENTS_METADATA,
	EVENTS_CREATED_AT,
	EVENTS_SCHEMA_VERSION,		/* since 0.3.0 */
	EVENTS_NATTS = EVENTS_SCHEMA_VERSION
};

/* eventstore.checkpoints */
enum
{
	CHECKPOINTS_PROCESSOR_ID = 1,
	CHECKPOINTS_PARTITION,
	CHECKPOINTS_POSITION,
	CHECKPOINTS_TRANSACTION_ID,
	CHECKPOINTS_OWNER_INSTANCE,
	CHECKPOINTS_OWNER_PID,
	CHECKPOINTS_CLAIMED_AT,
	CHECKPOINTS_UPDATED_AT,
	CHECKPOINTS_OWNER,			/* since 0.3.0 */
	CHECKPOINTS_NATTS = CHECKPOINTS_OWNER
};

/* eventstore.projections, the registry */
enum
{
	PROJECTIONS_PROJECTION_ID = 1,
	PROJECTIONS_NAME,
	PROJECTIONS_VERSION,
	PROJECTIONS_HANDLER,
	PROJECTIONS_BATCH_HANDLER,
	PROJECTIONS_EVENT_TYPES,
	PROJECTIONS_MODE,
	PROJECTIONS_ON_RESET,
	PROJECTIONS_ON_ERROR,
	PROJECTIONS_OWNER,
	PROJECTIONS_STATUS,
	PROJECTIONS_CAUGHT_UP,
	PROJECTIONS_REPLAY_UNTIL,
	PROJECTIONS_POSITION,
	PROJECTIONS_TRANSACTION_ID,
	PROJECTIONS_EVENTS_APPLIED,
	PROJECTIONS_LAST_ERROR,
	PROJECTIONS_ERROR_SQLSTATE,
	PROJECTIONS_ERROR_POSITION,
	PROJECTIONS_ERROR_EVENT_ID,
	PROJECTIONS_FAILED_AT,
	PROJECTIONS_REBUILD_STARTED_AT,
	PROJECTIONS_CAUGHT_UP_AT,
	PROJECTIONS_CREATED_AT,
	PROJECTIONS_UPDATED_AT,
	PROJECTIONS_HANDLER_OWNER,	/* since 0.3.0 */
	PROJECTIONS_SETTINGS,		/* since 0.3.0 */
	PROJECTIONS_REPLAYED_XID,	/* since 0.3.0 */
	PROJECTIONS_REPLAYED_POSITION,	/* since 0.3.0 */
	PROJECTIONS_UPCAST,			/* since 0.3.0 */
	PROJECTIONS_BACKFILL,		/* since 0.3.0 */
	PROJECTIONS_PARALLEL,		/* since 0.3.0 */
	PROJECTIONS_BACKFILLED_AT,	/* since 0.3.0 */
	PROJECTIONS_REPLAY_ARCHIVE,	/* since 0.3.0 */
	PROJECTIONS_NATTS = PROJECTIONS_REPLAY_ARCHIVE
};

/*
 * The registry's columns in that order, for reads that must not depend on
 * columns a later version adds (a backend still running an older library
 * after ALTER EXTENSION UPDATE reads the new table).  A 0.2.0 registry, which
 * this library reads until ALTER EXTENSION UPDATE, has no handler_owner,
 * settings, replayed_xid, replayed_position, upcast, backfill, parallel,
 * backfilled_at or replay_archive:
 * PROJECTIONS_COLUMN_LIST_0_2
 * reads them as NULL (upcast as true: a 0.2.0 log has no schemas anyway).
 */
#define PROJECTIONS_COMMON_COLUMNS \
	"projection_id, name, version, handler, batch_handler, event_types, mode," \
	" on_reset, on_error, owner, status, caught_up, replay_until," \
	" \"position\", transaction_id, events_applied, last_error," \
	" error_sqlstate, error_position, error_event_id, failed_at," \
	" rebuild_started_at, caught_up_at, created_at, updated_at"
#define PROJECTIONS_COLUMN_LIST PROJECTIONS_COMMON_COLUMNS \
	", handler_owner, settings, replayed_xid, replayed_position, upcast," \
	" backfill, parallel, backfilled_at, replay_archive"
#define PROJECTIONS_COLUMN_LIST_0_2 PROJECTIONS_COMMON_COLUMNS \
	", NULL::text, NULL::text[], NULL::xid8, NULL::bigint, true," \
	" NULL::text, 1, NULL::timestamptz, false"

/* eventstore.projection_skips */
enum
{
	SKIPS_PROJECTION_ID = 1,
	SKIPS_GLOBAL_POSITION,
	SKIPS_TRANSACTION_ID,
	SKIPS_SKIPPED_AT,
	SKIPS_DRAINED_AT,
	SKIPS_OUTCOME,
	SKIPS_STREAM_ID,			/* since 0.3.0 */
	SKIPS_PARKED,				/* since 0.3.0 */
	SKIPS_DEAD_LETTER_ID,		/* since 0.3.0 */
	SKIPS_NATTS = SKIPS_DEAD_LETTER_ID
};

/* eventstore.projection_dead_letters */
enum
{
	DEAD_LETTERS_DEAD_LETTER_ID = 1,
	DEAD_LETTERS_PROJECTION_ID,
	DEAD_LETTERS_GLOBAL_POSITION,
	DEAD_LETTERS_EVENT_ID,
	DEAD_LETTERS_STREAM_ID,
	DEAD_LETTERS_EVENT_TYPE,
	DEAD_LETTERS_ERROR_SQLSTATE,
	DEAD_LETTERS_ERROR_MESSAGE,
	DEAD_LETTERS_ERROR_DETAIL,
	DEAD_LETTERS_ERROR_CONTEXT,
	DEAD_LETTERS_FAILED_AT,
	DEAD_LETTERS_RESOLUTION,	/* since 0.3.0 */
	DEAD_LETTERS_RESOLVED_BY,	/* since 0.3.0 */
	DEAD_LETTERS_RESOLVED_AT,	/* since 0.3.0 */
	DEAD_LETTERS_NATTS = DEAD_LETTERS_RESOLVED_AT
};

/*
 * The words of eventstore.projections and projection_skips, as string
 * literals, so that SQL text can be assembled from them at compile time:
 * "status = '" STATUS_ACTIVE "'".
 */
#define STATUS_ACTIVE			"active"
#define STATUS_REBUILDING		"rebuilding"
#define STATUS_FAILED			"failed"
#define STATUS_STOPPED			"stopped"
#define MODE_ASYNC				"async"
#define MODE_INLINE				"inline"
#define ON_ERROR_STOP			"stop"
#define ON_ERROR_SKIP			"skip"
#define ON_ERROR_PARK			"park"
#define SKIP_OUTCOME_APPLIED	"applied"
#define SKIP_OUTCOME_ALREADY	"already applied"
#define SKIP_OUTCOME_DISCARDED	"discarded"
#define SKIP_OUTCOME_REBUILT	"rebuilt"
#define RESOLUTION_RETRIED		"retried"
#define RESOLUTION_DISCARDED	"discarded"
#define RESOLUTION_REBUILT		"rebuilt"
#define PROMOTE_MANUAL			"manual"
#define PROMOTE_AUTO			"auto"

/* The status of a projection, as eventstore.projections.status spells it. */
typedef enum ProjectionStatus
{
	PROJECTION_ACTIVE,
	PROJECTION_REBUILDING,
	PROJECTION_FAILED,
	PROJECTION_STOPPED
} ProjectionStatus;

/* The OID of relation eventstore.<name>; the extension must exist. */
extern Oid	EventstoreRelid(const char *name);

/* The role that owns the extension's tables, and so its bookkeeping. */
extern Oid	ExtensionOwner(void);

/*
 * eventstore.<name> (eventstore.projections), or InvalidOid when the
 * database has none: an older version of the extension, or none at all.
 */
extern Oid	OptionalEventstoreRelid(const char *name);
extern Oid	RegistryRelid(void);

/*
 * Is the extension installed in this database at a version with a
 * projection registry?  (For the workers, which serve databases that may
 * have none, or an older one.)
 */
extern bool RegistryExists(void);

#endif							/* ES_CATALOG_H */
