/* user_start: every CPU's first user-mode code.  cpu0 boots the machine. */
#include "jobs.h"
#include "platform.h"
#include "ulib.h"

static volatile int go;

static void ap_main(unsigned cpu)
{
	lapic_init_cpu();
	cpu_online[cpu] = 1;
	barrier();
	lapic_w(0x310, cpu_apic_id[0] << 24); /* wake the BSP: fixed IPI, VEC_WAKE */
	lapic_w(0x300, VEC_WAKE);
	/* sleep until `go` (the BSP broadcasts VEC_WAKE after "ready") */
	for (;;) {
		uint64_t seen = this_pc()->events;
		if (go)
			break;
		wait_event(seen, now_ns() + 10000000);
	}
	jobs_run_cpu(cpu);
	sys_halt();
}

static void bsp_main(uint64_t start_info)
{
	uint64_t vm_entry_us = kvmclock_ns() / 1000, tsc_entry = rdtsc();
	if (platform_read_start_info(start_info)) {
		con_printf("cairn-guest: no PVH start_info (magic) at 0x%lx", start_info);
		vm_exit(EXIT_BOOT_ERROR);
	}
	lapic_init_cpu();
	time_init();
	platform_find_cpus();
	jobs_parse(cmdline);
	unsigned n = platform_start_aps();
	uint64_t boot_us = (rdtsc() - tsc_entry) * 1000 / tsc_khz, vm_us = kvmclock_ns() / 1000;
	con_printf("\r\ncairn-guest: mem=%luMiB clock=%s tsc=%lukHz cpu-table=%s boot=%luus "
		   "kvmclock=%lu/%luus",
		   ram_bytes / MIB, clock_source, tsc_khz, cpu_table, boot_us, vm_entry_us, vm_us);
	con_printf("cairn-guest: cpus=%u", n);
	con_printf("cairn-guest: ready");
	jobs_warn_unplaced();
	go = 1;
	barrier();
	lapic_w(0x300, 0xc0000 | VEC_WAKE); /* all but self */
	jobs_run_cpu(0);
	sys_halt();
}

void user_start(uint64_t cpu, uint64_t start_info)
{
	if (cpu == 0)
		bsp_main(start_info);
	else
		ap_main((unsigned)cpu);
}
