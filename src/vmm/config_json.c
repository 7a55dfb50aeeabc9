#include "vmm/config_json.h"
#include "util/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

json_t *vm_config_to_json(const struct vm_config *cfg)
{
	json_t *disks = json_array();
	for (int i = 0; i < cfg->ndisks; i++) {
		const struct disk_config *d = &cfg->disks[i];
		json_t *dj = json_pack("{s:s, s:s*, s:b, s:s*}", "path", d->path, "format",
				       d->format, "readonly", d->readonly, "serial", d->serial);
		if (dj && d->size)
			json_object_set_new(dj, "size", json_integer((json_int_t)d->size));
		json_array_append_new(disks, dj);
	}
	return json_pack("{s:I, s:i, s:s*, s:s*, s:s*, s:o, s:b}", "mem_bytes",
			 (json_int_t)cfg->mem_size, "cpus", cfg->ncpus, "kernel", cfg->kernel,
			 "initrd", cfg->initrd, "cmdline", cfg->cmdline, "disks", disks,
			 "pvm_quirks", cfg->pvm_quirks);
}

int vm_config_from_json(const json_t *j, const char *name, struct vm_config *cfg)
{
	json_int_t mem = 0;
	int cpus = 0, quirks = 1;
	const char *kernel = NULL, *initrd = NULL, *cmdline = NULL;
	json_t *disks = NULL;
	json_error_t e;
	if (json_unpack_ex((json_t *)j, &e, 0, "{s:I, s:i, s?s, s?s, s?s, s:o, s?b}", "mem_bytes",
			   &mem, "cpus", &cpus, "kernel", &kernel, "initrd", &initrd, "cmdline",
			   &cmdline, "disks", &disks, "pvm_quirks", &quirks) < 0)
		return err_set(EINVAL, "%s: machine configuration: %s", name, e.text);
	if (mem <= 0 || cpus < 1 || cpus > 64 || !json_is_array(disks) ||
	    json_array_size(disks) > VM_MAX_DISKS)
		return err_set(EINVAL, "%s: machine configuration out of range", name);
	/* The strings are borrowed from J until vm_config_copy makes them ours. */
	struct vm_config in = {
	    .mem_size = (uint64_t)mem,
	    .ncpus = cpus,
	    .pvm_quirks = quirks,
	    .kernel = (char *)kernel,
	    .initrd = (char *)initrd,
	    .cmdline = (char *)cmdline,
	};
	size_t i;
	json_t *d;
	json_array_foreach(disks, i, d)
	{
		const char *path = NULL, *format = NULL, *serial = NULL;
		int ro = 0;
		json_int_t size = 0;
		if (json_unpack_ex(d, &e, 0, "{s:s, s?s, s?b, s?s, s?I}", "path", &path, "format",
				   &format, "readonly", &ro, "serial", &serial, "size", &size) < 0)
			return err_set(EINVAL, "%s: disk %zu: %s", name, i, e.text);
		if (size < 0)
			return err_set(EINVAL, "%s: disk %zu: size %lld", name, i, (long long)size);
		in.disks[in.ndisks++] = (struct disk_config){.path = (char *)path,
							     .format = (char *)format,
							     .readonly = ro,
							     .serial = (char *)serial,
							     .size = (uint64_t)size};
	}
	return vm_config_copy(cfg, &in);
}
