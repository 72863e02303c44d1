/*
 * schemas/format.c
 *		The "format" values the validator checks: uuid and date-time.
 */
#include "postgres.h"

#include "schemas/schemas.h"

/* Is c a hexadecimal digit, in either case? */
static bool
IsHex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A UUID in its hyphenated form: 8-4-4-4-12 hexadecimal digits. */
bool
IsUuidText(const char *s, int len)
{
	if (len != 36)
		return false;
	for (int i = 0; i < len; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!IsHex(s[i]))
			return false;
	}
	return true;
}

/* n decimal digits at s[*at] as a number, or -1; advances *at. */
static int
Digits(const char *s, int len, int *at, int n)
{
	int			value = 0;

	if (*at + n > len)
		return -1;
	for (int i = 0; i < n; i++)
	{
		char		c = s[*at + i];

		if (c < '0' || c > '9')
			return -1;
		value = value * 10 + (c - '0');
	}
	*at += n;
	return value;
}

/* Is s[*at] the character c (either case, for letters)? Advances *at. */
static bool
Char(const char *s, int len, int *at, char c)
{
	if (*at >= len || (s[*at] != c && s[*at] != (c | 0x20)))
		return false;
	(*at)++;
	return true;
}

/* The days of a month of the Gregorian calendar, leap years counted. */
static int
DaysInMonth(int year, int month)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool		leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : days[month - 1];
}

/*
 * An RFC 3339 date-time (section 5.6):
 * YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), T and Z in either case;
 * the date must exist, the second may be 60 (a leap second).
 */
bool
IsDateTimeText(const char *s, int len)
{
	int			at = 0;
	int			year,
				month,
				day,
				hour,
				minute,
				second;

	year = Digits(s, len, &at, 4);
	if (year < 0 || !Char(s, len, &at, '-') ||
		(month = Digits(s, len, &at, 2)) < 1 || month > 12 ||
		!Char(s, len, &at, '-') ||
		(day = Digits(s, len, &at, 2)) < 1 || day > DaysInMonth(year, month) ||
		!Char(s, len, &at, 'T') ||
		(hour = Digits(s, len, &at, 2)) < 0 || hour > 23 ||
		!Char(s, len, &at, ':') ||
		(minute = Digits(s, len, &at, 2)) < 0 || minute > 59 ||
		!Char(s, len, &at, ':') ||
		(second = Digits(s, len, &at, 2)) < 0 || second > 60)
		return false;
	if (at < len && s[at] == '.')
	{
		int			first = ++at;

		while (at < len && s[at] >= '0' && s[at] <= '9')
			at++;
		if (at == first)
			return false;
	}
	if (Char(s, len, &at, 'Z'))
		return at == len;
	if (at < len && (s[at] == '+' || s[at] == '-'))
	{
		int			oh,
					om;

		at++;
		if ((oh = Digits(s, len, &at, 2)) < 0 || oh > 23 ||
			!Char(s, len, &at, ':') ||
			(om = Digits(s, len, &at, 2)) < 0 || om > 59)
			return false;
		return at == len;
	}
	return false;
}
