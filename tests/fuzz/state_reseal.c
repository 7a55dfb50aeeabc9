#include "state_reseal.h"

#include <zlib.h>

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void state_reseal(uint8_t *b, size_t len)
{
	size_t off = 24;
	uint32_t count = 0;
	while (off <= len && len - off >= 16) {
		uint8_t *h = b + off;
		uint64_t plen = rd32(h + 8), padded = (plen + 7) & ~7ull;
		if (padded > len - off - 16)
			return;
		if (rd32(h) == 0 && plen == 16) { /* END */
			uint8_t *e = h + 16;
			for (int i = 0; i < 8; i++)
				e[i] = (uint8_t)((uint64_t)off >> (8 * i));
			wr32(e + 8, count);
			wr32(e + 12, (uint32_t)crc32(0, b, (uInt)off));
			wr32(h + 12, (uint32_t)crc32(0, e, 16));
			return;
		}
		wr32(h + 12, (uint32_t)crc32(0, h + 16, (uInt)plen));
		off += 16 + padded;
		count++;
	}
}
