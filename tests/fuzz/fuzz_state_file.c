/* libFuzzer harness for the state.bin reader (state_reader_parse).
 *
 * The first input byte picks a mode: even, the rest is parsed as it is;
 * odd, the harness first recomputes every record CRC and the END record's
 * file checksum, so that mutations reach the checks behind the checksums
 * (tags, versions, duplicates, lookups) instead of stopping at a CRC. */
#include "snapshot/state_file.h"
#include "state_reseal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct state_tag known[] = {
    {1, 1, "VCPU"}, {2, 2, "IRQCHIP"}, {3, 1, "PIT"}, {4, 3, "CLOCK"}, {0x100, 1, "DEVICE"},
};
#define NKNOWN (sizeof(known) / sizeof(known[0]))

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
		state_reseal(buf, len);
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
