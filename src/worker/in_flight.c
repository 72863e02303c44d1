/*
 * worker/in_flight.c
 *		The batch a worker has in flight, kept in a file, so that a
 *		projection whose handler ends the worker's process every time (a
 *		FATAL error, a termination, a crash) is failed instead of taking the
 *		worker down again after each restart.
 *
 * Before each batch a worker writes pg_eventstore/<database>.<projection>.<pid>
 * in the data directory with the projection's checkpoint (ReplayMark: for
 * a replay split in partitions, the sum of theirs) and how many
 * workers died there already; after the batch, whatever its outcome, it
 * removes the file.  A file left behind names a batch during which a worker
 * died.  A worker starting takes the files of its database: a projection
 * whose worker died once at a checkpoint is resumed there (a crash loses
 * nothing); one that killed two workers at the same checkpoint is failed.
 * A worker that the postmaster ends because another process crashed, or
 * at an immediate shutdown (SIGQUIT), removes its file: it did not die of
 * its batch.  The files are written without fsync: they
 * must outlive a process, not the machine.
 */
#include "postgres.h"

#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "worker/worker.h"

#define IN_FLIGHT_DIR "pg_eventstore"

/* Deaths a batch may cost before its projection is failed. */
#define DEATHS_BEFORE_FAILING 2

/* Those that were resumed: a second death there fails them. */
static WorkerCasualty *resumed = NULL;
static int	nresumed = 0;

/* The file of the batch in flight; "" when none. */
static char in_flight_path[MAXPGPATH] = "";

static void
InFlightPath(char *path, int32 projection_id)
{
	/* the pid too: several workers may run partitions of one projection */
	snprintf(path, MAXPGPATH, IN_FLIGHT_DIR "/%u.%d.%d", MyDatabaseId,
			 projection_id, (int) MyProcPid);
}

/* The deaths already counted at the projection's checkpoint `position`. */
static int
DeathsAt(int32 projection_id, int64 position)
{
	for (int i = 0; i < nresumed; i++)
		if (resumed[i].projection_id == projection_id &&
			resumed[i].position == position)
			return resumed[i].deaths;
	return 0;
}

/*
 * SIGQUIT: the postmaster ends every process after another one crashed
 * (or at an immediate shutdown).  This worker did not die of its batch:
 * remove its file, then exit as the standard handler does.
 */
static void
InFlightQuickExit(SIGNAL_ARGS)
{
	if (in_flight_path[0] != '\0')
		(void) unlink(in_flight_path);
	_exit(2);
}

/* Take SIGQUIT (before the worker unblocks signals). */
void
WatchInFlightBatches(void)
{
	pqsignal(SIGQUIT, InFlightQuickExit);
}

/* A batch of the projection starts at its checkpoint `position`. */
void
NoteBatchStarts(int32 projection_id, int64 position)
{
	FILE	   *file;

	InFlightPath(in_flight_path, projection_id);
	file = AllocateFile(in_flight_path, PG_BINARY_W);
	if (file == NULL)
	{
		/* not knowing costs only the protection: say so and go on */
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", in_flight_path)));
		in_flight_path[0] = '\0';
		return;
	}
	fprintf(file, INT64_FORMAT " %d\n", position,
			DeathsAt(projection_id, position));
	FreeFile(file);
}

/* The batch in flight ended, committed or rolled back. */
void
NoteBatchEnded(void)
{
	if (in_flight_path[0] == '\0')
		return;
	if (unlink(in_flight_path) != 0 && errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", in_flight_path)));
	in_flight_path[0] = '\0';
}

/*
 * Take the batches of this database that workers died in: those that cost
 * DEATHS_BEFORE_FAILING deaths are returned (as WorkerCasualty, in the current
 * memory context) to be failed; the others are resumed, remembered so
 * that another death there counts.  Two workers starting at once each take
 * a file at most once: whoever removes it has it.
 */
List *
TakeCasualties(void)
{
	DIR		   *dir;
	struct dirent *entry;
	List	   *to_fail = NIL;
	char		prefix[32];

	(void) MakePGDirectory(IN_FLIGHT_DIR);
	snprintf(prefix, sizeof(prefix), "%u.", MyDatabaseId);
	dir = AllocateDir(IN_FLIGHT_DIR);
	while ((entry = ReadDir(dir, IN_FLIGHT_DIR)) != NULL)
	{
		char		path[MAXPGPATH];
		WorkerCasualty	c;
		FILE	   *file;
		int			parsed;

		if (strncmp(entry->d_name, prefix, strlen(prefix)) != 0)
			continue;
		c.projection_id = atoi(entry->d_name + strlen(prefix));
		snprintf(path, sizeof(path), IN_FLIGHT_DIR "/%s", entry->d_name);
		file = AllocateFile(path, PG_BINARY_R);
		if (file == NULL)
			continue;
		parsed = fscanf(file, INT64_FORMAT " %d", &c.position, &c.deaths);
		FreeFile(file);
		if (unlink(path) != 0 || parsed != 2)
			continue;
		c.deaths++;
		if (c.deaths >= DEATHS_BEFORE_FAILING)
		{
			WorkerCasualty *failed = palloc(sizeof(WorkerCasualty));

			*failed = c;
			to_fail = lappend(to_fail, failed);
		}
		else
		{
			resumed = resumed == NULL
				? MemoryContextAlloc(TopMemoryContext, sizeof(WorkerCasualty))
				: repalloc(resumed, sizeof(WorkerCasualty) * (nresumed + 1));
			resumed[nresumed++] = c;
		}
	}
	FreeDir(dir);
	return to_fail;
}
