/*
 * PVH start_info, e820 map, CPU discovery (ACPI MADT, else Intel MP table,
 * else one CPU) and AP start-up by INIT/SIPI.  All of it runs in user mode on
 * the BSP: table scans are loops, and loops are cheap only at CPL3 on PVM.
 */
#include "platform.h"
#include "ulib.h"

char cmdline[4096];
uint64_t ram_bytes, ram_top;
uint64_t ioapic_base = 0xfec00000;
unsigned serial_gsi = 4;
const char *cpu_table = "none";
uint64_t rsdp_paddr;
volatile uint32_t cpu_online[MAX_CPUS];

uint32_t phys_rd32(uint64_t a)
{
	uint32_t v;
	memcpy(&v, (const void *)a, 4);
	return v;
}

uint64_t phys_rd64(uint64_t a)
{
	uint64_t v;
	memcpy(&v, (const void *)a, 8);
	return v;
}

static uint16_t rd16(uint64_t a)
{
	uint16_t v;
	memcpy(&v, (const void *)a, 2);
	return v;
}

static int checksum_ok(uint64_t a, uint32_t len)
{
	uint8_t s = 0;
	for (uint32_t i = 0; i < len; i++)
		s += *(const uint8_t *)(a + i);
	return s == 0;
}

int platform_read_start_info(uint64_t si)
{
	if (!si || phys_rd32(si) != 0x336ec578)
		return -1;
	uint32_t version = phys_rd32(si + 4);
	uint64_t cl = phys_rd64(si + 24);
	rsdp_paddr = phys_rd64(si + 32);
	if (cl) {
		size_t i;
		for (i = 0; i < sizeof(cmdline) - 1 && ((const char *)cl)[i]; i++)
			cmdline[i] = ((const char *)cl)[i];
		cmdline[i] = 0;
	}
	uint64_t map = version >= 1 ? phys_rd64(si + 40) : 0;
	uint32_t n = version >= 1 ? phys_rd32(si + 48) : 0;
	uint64_t lo = ((uint64_t)__stacks_end + 0x1fffff) & ~0x1fffffull;
	uint64_t hi = (uint64_t)IDMAP_GIB << 30;
	if (!map || !n) {
		/* no map: assume 64 MiB */
		ram_bytes = ram_top = 64 * MIB;
		pool_add(lo, 64 * MIB);
		return 0;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t e = map + 24ull * i;
		uint64_t a = phys_rd64(e), len = phys_rd64(e + 8);
		if (phys_rd32(e + 16) != 1)
			continue;
		ram_bytes += len;
		if (a + len > ram_top)
			ram_top = a + len;
		uint64_t s = a > lo ? a : lo, t = a + len < hi ? a + len : hi;
		if (t > s)
			pool_add(s, t);
	}
	return 0;
}

/* ---- ACPI ---- */

static uint64_t find_rsdp(void)
{
	if (rsdp_paddr && !memcmp((void *)rsdp_paddr, "RSD PTR ", 8))
		return rsdp_paddr;
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
		if (!memcmp((void *)a, "RSD PTR ", 8) && checksum_ok(a, 20))
			return a;
	return 0;
}

static void add_cpu(uint32_t apic_id)
{
	if (apic_id == cpu_apic_id[0])
		return; /* the BSP is cpu0 */
	if (ncpus < MAX_CPUS)
		cpu_apic_id[ncpus++] = apic_id;
}

static void parse_madt(uint64_t t)
{
	uint32_t len = phys_rd32(t + 4);
	for (uint64_t p = t + 44; p + 2 <= t + len;) {
		uint8_t type = *(uint8_t *)p, l = *(uint8_t *)(p + 1);
		if (l < 2)
			break;
		if (type == 0 && (phys_rd32(p + 4) & 1)) /* enabled, not just online-capable */
			add_cpu(*(uint8_t *)(p + 3));
		else if (type == 9 && (phys_rd32(p + 8) & 1))
			add_cpu(phys_rd32(p + 4));
		else if (type == 1)
			ioapic_base = phys_rd32(p + 4);
		else if (type == 2 && *(uint8_t *)(p + 3) == 4)
			serial_gsi = phys_rd32(p + 4);
		p += l;
	}
}

static int acpi_find_cpus(void)
{
	uint64_t rsdp = find_rsdp();
	if (!rsdp)
		return 0;
	rsdp_paddr = rsdp;
	int x = *(uint8_t *)(rsdp + 15) >= 2 && phys_rd64(rsdp + 24);
	uint64_t sdt = x ? phys_rd64(rsdp + 24) : phys_rd32(rsdp + 16);
	if (!sdt)
		return 0;
	uint32_t len = phys_rd32(sdt + 4), esz = x ? 8 : 4;
	for (uint64_t p = sdt + 36; p + esz <= sdt + len; p += esz) {
		uint64_t t = x ? phys_rd64(p) : phys_rd32(p);
		if (t && !memcmp((void *)t, "APIC", 4)) {
			parse_madt(t);
			return 1;
		}
	}
	return 0;
}

/* ---- Intel MP table (MPS 1.4) ---- */

static uint64_t find_mpfp(uint64_t from, uint64_t to)
{
	for (uint64_t a = from; a + 16 <= to; a += 16)
		if (!memcmp((void *)a, "_MP_", 4) && checksum_ok(a, 16))
			return a;
	return 0;
}

static int mp_find_cpus(void)
{
	uint64_t fp = find_mpfp(0xf0000, 0x100000);
	if (!fp)
		fp = find_mpfp(0x9fc00, 0xa0000);
	if (!fp)
		return 0;
	uint64_t ct = phys_rd32(fp + 4);
	if (!ct || memcmp((void *)ct, "PCMP", 4))
		return 0;
	/* walk by the table length, not the entry count: qboot leaves the count 0 */
	uint64_t end = ct + rd16(ct + 4);
	for (uint64_t p = ct + 44; p < end;) {
		uint8_t type = *(uint8_t *)p;
		if (type > 4)
			break;
		if (type == 0) {
			if (*(uint8_t *)(p + 3) & 1)
				add_cpu(*(uint8_t *)(p + 1));
			p += 20;
		} else {
			if (type == 2 && (*(uint8_t *)(p + 3) & 1))
				ioapic_base = phys_rd32(p + 4);
			p += 8;
		}
	}
	return 1;
}

void platform_find_cpus(void)
{
	cpu_apic_id[0] = lapic_r(0x20) >> 24;
	ncpus = 1;
	if (acpi_find_cpus())
		cpu_table = "madt";
	else if (mp_find_cpus())
		cpu_table = "mptable";
}

/* ---- INIT/SIPI ---- */

static void send_ipi(uint32_t apic_id, uint32_t low)
{
	lapic_w(0x310, apic_id << 24);
	lapic_w(0x300, low);
	for (int i = 0; i < 100000 && (lapic_r(0x300) & 0x1000); i++)
		cpu_relax();
}

/* Sleeps (hlt) until the AP says it is up (it sends VEC_WAKE): a spinning BSP
   would take the host CPU the AP's vCPU thread needs. */
static int wait_online(unsigned cpu, uint64_t ns)
{
	uint64_t end = now_ns() + ns;
	for (;;) {
		uint64_t seen = this_pc()->events, now = now_ns();
		if (cpu_online[cpu])
			return 1;
		if (now > end)
			return 0;
		wait_event(seen, now + 1000000 < end ? now + 1000000 : end);
	}
}

unsigned platform_start_aps(void)
{
	unsigned up = 1;
	cpu_online[0] = 1;
	if (ncpus < 2)
		return 1;
	memcpy((void *)TRAMPOLINE_ADDR, tramp_start, (size_t)(tramp_end - tramp_start));
	for (unsigned i = 1; i < ncpus; i++) {
		/* APs that do not come up are dropped: cpus are numbered densely */
		ap_boot_cpu = up;
		barrier();
		send_ipi(cpu_apic_id[i], 0x4500); /* INIT */
		send_ipi(cpu_apic_id[i], 0x4600 | (TRAMPOLINE_ADDR >> 12));
		if (!wait_online(up, 20000000)) {
			send_ipi(cpu_apic_id[i], 0x4600 | (TRAMPOLINE_ADDR >> 12));
			if (!wait_online(up, 500000000)) {
				con_printf(
				    "cairn-guest: warning: cpu with apic id %u did not start",
				    cpu_apic_id[i]);
				continue;
			}
		}
		cpu_apic_id[up++] = cpu_apic_id[i];
	}
	ncpus = up;
	return up;
}

void ioapic_route(unsigned gsi, unsigned vector, uint32_t apic_id)
{
	mmio_w32(ioapic_base, 0x10 + 2 * gsi + 1);
	mmio_w32(ioapic_base + 0x10, apic_id << 24);
	mmio_w32(ioapic_base, 0x10 + 2 * gsi);
	mmio_w32(ioapic_base + 0x10, vector); /* fixed, physical, edge, high, unmasked */
}
