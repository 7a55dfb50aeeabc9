/* The builder: turns a vm_config into a running machine in one readable
 * sequence (memory, devices, kernel, firmware tables, vCPUs), then runs it
 * until it ends. */
#ifndef CAIRN_VMM_VMM_H
#define CAIRN_VMM_VMM_H

#include "vmm/config.h"

struct vmm;

int vmm_create(const struct vm_config *cfg, struct vmm **out);
/* Run until the guest resets or exits, or the host quits it.  Returns the
 * process exit status (debug-exit code, 0 on reset/quit) or -errno with
 * the error message set (KVM or VMM failure). */
int vmm_run(struct vmm *vmm);
void vmm_destroy(struct vmm *vmm);

#endif
