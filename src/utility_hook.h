/*
 * utility_hook.h
 *		The extension's ProcessUtility hook.
 */
#ifndef ES_UTILITY_HOOK_H
#define ES_UTILITY_HOOK_H

extern void InstallUtilityHook(void);

#endif							/* ES_UTILITY_HOOK_H */
