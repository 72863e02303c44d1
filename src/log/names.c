/*
 * log/names.c
 *		What a stream id or an event type may be: text a person means.
 *
 * Ids are stored and compared as their bytes, never normalized, so two ids
 * that look alike but differ in a byte are two streams.  What no one means
 * is refused before anything is written: an id of whitespace only, one with
 * a control character (U+0001-U+001F, U+007F-U+009F; text cannot hold
 * U+0000), and one with a bidirectional embedding, override or isolate
 * (U+202A-U+202E, U+2066-U+2069), which make an id display unlike its
 * bytes.  Outside UTF-8 databases only the ASCII characters are checked.
 *
 * One pass over the bytes, no allocation unless an error is raised; a name
 * of printable ASCII without spaces needs no more than that pass.
 */
#include "postgres.h"

#include "log/log.h"
#include "mb/pg_wchar.h"

/* The longest stream id or event type: both are btree keys. */
#define ES_MAX_NAME_BYTES	1000

/* Unicode White_Space characters that are not control characters. */
static bool
IsUnicodeSpace(pg_wchar c)
{
	return c == 0x20 || c == 0xA0 || c == 0x1680 ||
		(c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
		c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The argument, or the key of event index, that a message names. */
static const char *
NameLabel(const char *what, int index)
{
	if (index < 0)
		return what;
	return psprintf("the \"%s\" of event %d",
					strcmp(what, "event_type") == 0 ? "type" : what, index);
}

/* Raise the error for a character no one means, at 1-based character n. */
static void
ReportBadCharacter(const char *what, int index, pg_wchar c, int n)
{
	bool		bidi = (c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s contains %s character U+%04X", NameLabel(what, index),
					bidi ? "the bidirectional control" : "the control", c),
			 errdetail("It is character %d.", n),
			 errhint(bidi ?
					 "Bidirectional controls make a name display unlike its bytes: remove them." :
					 "Stream ids and event types are compared as bytes and shown in logs: use printable characters, and encode binary keys, for example as hex.")));
}

/*
 * Refuse a stream id or event type (what: "stream_id" or "event_type"; index:
 * the event's index in a batch, or -1 for an argument) that no one means.
 * The caller has refused the empty one.
 */
void
RequireMeaningfulName(const char *bytes, int len, const char *what, int index)
{
	const unsigned char *p = (const unsigned char *) bytes;
	const unsigned char *end = p + len;
	bool		utf8;
	bool		visible = false;
	int			n = 0;

	if (len > ES_MAX_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is longer than %d bytes", NameLabel(what, index),
						ES_MAX_NAME_BYTES),
				 errdetail("It has %d bytes.", len),
				 errhint("It is an index key: use a short name, or a hash of a long one.")));

	/* the usual name: printable ASCII with something but spaces */
	for (const unsigned char *q = p; q < end && *q > ' ' && *q < 0x7F; q++)
		if (q == end - 1)
			return;

	utf8 = (GetDatabaseEncoding() == PG_UTF8);
	while (p < end)
	{
		pg_wchar	c = *p;
		int			width = 1;

		n++;
		if (c >= 0x80 && utf8)
		{
			/* text in a UTF-8 database is valid UTF-8: decode one character */
			width = pg_utf_mblen(p);
			if (width < 2 || width > end - p)
				width = 1;
			else
				c = utf8_to_unicode(p);
		}
		p += width;
		if (c < 0x20 || c == 0x7F || (utf8 && c >= 0x80 && c <= 0x9F) ||
			(c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069))
			ReportBadCharacter(what, index, c, n);
		if (!visible && (c >= 0x80 ? !utf8 || !IsUnicodeSpace(c) : c != ' '))
			visible = true;
	}

	if (!visible)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is only whitespace", NameLabel(what, index)),
				 errhint(strcmp(what, "stream_id") == 0 ?
						 "Pass the id of the stream, for example 'cart-42'." :
						 "Pass the event's type, for example 'ItemAdded'.")));
}
