/* i8042: enough of the controller for Linux's probe to find no keyboard
 * and for its reset command (0xfe, or output-port bit 0 cleared) to end the
 * VM with a clean reset. */
#include "devices/i8042.h"
#include "arch/x86/layout.h"
#include "devices/device.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "util/err.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_OBF 0x01
#define STATUS_SYS 0x04
#define STATUS_CMD 0x08

struct i8042 {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t ctr;     /* controller configuration byte */
	uint8_t status;
	uint8_t out;     /* output buffer */
	uint8_t pending; /* command waiting for its data byte */
};

static void i8042_reply(struct i8042 *k, uint8_t v)
{
	k->out = v;
	k->status |= STATUS_OBF;
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case 0x20: /* read CTR */
		i8042_reply(k, k->ctr);
		break;
	case 0x60: /* write CTR: data follows */
	case 0xd1: /* write output port: data follows */
		k->pending = cmd;
		break;
	case 0xaa: /* self test */
		i8042_reply(k, 0x55);
		break;
	case 0xab: /* keyboard interface test */
		i8042_reply(k, 0x00);
		break;
	case 0xfe: /* pulse reset line */
		vm_request_exit(k->vm, VM_EXIT_RESET, 0, "i8042 reset");
		break;
	default: /* enable/disable ports and the like: nothing to do */
		break;
	}
}

static void i8042_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct i8042 *k = opaque;
	uint8_t v;
	pthread_mutex_lock(&k->lock);
	if (off == 0) {
		v = k->out;
		k->status &= (uint8_t)~STATUS_OBF;
	} else {
		v = k->status;
	}
	pthread_mutex_unlock(&k->lock);
	memset(data, 0, len);
	*(uint8_t *)data = v;
}

static void i8042_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct i8042 *k = opaque;
	uint8_t v = *(const uint8_t *)data;
	(void)len;
	pthread_mutex_lock(&k->lock);
	if (off == 4) {
		k->status |= STATUS_CMD;
		i8042_command(k, v);
	} else {
		k->status &= (uint8_t)~STATUS_CMD;
		if (k->pending == 0x60)
			k->ctr = v;
		else if (k->pending == 0xd1 && !(v & 1))
			vm_request_exit(k->vm, VM_EXIT_RESET, 0, "i8042 reset");
		k->pending = 0;
	}
	pthread_mutex_unlock(&k->lock);
}

static const struct io_ops i8042_io = {i8042_read, i8042_write};

static void i8042_destroy(void *priv)
{
	struct i8042 *k = priv;
	pthread_mutex_destroy(&k->lock);
	free(k);
}

static int i8042_snapshot(void *priv, struct state_buf *sb)
{
	struct i8042 *k = priv;
	pthread_mutex_lock(&k->lock);
	STATE_FIELD(sb, k->ctr);
	STATE_FIELD(sb, k->status);
	STATE_FIELD(sb, k->out);
	STATE_FIELD(sb, k->pending);
	pthread_mutex_unlock(&k->lock);
	return sb->err;
}

static const struct device_ops i8042_ops = {
	.name = "i8042", .snapshot = i8042_snapshot, .destroy = i8042_destroy};

int i8042_init(struct vm *vm, const struct devices_config *cfg)
{
	(void)cfg;
	struct i8042 *k = calloc(1, sizeof(*k));
	if (!k)
		return err_set(ENOMEM, "i8042");
	k->vm = vm;
	k->status = STATUS_SYS;
	pthread_mutex_init(&k->lock, NULL);
	/* Ports 0x60 and 0x64 as one range of 5 (0x61, the PIT speaker port,
	 * is claimed by KVM's PIT before it reaches us). */
	int r = iobus_register(&vm->pio, I8042_DATA_PORT, 5, &i8042_io, k);
	if (r < 0) {
		i8042_destroy(k);
		return err_set(-r, "i8042 ports");
	}
	return device_add(vm, &i8042_ops, k);
}
