/* The owner of struct vm_config: its strings are malloc'd, and only the
 * copy and the free here allocate and release them (config_json.c only
 * translates to and from JSON). */
#include "vmm/config.h"
#include "net/net.h"
#include "util/err.h"

#include <errno.h>
#include <stdbool.h>

#include <stdlib.h>
#include <string.h>

/* A copy of S (NULL stays NULL); *FAILED is set when memory ran out. */
static char *dup_opt(const char *s, bool *failed)
{
	char *d = s ? strdup(s) : NULL;
	if (s && !d)
		*failed = true;
	return d;
}

int vm_config_copy(struct vm_config *dst, const struct vm_config *src)
{
	bool failed = false;
	*dst = *src;
	dst->kernel = dup_opt(src->kernel, &failed);
	dst->initrd = dup_opt(src->initrd, &failed);
	dst->cmdline = dup_opt(src->cmdline, &failed);
	for (int i = 0; i < src->ndisks; i++) {
		dst->disks[i].path = dup_opt(src->disks[i].path, &failed);
		dst->disks[i].format = dup_opt(src->disks[i].format, &failed);
		dst->disks[i].serial = dup_opt(src->disks[i].serial, &failed);
	}
	for (int i = 0; i < src->nnics; i++)
		dst->nics[i].backend = dup_opt(src->nics[i].backend, &failed);
	if (!failed)
		return 0;
	vm_config_free(dst);
	return err_set(ENOMEM, "machine configuration");
}

int vm_config_set_nics(struct vm_config *cfg, const char *const *nets, int n,
		       void (*default_mac)(int i, uint8_t mac[6]))
{
	for (int i = 0; i < cfg->nnics; i++) {
		free(cfg->nics[i].backend);
		cfg->nics[i].backend = NULL;
	}
	cfg->nnics = 0;
	if (n == 1 && !strcmp(nets[0], "none"))
		return 0;
	if (n > VM_MAX_NICS)
		return err_set(EINVAL, "at most %d NICs", VM_MAX_NICS);
	for (int i = 0; i < n; i++) {
		struct net_spec ns;
		int r = net_spec_parse(nets[i], &ns);
		if (r < 0)
			return r;
		if (ns.kind == NET_NONE)
			return err_set(EINVAL, "--net none gives no NIC: not with another --net");
		struct nic_config *nc = &cfg->nics[cfg->nnics];
		if (ns.has_mac)
			memcpy(nc->mac, ns.mac, 6);
		else
			default_mac(i, nc->mac);
		if (!(nc->backend = strdup(nets[i])))
			return err_set(ENOMEM, "--net %s", nets[i]);
		cfg->nnics++;
	}
	return 0;
}

int vm_config_set_nic_backend(struct vm_config *cfg, int i, const char *spec)
{
	char *s = strdup(spec);
	if (!s)
		return err_set(ENOMEM, "machine configuration");
	free(cfg->nics[i].backend);
	cfg->nics[i].backend = s;
	return 0;
}

void vm_config_free(struct vm_config *cfg)
{
	for (int i = 0; i < cfg->ndisks; i++) {
		free(cfg->disks[i].path);
		free(cfg->disks[i].format);
		free(cfg->disks[i].serial);
	}
	for (int i = 0; i < cfg->nnics; i++)
		free(cfg->nics[i].backend);
	free(cfg->kernel);
	free(cfg->initrd);
	free(cfg->cmdline);
	memset(cfg, 0, sizeof(*cfg));
}
