/* Port-I/O and MMIO address spaces: devices register ranges with handlers,
 * vCPU threads dispatch their I/O exits through them.  Lookups take a read
 * lock, so vCPUs dispatch in parallel; (re)registration (a PCI BAR moving)
 * takes the write lock. */
#ifndef CAIRN_KVM_IOBUS_H
#define CAIRN_KVM_IOBUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct io_ops {
	/* OFF is relative to the registered base; LEN is 1, 2, 4 or 8. */
	void (*read)(void *opaque, uint64_t off, void *data, unsigned len);
	void (*write)(void *opaque, uint64_t off, const void *data, unsigned len);
};

struct io_range {
	uint64_t base, len;
	const struct io_ops *ops;
	void *opaque;
};

struct io_bus {
	pthread_rwlock_t lock;
	struct io_range *ranges; /* sorted by base, non-overlapping */
	unsigned count, cap;
	const char *name; /* "pio" or "mmio", for messages */
};

void iobus_init(struct io_bus *bus, const char *name);
void iobus_destroy(struct io_bus *bus);
/* -EEXIST when the range overlaps one already registered. */
int iobus_register(struct io_bus *bus, uint64_t base, uint64_t len, const struct io_ops *ops,
		   void *opaque);
/* Remove the range starting at BASE registered with OPAQUE (no-op if absent). */
void iobus_unregister(struct io_bus *bus, uint64_t base, void *opaque);
/* false when nothing is registered at ADDR: reads then see all ones. */
bool iobus_dispatch(struct io_bus *bus, uint64_t addr, void *data, unsigned len, bool is_write);

#endif
