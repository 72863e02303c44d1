/*
 * consumers/consumers.h
 *		Checkpoints and processor claims: what other subsystems ask of
 *		them.
 */
#ifndef ES_CONSUMERS_H
#define ES_CONSUMERS_H

/* processors.c */
extern void KeepClaimsThroughOwnerCode(void);

#endif							/* ES_CONSUMERS_H */
