#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "kvm/vm.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "util/log.h"

#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define KERNEL_MAX_SIZE (512u << 20)
#define INITRD_MAX_SIZE (2048u << 20)

/* Linux boot protocol offsets (Documentation/arch/x86/boot.rst). */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define HDR_SETUP_SECTS 0x1f1
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_INIT_SIZE 0x260
#define LOADFLAG_LOADED_HIGH 0x01
#define LOADFLAG_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x01

/* PVH (xen/include/public/arch-x86/hvm/start_info.h). */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578
struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};
struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};
struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

unsigned x86_e820_build(uint64_t ram_size, struct e820_entry *out, unsigned max)
{
	uint64_t low = ram_size < LOWMEM_END ? ram_size : LOWMEM_END;
	unsigned n = 0;
	struct e820_entry all[] = {
		{0, EBDA_START, E820_RAM},
		{EBDA_START, BIOS_END - EBDA_START, E820_RESERVED},
		{BIOS_END, low - BIOS_END, E820_RAM},
		{HIGHMEM_START, ram_size - low, E820_RAM},
	};
	for (unsigned i = 0; i < 4 && n < max; i++)
		if (all[i].size)
			out[n++] = all[i];
	return n;
}

/* ---- format detection ---- */

static int elf_find_notes(const struct kernel_image *img, uint64_t *pvh_entry, bool *is_linux);

int kernel_image_probe(struct kernel_image *img)
{
	const uint8_t *d = img->data;
	if (img->size >= 0x264 && rd16(d + HDR_BOOT_FLAG) == 0xaa55 &&
	    !memcmp(d + HDR_MAGIC, "HdrS", 4)) {
		img->format = KERNEL_BZIMAGE;
		img->is_linux = true;
		return 0;
	}
	if (img->size >= sizeof(Elf32_Ehdr) && !memcmp(d, ELFMAG, SELFMAG)) {
		uint64_t entry = 0;
		int r = elf_find_notes(img, &entry, &img->is_linux);
		if (r < 0)
			return r;
		if (!entry)
			return err_set(ENOEXEC, "%s: ELF file without a PVH entry note "
						"(XEN_ELFNOTE_PHYS32_ENTRY)", img->path);
		img->format = KERNEL_PVH_ELF;
		return 0;
	}
	return err_set(ENOEXEC, "%s: not a kernel cairn can boot (neither a bzImage nor an ELF "
				"with a PVH entry note)", img->path);
}

int kernel_image_open(const char *path, struct kernel_image *img)
{
	memset(img, 0, sizeof(*img));
	img->path = path;
	char *data;
	int r = file_read_whole(path, &data, &img->size, KERNEL_MAX_SIZE);
	if (r < 0)
		return err_prefix(r, "kernel");
	img->data = (uint8_t *)data;
	r = kernel_image_probe(img);
	if (r < 0)
		kernel_image_close(img);
	return r;
}

void kernel_image_close(struct kernel_image *img)
{
	free(img->data);
	img->data = NULL;
}

/* ---- ELF (both classes, read through a common view) ---- */

struct elf_phdr_view {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz;
};

static int elf_header(const struct kernel_image *img, bool *is64, uint64_t *phoff,
		      unsigned *phnum, unsigned *phentsize)
{
	const uint8_t *d = img->data;
	if (d[EI_DATA] != ELFDATA2LSB)
		return err_set(ENOEXEC, "%s: ELF is not little-endian", img->path);
	if (d[EI_CLASS] == ELFCLASS64) {
		if (img->size < sizeof(Elf64_Ehdr))
			return err_set(ENOEXEC, "%s: truncated ELF header", img->path);
		const Elf64_Ehdr *h = (const void *)d;
		if (h->e_machine != EM_X86_64)
			return err_set(ENOEXEC, "%s: ELF for machine %u, not x86-64", img->path,
				       h->e_machine);
		*is64 = true;
		*phoff = h->e_phoff;
		*phnum = h->e_phnum;
		*phentsize = h->e_phentsize;
		if (*phentsize < sizeof(Elf64_Phdr))
			return err_set(ENOEXEC, "%s: bad ELF program header size", img->path);
	} else if (d[EI_CLASS] == ELFCLASS32) {
		const Elf32_Ehdr *h = (const void *)d;
		if (h->e_machine != EM_386 && h->e_machine != EM_X86_64)
			return err_set(ENOEXEC, "%s: ELF for machine %u, not x86", img->path,
				       h->e_machine);
		*is64 = false;
		*phoff = h->e_phoff;
		*phnum = h->e_phnum;
		*phentsize = h->e_phentsize;
		if (*phentsize < sizeof(Elf32_Phdr))
			return err_set(ENOEXEC, "%s: bad ELF program header size", img->path);
	} else {
		return err_set(ENOEXEC, "%s: unknown ELF class %u", img->path, d[EI_CLASS]);
	}
	if (*phoff > img->size || (uint64_t)*phnum * *phentsize > img->size - *phoff)
		return err_set(ENOEXEC, "%s: ELF program headers lie outside the file", img->path);
	return 0;
}

static int elf_phdr(const struct kernel_image *img, unsigned i, struct elf_phdr_view *v)
{
	bool is64 = false;
	uint64_t phoff = 0;
	unsigned phnum = 0, phentsize = 0;
	int r = elf_header(img, &is64, &phoff, &phnum, &phentsize);
	if (r < 0)
		return r;
	if (i >= phnum)
		return -ENOENT;
	const uint8_t *p = img->data + phoff + (uint64_t)i * phentsize;
	if (is64) {
		Elf64_Phdr h;
		memcpy(&h, p, sizeof(h));
		*v = (struct elf_phdr_view){h.p_type, h.p_offset, h.p_paddr, h.p_filesz, h.p_memsz};
	} else {
		Elf32_Phdr h;
		memcpy(&h, p, sizeof(h));
		*v = (struct elf_phdr_view){h.p_type, h.p_offset, h.p_paddr, h.p_filesz, h.p_memsz};
	}
	if (v->offset > img->size || v->filesz > img->size - v->offset)
		return err_set(ENOEXEC, "%s: ELF segment %u lies outside the file", img->path, i);
	if (v->filesz > v->memsz)
		return err_set(ENOEXEC, "%s: ELF segment %u has filesz > memsz", img->path, i);
	return 0;
}

static void elf_scan_notes(const uint8_t *p, uint64_t len, uint64_t *pvh_entry, bool *is_linux)
{
	while (len >= 12) {
		uint32_t namesz = rd32(p), descsz = rd32(p + 4), type = rd32(p + 8);
		uint64_t name_al = ((uint64_t)namesz + 3) & ~3ULL;
		uint64_t desc_al = ((uint64_t)descsz + 3) & ~3ULL;
		if (name_al > len - 12 || desc_al > len - 12 - name_al)
			return;
		const uint8_t *name = p + 12, *desc = name + name_al;
		if (namesz == 4 && !memcmp(name, "Xen", 4) && type == XEN_ELFNOTE_PHYS32_ENTRY)
			*pvh_entry = descsz >= 8 ? rd32(desc) | (uint64_t)rd32(desc + 4) << 32
				     : descsz >= 4 ? rd32(desc) : 0;
		if (namesz == 6 && !memcmp(name, "Linux", 6))
			*is_linux = true;
		p += 12 + name_al + desc_al;
		len -= 12 + name_al + desc_al;
	}
}

static int elf_find_notes(const struct kernel_image *img, uint64_t *pvh_entry, bool *is_linux)
{
	*pvh_entry = 0;
	*is_linux = false;
	for (unsigned i = 0;; i++) {
		struct elf_phdr_view ph;
		int r = elf_phdr(img, i, &ph);
		if (r == -ENOENT)
			return 0;
		if (r < 0)
			return r;
		if (ph.type == PT_NOTE)
			elf_scan_notes(img->data + ph.offset, ph.filesz, pvh_entry, is_linux);
	}
}

static int elf_load(struct vm *vm, const struct kernel_image *img, uint64_t *end)
{
	*end = 0;
	for (unsigned i = 0;; i++) {
		struct elf_phdr_view ph;
		int r = elf_phdr(img, i, &ph);
		if (r == -ENOENT)
			return 0;
		if (r < 0)
			return r;
		if (ph.type != PT_LOAD || !ph.memsz)
			continue;
		uint8_t *dst = vm_gpa_to_hva(vm, ph.paddr, ph.memsz);
		if (!dst || ph.paddr < BIOS_END)
			return err_set(ENOMEM, "%s: ELF segment %u at %#llx+%#llx does not fit in "
					       "guest RAM above 1 MiB",
				       img->path, i, (unsigned long long)ph.paddr,
				       (unsigned long long)ph.memsz);
		memcpy(dst, img->data + ph.offset, ph.filesz);
		memset(dst + ph.filesz, 0, ph.memsz - ph.filesz);
		if (ph.paddr + ph.memsz > *end)
			*end = ph.paddr + ph.memsz;
	}
}

/* ---- initrd and command line ---- */

static int initrd_load(struct vm *vm, const char *path, uint64_t kernel_end, uint64_t max_addr,
		       uint64_t *addr, uint64_t *size)
{
	*addr = *size = 0;
	if (!path)
		return 0;
	char *data;
	size_t len;
	int r = file_read_whole(path, &data, &len, INITRD_MAX_SIZE);
	if (r < 0)
		return err_prefix(r, "initrd");
	uint64_t low_end = vm->ram_size < LOWMEM_END ? vm->ram_size : LOWMEM_END;
	uint64_t top = low_end < max_addr + 1 ? low_end : max_addr + 1;
	uint64_t start = top > len ? (top - len) & ~(PAGE_SIZE - 1) : 0;
	if (start < kernel_end) {
		free(data);
		return err_set(ENOMEM, "%s: initrd of %zu MiB does not fit in guest memory below "
				       "%#llx beside the kernel; give the VM more memory",
			       path, len >> 20, (unsigned long long)top);
	}
	memcpy(vm_gpa_to_hva(vm, start, len), data, len);
	free(data);
	*addr = start;
	*size = len;
	return 0;
}

static int cmdline_place(struct vm *vm, const char *cmdline, uint64_t max_len)
{
	size_t len = strlen(cmdline);
	if (len + 1 > max_len || len + 1 > CMDLINE_MAX)
		return err_set(E2BIG, "kernel command line of %zu bytes exceeds the kernel's limit "
				      "of %llu",
			       len, (unsigned long long)(max_len - 1));
	memcpy(vm_gpa_to_hva(vm, CMDLINE_ADDR, len + 1), cmdline, len + 1);
	return 0;
}

/* ---- PVH ---- */

static int pvh_load(struct vm *vm, const struct kernel_image *img, const char *initrd,
		    const char *cmdline, uint64_t rsdp, struct boot_entry *entry)
{
	uint64_t pvh_entry;
	bool is_linux;
	elf_find_notes(img, &pvh_entry, &is_linux);
	uint64_t end;
	int r = elf_load(vm, img, &end);
	if (r < 0)
		return r;
	uint64_t rd_addr, rd_size;
	if ((r = initrd_load(vm, initrd, end, 0xffffffffULL, &rd_addr, &rd_size)) < 0)
		return r;
	if ((r = cmdline_place(vm, cmdline, CMDLINE_MAX)) < 0)
		return r;

	uint8_t *base = vm_gpa_to_hva(vm, PVH_INFO_ADDR, PAGE_SIZE);
	memset(base, 0, PAGE_SIZE);
	struct hvm_start_info *si = (void *)base;
	struct hvm_modlist_entry *mod = (void *)(base + 0x40);
	struct hvm_memmap_entry *mm = (void *)(base + 0x100);
	struct e820_entry e820[8];
	unsigned n = x86_e820_build(vm->ram_size, e820, 8);
	for (unsigned i = 0; i < n; i++)
		mm[i] = (struct hvm_memmap_entry){e820[i].addr, e820[i].size, e820[i].type, 0};
	*si = (struct hvm_start_info){
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = CMDLINE_ADDR,
		.memmap_paddr = PVH_INFO_ADDR + 0x100,
		.memmap_entries = n,
		.rsdp_paddr = rsdp,
	};
	if (rd_size) {
		*mod = (struct hvm_modlist_entry){.paddr = rd_addr, .size = rd_size};
		si->nr_modules = 1;
		si->modlist_paddr = PVH_INFO_ADDR + 0x40;
	}
	*entry = (struct boot_entry){BOOT_PVH, pvh_entry, PVH_INFO_ADDR};
	return 0;
}

/* ---- bzImage ---- */

static int bzimage_load(struct vm *vm, const struct kernel_image *img, const char *initrd,
			const char *cmdline, uint64_t rsdp, struct boot_entry *entry)
{
	const uint8_t *k = img->data;
	uint16_t version = rd16(k + HDR_VERSION);
	if (version < 0x020c || !(rd16(k + HDR_XLOADFLAGS) & XLF_KERNEL_64))
		return err_set(ENOEXEC, "%s: bzImage boot protocol %u.%02u without a 64-bit entry "
					"point (cairn needs 2.12+)",
			       img->path, version >> 8, version & 0xff);
	unsigned setup_sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;
	uint64_t setup_size = (uint64_t)(setup_sects + 1) * 512;
	if (setup_size >= img->size)
		return err_set(ENOEXEC, "%s: truncated bzImage (setup of %llu bytes)", img->path,
			       (unsigned long long)setup_size);
	uint64_t kernel_size = img->size - setup_size;
	uint64_t init_size = rd32(k + HDR_INIT_SIZE);
	uint64_t need = init_size > kernel_size ? init_size : kernel_size;
	uint8_t *dst = vm_gpa_to_hva(vm, KERNEL_LOAD_ADDR, need);
	if (!dst)
		return err_set(ENOMEM, "%s: kernel needs %llu MiB above 1 MiB; give the VM more "
				       "memory",
			       img->path, (unsigned long long)(need >> 20) + 1);
	memcpy(dst, k + setup_size, kernel_size);

	uint64_t rd_addr, rd_size;
	int r = initrd_load(vm, initrd, KERNEL_LOAD_ADDR + need, rd32(k + HDR_INITRD_ADDR_MAX),
			    &rd_addr, &rd_size);
	if (r < 0)
		return r;
	if ((r = cmdline_place(vm, cmdline, rd32(k + HDR_CMDLINE_SIZE) + 1ULL)) < 0)
		return r;

	uint8_t *bp = vm_gpa_to_hva(vm, BOOT_PARAMS_ADDR, PAGE_SIZE);
	memset(bp, 0, PAGE_SIZE);
	/* The setup header runs from 0x1f1 to the end given by the jump at 0x200. */
	size_t hdr_end = 0x202 + k[HDR_JUMP + 1];
	if (hdr_end > img->size || hdr_end > PAGE_SIZE)
		return err_set(ENOEXEC, "%s: malformed setup header", img->path);
	memcpy(bp + HDR_SETUP_SECTS, k + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);
	bp[HDR_TYPE_OF_LOADER] = 0xff;
	bp[HDR_LOADFLAGS] |= LOADFLAG_CAN_USE_HEAP | LOADFLAG_LOADED_HIGH;
	bp[HDR_HEAP_END_PTR] = 0x00;
	bp[HDR_HEAP_END_PTR + 1] = 0xfe;
	wr32(bp + HDR_CMD_LINE_PTR, (uint32_t)CMDLINE_ADDR);
	wr32(bp + HDR_RAMDISK_IMAGE, (uint32_t)rd_addr);
	wr32(bp + HDR_RAMDISK_SIZE, (uint32_t)rd_size);
	wr32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(rd_addr >> 32));
	wr32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(rd_size >> 32));
	memcpy(bp + BP_ACPI_RSDP_ADDR, &rsdp, 8);
	struct e820_entry e820[8];
	unsigned n = x86_e820_build(vm->ram_size, e820, 8);
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = bp + BP_E820_TABLE + i * 20;
		memcpy(e, &e820[i].addr, 8);
		memcpy(e + 8, &e820[i].size, 8);
		wr32(e + 16, e820[i].type);
	}
	*entry = (struct boot_entry){BOOT_LINUX64, KERNEL_LOAD_ADDR + 0x200, BOOT_PARAMS_ADDR};
	return 0;
}

int x86_boot_load(struct vm *vm, const struct kernel_image *kernel, const char *initrd_path,
		  const char *cmdline, uint64_t rsdp, struct boot_entry *entry)
{
	int r = x86_write_boot_tables(vm);
	if (r < 0)
		return r;
	if (kernel->format == KERNEL_BZIMAGE)
		return bzimage_load(vm, kernel, initrd_path, cmdline, rsdp, entry);
	return pvh_load(vm, kernel, initrd_path, cmdline, rsdp, entry);
}
