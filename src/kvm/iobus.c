#include "kvm/iobus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void iobus_init(struct io_bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	pthread_rwlock_init(&bus->lock, NULL);
	bus->name = name;
}

void iobus_destroy(struct io_bus *bus)
{
	free(bus->ranges);
	pthread_rwlock_destroy(&bus->lock);
}

/* Index of the first range whose end lies above ADDR. */
static unsigned iobus_lower_bound(const struct io_bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->count;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		const struct io_range *r = &bus->ranges[mid];
		if (r->base + r->len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int iobus_register(struct io_bus *bus, uint64_t base, uint64_t len, const struct io_ops *ops,
		   void *opaque)
{
	if (!len || base + len < base)
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	unsigned i = iobus_lower_bound(bus, base);
	int r = 0;
	if (i < bus->count && bus->ranges[i].base < base + len) {
		r = -EEXIST;
	} else if (bus->count == bus->cap) {
		unsigned cap = bus->cap ? bus->cap * 2 : 16;
		struct io_range *n = realloc(bus->ranges, cap * sizeof(*n));
		if (!n)
			r = -ENOMEM;
		else {
			bus->ranges = n;
			bus->cap = cap;
		}
	}
	if (!r) {
		memmove(&bus->ranges[i + 1], &bus->ranges[i],
			(bus->count - i) * sizeof(bus->ranges[0]));
		bus->ranges[i] = (struct io_range){base, len, ops, opaque};
		bus->count++;
	}
	pthread_rwlock_unlock(&bus->lock);
	return r;
}

void iobus_unregister(struct io_bus *bus, uint64_t base, void *opaque)
{
	pthread_rwlock_wrlock(&bus->lock);
	unsigned i = iobus_lower_bound(bus, base);
	if (i < bus->count && bus->ranges[i].base == base && bus->ranges[i].opaque == opaque) {
		memmove(&bus->ranges[i], &bus->ranges[i + 1],
			(bus->count - i - 1) * sizeof(bus->ranges[0]));
		bus->count--;
	}
	pthread_rwlock_unlock(&bus->lock);
}

bool iobus_dispatch(struct io_bus *bus, uint64_t addr, void *data, unsigned len, bool is_write)
{
	pthread_rwlock_rdlock(&bus->lock);
	unsigned i = iobus_lower_bound(bus, addr);
	bool found = i < bus->count && bus->ranges[i].base <= addr;
	struct io_range r = found ? bus->ranges[i] : (struct io_range){0};
	pthread_rwlock_unlock(&bus->lock);
	if (!found) {
		if (!is_write)
			memset(data, 0xff, len);
		return false;
	}
	if (is_write) {
		if (r.ops->write)
			r.ops->write(r.opaque, addr - r.base, data, len);
	} else if (r.ops->read) {
		r.ops->read(r.opaque, addr - r.base, data, len);
	} else {
		memset(data, 0xff, len);
	}
	return true;
}
