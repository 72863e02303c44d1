/*
 * role_changes.h
 *		Projections and processors follow their owner role through DROP
 *		ROLE, REASSIGN OWNED and DROP OWNED.
 */
#ifndef ES_ROLE_CHANGES_H
#define ES_ROLE_CHANGES_H

#include "nodes/pg_list.h"

extern List *RoleChangesBefore(Node *statement);
extern void RoleChangesAfter(Node *statement, List *dropped);

#endif							/* ES_ROLE_CHANGES_H */
