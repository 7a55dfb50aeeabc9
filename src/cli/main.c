/* cairn: a KVM virtual machine monitor built around snapshots. */
#include "cli/cli.h"
#include "net/net.h"
#include "util/err.h"
#include "vmm/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
	"Usage: cairn COMMAND [ARGS...]\n"
	"\n"
	"Commands:\n"
	"  run      boot a guest under KVM (cairn run --help), or a bundle: run NAME\n"
	"  create   make a VM bundle          list     the bundles in a directory\n"
	"  info     a bundle's details        destroy  remove a bundle\n"
	"  stop     end (or --save) a bundle's running VM\n"
	"  snapshot create|list|revert|delete a bundle's snapshots\n"
	"  clone    a new bundle from a snapshot (linked or --full)\n"
	"  check    verify (and --repair) a bundle\n"
	"  img      qcow2/raw image tools, qemu-img conventions (cairn img --help)\n"
	"  control  send a request to a running VM's control socket\n"
	"  version  print the version\n"
	"\n"
	"Exit status: 0 ok, 1 failed, 2 usage error.\n";

int cli_fail(void)
{
	fprintf(stderr, "cairn: %s\n", err_msg()[0] ? err_msg() : "failed");
	return CLI_FAILED;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "cairn %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'cairn %s --help'.\n", cmd);
	return CLI_USAGE;
}

int cli_parse_net(const char *cmd, const char *spec, const char **nets, int *n)
{
	struct net_spec ns;
	if (*n == VM_MAX_NICS)
		return cli_usage_error(cmd, "at most %d --net", VM_MAX_NICS);
	if (net_spec_parse(spec, &ns) < 0)
		return cli_usage_error(cmd, "%s", err_msg());
	nets[(*n)++] = spec;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "run")) {
		int r = cli_vm_run_main(argc - 1, argv + 1);
		return r >= 0 ? r : cli_run_main(argc - 1, argv + 1);
	}
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} vm_cmds[] = {
		{"create", cli_vm_create_main},	  {"list", cli_vm_list_main},
		{"info", cli_vm_info_main},	  {"destroy", cli_vm_destroy_main},
		{"stop", cli_vm_stop_main},	  {"check", cli_vm_check_main},
		{"clone", cli_vm_clone_main},	  {"snapshot", cli_vm_snapshot_main},
	};
	for (size_t i = 0; i < sizeof(vm_cmds) / sizeof(vm_cmds[0]); i++)
		if (!strcmp(cmd, vm_cmds[i].name))
			return vm_cmds[i].fn(argc - 1, argv + 1);
	if (!strcmp(cmd, "control"))
		return cli_control_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "img"))
		return cli_img_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("cairn %s\n", CAIRN_VERSION);
		return CLI_OK;
	}
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		fputs(usage, stdout);
		return CLI_OK;
	}
	fprintf(stderr, "cairn: unknown command '%s'\nTry 'cairn --help'.\n", cmd);
	return CLI_USAGE;
}
