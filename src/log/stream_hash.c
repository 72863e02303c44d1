/*
 * log/stream_hash.c
 *		The stable hash that splits the log into consumer-group partitions.
 *
 * FNV-1a over the stream id's bytes: defined by its algorithm alone, so it is
 * the same on every platform and PostgreSQL version, and clients can compute
 * it too.  A stream always lands in one partition, which keeps its order.
 */
#include "postgres.h"

#include "fmgr.h"
#include "log/log.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(eventstore_stream_partition);

/* 32-bit FNV-1a of the bytes of a stream id. */
static uint32
StreamHash(const char *stream_id, int len)
{
	uint32		hash = 2166136261u;

	for (int i = 0; i < len; i++)
	{
		hash ^= (uint8) stream_id[i];
		hash *= 16777619u;
	}
	return hash;
}

/* SQL: stream_partition(stream_id, group_size): 0 .. group_size - 1 */
Datum
eventstore_stream_partition(PG_FUNCTION_ARGS)
{
	text	   *stream_id = PG_GETARG_TEXT_PP(0);
	int32		group_size = PG_GETARG_INT32(1);

	if (group_size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("group_size must be at least 1"),
				 errhint("Pass the number of members of the consumer group.")));
	PG_RETURN_INT32((int32) (StreamHash(VARDATA_ANY(stream_id),
										VARSIZE_ANY_EXHDR(stream_id))
							 % (uint32) group_size));
}
