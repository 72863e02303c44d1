/*
 * consumers/consumers.h
 *		Checkpoints and processor claims: what other subsystems ask of
 *		them.
 */
#ifndef ES_CONSUMERS_H
#define ES_CONSUMERS_H

#include "executor/tuptable.h"

/* processors.c */
extern void KeepClaimsThroughOwnerCode(void);

/* processor_owners.c */
extern bool ProcessorsHaveOwners(void);
extern int	CheckpointsNatts(void);
extern void RequireProcessorOwner(text *processor, text *partition, Oid caller);
extern void RequireOwnerOfLockedRow(TupleTableSlot *row, text *processor,
									text *partition, Oid caller);
extern char *ProcessorsOwnedBy(const char *owner);
extern void ReassignProcessors(const char *from, const char *to);
extern void DropProcessorsOwnedBy(const char *owner);

#endif							/* ES_CONSUMERS_H */
