/*
 * retention/redact.c
 *		redact_events: the right to erasure without holes in the log.
 *
 * The data of a stream's events, or only the given top-level keys of it,
 * is replaced in place by the redaction marker {"$redacted": true}; the
 * envelope stays as it was: position, log key, stream, revision, event id,
 * type, metadata, time and schema version.  The stream's row is locked as
 * an append locks it, so the redaction covers every event appended before
 * it and none is appended meanwhile.  Redacting again changes nothing (an
 * event whose data is redacted already is not rewritten), so a request can
 * be honoured twice.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "core/args.h"
#include "core/catalog.h"
#include "core/kept_plans.h"
#include "core/role.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "log/log.h"
#include "log/log_writer.h"
#include "miscadmin.h"
#include "retention/retention.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(eventstore_redact_events);

static SPIPlanPtr redact_plan;
static SPIPlanPtr redact_archive_plan;

/*
 * The data redacted: the marker, or ($2 given) the data with each of those
 * top-level keys that it has replaced by the marker (data that is not an
 * object has none).
 */
#define REDACTED_DATA \
	"CASE WHEN $2::text[] IS NULL THEN '" REDACTION_MARKER "'::jsonb" \
	" WHEN jsonb_typeof(data) = 'object' THEN COALESCE(data ||" \
	"  (SELECT jsonb_object_agg(k, '" REDACTION_MARKER "'::jsonb)" \
	"   FROM unnest($2::text[]) k WHERE data ? k), data)" \
	" ELSE data END"

/*
 * Is `data` the redaction marker, what redact_events leaves of an event's
 * whole data?  (Upcasters leave it as it is: it is the marker at every
 * version.)
 */
bool
JsonbIsRedactionMarker(Jsonb *data)
{
	static Jsonb *marker = NULL;

	if (!JB_ROOT_IS_OBJECT(data) || JB_ROOT_COUNT(data) != 1)
		return false;
	if (marker == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		marker = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													CStringGetDatum(REDACTION_MARKER)));
		MemoryContextSwitchTo(old);
	}
	return compareJsonbContainers(&data->root, &marker->root) == 0;
}

/* The keys argument: NULL, or a non-empty array without NULL elements. */
static ArrayType *
GetKeys(FunctionCallInfo fcinfo, int argno)
{
	ArrayType  *keys;

	if (PG_ARGISNULL(argno))
		return NULL;
	keys = PG_GETARG_ARRAYTYPE_P(argno);
	if (ArrayGetNItems(ARR_NDIM(keys), ARR_DIMS(keys)) == 0 ||
		array_contains_nulls(keys))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keys must be NULL or a non-empty array of top-level keys without NULLs"),
				 errhint("Pass NULL to redact the whole data of each event, or the keys to redact, for example '{email,address}'.")));
	return keys;
}

/* The maintenance_log details of a redaction: {"keys": [...] or null}. */
static char *
RedactionDetails(ArrayType *keys)
{
	StringInfoData details;
	Datum	   *elems;
	int			nelems;

	initStringInfo(&details);
	appendStringInfoString(&details, "{\"keys\": ");
	if (keys == NULL)
		appendStringInfoString(&details, "null");
	else
	{
		deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL,
						  &nelems);
		appendStringInfoChar(&details, '[');
		for (int i = 0; i < nelems; i++)
		{
			if (i > 0)
				appendStringInfoString(&details, ", ");
			escape_json(&details, TextDatumGetCString(elems[i]));
		}
		appendStringInfoChar(&details, ']');
	}
	appendStringInfoChar(&details, '}');
	return details.data;
}

/*
 * Redact the locked stream's events, in the log and in the archive, whose
 * data is not redacted already (with `keys` NULL: the whole data); returns
 * how many.
 */
static int64
RedactStreamEvents(text *stream_id, ArrayType *keys)
{
	Oid			argtypes[2] = {TEXTOID, TEXTARRAYOID};
	Datum		values[2] = {PointerGetDatum(stream_id), PointerGetDatum(keys)};
	char		nulls[2] = {' ', keys == NULL ? 'n' : ' '};
	LogChange	previous = AllowLogChange(LOG_CHANGE_UPDATE);
	volatile int64 redacted = 0;

	PG_TRY();
	{
		redacted = ExecKeptPlan(KeptPlan(&redact_plan,
										 "UPDATE eventstore.events"
										 " SET data = " REDACTED_DATA
										 " WHERE stream_id = $1"
										 " AND data IS DISTINCT FROM " REDACTED_DATA,
										 2, argtypes),
								values, nulls, false, 0);
		/* and its events archived (archive_events): erased there too */
		redacted += ExecKeptPlan(KeptPlan(&redact_archive_plan,
										  "UPDATE eventstore.events_archive"
										  " SET data = " REDACTED_DATA
										  " WHERE stream_id = $1"
										  " AND data IS DISTINCT FROM " REDACTED_DATA,
										  2, argtypes),
								 values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		RestoreLogChange(previous);
	}
	PG_END_TRY();
	return redacted;
}

/*
 * SQL: redact_events(stream_id, keys, reason) RETURNS bigint, the events
 * whose data it changed.  A soft-deleted stream's events are redacted too
 * (they are still in the log); a stream deleted for good has none left
 * (0).  SE015 when the stream does not exist.  Each call is recorded in
 * maintenance_log, with its reason.
 */
Datum
eventstore_redact_events(PG_FUNCTION_ARGS)
{
	text	   *stream_id = RequireStreamId(fcinfo, 0);
	ArrayType  *keys = GetKeys(fcinfo, 1);
	char	   *reason = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	const char *caller = GetUserNameFromId(GetUserId(), false);
	RoleSwitch	saved;
	LogWriter  *writer;
	int64		revision;
	StreamDeletion deletion;
	int64		maintenance_id;
	int64		redacted = 0;

	saved = BecomeRole(ExtensionOwner());
	writer = LockStreamForMaintenance("redact_events", stream_id, &revision,
									  &deletion);
	ConnectSpi();
	maintenance_id = StartMaintenance("redact_events", text_to_cstring(stream_id),
									  reason, caller);
	if (!deletion.hard)
		redacted = RedactStreamEvents(stream_id, keys);
	FinishMaintenance(maintenance_id, redacted, RedactionDetails(keys));
	/* disconnect first: AFTER triggers fired on close run outside our SPI */
	SPI_finish();
	LogWriterClose(writer);
	RestoreRole(saved);
	PG_RETURN_INT64(redacted);
}
