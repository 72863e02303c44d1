/*
 * role_changes.h
 *		Projections and processors follow their owner role through DROP
 *		ROLE, REASSIGN OWNED and DROP OWNED.
 */
#ifndef ES_ROLE_CHANGES_H
#define ES_ROLE_CHANGES_H

extern void InstallRoleChangesHook(void);

#endif							/* ES_ROLE_CHANGES_H */
