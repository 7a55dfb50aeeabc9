/* The device records of state.bin (src/vmm/vm_records.c) on a VM without
 * KVM (vm_fd -1: interrupt lines go nowhere) with the real device init
 * list: a refused record leaves the device as it was. */
#include "devices/device.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "test.h"
#include "util/err.h"
#include "util/log.h"
#include "vmm/config.h"
#include "vmm/config_json.h"
#include "vmm/vm_records.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define COM1 0x3f8
/* The serial record: the device name (32 bytes), seven registers, then
 * thri_pending, rx_head, rx_count, the receive FIFO. */
#define SERIAL_THRI 39
#define SERIAL_RX_HEAD 40

static struct state_buf save(struct device *d)
{
	struct state_buf sb;
	state_buf_init_save(&sb, d->ops->name);
	CHECK_EQ(vm_record_device(d, &sb), 0);
	return sb;
}

static int restore(struct device *d, const void *p, size_t len)
{
	struct state_buf sb;
	state_buf_init_restore(&sb, p, len, d->ops->name);
	return vm_record_device(d, &sb);
}

static struct device *find(struct vm *vm, const char *name)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (strcmp(d->ops->name, name) == 0)
			return d;
	return NULL;
}

static void pio(struct vm *vm, uint16_t port, uint8_t v)
{
	iobus_dispatch(&vm->pio, port, &v, 1, true);
}

/* A record the device refuses must not change it: before, the serial
 * port kept the receive index it had just refused, and its next read of
 * RBR indexed past the FIFO (fuzz_records). */
static void test_refused_changes_nothing(struct vm *vm)
{
	struct device *ser = find(vm, "serial"), *kbd = find(vm, "i8042");
	CHECK(ser && kbd);
	if (!ser || !kbd)
		return;
	pio(vm, COM1 + 4, 0x10); /* loopback: what is sent is received */
	pio(vm, COM1, 'a');
	pio(vm, COM1, 'b');
	struct state_buf a = save(ser);
	uint32_t head;
	memcpy(&head, a.p + SERIAL_RX_HEAD, 4);
	CHECK_EQ(head, 0);

	uint8_t *bad = malloc(a.off);
	memcpy(bad, a.p, a.off);
	uint32_t h = 5000;
	memcpy(bad + SERIAL_RX_HEAD, &h, 4);
	CHECK_EQ(restore(ser, bad, a.off), -EINVAL);
	CHECK(strstr(err_msg(), "saved receive FIFO out of range (head 5000") != NULL);
	struct state_buf b = save(ser);
	CHECK(b.off == a.off && memcmp(a.p, b.p, a.off) == 0);
	state_buf_release(&b);

	memcpy(bad, a.p, a.off);
	bad[SERIAL_THRI] = 2;
	CHECK_EQ(restore(ser, bad, a.off), -EINVAL);
	CHECK(strstr(err_msg(), "a flag of value 2") != NULL);
	b = save(ser);
	CHECK(b.off == a.off && memcmp(a.p, b.p, a.off) == 0);
	state_buf_release(&b);
	free(bad);

	/* Another device's record, and a short one. */
	struct state_buf k = save(kbd);
	CHECK_EQ(restore(ser, k.p, k.off), -EINVAL);
	CHECK(strstr(err_msg(), "state of a 'i8042' device for a 'serial' device") != NULL);
	CHECK_EQ(restore(ser, a.p, a.off - 1), -EINVAL);
	b = save(ser);
	CHECK(b.off == a.off && memcmp(a.p, b.p, a.off) == 0);
	state_buf_release(&b);
	state_buf_release(&k);

	/* The port still reads what it had. */
	uint8_t v = 0;
	iobus_dispatch(&vm->pio, COM1, &v, 1, false);
	CHECK_EQ(v, 'a');
	/* A good record is taken. */
	CHECK_EQ(restore(ser, a.p, a.off), 0);
	iobus_dispatch(&vm->pio, COM1, &v, 1, false);
	CHECK_EQ(v, 'a');
	state_buf_release(&a);
}

/* A NIC entry without "model" (written before model 2) is the older
 * virtio-net model; "model":2 today's; anything else is refused; and
 * today's NICs are written with "model":2. */
static void test_nic_models(void)
{
	const char *nics[] = {"{\"mac\":\"52:54:00:12:34:56\",\"backend\":\"user\"}",
			      "{\"mac\":\"52:54:00:12:34:56\",\"backend\":\"user\",\"model\":2}",
			      "{\"mac\":\"52:54:00:12:34:56\",\"backend\":\"user\",\"model\":3}"};
	for (int i = 0; i < 3; i++) {
		char text[512];
		snprintf(text, sizeof(text),
			 "{\"mem_bytes\":1048576,\"cpus\":1,\"disks\":[],\"nics\":[%s]}", nics[i]);
		json_t *j = json_loads(text, 0, NULL);
		CHECK(j != NULL);
		struct vm_config cfg;
		memset(&cfg, 0, sizeof(cfg));
		int r = vm_config_from_json(j, "test", &cfg);
		CHECK_EQ(r, i == 2 ? -EINVAL : 0);
		if (r == 0) {
			CHECK_EQ(cfg.nnics, 1);
			CHECK_EQ(cfg.nics[0].legacy, i == 0);
			json_t *out = vm_config_to_json(&cfg);
			json_t *nic = json_array_get(json_object_get(out, "nics"), 0);
			CHECK_EQ(json_object_get(nic, "model") != NULL, i == 1);
			json_decref(out);
			vm_config_free(&cfg);
		}
		json_decref(j);
	}
}

int main(void)
{
	log_set_level(LOG_ERROR);
	test_nic_models();
	struct vm *vm = calloc(1, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	iobus_init(&vm->pio, "pio");
	iobus_init(&vm->mmio, "mmio");
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	struct devices_config cfg = {.console = {-1, -1}};
	int r = devices_init(vm, &cfg);
	if (r < 0)
		fprintf(stderr, "devices_init: %s\n", err_msg());
	CHECK_EQ(r, 0);
	if (r == 0)
		test_refused_changes_nothing(vm);
	devices_destroy(vm);
	iobus_destroy(&vm->pio);
	iobus_destroy(&vm->mmio);
	free(vm);
	TEST_DONE();
}
