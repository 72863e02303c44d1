/*
 * core/role.h
 *		Running as another role for a while: the extension's owner for its
 *		bookkeeping, or a projection's owner for that owner's code.
 */
#ifndef ES_ROLE_H
#define ES_ROLE_H

/* Who ran before a switch, to go back to. */
typedef struct RoleSwitch
{
	Oid			caller;			/* the user id before the switch */
	int			context;		/* and its security context */
	int			nestlevel;		/* GUC nest level of owner code; 0: none */
} RoleSwitch;

extern RoleSwitch BecomeRole(Oid role);
extern RoleSwitch EnterOwnerCode(Oid owner);
extern void RestoreRole(RoleSwitch saved);
extern int	PinApiSearchPath(void);
extern bool RoleMayExecute(Oid role, Oid function);

#endif							/* ES_ROLE_H */
