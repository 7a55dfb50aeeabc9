/* The owner of struct vm_config: its strings are malloc'd, and only the
 * copy and the free here allocate and release them (config_json.c only
 * translates to and from JSON). */
#include "vmm/config.h"

#include <stdlib.h>
#include <string.h>

static char *dup_opt(const char *s)
{
	return s ? strdup(s) : NULL;
}

int vm_config_copy(struct vm_config *dst, const struct vm_config *src)
{
	*dst = *src;
	dst->kernel = dup_opt(src->kernel);
	dst->initrd = dup_opt(src->initrd);
	dst->cmdline = dup_opt(src->cmdline);
	for (int i = 0; i < src->ndisks; i++) {
		dst->disks[i].path = dup_opt(src->disks[i].path);
		dst->disks[i].format = dup_opt(src->disks[i].format);
		dst->disks[i].serial = dup_opt(src->disks[i].serial);
	}
	return 0;
}

void vm_config_free(struct vm_config *cfg)
{
	for (int i = 0; i < cfg->ndisks; i++) {
		free(cfg->disks[i].path);
		free(cfg->disks[i].format);
		free(cfg->disks[i].serial);
	}
	free(cfg->kernel);
	free(cfg->initrd);
	free(cfg->cmdline);
	memset(cfg, 0, sizeof(*cfg));
}
