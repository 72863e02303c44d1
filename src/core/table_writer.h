/*
 * core/table_writer.h
 *		Row-level writes to the extension's own tables through the table and
 *		index access methods.
 */
#ifndef ES_TABLE_WRITER_H
#define ES_TABLE_WRITER_H

#include "access/skey.h"
#include "executor/tuptable.h"
#include "utils/relcache.h"

typedef struct TableWriter TableWriter;

/* How TableWriterLockOrCreate found the row. */
typedef enum RowLockResult
{
	ROW_LOCKED,					/* it existed and is locked */
	ROW_FOUND,					/* it exists, found but not locked */
	ROW_CREATED,				/* the creator inserted it */
	ROW_BUSY					/* another transaction holds it (no wait) */
} RowLockResult;

/*
 * Inserts a missing row (INSERT ... ON CONFLICT DO NOTHING, which waits for
 * a concurrent inserter); returns true when the caller is done with the
 * row, false to have it looked up and locked again (a concurrent creator
 * won, or the creator wants its own new row locked: the writer then sees
 * the transaction's own writes, as a new statement would).
 */
typedef bool (*RowCreator) (void *arg);

extern TableWriter *TableWriterOpen(const char *operation, int ntables,
									const char *const *names, const int *natts);
extern void TableWriterClose(TableWriter *w);
extern void TableWriterKey(TableWriter *w, int t, ScanKey key, AttrNumber attno,
						   RegProcedure eqproc, Datum value);
extern RowLockResult TableWriterLockOrCreate(TableWriter *w, int t, int nkeys,
											 ScanKey keys, const char *what,
											 bool wait, RowCreator create,
											 void *arg);
extern RowLockResult TableWriterFindOrCreate(TableWriter *w, int t, int nkeys,
											 ScanKey keys, const char *what,
											 RowCreator create, void *arg);
extern Relation TableWriterRelation(TableWriter *w, int t);
extern TupleTableSlot *TableWriterLockedRow(TableWriter *w, int t);
extern TupleTableSlot *TableWriterNewRow(TableWriter *w, int t);
extern TupleTableSlot *TableWriterCopyOfLocked(TableWriter *w, int t);
extern void TableWriterInsert(TableWriter *w, int t, TupleTableSlot *row);
extern bool TableWriterUpdate(TableWriter *w, int t, TupleTableSlot *row);

#endif							/* ES_TABLE_WRITER_H */
