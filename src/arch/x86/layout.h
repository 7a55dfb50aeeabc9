/* Guest-physical memory layout of a cairn x86 machine.
 *
 *   0x00000500  GDT used for the boot CPU's first instructions
 *   0x00006000  PVH hvm_start_info, its memory map and module list
 *   0x00007000  Linux boot_params (zero page)
 *   0x00009000  boot page tables (PML4, PDPT, 4 PDs: 4 GiB identity map)
 *   0x00020000  kernel command line
 *   0x0009fc00  start of the reserved legacy area (EBDA .. 1 MiB)
 *   0x000e0000  ACPI tables (RSDP first, found by the 0xe0000 scan)
 *   0x000e4000  VM generation ID (16 bytes; devices/vmgenid.h)
 *   0x000f0000  MP table
 *   0x00100000  kernel (bzImage protected-mode part, or PVH ELF segments)
 *   ...         initrd at the top of low RAM
 *   0xc0000000  PCI MMIO window (BARs), up to the IOAPIC
 *   0xfec00000  IOAPIC, 0xfee00000 LAPIC
 *   0xfffbc000  KVM identity map page and TSS (3 pages)
 *   4 GiB       RAM beyond LOWMEM_END continues here
 */
#ifndef CAIRN_ARCH_X86_LAYOUT_H
#define CAIRN_ARCH_X86_LAYOUT_H

#define PAGE_SIZE 4096ULL

#define BOOT_GDT_ADDR 0x500ULL
#define PVH_INFO_ADDR 0x6000ULL
#define BOOT_PARAMS_ADDR 0x7000ULL
#define BOOT_PML4_ADDR 0x9000ULL
#define BOOT_PDPT_ADDR 0xa000ULL
#define BOOT_PD_ADDR 0xb000ULL /* 4 pages */
#define CMDLINE_ADDR 0x20000ULL
#define CMDLINE_MAX 0x10000ULL
#define EBDA_START 0x9fc00ULL
#define ACPI_TABLES_ADDR 0xe0000ULL
#define VMGENID_ADDR 0xe4000ULL
#define MPTABLE_ADDR 0xf0000ULL
#define BIOS_END 0x100000ULL
#define KERNEL_LOAD_ADDR 0x100000ULL

#define PCI_MMIO_START 0xc0000000ULL
#define PCI_MMIO_END 0xfec00000ULL
#define IOAPIC_ADDR 0xfec00000ULL
#define LAPIC_ADDR 0xfee00000ULL
#define IDENTITY_MAP_ADDR 0xfffbc000ULL
#define TSS_ADDR 0xfffbd000ULL

#define LOWMEM_END PCI_MMIO_START
#define HIGHMEM_START 0x100000000ULL

#define MIN_RAM_SIZE (16ULL << 20)
#define MAX_RAM_SIZE (1ULL << 40)

#define IOAPIC_NUM_PINS 24

/* Fixed legacy I/O ports and ISA IRQs. */
#define COM1_PORT 0x3f8
#define COM1_IRQ 4
#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64
#define DEBUG_EXIT_PORT 0x501
/* The ACPI GED's interrupt (edge, active high): a VM generation ID change. */
#define VMGENID_GSI 5
#define PCI_CONF1_ADDR_PORT 0xcf8
#define PCI_CONF1_DATA_PORT 0xcfc

/* IRQs handed to PCI devices' INTx pins (level, active low). */
#define PCI_IRQ_FIRST 16
#define PCI_IRQ_LAST 23

#endif
