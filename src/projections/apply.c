/*
 * projections/apply.c
 *		Applying events to a projection so that a failing event is isolated:
 *		the good ones around it stay applied, and the failing one is dealt
 *		with as the projection's on_error says; what eventstore.replaying()
 *		answers meanwhile.
 */
#include "postgres.h"

#include "access/xact.h"
#include "consumers/consumers.h"
#include "core/catalog.h"
#include "projections/projections.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

/*
 * Is this handler error the event's own (a poison event, for on_error to
 * deal with), rather than a cancel, a shutdown, a deadlock, a
 * serialization failure, a lock timeout or a lack of resources, which a
 * later try may not meet?
 */
bool
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
 * Do work(p, arg) in a subtransaction of its own; returns NULL when it
 * succeeded, else its error, with whatever it did rolled back.  What it did
 * is kept when it succeeded and keep, else rolled back too.  Owner code
 * that dropped the session's claims and then failed (or was rolled back)
 * has them taken again.  Which errors must not be caught is the caller's
 * to say: it raises them on (ReThrowError).
 */
ErrorData *
TrySubtransaction(Projection *p, ProjectionWork work, void *arg, bool keep)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile error = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		work(p, arg);
		if (keep)
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
	if (error == NULL && !keep)
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
	if (error != NULL || !keep)
		KeepClaimsThroughOwnerCode();
	return error;
}

/* The rows a handler is called on, for TryCallHandler. */
typedef struct HandlerRows
{
	EventRows  *rows;
	int			first;
	int			count;
} HandlerRows;

static void
CallHandlerOn(Projection *p, void *arg)
{
	HandlerRows *h = (HandlerRows *) arg;

	CallHandler(p, h->rows, h->first, h->count);
}

/*
 * Call the handler on rows[first .. first + count) in a subtransaction of
 * its own; returns NULL when it succeeded, else the error, with whatever
 * the handler did rolled back.
 */
static ErrorData *
TryCallHandler(Projection *p, EventRows *rows, int first, int count)
{
	HandlerRows h = {rows, first, count};
	ErrorData  *error = TrySubtransaction(p, CallHandlerOn, &h, true);

	/* not the event's fault: the batch fails and is tried again later */
	if (error != NULL && !IsPoison(error))
		ReThrowError(error);
	return error;
}

/* Does the list (of text datums) hold this stream id? */
bool
StreamIsIn(List *streams, Datum stream_id)
{
	text	   *stream = DatumGetTextPP(stream_id);
	ListCell   *lc;

	foreach(lc, streams)
	{
		text	   *other = (text *) lfirst(lc);

		if (VARSIZE_ANY_EXHDR(other) == VARSIZE_ANY_EXHDR(stream) &&
			memcmp(VARDATA_ANY(other), VARDATA_ANY(stream),
				   VARSIZE_ANY_EXHDR(stream)) == 0)
			return true;
	}
	return false;
}

/* Record row i as parked (behind dead letter dead_letter_id, 0: its stream's). */
static void
Park(Projection *p, EventRows *rows, int i, int64 dead_letter_id,
	 Parking *parking)
{
	RecordParked(p, rows, i, dead_letter_id);
	if (parking->parked != NULL)
		parking->parked[i] = true;
}

/*
 * Row i is a poison event: a dead letter, and under on_error = 'park' the
 * event its stream is parked behind.
 */
static void
DeadLetter(Projection *p, EventRows *rows, int i, ErrorData *error,
		   Parking *parking)
{
	int64		id = RecordDeadLetter(p, rows, i, error);

	if (!p->park_errors)
		return;
	Park(p, rows, i, id, parking);
	parking->streams = lappend(parking->streams,
							   DatumGetTextPCopy(EventRowsColumn(rows, i,
																 EVENTS_STREAM_ID)));
}

/*
 * Apply rows[first .. first + count), none of a stream parked on entry.
 * Without isolate, a handler error is raised to the caller.  With it, the
 * events are tried together in one subtransaction, and if that fails one
 * by one: under on_error = 'skip' a failing event becomes a dead letter and
 * the others are applied; under 'park' too, and the later events of its
 * stream are parked; under 'stop' the events before the failing one stay
 * applied and *error is set.  Returns how many events were dealt with
 * (applied, dead-lettered or parked), counted from first.
 */
static int
ApplyRun(Projection *p, EventRows *rows, int first, int count, bool isolate,
		 Parking *parking, ErrorData **error)
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
		DeadLetter(p, rows, first, *error, parking);
		FreeErrorData(*error);
		*error = NULL;
		return 1;
	}

	/* the common path failed: find the poison event(s) one at a time */
	FreeErrorData(*error);
	*error = NULL;
	for (int i = first; i < first + count; i++)
	{
		ErrorData  *failure;

		if (parking->streams != NIL &&
			StreamIsIn(parking->streams, EventRowsColumn(rows, i, EVENTS_STREAM_ID)))
		{
			Park(p, rows, i, 0, parking);
			continue;
		}
		failure = TryCallHandler(p, rows, i, 1);
		if (failure == NULL)
			continue;
		if (!p->skip_errors)
		{
			*error = failure;
			return i - first;
		}
		DeadLetter(p, rows, i, failure, parking);
		FreeErrorData(failure);
	}
	return count;
}

/*
 * ApplyRun, with the rows of streams parked on entry parked again rather
 * than applied, and the others applied together.
 */
static int
ApplyUnparked(Projection *p, EventRows *rows, int first, int count,
			  bool isolate, Parking *parking, ErrorData **error)
{
	EventRows  *rest;
	int		   *index;
	int			n = 0;
	int			done;
	Parking		sub;

	for (n = 0; n < count && parking->streams != NIL; n++)
		if (StreamIsIn(parking->streams,
					   EventRowsColumn(rows, first + n, EVENTS_STREAM_ID)))
			break;
	/* none of a parked stream (the common case): all applied together */
	if (n == count || parking->streams == NIL)
		return ApplyRun(p, rows, first, count, isolate, parking, error);
	n = 0;
	rest = EventRowsCreate(count);
	index = palloc(sizeof(int) * Max(count, 1));
	for (int i = first; i < first + count; i++)
	{
		if (StreamIsIn(parking->streams, EventRowsColumn(rows, i, EVENTS_STREAM_ID)))
			Park(p, rows, i, 0, parking);
		else
		{
			EventRowsCopy(rest, rows, i);
			index[n++] = i;
		}
	}
	sub.streams = parking->streams;
	sub.parked = parking->parked != NULL ? palloc0(sizeof(bool) * Max(n, 1)) : NULL;
	done = ApplyRun(p, rest, 0, n, isolate, &sub, error);
	parking->streams = sub.streams;
	if (parking->parked != NULL)
		for (int k = 0; k < n; k++)
			if (sub.parked[k])
				parking->parked[index[k]] = true;
	return done == n ? count : index[done] - first;
}

/*
 * Is the event being applied applied again (a replay from the start), as
 * eventstore.replaying() tells the handler?  Set around each application,
 * and put back when it returns or fails: a handler's append applies inline
 * projections inside, which have their own answer.
 */
static bool replaying_now = false;

/*
 * Apply rows[first .. first + count) to the projection (see ApplyRun),
 * parking the rows of the streams in parking->streams; replaying is what
 * eventstore.replaying() answers meanwhile.  parking may be NULL.
 */
int
ApplyEventsParking(Projection *p, EventRows *rows, int first, int count,
				   bool isolate, bool replaying, Parking *parking,
				   ErrorData **error)
{
	Parking		local = {NIL, NULL};
	Parking    *volatile use = parking != NULL ? parking : &local;
	bool		saved = replaying_now;
	volatile int done = 0;

	replaying_now = replaying;
	PG_TRY();
	{
		done = ApplyUnparked(p, rows, first, count, isolate, use, error);
	}
	PG_FINALLY();
	{
		replaying_now = saved;
	}
	PG_END_TRY();
	return done;
}

/*
 * Set what eventstore.replaying() answers (around a backfill statement);
 * returns what it answered before, for the caller to put back.
 */
bool
SetReplaying(bool replaying)
{
	bool		saved = replaying_now;

	replaying_now = replaying;
	return saved;
}

/* Apply events for the first time (inline): see ApplyRun. */
int
ApplyEvents(Projection *p, EventRows *rows, int first, int count,
			bool isolate, ErrorData **error)
{
	return ApplyEventsParking(p, rows, first, count, isolate, false, NULL,
							  error);
}

/*
 * Try row i, a dead letter, again in a subtransaction of its own: NULL when
 * it was applied, else the error.
 */
ErrorData *
RetryEvent(Projection *p, EventRows *rows, int i, bool replaying)
{
	bool		saved = replaying_now;
	ErrorData  *volatile error = NULL;

	replaying_now = replaying;
	PG_TRY();
	{
		error = TryCallHandler(p, rows, i, 1);
	}
	PG_FINALLY();
	{
		replaying_now = saved;
	}
	PG_END_TRY();
	return error;
}

PG_FUNCTION_INFO_V1(eventstore_replaying);

/* SQL: replaying(): see replaying_now. */
Datum
eventstore_replaying(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(replaying_now);
}
