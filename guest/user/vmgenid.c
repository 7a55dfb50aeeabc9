/*
 * The generation ID's address comes only from the tables: the DSDT's AML
 * is scanned for the _CID "VM_GEN_COUNTER" string object (what Linux's
 * driver matches) and, after it, the ADDR name
 * with its package of two integers (low and high 32 bits).  No AML
 * interpreter: the package's integers are read in the encodings a table
 * writer uses for constants (Zero, One, Byte, Word, DWord, QWord).
 */
#include "vmgenid.h"
#include "platform.h"
#include "ulib.h"


static int table_ok(uint64_t t, const char *sig)
{
	if (!t || t + 36 > ((uint64_t)IDMAP_GIB << 30) || memcmp((const void *)t, sig, 4))
		return 0;
	uint32_t len = phys_rd32(t + 4);
	if (len < 36 || len > (1u << 20))
		return 0;
	uint8_t s = 0;
	for (uint32_t i = 0; i < len; i++)
		s += *(const uint8_t *)(t + i);
	return s == 0;
}

/* The FADT through the RSDP's XSDT (or RSDT), or 0. */
static uint64_t find_fadt(void)
{
	uint64_t rsdp = rsdp_paddr;
	if (!rsdp || memcmp((const void *)rsdp, "RSD PTR ", 8))
		return 0;
	int x = *(const uint8_t *)(rsdp + 15) >= 2 && phys_rd64(rsdp + 24);
	uint64_t sdt = x ? phys_rd64(rsdp + 24) : phys_rd32(rsdp + 16);
	if (!table_ok(sdt, x ? "XSDT" : "RSDT"))
		return 0;
	uint32_t len = phys_rd32(sdt + 4), esz = x ? 8 : 4;
	for (uint64_t p = sdt + 36; p + esz <= sdt + len; p += esz) {
		uint64_t t = x ? phys_rd64(p) : phys_rd32(p);
		if (table_ok(t, "FACP"))
			return t;
	}
	return 0;
}

/* An integer constant at *P (advanced past it); -1 if P holds none. */
static int aml_int(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	const uint8_t *q = *p;
	unsigned n;
	uint8_t op = q < end ? *q : 0xff;
	if (op == 0x00 || op == 0x01) { /* ZeroOp, OneOp */
		*v = op;
		*p = q + 1;
		return 0;
	}
	/* BytePrefix, WordPrefix, DWordPrefix, QWordPrefix */
	if (op == 0x0a)
		n = 1;
	else if (op == 0x0b)
		n = 2;
	else if (op == 0x0c)
		n = 4;
	else if (op == 0x0e)
		n = 8;
	else
		return -1;
	if (q + 1 + n > end)
		return -1;
	*v = 0;
	for (unsigned i = 0; i < n; i++)
		*v |= (uint64_t)q[1 + i] << (8 * i);
	*p = q + 1 + n;
	return 0;
}

/* The ADDR value of the VM_GEN_COUNTER device in the DSDT's AML, or a reason. */
static const char *find_addr(uint64_t dsdt, uint64_t *addr)
{
	const uint8_t *aml = (const uint8_t *)dsdt + 36,
		      *end = (const uint8_t *)dsdt + phys_rd32(dsdt + 4);
	static const uint8_t cid[] = {0x08, '_', 'C', 'I', 'D', 0x0d, 'V', 'M', '_', 'G', 'E',
				      'N',  '_', 'C', 'O', 'U', 'N',  'T', 'E', 'R', 0x00};
	static const uint8_t name[] = {0x08, 'A', 'D', 'D', 'R', 0x12};
	const uint8_t *p = aml;
	while (p + sizeof(cid) <= end && memcmp(p, cid, sizeof(cid)))
		p++;
	if (p + sizeof(cid) > end)
		return "no device with _CID VM_GEN_COUNTER in the DSDT";
	while (p + sizeof(name) <= end && memcmp(p, name, sizeof(name)))
		p++;
	if (p + sizeof(name) > end)
		return "no ADDR package after VM_GEN_COUNTER";
	p += sizeof(name);
	unsigned lead = p < end ? *p >> 6 : 0; /* PkgLength: 1 + lead bytes */
	p += 1 + lead;
	if (p >= end || *p++ != 2)
		return "ADDR is not a package of two elements";
	uint64_t lo, hi;
	if (aml_int(&p, end, &lo) || aml_int(&p, end, &hi) || lo >> 32 || hi >> 32)
		return "ADDR's elements are not 32-bit integers";
	*addr = lo | hi << 32;
	return 0;
}

/* The DSDT in hex, 32 bytes a line, for a disassembler on the host. */
static void dump(uint64_t dsdt)
{
	uint32_t len = phys_rd32(dsdt + 4);
	for (uint32_t off = 0; off < len; off += 32) {
		char hex[65];
		uint32_t n = len - off < 32 ? len - off : 32;
		for (uint32_t i = 0; i < n; i++)
			fmt(hex + 2 * i, 3, "%02x", *(const uint8_t *)(dsdt + off + i));
		cpu_printf("dsdt %04x %s", off, hex);
	}
}

int vmgenid_print(int dump_dsdt)
{
	uint64_t fadt = find_fadt(), addr = 0;
	const char *why = 0;
	if (!fadt) {
		why = "no FADT through the RSDP";
	} else {
		uint32_t flen = phys_rd32(fadt + 4);
		uint64_t dsdt =
		    flen >= 148 && phys_rd64(fadt + 140) ? phys_rd64(fadt + 140) : phys_rd32(fadt + 40);
		if (!table_ok(dsdt, "DSDT"))
			why = "no valid DSDT";
		else
			why = find_addr(dsdt, &addr);
		if (dump_dsdt && table_ok(dsdt, "DSDT"))
			dump(dsdt);
	}
	if (!why && (addr + 16 > ram_top || addr + 16 > ((uint64_t)IDMAP_GIB << 30)))
		why = "ADDR outside guest RAM";
	if (why) {
		cpu_printf("vmgenid FAILED (%s)", why);
		return -1;
	}
	char hex[33];
	for (int i = 0; i < 16; i++)
		fmt(hex + 2 * i, 3, "%02x", *(volatile const uint8_t *)(addr + (uint64_t)i));
	cpu_printf("vmgenid addr=0x%lx id=%s", addr, hex);
	return 0;
}
