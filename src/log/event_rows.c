/*
 * log/event_rows.c
 *		Events as composite datums of eventstore.events, built in place as
 *		the elements of an eventstore.events[] array: the rows an append
 *		hands to inline projections, and the batches a replay reads.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "core/catalog.h"
#include "funcapi.h"
#include "log/event_rows.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"
#include "utils/xid8.h"

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

/*
 * The row type of eventstore.events, kept for the life of the backend
 * until it changes: a re-created extension comes with a new type oid, and
 * the update to 0.3.0 adds a column to the same type (the type cache's
 * identifier of its descriptor tells).
 */
static TupleDesc
EventsRowDesc(void)
{
	static TupleDesc desc = NULL;
	static uint64 desc_identifier = 0;
	Oid			rowtype = get_rel_type_id(EventstoreRelid("events"));
	TypeCacheEntry *type = lookup_type_cache(rowtype, TYPECACHE_TUPDESC);

	if (desc == NULL || desc->tdtypeid != rowtype ||
		desc_identifier != type->tupDesc_identifier)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		TupleDesc	fresh = lookup_rowtype_tupdesc_copy(rowtype, -1);

		MemoryContextSwitchTo(old);
		/*
		 * a table before 0.3.0, which this library serves until the update,
		 * has no schema_version
		 */
		if (fresh->natts != EVENTS_NATTS && fresh->natts != EVENTS_SCHEMA_VERSION - 1)
			elog(ERROR, EVENTSTORE_SCHEMA ".events does not have the %d columns this library reads",
				 EVENTS_NATTS);
		if (desc != NULL)
			FreeTupleDesc(desc);
		desc = fresh;
		desc_identifier = type->tupDesc_identifier;
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
Datum
EventRowsDatum(EventRows *rows, int i)
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
	Datum		flat[EVENTS_NATTS];
	HeapTuple	tuple;
	Size		at;

	for (int i = 0; i < desc->natts; i++)
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
	Datum		values[EVENTS_NATTS];
	bool		nulls[EVENTS_NATTS];

	if (desc->natts != rows->desc->natts)
		elog(ERROR, "a query for event rows must return eventstore.events' columns");
	heap_deform_tuple(tuple, desc, values, nulls);
	AddValues(rows, values, nulls);
}

/* Add an event from the column values an append inserted. */
void
EventRowsAddValues(EventRows *rows, Datum *values, bool *nulls)
{
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
	if (desc->natts != ((EventRowsReceiver *) self)->rows->desc->natts)
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
	Size		len = VARSIZE(DatumGetPointer(EventRowsDatum(from, i)));
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

/* Column attno of row i (read with the set's row type: no type lookup). */
Datum
EventRowsColumn(EventRows *rows, int i, int attno)
{
	HeapTupleHeader header = (HeapTupleHeader) DatumGetPointer(EventRowsDatum(rows, i));
	HeapTupleData tuple;
	bool		isnull;

	tuple.t_len = HeapTupleHeaderGetDatumLength(header);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = header;
	return heap_getattr(&tuple, attno, rows->desc, &isnull);
}

int64
EventRowsPosition(EventRows *rows, int i)
{
	return DatumGetInt64(EventRowsColumn(rows, i, EVENTS_GLOBAL_POSITION));
}

/* Row i's place in log order. */
LogPlace
EventRowsPlace(EventRows *rows, int i)
{
	LogPlace	place;

	place.position = EventRowsPosition(rows, i);
	place.xid = DatumGetFullTransactionId(EventRowsColumn(rows, i, EVENTS_TRANSACTION_ID));
	return place;
}

/* Row i's event type, for matching against a projection's types. */
text *
EventRowsType(EventRows *rows, int i)
{
	return DatumGetTextPP(EventRowsColumn(rows, i, EVENTS_EVENT_TYPE));
}

/*
 * rows[first .. first + count) as an eventstore.events[] datum: the buffer
 * itself, its header filled in, when that is every row; a new array for
 * part of them (a failed batch retried one event at a time).
 */
Datum
EventRowsArray(EventRows *rows, int first, int count)
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
		elems[i] = EventRowsDatum(rows, first + i);
	return EventsArray(rows, elems, count);
}

/*
 * Composite datums of rows' row type (rows of the set, or rows made from
 * them) as a new eventstore.events[] datum.
 */
Datum
EventsArray(EventRows *rows, Datum *events, int count)
{
	return PointerGetDatum(construct_array(events, count, rows->desc->tdtypeid,
										   -1, false, TYPALIGN_DOUBLE));
}

/* The set's row type: eventstore.events'. */
TupleDesc
EventRowsRowType(EventRows *rows)
{
	return rows->desc;
}

/* Row i's event id, for a failure record. */
pg_uuid_t *
EventRowsId(EventRows *rows, int i)
{
	return DatumGetUUIDP(EventRowsColumn(rows, i, EVENTS_EVENT_ID));
}

