/* The field lists of the VM and vCPU records of state.bin: they must
 * produce the bytes of record version 1 (for the VM record, the struct as
 * it lies in memory, which is how it used to be written), read them back
 * to the same state, and refuse payloads of the wrong length. */
#include "arch/x86/vcpu_state.h"
#include "snapshot/state_buf.h"
#include "test.h"
#include "util/err.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fill(void *p, size_t n, unsigned seed)
{
	uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (uint8_t)(seed >> 16);
	}
}

static void test_vm_record(void)
{
	static struct x86_vm_state st, back;
	fill(&st, sizeof(st), 1);
	st.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	st.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	st.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	struct state_buf sb;
	state_buf_init_save(&sb, "VM");
	CHECK_EQ(x86_vm_state_fields(&st, &sb), 0);
	CHECK_EQ(sb.off, sizeof(st));
	CHECK(sb.off == sizeof(st) && memcmp(sb.p, &st, sizeof(st)) == 0);

	struct state_buf rb;
	state_buf_init_restore(&rb, sb.p, sb.off, "VM");
	CHECK_EQ(x86_vm_state_fields(&back, &rb), 0);
	CHECK(memcmp(&back, &st, sizeof(st)) == 0);

	state_buf_init_restore(&rb, sb.p, sb.off - 1, "VM");
	CHECK(x86_vm_state_fields(&back, &rb) < 0);
	uint8_t *longer = calloc(1, sb.off + 1);
	memcpy(longer, sb.p, sb.off);
	state_buf_init_restore(&rb, longer, sb.off + 1, "VM");
	CHECK(x86_vm_state_fields(&back, &rb) < 0);
	free(longer);

	/* KVM_SET_IRQCHIP sets the chip a record names: a record whose chips
	 * are out of place would load one chip's state into another. */
	struct x86_vm_state swapped = st;
	swapped.pic_master.chip_id = KVM_IRQCHIP_IOAPIC;
	swapped.ioapic.chip_id = KVM_IRQCHIP_PIC_MASTER;
	state_buf_release(&sb);
	state_buf_init_save(&sb, "VM");
	CHECK_EQ(x86_vm_state_fields(&swapped, &sb), 0);
	state_buf_init_restore(&rb, sb.p, sb.off, "VM");
	CHECK(x86_vm_state_fields(&back, &rb) < 0);
	CHECK(strstr(err_msg(), "VM: irqchip states out of place") != NULL);
	state_buf_release(&sb);
}

/* Version 1 of the vCPU record: the fixed fields back to back, then the
 * used parts of xsave, msrs and cpuid. */
static size_t vcpu_v1(const struct x86_vcpu_state *st, uint8_t *out)
{
	size_t n = 0;
#define PUT(p, len) (memcpy(out + n, (p), (len)), n += (len))
	PUT(&st->regs, sizeof(st->regs));
	PUT(&st->sregs, sizeof(st->sregs));
	PUT(&st->xcrs, sizeof(st->xcrs));
	PUT(&st->debugregs, sizeof(st->debugregs));
	PUT(&st->lapic, sizeof(st->lapic));
	PUT(&st->mp_state, sizeof(st->mp_state));
	PUT(&st->events, sizeof(st->events));
	PUT(&st->tsc_khz, 4);
	PUT(&st->xsave_size, 4);
	PUT(&st->nmsrs, 4);
	PUT(&st->ncpuid, 4);
	PUT(st->xsave, st->xsave_size);
	PUT(st->msrs, st->nmsrs * sizeof(st->msrs[0]));
	PUT(st->cpuid, st->ncpuid * sizeof(st->cpuid[0]));
#undef PUT
	return n;
}

static void test_vcpu_record(void)
{
	static struct x86_vcpu_state st, back;
	static uint8_t want[sizeof(st)], got[sizeof(st)];
	fill(&st, sizeof(st), 2);
	st.xsave_size = 4096;
	st.nmsrs = 3;
	st.ncpuid = 2;
	size_t n = vcpu_v1(&st, want);
	struct state_buf sb;
	state_buf_init_save(&sb, "vCPU 0");
	CHECK_EQ(x86_vcpu_state_fields(&st, &sb), 0);
	CHECK_EQ(sb.off, n);
	CHECK(sb.off == n && memcmp(sb.p, want, n) == 0);

	/* Back to the same fields (padding between them is not recorded). */
	struct state_buf rb;
	state_buf_init_restore(&rb, sb.p, sb.off, "vCPU 0");
	CHECK_EQ(x86_vcpu_state_fields(&back, &rb), 0);
	CHECK(vcpu_v1(&back, got) == n && memcmp(got, want, n) == 0);

	state_buf_init_restore(&rb, sb.p, sb.off - 1, "vCPU 0");
	CHECK(x86_vcpu_state_fields(&back, &rb) < 0);
	state_buf_release(&sb);

	/* A count past its array is refused before anything is read with it. */
	back = st;
	back.xsave_size = back.nmsrs = back.ncpuid = 0;
	n = vcpu_v1(&back, want); /* the fixed part; nmsrs and ncpuid end it */
	uint32_t too_many = X86_MAX_MSRS + 1;
	memcpy(want + n - 8, &too_many, 4);
	state_buf_init_restore(&rb, want, n, "vCPU 0");
	CHECK(x86_vcpu_state_fields(&back, &rb) < 0);

	/* KVM_SET_XSAVE reads at least a struct kvm_xsave, more on hosts with
	 * a larger XSAVE area: a record's XSAVE area is never shorter than
	 * that (nothing but the record may fill the rest), and the rest of
	 * the buffer is zero whatever it held. */
	back = st;
	back.xsave_size = 1024;
	n = vcpu_v1(&back, want);
	memset(&back, 0xa5, sizeof(back));
	state_buf_init_restore(&rb, want, n, "vCPU 0");
	CHECK(x86_vcpu_state_fields(&back, &rb) < 0);
	CHECK(strstr(err_msg(), "vCPU 0: impossible sizes") != NULL);
	back = st;
	back.xsave_size = 8192;
	n = vcpu_v1(&back, want);
	memset(&back, 0xa5, sizeof(back));
	state_buf_init_restore(&rb, want, n, "vCPU 0");
	CHECK_EQ(x86_vcpu_state_fields(&back, &rb), 0);
	CHECK(memcmp(back.xsave, st.xsave, 8192) == 0);
	size_t nonzero = 0;
	for (size_t i = 8192; i < sizeof(back.xsave); i++)
		nonzero += back.xsave[i] != 0;
	CHECK_EQ(nonzero, 0);
}

int main(void)
{
	test_vm_record();
	test_vcpu_record();
	TEST_DONE();
}
