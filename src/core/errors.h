/*
 * core/errors.h
 *		The SQLSTATEs of the event store's own class "SE".  Every one is
 *		listed in the README; keep the two in step.
 */
#ifndef ES_ERRORS_H
#define ES_ERRORS_H

#include "utils/elog.h"

#define ERRCODE_ES_WRONG_EXPECTED_REVISION	MAKE_SQLSTATE('S','E','0','0','1')
#define ERRCODE_ES_DUPLICATE_EVENT_ID		MAKE_SQLSTATE('S','E','0','0','2')
#define ERRCODE_ES_UNKNOWN_POSITION			MAKE_SQLSTATE('S','E','0','0','3')
#define ERRCODE_ES_APPEND_ONLY				MAKE_SQLSTATE('S','E','0','0','4')
#define ERRCODE_ES_UNKNOWN_PROJECTION		MAKE_SQLSTATE('S','E','0','0','5')
#define ERRCODE_ES_PROJECTION_EXISTS		MAKE_SQLSTATE('S','E','0','0','6')
#define ERRCODE_ES_LOST_POSITION			MAKE_SQLSTATE('S','E','0','0','7')
#define ERRCODE_ES_POSITION_NOT_YET_HERE	MAKE_SQLSTATE('S','E','0','0','8')
#define ERRCODE_ES_SUBSCRIBER_APPEND		MAKE_SQLSTATE('S','E','0','0','9')
#define ERRCODE_ES_HANDLER_ENDED_WORKER		MAKE_SQLSTATE('S','E','0','1','0')
#define ERRCODE_ES_CHECK_FAILED				MAKE_SQLSTATE('S','E','0','1','1')
#define ERRCODE_ES_NOT_AT_HEAD				MAKE_SQLSTATE('S','E','0','1','2')
#define ERRCODE_ES_VIEW_INCOMPATIBLE		MAKE_SQLSTATE('S','E','0','1','3')
#define ERRCODE_ES_STREAM_DELETED			MAKE_SQLSTATE('S','E','0','1','4')
#define ERRCODE_ES_UNKNOWN_STREAM			MAKE_SQLSTATE('S','E','0','1','5')
#define ERRCODE_ES_SCHEMA_VIOLATION			MAKE_SQLSTATE('S','E','0','1','6')
#define ERRCODE_ES_NO_BACKFILL				MAKE_SQLSTATE('S','E','0','2','0')

#endif							/* ES_ERRORS_H */
