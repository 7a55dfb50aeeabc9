/* libFuzzer harness for the state.bin reader (state_reader_parse).
 *
 * The first input byte picks a mode: even, the rest is parsed as it is;
 * odd, the harness first recomputes every record CRC and the END record's
 * file checksum, so that mutations reach the checks behind the checksums
 * (tags, versions, duplicates, lookups) instead of stopping at a CRC. */
#include "snapshot/state_file.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const struct state_tag known[] = {
    {1, 1, "VCPU"}, {2, 2, "IRQCHIP"}, {3, 1, "PIT"}, {4, 3, "CLOCK"}, {0x100, 1, "DEVICE"},
};
#define NKNOWN (sizeof(known) / sizeof(known[0]))

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Make the checksums right for whatever records the bytes describe. */
static void reseal(uint8_t *b, size_t len)
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink; /* so the payload reads are not optimised away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t len = size - 1;
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return 0;
	if (len)
		memcpy(buf, data + 1, len);
	if (data[0] & 1)
		reseal(buf, len);
	struct state_reader *r = NULL;
	if (state_reader_parse(buf, len, "fuzz", known, NKNOWN, &r) == 0) {
		/* Everything a restore would touch must be readable. */
		for (size_t i = 0; i < NKNOWN; i++) {
			unsigned n = state_reader_count(r, known[i].tag);
			for (unsigned inst = 0; inst < n + 2 && inst < 1024; inst++) {
				const void *d;
				size_t dlen;
				uint16_t ver;
				if (state_reader_get(r, known[i].tag, (uint16_t)inst, &d, &dlen,
						     &ver) == 0) {
					uint8_t sum = 0;
					for (size_t k = 0; k < dlen; k++)
						sum += ((const uint8_t *)d)[k];
					sink = sum;
					if (ver > known[i].max_version)
						abort();
				}
			}
		}
		state_reader_close(r);
	}
	free(buf);
	return 0;
}
