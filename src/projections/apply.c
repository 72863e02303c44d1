/*
 * projections/apply.c
 *		Applying events to a projection so that a failing event is isolated:
 *		the good ones around it stay applied, and the failing one is dealt
 *		with as the projection's on_error says.
 */
#include "postgres.h"

#include "access/xact.h"
#include "consumers/consumers.h"
#include "projections/projections.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

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
		/* a handler that dropped the session's claims and then failed */
		KeepClaimsThroughOwnerCode();
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
