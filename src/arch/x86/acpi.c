#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "kvm/vm.h"
#include "util/err.h"

#include <errno.h>
#include <string.h>

#define ACPI_HDR_LEN 36
#define FADT_LEN 276
#define FADT_FLAG_HW_REDUCED (1u << 20)
#define FADT_FLAG_RESET_REG_SUP (1u << 10)
#define MADT_PCAT_COMPAT 1u

static uint8_t acpi_checksum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;
	while (len--)
		s += *p++;
	return (uint8_t)-s;
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* Fill the common header of a table of LEN bytes and checksum it (the
 * body must already be in place). */
static void acpi_finish(uint8_t *t, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, "CAIRN ", 6);
	memcpy(t + 16, "CAIRNVM ", 8);
	put32(t + 24, 1);
	memcpy(t + 28, "CRN ", 4);
	put32(t + 32, 1);
	t[9] = 0;
	t[9] = acpi_checksum(t, len);
}

/* ---- AML for the DSDT: the PCI root bridge, COM1, the VM generation ID ---- */

struct aml {
	uint8_t *p;
	size_t len, cap;
};

static void aml_put(struct aml *a, const void *d, size_t n)
{
	if (a->len + n <= a->cap)
		memcpy(a->p + a->len, d, n);
	a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
	aml_put(a, &b, 1);
}

/* OP(s), a PkgLength, then BODY: PkgLength counts itself and BODY. */
static void aml_pkg(struct aml *a, const uint8_t *op, size_t oplen, const struct aml *body)
{
	if (body->len > body->cap) { /* the body overflowed: so does the whole */
		a->len = a->cap + 1;
		return;
	}
	aml_put(a, op, oplen);
	size_t n = body->len + 1;
	if (n < 0x40) {
		aml_byte(a, (uint8_t)n);
	} else {
		n++;
		aml_byte(a, (uint8_t)(0x40 | (n & 0xf)));
		aml_byte(a, (uint8_t)(n >> 4));
	}
	aml_put(a, body->p, body->len);
}

static void aml_name(struct aml *a, const char seg[4])
{
	aml_byte(a, 0x08); /* NameOp */
	aml_put(a, seg, 4);
}

/* The head of a Device body: its name, _HID (an EISA id, compressed) and
 * _UID 0. */
static void aml_device_head(struct aml *dev, const char name[4], const char eisa_id[4])
{
	aml_put(dev, name, 4);
	aml_name(dev, "_HID");
	aml_byte(dev, 0x0c); /* DWordPrefix: EisaId */
	aml_put(dev, eisa_id, 4);
	aml_name(dev, "_UID");
	aml_byte(dev, 0x00);
}

/* Name (_CRS, ResourceTemplate () {...}): CRS holds the descriptors,
 * EndTag included. */
static void aml_crs(struct aml *dev, const uint8_t *crs, uint8_t len)
{
	uint8_t b[256];
	struct aml buf = {b, 0, sizeof(b)};
	aml_byte(&buf, 0x0a); /* BytePrefix: buffer size */
	aml_byte(&buf, len);
	aml_put(&buf, crs, len);
	aml_name(dev, "_CRS");
	static const uint8_t buffer_op = 0x11;
	aml_pkg(dev, &buffer_op, 1, &buf);
}

/* Device (...) { DEV } into SCOPE. */
static void aml_device(struct aml *scope, const struct aml *dev)
{
	static const uint8_t device_op[] = {0x5b, 0x82};
	aml_pkg(scope, device_op, 2, dev);
}

/* Device (\_SB.COM1): PNP0501 at 0x3f8 with ISA IRQ 4 (edge, active
 * high).  The FADT says hardware-reduced, so Linux sets up no legacy ISA
 * IRQs by itself ("preallocated irqs: 0"): without this device the 8250
 * driver's request for IRQ 4 has no IOAPIC pin behind it, the port never
 * gets its THRE interrupt, and everything but printk stays in the tty
 * buffer.  Through this entry the PnP driver maps GSI 4 as the resource
 * says. */
static void acpi_dsdt_com1(struct aml *sb)
{
	static const uint8_t crs[] = {
		/* IO (Decode16, 0x3f8, 0x3f8, 0, 8) */
		0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08,
		/* IRQNoFlags () {4}: edge-triggered, active high */
		0x22, 1u << COM1_IRQ, 0x00,
		/* EndTag */
		0x79, 0x00,
	};
	uint8_t b[128];
	struct aml dev = {b, 0, sizeof(b)};
	aml_device_head(&dev, "COM1", "\x41\xd0\x05\x01"); /* PNP0501 */
	aml_crs(&dev, crs, sizeof(crs));
	aml_device(sb, &dev);
}

/* Name (SEG, "TEXT"): a string object (StringPrefix, ASCIIZ). */
static void aml_name_string(struct aml *a, const char seg[4], const char *text)
{
	aml_name(a, seg);
	aml_byte(a, 0x0d); /* StringPrefix */
	aml_put(a, text, strlen(text) + 1);
}

/* Device (\_SB.VGEN): the VM generation ID (Microsoft's specification).
 * Linux's vmgenid driver matches _HID VMGENCTR or _CID VM_GEN_COUNTER;
 * the _HID is cairn's own valid ACPI ID instead (VMGENCTR is not one:
 * iasl refuses to compile it back), the _CID is what the driver matches
 * and the specification names (ACPICA upper-cases _CID strings, so
 * QEMU's "VM_Gen_Counter" is the same).  ADDR is the Package (2) {low 32 bits, high 32 bits} of the 16 bytes'
 * guest-physical address, which is all the driver evaluates. */
static void acpi_dsdt_vmgenid(struct aml *sb, uint64_t gpa)
{
	uint8_t b[128], pb[16];
	struct aml dev = {b, 0, sizeof(b)}, pkg = {pb, 0, sizeof(pb)};
	aml_put(&dev, "VGEN", 4);
	aml_name_string(&dev, "_HID", "CRNV0001");
	aml_name_string(&dev, "_CID", "VM_GEN_COUNTER");
	aml_name_string(&dev, "_DDN", "VM_Gen_Counter");
	aml_byte(&pkg, 2); /* NumElements */
	uint32_t half[2] = {(uint32_t)gpa, (uint32_t)(gpa >> 32)};
	for (int i = 0; i < 2; i++) {
		aml_byte(&pkg, 0x0c); /* DWordPrefix */
		aml_put(&pkg, &half[i], 4);
	}
	aml_name(&dev, "ADDR");
	static const uint8_t package_op = 0x12;
	aml_pkg(&dev, &package_op, 1, &pkg);
	aml_device(sb, &dev);
}

/* Device (\_SB.GED0): an ACPI Generic Event Device (ACPI0013, ACPI 6.1
 * §5.6.9), how a hardware-reduced machine signals events: its interrupt
 * (GSI, edge, active high, exclusive) makes the OS run _EVT (GSI), which
 * tells VGEN's driver to read the ID again (Notify 0x80).  Linux has the
 * GED driver built in (drivers/acpi/evged.c). */
static void acpi_dsdt_ged(struct aml *sb, uint32_t gsi)
{
	uint8_t crs[] = {
		/* Extended Interrupt: consumer, edge, active high, exclusive; one GSI */
		0x89, 0x06, 0x00, 0x03, 0x01, 0, 0, 0, 0,
		/* EndTag */
		0x79, 0x00,
	};
	memcpy(crs + 5, &gsi, 4);
	uint8_t b[128], mb[32];
	struct aml dev = {b, 0, sizeof(b)}, method = {mb, 0, sizeof(mb)};
	aml_put(&dev, "GED0", 4);
	aml_name_string(&dev, "_HID", "ACPI0013");
	aml_name(&dev, "_UID");
	aml_byte(&dev, 0x00);
	aml_crs(&dev, crs, sizeof(crs));
	/* Method (_EVT, 1) { Notify (\_SB.VGEN, 0x80) }: one interrupt, one event */
	aml_put(&method, "_EVT", 4);
	aml_byte(&method, 0x01); /* MethodFlags: one argument, not serialized */
	static const uint8_t notify[] = {0x86, 0x5c, 0x2e, '_', 'S', 'B', '_',
					 'V',  'G',  'E',  'N', 0x0a, 0x80};
	aml_put(&method, notify, sizeof(notify));
	static const uint8_t method_op = 0x14;
	aml_pkg(&dev, &method_op, 1, &method);
	aml_device(sb, &dev);
}

/* Name (_PRT, Package () { Package () { 0xSSSSFFFF, PIN, Zero, GSI }, ... }):
 * each device's INTx pin straight to its IOAPIC input (no link devices), as
 * the MP table says; the guest takes them as PCI interrupts are, level and
 * active low.  Virtio uses MSI-X when the guest allows; this is the
 * fallback. */
static void acpi_dsdt_prt(struct aml *dev, const struct mp_pci_irq *pci, unsigned npci)
{
	uint8_t b[32 * 16 + 8];
	struct aml pkg = {b, 0, sizeof(b)};
	aml_byte(&pkg, (uint8_t)npci); /* NumElements */
	for (unsigned i = 0; i < npci; i++) {
		uint8_t e[16];
		struct aml el = {e, 0, sizeof(e)};
		aml_byte(&el, 4); /* NumElements */
		aml_byte(&el, 0x0c); /* DWordPrefix: address, any function */
		uint32_t addr = (uint32_t)pci[i].slot << 16 | 0xffff;
		aml_put(&el, &addr, 4);
		aml_byte(&el, 0x0a); /* BytePrefix: pin, 0 = INTA */
		aml_byte(&el, (uint8_t)(pci[i].pin - 1));
		aml_byte(&el, 0x00); /* ZeroOp: no link device */
		aml_byte(&el, 0x0a); /* BytePrefix: the GSI */
		aml_byte(&el, pci[i].irq);
		static const uint8_t package_op = 0x12;
		aml_pkg(&pkg, &package_op, 1, &el);
	}
	aml_name(dev, "_PRT");
	static const uint8_t package_op = 0x12;
	aml_pkg(dev, &package_op, 1, &pkg);
}

/* Device (\_SB.PCI0): PNP0A03 on bus 0 with the conf1 ports, the other I/O
 * ports and the MMIO window its BARs live in.  Without it an ACPI kernel
 * does not scan PCI at all. */
static size_t acpi_dsdt_body(uint8_t *out, size_t cap, const struct mp_pci_irq *pci,
			     unsigned npci, uint64_t vmgenid)
{
	static const uint8_t crs[] = {
		/* WordBusNumber: bus 0 only */
		0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
		/* IO (Decode16, 0xcf8, 0xcf8, 1, 8): the conf1 ports */
		0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08,
		/* WordIO 0x0000-0x0cf7 and 0x0d00-0xffff */
		0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x00, 0xf7, 0x0c, 0, 0, 0xf8, 0x0c,
		0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x0d, 0xff, 0xff, 0, 0, 0x00, 0xf3,
		/* DWordMemory, non-cacheable, read-write: the PCI MMIO window */
		0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff,
		0xbf, 0xfe, 0, 0, 0, 0, 0x00, 0x00, 0xc0, 0x3e,
		/* EndTag */
		0x79, 0x00,
	};
	uint8_t b1[1024], b2[2048];
	struct aml dev = {b1, 0, sizeof(b1)}, sb = {b2, 0, sizeof(b2)};
	aml_device_head(&dev, "PCI0", "\x41\xd0\x0a\x03"); /* PNP0A03 */
	aml_name(&dev, "_BBN");
	aml_byte(&dev, 0x00);
	aml_crs(&dev, crs, sizeof(crs));
	if (npci)
		acpi_dsdt_prt(&dev, pci, npci);

	aml_put(&sb, "\\_SB_", 5);
	aml_device(&sb, &dev);
	acpi_dsdt_com1(&sb);
	if (vmgenid) {
		acpi_dsdt_vmgenid(&sb, vmgenid);
		acpi_dsdt_ged(&sb, VMGENID_GSI);
	}

	struct aml out_aml = {out, 0, cap};
	static const uint8_t scope_op = 0x10;
	aml_pkg(&out_aml, &scope_op, 1, &sb);
	return out_aml.len <= cap ? out_aml.len : 0;
}

static uint32_t acpi_madt(uint8_t *t, int ncpus)
{
	uint8_t *p = t + ACPI_HDR_LEN;
	put32(p, (uint32_t)LAPIC_ADDR);
	put32(p + 4, MADT_PCAT_COMPAT);
	p += 8;
	for (int i = 0; i < ncpus; i++, p += 8) {
		/* Processor Local APIC: uid, APIC id, enabled. */
		p[0] = 0;
		p[1] = 8;
		p[2] = (uint8_t)i;
		p[3] = (uint8_t)i;
		put32(p + 4, 1);
	}
	/* I/O APIC: id after the CPUs, GSI base 0. */
	p[0] = 1;
	p[1] = 12;
	p[2] = (uint8_t)ncpus;
	p[3] = 0;
	put32(p + 4, (uint32_t)IOAPIC_ADDR);
	put32(p + 8, 0);
	p += 12;
	/* Local APIC NMI on LINT1 of every processor. */
	p[0] = 4;
	p[1] = 6;
	p[2] = 0xff;
	put16(p + 3, 0);
	p[5] = 1;
	p += 6;
	uint32_t len = (uint32_t)(p - t);
	acpi_finish(t, "APIC", len, 5);
	return len;
}

static void acpi_fadt(uint8_t *t, uint64_t dsdt)
{
	put32(t + 40, (uint32_t)dsdt);
	put32(t + 112, FADT_FLAG_HW_REDUCED);
	t[131] = 3; /* FADT minor version: 6.3 */
	put64(t + 140, dsdt);
	memcpy(t + 268, "CAIRNKVM", 8); /* hypervisor vendor identity */
	acpi_finish(t, "FACP", FADT_LEN, 6);
}

int x86_acpi_write(struct vm *vm, int ncpus, const struct mp_pci_irq *pci, unsigned npci,
		   uint64_t vmgenid, uint64_t *rsdp_out)
{
	const uint64_t base = ACPI_TABLES_ADDR, size = 0x4000;
	uint8_t *b = vm_gpa_to_hva(vm, base, size);
	if (!b)
		return err_set(ENOMEM, "no guest memory for the ACPI tables");
	if (ncpus > 200)
		return err_set(EINVAL, "too many vCPUs for the MADT");
	memset(b, 0, size);
	const uint64_t rsdp = base, xsdt = base + 0x40, fadt = base + 0x100,
		       dsdt = base + 0x300, madt = base + 0x800;

	uint8_t *t = b + (dsdt - base);
	if (npci > 32)
		return err_set(EINVAL, "too many PCI devices for the DSDT");
	size_t aml = acpi_dsdt_body(t + ACPI_HDR_LEN, madt - dsdt - ACPI_HDR_LEN, pci, npci,
				    vmgenid);
	if (!aml)
		return err_set(ENOSPC, "the DSDT does not fit in its %#llx bytes",
			       (unsigned long long)(madt - dsdt));
	acpi_finish(t, "DSDT", (uint32_t)(ACPI_HDR_LEN + aml), 2);
	acpi_fadt(b + (fadt - base), dsdt);
	acpi_madt(b + (madt - base), ncpus);

	t = b + (xsdt - base);
	put64(t + ACPI_HDR_LEN, fadt);
	put64(t + ACPI_HDR_LEN + 8, madt);
	acpi_finish(t, "XSDT", ACPI_HDR_LEN + 16, 1);

	t = b + (rsdp - base);
	memcpy(t, "RSD PTR ", 8);
	memcpy(t + 9, "CAIRN ", 6);
	t[15] = 2; /* ACPI 2.0+: XSDT */
	put32(t + 20, 36);
	put64(t + 24, xsdt);
	t[8] = acpi_checksum(t, 20);
	t[32] = acpi_checksum(t, 36);
	*rsdp_out = rsdp;
	return 0;
}
