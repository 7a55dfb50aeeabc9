/* Boot information, memory map, CPU tables and SMP bring-up (user mode, BSP). */
#ifndef GUEST_PLATFORM_H
#define GUEST_PLATFORM_H

#include <stdint.h>

extern char cmdline[4096];
extern uint64_t ram_bytes;
extern uint64_t ram_top; /* end of the highest RAM range in the map */
extern uint64_t ioapic_base;
extern unsigned serial_gsi;
extern const char *cpu_table; /* "madt", "mptable" or "none" */

int platform_read_start_info(uint64_t start_info); /* 0 ok */
void platform_find_cpus(void); /* fills ncpus, cpu_apic_id[] (BSP first), ioapic_base */
extern uint64_t rsdp_paddr;
/* Little-endian words at guest physical A (identity-mapped; unaligned is fine). */
uint32_t phys_rd32(uint64_t a);
uint64_t phys_rd64(uint64_t a);
unsigned platform_start_aps(void); /* returns the number of CPUs online */
void ioapic_route(unsigned gsi, unsigned vector, uint32_t apic_id);

extern volatile uint32_t cpu_online[];
#endif
