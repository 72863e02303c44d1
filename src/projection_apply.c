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

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
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
#include "utils/syscache.h"
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

/*
 * Events to hand to handlers: composite datums of eventstore.events, built
 * in place as the elements of an eventstore.events[] array, so a batch
 * handler gets the whole set without another copy.  The buffer is kept
 * across resets: a replay's batches reuse the same memory.
 */
struct EventRows
{
	TupleDesc	desc;			/* eventstore.events' row type */
	int			count;
	int			capacity;
	Size	   *offsets;		/* of each row in buf */
	char	   *buf;			/* an ArrayType: header, then the rows */
	Size		used;
	Size		size;
};

/* Where a one-dimensional array without NULLs keeps its first element. */
#define ROWS_DATA_OFFSET ARR_OVERHEAD_NONULLS(1)

static SPIPlanPtr dead_letter_plan;

static void RecordDeadLetter(Projection *p, EventRows *rows, int i,
							 ErrorData *error);

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
	/* grown on demand: a large batch_size reserves nothing up front */
	rows->capacity = Min(Max(capacity, 1), 4096);
	rows->offsets = palloc(sizeof(Size) * rows->capacity);
	rows->size = ROWS_DATA_OFFSET + (Size) rows->capacity * 256;
	rows->buf = palloc(rows->size);
	rows->used = ROWS_DATA_OFFSET;
	return rows;
}

/* Room for one more row of len bytes, aligned as an array element; returns
 * where it goes. */
static Size
MakeRoom(EventRows *rows, Size len)
{
	Size		at = TYPEALIGN(ALIGNOF_DOUBLE, rows->used);

	if (rows->count == rows->capacity)
	{
		rows->capacity *= 2;
		rows->offsets = repalloc(rows->offsets, sizeof(Size) * rows->capacity);
	}
	if (at + len > rows->size)
	{
		rows->size = Max(rows->size * 2, at + len);
		rows->buf = repalloc_huge(rows->buf, rows->size);
	}
	rows->offsets[rows->count++] = at;
	rows->used = at + len;
	return at;
}

/* Row i as a composite datum (valid until the next row is added). */
static Datum
RowDatum(EventRows *rows, int i)
{
	return PointerGetDatum(rows->buf + rows->offsets[i]);
}

/*
 * Add an event from its column values (an append's, or a scan's).  A
 * composite datum carries no out-of-line values: those are fetched first.
 * The tuple is formed by heap_form_tuple and copied into the buffer; its
 * chunk, freed at once, is the next row's, so no fresh memory is touched.
 */
static void
AddValues(EventRows *rows, Datum *values, bool *nulls)
{
	TupleDesc	desc = rows->desc;
	Datum		flat[EV_NATTS];
	HeapTuple	tuple;
	Size		at;

	for (int i = 0; i < EV_NATTS; i++)
	{
		flat[i] = values[i];
		if (!nulls[i] && TupleDescAttr(desc, i)->attlen == -1 &&
			VARATT_IS_EXTERNAL(DatumGetPointer(values[i])))
			flat[i] = PointerGetDatum(detoast_external_attr((struct varlena *)
															DatumGetPointer(values[i])));
	}
	tuple = heap_form_tuple(desc, flat, nulls);
	at = MakeRoom(rows, tuple->t_len);	/* may move the buffer */
	memcpy(rows->buf + at, tuple->t_data, tuple->t_len);
	heap_freetuple(tuple);
}

/* Add an event read from the log through SPI (eventstore.events' columns). */
void
EventRowsAdd(EventRows *rows, HeapTuple tuple, TupleDesc desc)
{
	Datum		values[EV_NATTS];
	bool		nulls[EV_NATTS];

	if (desc->natts != EV_NATTS)
		elog(ERROR, "a query for event rows must return eventstore.events' columns");
	heap_deform_tuple(tuple, desc, values, nulls);
	AddValues(rows, values, nulls);
}

/* Add an event from the column values an append inserted. */
void
EventRowsAddValues(EventRows *rows, Datum *values)
{
	bool		nulls[EV_NATTS] = {false};

	AddValues(rows, values, nulls);
}

/* A receiver that adds the rows of a query over eventstore.events. */
typedef struct EventRowsReceiver
{
	DestReceiver pub;
	EventRows  *rows;
} EventRowsReceiver;

static bool
ReceiveEventRow(TupleTableSlot *slot, DestReceiver *self)
{
	EventRows  *rows = ((EventRowsReceiver *) self)->rows;

	slot_getallattrs(slot);
	AddValues(rows, slot->tts_values, slot->tts_isnull);
	return true;
}

static void
StartupEventRows(DestReceiver *self, int operation, TupleDesc desc)
{
	if (desc->natts != EV_NATTS)
		elog(ERROR, "a query for event rows must return eventstore.events' columns");
}

static void
ShutdownEventRows(DestReceiver *self)
{
}

static void
DestroyEventRows(DestReceiver *self)
{
	pfree(self);
}

/*
 * A DestReceiver that adds each row it receives to rows: a query's events
 * go straight from the scan into composite datums, with no copy between.
 */
DestReceiver *
EventRowsDest(EventRows *rows)
{
	EventRowsReceiver *r = palloc0(sizeof(EventRowsReceiver));

	r->pub.receiveSlot = ReceiveEventRow;
	r->pub.rStartup = StartupEventRows;
	r->pub.rShutdown = ShutdownEventRows;
	r->pub.rDestroy = DestroyEventRows;
	r->pub.mydest = DestNone;
	r->rows = rows;
	return &r->pub;
}

/* Add a copy of row i of another set. */
void
EventRowsCopy(EventRows *rows, EventRows *from, int i)
{
	Size		len = VARSIZE(DatumGetPointer(RowDatum(from, i)));
	Size		at = MakeRoom(rows, len);

	memcpy(rows->buf + at, from->buf + from->offsets[i], len);
}

int
EventRowsCount(EventRows *rows)
{
	return rows->count;
}

/* Forget the rows, keeping their memory for the next ones. */
void
EventRowsReset(EventRows *rows)
{
	rows->count = 0;
	rows->used = ROWS_DATA_OFFSET;
}

/* Column attno of row i. */
static Datum
RowColumn(EventRows *rows, int i, int attno)
{
	bool		isnull;

	return GetAttributeByNum((HeapTupleHeader) DatumGetPointer(RowDatum(rows, i)),
							 attno, &isnull);
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

/* Does the projection's handler function still exist? */
bool
HandlerExists(Projection *p)
{
	return SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(p->handler));
}

/* The projection's prepared handler call, set up on first use. */
static FmgrInfo *
HandlerCall(Projection *p)
{
	if (p->call == NULL)
	{
		MemoryContext context = GetMemoryChunkContext(p);
		FmgrInfo   *call = MemoryContextAlloc(context, sizeof(FmgrInfo));

		if (!HandlerExists(p))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("the handler of projection \"%s\" version %d no longer exists",
							p->name, p->version),
					 errhint("Create the projection again with an existing handler, or drop it.")));
		fmgr_info_cxt(p->handler, call, context);
		p->call = call;			/* only once it is complete */
	}
	return p->call;
}

/*
 * Enter the owner's context for running its code: its user id, a
 * security-restricted operation, and a GUC nesting level with the API's
 * search_path, so that nothing the code SETs outlives it (LeaveOwnerCode
 * undoes every setting made meanwhile, as REFRESH MATERIALIZED VIEW does).
 */
#define OWNER_CODE_SEARCH_PATH "pg_catalog, pg_temp"

typedef struct OwnerCode
{
	Oid			user;
	int			context;
	int			nestlevel;
} OwnerCode;

static OwnerCode
EnterOwnerCode(Oid owner)
{
	OwnerCode	saved;

	GetUserIdAndSecContext(&saved.user, &saved.context);
	SetUserIdAndSecContext(owner, saved.context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	saved.nestlevel = NewGUCNestLevel();
	/* the API's functions and the worker have it already: the usual case */
	if (strcmp(namespace_search_path, OWNER_CODE_SEARCH_PATH) != 0)
		(void) set_config_option("search_path", OWNER_CODE_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	return saved;
}

static void
LeaveOwnerCode(OwnerCode saved)
{
	AtEOXact_GUC(false, saved.nestlevel);
	SetUserIdAndSecContext(saved.user, saved.context);
}

/*
 * rows[first .. first + count) as an eventstore.events[] datum: the buffer
 * itself, its header filled in, when that is every row; a new array for
 * part of them (a failed batch retried one event at a time).
 */
static Datum
BatchArray(EventRows *rows, int first, int count)
{
	ArrayType  *array = (ArrayType *) rows->buf;
	Datum	   *elems;

	if (rows->used > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a batch of %d events takes more than 1 GB", count),
				 errhint("Lower pg_eventstore.batch_size.")));
	if (first == 0 && count == rows->count)
	{
		SET_VARSIZE(array, rows->used);
		array->ndim = 1;
		array->dataoffset = 0;
		array->elemtype = rows->desc->tdtypeid;
		ARR_DIMS(array)[0] = count;
		ARR_LBOUND(array)[0] = 1;
		return PointerGetDatum(array);
	}
	elems = palloc(sizeof(Datum) * count);
	for (int i = 0; i < count; i++)
		elems[i] = RowDatum(rows, first + i);
	return PointerGetDatum(construct_array(elems, count, rows->desc->tdtypeid,
										   -1, false, TYPALIGN_DOUBLE));
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
	OwnerCode	saved = EnterOwnerCode(p->owner);

	if (p->batch_handler)
		CallVoid(call, BatchArray(rows, first, count));
	else
	{
		for (int i = first; i < first + count; i++)
			CallVoid(call, RowDatum(rows, i));
	}
	LeaveOwnerCode(saved);
}

/*
 * Is this handler error the event's own (a poison event, for on_error to
 * deal with), rather than a cancel, a shutdown, a deadlock, a
 * serialization failure, a lock timeout or a lack of resources, which a
 * later try may not meet?
 */
static bool
IsPoison(ErrorData *error)
{
	int			category = ERRCODE_TO_CATEGORY(error->sqlerrcode);

	return category != ERRCODE_TRANSACTION_ROLLBACK &&
		category != ERRCODE_INSUFFICIENT_RESOURCES &&
		category != ERRCODE_OPERATOR_INTERVENTION &&
		category != ERRCODE_SYSTEM_ERROR &&
		error->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE;
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
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;
		/* not the event's fault: the batch fails and is tried again later */
		if (!IsPoison(error))
			ReThrowError(error);
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
static void
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
	OwnerCode	saved;
	int			rc;

	if (p->on_reset == NULL)
		return;
	saved = EnterOwnerCode(p->owner);
	rc = SPI_execute(p->on_reset, false, 0);
	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("on_reset of projection \"%s\" failed: %s",
						p->name, SPI_result_code_string(rc)),
				 errhint("on_reset is SQL such as TRUNCATE my_schema.my_table, without transaction control.")));
	LeaveOwnerCode(saved);
}
