#include "util/size.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int size_parse(const char *str, uint64_t default_unit, uint64_t *out)
{
	if (!str || !isdigit((unsigned char)*str))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(str, &end, 10);
	if (errno)
		return -EINVAL;
	uint64_t unit = default_unit;
	if (*end) {
		static const char sfx[] = "KMGTP";
		const char *p = strchr(sfx, toupper((unsigned char)*end));
		if (!p)
			return -EINVAL;
		unit = 1ULL << (10 * (p - sfx + 1));
		end++;
		if (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))
			end += strlen(end);
		if (*end)
			return -EINVAL;
	}
	if (v && unit > UINT64_MAX / v)
		return -ERANGE;
	*out = v * unit;
	return 0;
}
