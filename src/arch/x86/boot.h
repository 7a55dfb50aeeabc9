/* Loading a kernel the way its boot protocol wants: a Linux bzImage (x86
 * boot protocol, 64-bit entry) or an ELF with a PVH entry note. */
#ifndef CAIRN_ARCH_X86_BOOT_H
#define CAIRN_ARCH_X86_BOOT_H

#include "arch/x86/cpu.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

enum kernel_format { KERNEL_BZIMAGE, KERNEL_PVH_ELF };

struct kernel_image {
	enum kernel_format format;
	bool is_linux; /* a Linux kernel (bzImage, or vmlinux with a "Linux" note) */
	uint8_t *data;
	size_t size;
	const char *path;
};

/* Read PATH and identify its format; errors name the file and what is
 * wrong with it. */
int kernel_image_open(const char *path, struct kernel_image *img);
void kernel_image_close(struct kernel_image *img);
/* Identify a kernel held in memory (also used by the fuzz tests). */
int kernel_image_probe(struct kernel_image *img);

/* Place kernel, initrd (may be NULL), command line, memory map and boot
 * structures in guest RAM; fill in where the boot CPU starts.  RSDP is the
 * ACPI root pointer handed to the kernel (0: none). */
int x86_boot_load(struct vm *vm, const struct kernel_image *kernel, const char *initrd_path,
		  const char *cmdline, uint64_t rsdp, struct boot_entry *entry);

/* The e820 map of VM's RAM (shared by both protocols). */
struct e820_entry {
	uint64_t addr, size;
	uint32_t type;
};
#define E820_RAM 1
#define E820_RESERVED 2
unsigned x86_e820_build(uint64_t ram_size, struct e820_entry *out, unsigned max);

#endif
