/* The hardware configuration as JSON: written into every snapshot (its
 * state file and meta.json) and read back by a restore, which rebuilds
 * the same machine from it. */
#ifndef CAIRN_VMM_CONFIG_JSON_H
#define CAIRN_VMM_CONFIG_JSON_H

#include "vmm/config.h"

#include <jansson.h>

json_t *vm_config_to_json(const struct vm_config *cfg);
/* Fills CFG (strings malloc'd; free with vm_config_free); on failure CFG
 * is left as it was.  NAME is used in error messages. */
int vm_config_from_json(const json_t *j, const char *name, struct vm_config *cfg);

#endif
