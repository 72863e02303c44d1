/*
 * projection_apply.c
 *		Calling a projection's handler on events, as the projection's owner,
 *		and isolating a failing event so the good ones around it stay
 *		applied.
 *
 * Handlers are called through the function manager with a call prepared
 * once per projection, never through SQL text.  They run with the user id
 * of the role that created the projection, in a security-restricted
 * operation (as maintenance commands run a table owner's code): no SET
 * ROLE, no temporary objects left behind in the caller's session.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pg_eventstore.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/typcache.h"

/* Column numbers of eventstore.events. */
enum
{
	EV_GLOBAL_POSITION = 1,
	EV_TRANSACTION_ID,
	EV_STREAM_ID,
	EV_REVISION,
	EV_EVENT_ID,
	EV_EVENT_TYPE,
	EV_DATA,
	EV_METADATA,
	EV_CREATED_AT,
	EV_NATTS = EV_CREATED_AT
};

/* Events to hand to handlers: composite datums of eventstore.events. */
struct EventRows
{
	TupleDesc	desc;			/* eventstore.events' row type */
	int			count;
	int			capacity;
	Datum	   *rows;
	MemoryContext context;
};

static SPIPlanPtr dead_letter_plan;

/*
 * The row type of eventstore.events, kept for the life of the backend: the
 * extension's table never changes shape, and a re-created extension comes
 * with a new type oid.
 */
static TupleDesc
EventsRowDesc(void)
{
	static TupleDesc desc = NULL;
	Oid			rowtype = get_rel_type_id(EventstoreRelid("events"));

	if (desc == NULL || desc->tdtypeid != rowtype)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		TupleDesc	fresh = lookup_rowtype_tupdesc_copy(rowtype, -1);

		MemoryContextSwitchTo(old);
		if (fresh->natts != EV_NATTS)
			elog(ERROR, "eventstore.events does not have the %d columns this library reads",
				 EV_NATTS);
		if (desc != NULL)
			FreeTupleDesc(desc);
		desc = fresh;
	}
	return desc;
}

/* An empty set of event rows, allocated in the current memory context. */
EventRows *
EventRowsCreate(int capacity)
{
	EventRows  *rows = palloc(sizeof(EventRows));

	rows->desc = EventsRowDesc();
	rows->count = 0;
	rows->capacity = Max(capacity, 1);
	rows->rows = palloc(sizeof(Datum) * rows->capacity);
	rows->context = CurrentMemoryContext;
	return rows;
}

/* Make room for one more row. */
static void
EnsureRoom(EventRows *rows)
{
	if (rows->count < rows->capacity)
		return;
	rows->capacity *= 2;
	rows->rows = repalloc(rows->rows, sizeof(Datum) * rows->capacity);
}

/* Add an event read from the log (a tuple of eventstore.events' layout). */
void
EventRowsAdd(EventRows *rows, HeapTuple tuple)
{
	MemoryContext old = MemoryContextSwitchTo(rows->context);

	EnsureRoom(rows);
	/* a composite datum carries its row type and no out-of-line values */
	rows->rows[rows->count++] = heap_copy_tuple_as_datum(tuple, rows->desc);
	MemoryContextSwitchTo(old);
}

/* Add an event from the column values an append inserted. */
void
EventRowsAddValues(EventRows *rows, Datum *values)
{
	MemoryContext old = MemoryContextSwitchTo(rows->context);
	bool		nulls[EV_NATTS] = {false};
	HeapTuple	tuple = heap_form_tuple(rows->desc, values, nulls);

	EnsureRoom(rows);
	rows->rows[rows->count++] = HeapTupleGetDatum(tuple);
	MemoryContextSwitchTo(old);
}

/* Add row i of another set (sharing its memory). */
void
EventRowsCopy(EventRows *rows, EventRows *from, int i)
{
	EnsureRoom(rows);
	rows->rows[rows->count++] = from->rows[i];
}

int
EventRowsCount(EventRows *rows)
{
	return rows->count;
}

/* Forget the rows (their memory goes with the context's next reset). */
void
EventRowsReset(EventRows *rows)
{
	rows->count = 0;
}

/* Column attno of row i. */
static Datum
RowColumn(EventRows *rows, int i, int attno)
{
	bool		isnull;

	return GetAttributeByNum(DatumGetHeapTupleHeader(rows->rows[i]), attno,
							 &isnull);
}

int64
EventRowsPosition(EventRows *rows, int i)
{
	return DatumGetInt64(RowColumn(rows, i, EV_GLOBAL_POSITION));
}

/* Row i's place in log order. */
LogPlace
EventRowsPlace(EventRows *rows, int i)
{
	LogPlace	place;

	place.position = EventRowsPosition(rows, i);
	place.xid = DatumGetFullTransactionId(RowColumn(rows, i, EV_TRANSACTION_ID));
	return place;
}

/* Row i's event type, for matching against a projection's types. */
text *
EventRowsType(EventRows *rows, int i)
{
	return DatumGetTextPP(RowColumn(rows, i, EV_EVENT_TYPE));
}

/* The projection's prepared handler call, set up on first use. */
static FmgrInfo *
HandlerCall(Projection *p)
{
	if (p->call == NULL)
	{
		MemoryContext context = GetMemoryChunkContext(p);

		p->call = MemoryContextAlloc(context, sizeof(FmgrInfo));
		fmgr_info_cxt(p->handler, p->call, context);
	}
	return p->call;
}

/* Call a function of one argument returning void (NULL or not). */
static void
CallVoid(FmgrInfo *call, Datum arg)
{
	LOCAL_FCINFO(fcinfo, 1);

	InitFunctionCallInfoData(*fcinfo, call, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = arg;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
}

/*
 * Call the handler on rows[first .. first + count), as the projection's
 * owner: once per event, or once with them all for a batch handler.
 */
static void
CallHandler(Projection *p, EventRows *rows, int first, int count)
{
	FmgrInfo   *call = HandlerCall(p);
	Oid			saved_user;
	int			saved_context;

	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(p->owner, saved_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (p->batch_handler)
	{
		ArrayType  *batch = construct_array(&rows->rows[first], count,
											rows->desc->tdtypeid, -1, false,
											TYPALIGN_DOUBLE);

		CallVoid(call, PointerGetDatum(batch));
		pfree(batch);
	}
	else
	{
		for (int i = first; i < first + count; i++)
			CallVoid(call, rows->rows[i]);
	}
	SetUserIdAndSecContext(saved_user, saved_context);
}

/*
 * Call the handler on rows[first .. first + count) in a subtransaction of
 * its own; returns NULL when it succeeded, else the error, with whatever
 * the handler did rolled back.
 */
static ErrorData *
TryCallHandler(Projection *p, EventRows *rows, int first, int count)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile error = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		CallHandler(p, rows, first, count);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
	return error;
}

/*
 * Apply rows[first .. first + count) to the projection.  Without isolate,
 * a handler error is raised to the caller.  With it, the events are tried
 * together in one subtransaction, and if that fails one by one: under
 * on_error = 'skip' a failing event becomes a dead letter and the others
 * are applied; under 'stop' the events before the failing one stay applied
 * and *error is set.  Returns how many events were dealt with (applied or
 * dead-lettered), counted from first.
 */
int
ApplyEvents(Projection *p, EventRows *rows, int first, int count,
			bool isolate, ErrorData **error)
{
	*error = NULL;
	if (count == 0)
		return 0;
	if (!isolate)
	{
		CallHandler(p, rows, first, count);
		return count;
	}
	if ((*error = TryCallHandler(p, rows, first, count)) == NULL)
		return count;
	if (count == 1)
	{
		if (!p->skip_errors)
			return 0;
		RecordDeadLetter(p, rows, first, *error);
		FreeErrorData(*error);
		*error = NULL;
		return 1;
	}

	/* the common path failed: find the poison event(s) one at a time */
	FreeErrorData(*error);
	*error = NULL;
	for (int i = first; i < first + count; i++)
	{
		ErrorData  *failure = TryCallHandler(p, rows, i, 1);

		if (failure == NULL)
			continue;
		if (!p->skip_errors)
		{
			*error = failure;
			return i - first;
		}
		RecordDeadLetter(p, rows, i, failure);
		FreeErrorData(failure);
	}
	return count;
}

/* Record row i as a dead letter of the projection, with its error. */
void
RecordDeadLetter(Projection *p, EventRows *rows, int i, ErrorData *error)
{
	Oid			argtypes[10] = {INT4OID, INT8OID, UUIDOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = Int32GetDatum(p->id);
	values[1] = RowColumn(rows, i, EV_GLOBAL_POSITION);
	values[2] = RowColumn(rows, i, EV_EVENT_ID);
	values[3] = RowColumn(rows, i, EV_STREAM_ID);
	values[4] = RowColumn(rows, i, EV_EVENT_TYPE);
	values[5] = CStringGetTextDatum(unpack_sql_state(error->sqlerrcode));
	values[6] = CStringGetTextDatum(error->message ? error->message : "unknown error");
	values[7] = error->detail ? CStringGetTextDatum(error->detail) : (Datum) 0;
	nulls[7] = error->detail ? ' ' : 'n';
	values[8] = error->context ? CStringGetTextDatum(error->context) : (Datum) 0;
	nulls[8] = error->context ? ' ' : 'n';
	values[9] = TimestampTzGetDatum(GetCurrentTimestamp());

	ExecKeptPlan(KeptPlan(&dead_letter_plan,
						  "INSERT INTO eventstore.projection_dead_letters"
						  " (projection_id, global_position, event_id, stream_id,"
						  "  event_type, error_sqlstate, error_message,"
						  "  error_detail, error_context, failed_at)"
						  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
						  10, argtypes),
				 values, nulls, false, 0);
}

/* Row i's event id, for a failure record. */
pg_uuid_t *
EventRowsId(EventRows *rows, int i)
{
	return DatumGetUUIDP(RowColumn(rows, i, EV_EVENT_ID));
}

/*
 * Run the projection's on_reset SQL as its owner, in a security-restricted
 * operation like its handler.  The caller is connected to SPI.
 */
void
RunOnReset(Projection *p)
{
	Oid			saved_user;
	int			saved_context;
	int			rc;

	if (p->on_reset == NULL)
		return;
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(p->owner, saved_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	rc = SPI_execute(p->on_reset, false, 0);
	if (rc < 0)
		elog(ERROR, "on_reset of projection \"%s\" failed: %s",
			 p->name, SPI_result_code_string(rc));
	SetUserIdAndSecContext(saved_user, saved_context);
}
