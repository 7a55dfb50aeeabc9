/* For the fuzz harnesses that read state.bin files: make the checksums
 * right for whatever records the bytes describe, so that mutations reach
 * the checks behind the CRCs instead of stopping at one. */
#ifndef CAIRN_TESTS_STATE_RESEAL_H
#define CAIRN_TESTS_STATE_RESEAL_H

#include <stddef.h>
#include <stdint.h>

/* Recompute every record's payload CRC and, when an END record is found,
 * its offset, record count, file CRC and own CRC (docs/state-format.md). */
void state_reseal(uint8_t *buf, size_t len);

#endif
