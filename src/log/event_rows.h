/*
 * log/event_rows.h
 *		Events as rows of eventstore.events, laid out as the elements of an
 *		eventstore.events[] array: what appends hand to inline projections
 *		and what batches of the log are read into.
 */
#ifndef ES_EVENT_ROWS_H
#define ES_EVENT_ROWS_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "log/log.h"
#include "tcop/dest.h"

typedef struct EventRows EventRows;

extern EventRows *EventRowsCreate(int capacity);
extern void EventRowsAdd(EventRows *rows, HeapTuple tuple, TupleDesc desc);
extern void EventRowsAddValues(EventRows *rows, Datum *values, bool *nulls);
extern DestReceiver *EventRowsDest(EventRows *rows);
extern void EventRowsCopy(EventRows *rows, EventRows *from, int i);
extern void EventRowsReset(EventRows *rows);
extern int	EventRowsCount(EventRows *rows);
extern Datum EventRowsDatum(EventRows *rows, int i);
extern Datum EventRowsColumn(EventRows *rows, int i, int attno);
extern Datum EventRowsArray(EventRows *rows, int first, int count);
extern Datum EventsArray(EventRows *rows, Datum *events, int count);
extern TupleDesc EventRowsRowType(EventRows *rows);
extern int64 EventRowsPosition(EventRows *rows, int i);
extern LogPlace EventRowsPlace(EventRows *rows, int i);
extern text *EventRowsType(EventRows *rows, int i);
extern pg_uuid_t *EventRowsId(EventRows *rows, int i);

#endif							/* ES_EVENT_ROWS_H */
