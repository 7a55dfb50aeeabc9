/* Sub-command entry points of the `cairn` front end.  Each returns the
 * process exit status: 0 ok, 1 failed, 2 usage error. */
#ifndef CAIRN_CLI_CLI_H
#define CAIRN_CLI_CLI_H

#include <stdbool.h>

enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

int cli_run_main(int argc, char **argv);
int cli_img_main(int argc, char **argv);
int cli_control_main(int argc, char **argv);
/* The snapshot manager (vm_cmds.c).  cli_vm_run_main returns -1 when its
 * first argument is not a bundle (then it is the plain `cairn run`). */
int cli_vm_create_main(int argc, char **argv);
int cli_vm_list_main(int argc, char **argv);
int cli_vm_info_main(int argc, char **argv);
int cli_vm_destroy_main(int argc, char **argv);
int cli_vm_stop_main(int argc, char **argv);
int cli_vm_check_main(int argc, char **argv);
int cli_vm_clone_main(int argc, char **argv);
int cli_vm_snapshot_main(int argc, char **argv);
int cli_vm_run_main(int argc, char **argv);

/* Print "cairn: MESSAGE" for the current error (err_msg()) and return 1. */
int cli_fail(void);
/* Print "cairn CMD: MESSAGE" plus "Try 'cairn CMD --help'." and return 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One --net SPEC of CMD into NETS (*N so far, at most VM_MAX_NICS): 0, or
 * a usage error (said; CLI_USAGE) for a spec net_spec_parse refuses or one
 * too many. */
int cli_parse_net(const char *cmd, const char *spec, const char **nets, int *n);

#endif
