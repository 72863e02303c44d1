/*
 * test/bench/names.c
 *		The CPU time of one check of a stream id or event type
 *		(RequireMeaningfulName, src/log/names.c), for test/bench/names.sh.
 *
 * Linked with src/log/names.c alone: the backend functions the check calls
 * on a name it accepts (the database encoding, one UTF-8 character's width
 * and value) are defined here; those it calls to raise an error abort, as
 * no name here is refused.
 */
#include "postgres.h"

#include <time.h>

#include "log/log.h"
#include "mb/pg_wchar.h"

#undef printf
#include <stdio.h>

int
GetDatabaseEncoding(void)
{
	return PG_UTF8;
}

int
pg_utf_mblen(const unsigned char *s)
{
	return (*s & 0xe0) == 0xc0 ? 2 : (*s & 0xf0) == 0xe0 ? 3 : (*s & 0xf8) == 0xf0 ? 4 : 1;
}

pg_wchar
utf8_to_unicode(const unsigned char *c)
{
	if ((*c & 0xe0) == 0xc0)
		return (c[0] & 0x1f) << 6 | (c[1] & 0x3f);
	if ((*c & 0xf0) == 0xe0)
		return (c[0] & 0x0f) << 12 | (c[1] & 0x3f) << 6 | (c[2] & 0x3f);
	return (c[0] & 0x07) << 18 | (c[1] & 0x3f) << 12 | (c[2] & 0x3f) << 6 | (c[3] & 0x3f);
}

bool
errstart(int elevel, const char *domain)
{
	abort();
}

bool
errstart_cold(int elevel, const char *domain)
{
	abort();
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	abort();
}

int
errcode(int sqlerrcode)
{
	abort();
}

int
errmsg(const char *fmt,...)
{
	abort();
}

int
errdetail(const char *fmt,...)
{
	abort();
}

int
errhint(const char *fmt,...)
{
	abort();
}

char *
psprintf(const char *fmt,...)
{
	abort();
}

int
main(int argc, char **argv)
{
	const char *names[] = {"cart-123", "ItemAdded", "order-2026-12-01-000042",
	"Käse-Übersicht 名前"};
	long		calls = argc > 1 ? atol(argv[1]) : 20000000;

	for (int n = 0; n < 4; n++)
	{
		struct timespec a,
					b;
		int			len = strlen(names[n]);

		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
		for (long i = 0; i < calls; i++)
		{
			__asm__ volatile("":::"memory");
			RequireMeaningfulName(names[n], len, "stream_id", -1);
		}
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
		printf("| %-26s | %2d | %5.1f |\n", names[n], len,
			   ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / calls);
	}
	return 0;
}
