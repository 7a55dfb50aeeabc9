#include "vmm/config_json.h"
#include "net/net.h"
#include "util/err.h"

#include <errno.h>
#include <stdio.h>
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
	json_t *j = json_pack("{s:I, s:i, s:s*, s:s*, s:s*, s:o, s:b}", "mem_bytes",
			      (json_int_t)cfg->mem_size, "cpus", cfg->ncpus, "kernel", cfg->kernel,
			      "initrd", cfg->initrd, "cmdline", cfg->cmdline, "disks", disks,
			      "pvm_quirks", cfg->pvm_quirks);
	/* Written only when present: absent (an older configuration) means
	 * the machine has neither, and such a configuration reads back as it
	 * was written. */
	if (j && !cfg->no_rng)
		json_object_set_new(j, "rng", json_true());
	if (j && !cfg->no_vmgenid)
		json_object_set_new(j, "vmgenid", json_true());
	/* Absent without NICs: a configuration without them reads as before. */
	if (j && cfg->nnics) {
		json_t *nics = json_array();
		for (int i = 0; i < cfg->nnics; i++) {
			char mac[NET_MAC_TEXT];
			net_mac_format(cfg->nics[i].mac, mac);
			json_t *nj = json_pack("{s:s, s:s}", "mac", mac, "backend",
					       cfg->nics[i].backend);
			if (nj && !cfg->nics[i].legacy)
				json_object_set_new(nj, "model", json_integer(2));
			json_array_append_new(nics, nj);
		}
		json_object_set_new(j, "nics", nics);
	}
	return j;
}

static int nics_from_json(json_t *nics, const char *name, struct vm_config *in)
{
	if (!nics)
		return 0;
	if (!json_is_array(nics) || json_array_size(nics) > VM_MAX_NICS)
		return err_set(EINVAL, "%s: machine configuration: nics out of range", name);
	size_t i;
	json_t *n;
	json_error_t e;
	json_array_foreach(nics, i, n)
	{
		const char *mac = NULL, *backend = NULL;
		int model = 1; /* absent: written before model 2 existed */
		if (json_unpack_ex(n, &e, 0, "{s:s, s:s, s?i}", "mac", &mac, "backend", &backend,
				   "model", &model) < 0)
			return err_set(EINVAL, "%s: NIC %zu: %s", name, i, e.text);
		if (model != 1 && model != 2)
			return err_set(EINVAL, "%s: NIC %zu: virtio-net model %d (this cairn has 1 and 2)",
				       name, i, model);
		struct nic_config *nc = &in->nics[in->nnics++];
		nc->legacy = model == 1;
		if (net_mac_parse(mac, nc->mac) < 0)
			return err_set(EINVAL, "%s: NIC %zu: MAC address '%s'", name, i, mac);
		nc->backend = (char *)backend;
	}
	return 0;
}

int vm_config_from_json(const json_t *j, const char *name, struct vm_config *cfg)
{
	json_int_t mem = 0;
	int cpus = 0, quirks = 1, rng = 0, vmgenid = 0;
	const char *kernel = NULL, *initrd = NULL, *cmdline = NULL;
	json_t *disks = NULL, *nics = NULL;
	json_error_t e;
	if (json_unpack_ex((json_t *)j, &e, 0, "{s:I, s:i, s?s, s?s, s?s, s:o, s?b, s?o, s?b, s?b}",
			   "mem_bytes", &mem, "cpus", &cpus, "kernel", &kernel, "initrd", &initrd,
			   "cmdline", &cmdline, "disks", &disks, "pvm_quirks", &quirks, "nics",
			   &nics, "rng", &rng, "vmgenid", &vmgenid) < 0)
		return err_set(EINVAL, "%s: machine configuration: %s", name, e.text);
	if (mem <= 0 || cpus < 1 || cpus > 64 || !json_is_array(disks) ||
	    json_array_size(disks) > VM_MAX_DISKS)
		return err_set(EINVAL, "%s: machine configuration out of range", name);
	/* The strings are borrowed from J until vm_config_copy makes them ours. */
	struct vm_config in = {
	    .mem_size = (uint64_t)mem,
	    .ncpus = cpus,
	    .pvm_quirks = quirks,
	    .no_rng = !rng,
	    .no_vmgenid = !vmgenid,
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
	int r = nics_from_json(nics, name, &in);
	return r < 0 ? r : vm_config_copy(cfg, &in);
}
