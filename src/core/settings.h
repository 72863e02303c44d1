/*
 * core/settings.h
 *		The pg_eventstore.* settings, defined in module.c; the README lists
 *		each with its bounds, its unit and whether a reload applies it.
 */
#ifndef ES_SETTINGS_H
#define ES_SETTINGS_H

/* The most workers pg_eventstore.max_workers allows, over all databases. */
#define ES_MAX_WORKERS 64

extern char *WorkerDatabases;	/* pg_eventstore.databases */
extern int	WorkerMaxWorkers;	/* pg_eventstore.max_workers */
extern int	ProjectionBatchSize;	/* pg_eventstore.batch_size */
extern int	WorkerPollInterval; /* pg_eventstore.poll_interval, ms */
extern int	WorkerRebuildThrottle;	/* pg_eventstore.rebuild_throttle */
extern int	WorkerRetryInterval;	/* pg_eventstore.retry_interval, ms */
extern int	UnregisteredTypes;	/* pg_eventstore.unregistered_types */
extern bool WorkerNotify;		/* pg_eventstore.notify */

/* What an append does with an event of a type that has no schema. */
typedef enum UnregisteredTypesValue
{
	UNREGISTERED_ALLOW,
	UNREGISTERED_WARN,
	UNREGISTERED_REFUSE
} UnregisteredTypesValue;

#endif							/* ES_SETTINGS_H */
