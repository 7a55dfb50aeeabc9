/*
 * Disk block pattern and memory pattern shared by the guest (diskfill,
 * diskverify, memfill) and the host tool guest/tools/diskpat.c.
 *
 * Block i (4096 bytes at byte offset i * 4096), little-endian 64-bit words:
 *   word 0      DISKPAT_MAGIC ("CAIRNBLK")
 *   word 1      sequence number = i
 *   word 2      seed
 *   word 3      checksum of the whole block computed with word 3 = 0
 *   words 4-511 pat_word(seed, i * 512 + w) for word index w
 * checksum: c = 0xcbf29ce484222325; per word: c = (c ^ w) * 0x100000001b3; c ^= c >> 32.
 */
#ifndef GUEST_DISKPAT_H
#define GUEST_DISKPAT_H

#include <stdint.h>

#define DISKPAT_BLOCK 4096
#define DISKPAT_WORDS (DISKPAT_BLOCK / 8)
#define DISKPAT_MAGIC 0x4b4c424e52494143ull /* "CAIRNBLK" */
#define PAT_GOLDEN 0x9e3779b97f4a7c15ull

/* splitmix64 finalizer */
static inline uint64_t pat_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Word number idx of the pseudo-random stream of seed: splitmix64 output idx. */
static inline uint64_t pat_word(uint64_t seed, uint64_t idx)
{
	return pat_mix64(seed + (idx + 1) * PAT_GOLDEN);
}

static inline uint64_t diskpat_checksum(const uint64_t *blk)
{
	uint64_t c = 0xcbf29ce484222325ull;
	for (int w = 0; w < DISKPAT_WORDS; w++) {
		c = (c ^ (w == 3 ? 0 : blk[w])) * 0x100000001b3ull;
		c ^= c >> 32;
	}
	return c;
}

static inline void diskpat_fill(uint64_t *blk, uint64_t seed, uint64_t seq)
{
	blk[0] = DISKPAT_MAGIC;
	blk[1] = seq;
	blk[2] = seed;
	blk[3] = 0;
	for (int w = 4; w < DISKPAT_WORDS; w++)
		blk[w] = pat_word(seed, seq * DISKPAT_WORDS + (uint64_t)w);
	blk[3] = diskpat_checksum(blk);
}

/* NULL if block seq of seed is intact, else the reason; *word = first bad word. */
static inline const char *diskpat_check(const uint64_t *blk, uint64_t seed, uint64_t seq, int *word)
{
	*word = 0;
	if (blk[0] != DISKPAT_MAGIC)
		return "bad magic";
	*word = 1;
	if (blk[1] != seq)
		return "wrong sequence number";
	*word = 2;
	if (blk[2] != seed)
		return "wrong seed";
	*word = 3;
	if (blk[3] != diskpat_checksum(blk))
		return "bad checksum";
	for (int w = 4; w < DISKPAT_WORDS; w++) {
		*word = w;
		if (blk[w] != pat_word(seed, seq * DISKPAT_WORDS + (uint64_t)w))
			return "bad pattern";
	}
	return 0;
}

#endif
