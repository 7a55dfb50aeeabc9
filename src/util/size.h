/* Parsing of human sizes ("512M", "2G", "4096", "1.5G" is refused). */
#ifndef CAIRN_UTIL_SIZE_H
#define CAIRN_UTIL_SIZE_H

#include <stdint.h>

/* Parse STR as a byte count with optional suffix K, M, G, T (powers of
 * 1024; "B" and "iB" forms accepted).  A bare number is taken in units of
 * default_unit (1 for bytes, 1<<20 for the --mem convention). */
int size_parse(const char *str, uint64_t default_unit, uint64_t *out);

#endif
