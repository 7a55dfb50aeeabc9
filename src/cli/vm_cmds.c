/* The snapshot manager's sub-commands (docs/manager.md): create, list,
 * info, destroy, run NAME, stop, snapshot create|list|revert|delete, clone,
 * check.  Parsing and printing only; the work is in src/manager/. */
#include "cli/cli.h"
#include "cli/term.h"
#include "manager/ops.h"
#include "util/err.h"
#include "util/log.h"
#include "util/size.h"
#include "vmm/config.h"

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

struct flag_opts {
	bool json, help;
};

/* Parse the options common to the simple commands: --json, --help, plus
 * the boolean flags in EXTRA (each sets *extra_vals[i]).  Returns the index
 * of the first positional argument or -1 after a usage error. */
static int parse_simple(const char *cmd, int argc, char **argv, struct flag_opts *f,
			const char *const *extra, bool *const *extra_vals, const char *const *strs,
			const char **str_vals)
{
	struct option lo[16];
	int n = 0;
	lo[n++] = (struct option){"json", no_argument, NULL, 'j'};
	lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
	int first_extra = n;
	for (int i = 0; extra && extra[i]; i++)
		lo[n++] = (struct option){extra[i], no_argument, NULL, 256 + i};
	int first_str = n;
	for (int i = 0; strs && strs[i]; i++)
		lo[n++] = (struct option){strs[i], required_argument, NULL, 512 + i};
	lo[n] = (struct option){NULL, 0, NULL, 0};
	(void)first_extra;
	(void)first_str;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'j')
			f->json = true;
		else if (c == 'h')
			f->help = true;
		else if (c >= 512)
			str_vals[c - 512] = optarg;
		else if (c >= 256)
			*extra_vals[c - 256] = true;
		else {
			cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
			return -1;
		}
	}
	return optind;
}

/* Progress on a terminal only: copies and merges as "N / M MiB", a
 * running VM's memory save as "saving memory: N MiB written (RAM M MiB)". */
static void progress_copy(void *opaque, uint64_t done, uint64_t total)
{
	(void)opaque;
	fprintf(stderr, "\r%llu / %llu MiB", (unsigned long long)(done >> 20),
		(unsigned long long)(total >> 20));
}

static void progress_memory(void *opaque, uint64_t written, uint64_t ram)
{
	(void)opaque;
	fprintf(stderr, "\rsaving memory: %llu MiB written (RAM %llu MiB)",
		(unsigned long long)(written >> 20), (unsigned long long)(ram >> 20));
}

static void progress_memory_end(void *opaque)
{
	(void)opaque;
	fputc('\n', stderr);
}

static const struct mgr_progress *progress(void)
{
	static const struct mgr_progress tty = {.copy = {progress_copy, NULL},
						.memory = progress_memory,
						.memory_end = progress_memory_end};
	return isatty(STDERR_FILENO) ? &tty : NULL;
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (s)
		puts(s);
	free(s);
}

static int finish(int r, bool json, json_t *report, const char *human)
{
	if (r < 0) {
		json_decref(report);
		return cli_fail();
	}
	if (json)
		print_json(report);
	else if (human)
		puts(human);
	json_decref(report);
	return CLI_OK;
}

static bool cli_nets_have_none(const char *const *nets, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(nets[i], "none"))
			return true;
	return false;
}

static const char create_usage[] =
    "Usage: cairn create NAME --kernel FILE (--disk FILE | --disk-size SIZE) [options]\n"
    "\n"
    "Make the VM bundle NAME (a directory; may be a path): vm.json, disks/, snapshots/.\n"
    "\n"
    "  --kernel FILE      Linux bzImage or PVH ELF (recorded by absolute path)\n"
    "  --initrd FILE      initial ramdisk\n"
    "  --cmdline STR      kernel command line\n"
    "  --disk FILE        base disk, imported as the bottom layer (qcow2 copied\n"
    "                     with its chain flattened, raw converted to qcow2)\n"
    "  --reference        keep --disk FILE where it is, as the read-only bottom\n"
    "                     layer (never written; it must not change afterwards)\n"
    "  --disk-size SIZE   or a new empty disk of SIZE (e.g. 1G)\n"
    "  --mem SIZE         guest memory (default 512M; a bare number is MiB)\n"
    "  --cpus N           vCPUs (default 1)\n"
    "  --net SPEC         a virtio-net NIC (repeatable): user[,hostfwd=...][,mac=MAC]\n"
    "                     as for cairn run; default: one 'user' NIC (NAT, no root\n"
    "                     needed); --net none: no NIC.  A NIC without mac= gets a\n"
    "                     random 52:54:00:xx:xx:xx\n"
    "  --json             print the result as JSON\n";

int cli_vm_create_main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"kernel", required_argument, NULL, 'k'},
	    {"initrd", required_argument, NULL, 'i'},
	    {"cmdline", required_argument, NULL, 'c'},
	    {"disk", required_argument, NULL, 'd'},
	    {"disk-size", required_argument, NULL, 's'},
	    {"mem", required_argument, NULL, 'm'},
	    {"cpus", required_argument, NULL, 'n'},
	    {"json", no_argument, NULL, 'j'},
	    {"reference", no_argument, NULL, 'r'},
	    {"net", required_argument, NULL, 'E'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct mgr_create_opts o = {.mem_size = 512ULL << 20, .ncpus = 1};
	const char *nets[VM_MAX_NICS];
	bool json = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'k':
			o.kernel = optarg;
			break;
		case 'i':
			o.initrd = optarg;
			break;
		case 'c':
			o.cmdline = optarg;
			break;
		case 'd':
			o.disk = optarg;
			break;
		case 's':
			if (size_parse(optarg, 1, &o.disk_size) < 0 || !o.disk_size)
				return cli_usage_error("create", "invalid --disk-size '%s'",
						       optarg);
			break;
		case 'm':
			if (size_parse(optarg, 1ULL << 20, &o.mem_size) < 0)
				return cli_usage_error("create", "invalid --mem '%s'", optarg);
			break;
		case 'n':
			o.ncpus = atoi(optarg);
			if (o.ncpus < 1 || o.ncpus > 64)
				return cli_usage_error("create", "--cpus takes 1 to 64");
			break;
		case 'j':
			json = true;
			break;
		case 'r':
			o.reference = true;
			break;
		case 'E':
			if (cli_parse_net("create", optarg, nets, &o.nnets) != 0)
				return CLI_USAGE;
			break;
		case 'h':
			fputs(create_usage, stdout);
			return CLI_OK;
		default:
			return cli_usage_error("create", "unknown or incomplete option '%s'",
					       argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return cli_usage_error("create", "one NAME is required");
	if (!o.kernel)
		return cli_usage_error("create", "--kernel is required");
	if (o.reference && !o.disk)
		return cli_usage_error("create", "--reference needs --disk FILE");
	if (!!o.disk == !!o.disk_size)
		return cli_usage_error("create", "give one of --disk FILE and --disk-size SIZE");
	if (o.nnets > 1 && cli_nets_have_none(nets, o.nnets))
		return cli_usage_error("create", "--net none gives no NIC: not with another --net");
	o.nets = nets;
	json_t *rep = json_object();
	o.progress = progress();
	int r = mgr_create(argv[optind], &o, rep);
	char msg[PATH_MAX + 32];
	snprintf(msg, sizeof(msg), "created %s", argv[optind]);
	return finish(r, json, rep, msg);
}

static const char list_usage[] = "Usage: cairn list [DIR] [--json]\n\n"
				 "The VM bundles in DIR (default: the current directory).\n";

int cli_vm_list_main(int argc, char **argv)
{
	struct flag_opts f = {0};
	int i = parse_simple("list", argc, argv, &f, NULL, NULL, NULL, NULL);
	if (i < 0)
		return CLI_USAGE;
	if (f.help)
		return fputs(list_usage, stdout), CLI_OK;
	if (argc - i > 1)
		return cli_usage_error("list", "at most one DIR");
	json_t *arr;
	if (mgr_list(i < argc ? argv[i] : ".", &arr) < 0)
		return cli_fail();
	if (f.json) {
		print_json(arr);
	} else {
		printf("%-20s %-10s %9s  %s\n", "NAME", "STATE", "SNAPSHOTS", "CURRENT");
		size_t k;
		json_t *v;
		json_array_foreach(arr, k, v)
		{
			const char *cur = json_string_value(json_object_get(v, "current"));
			printf("%-20s %-10s %9lld  %s\n",
			       json_string_value(json_object_get(v, "name")),
			       json_object_get(v, "state")
				   ? json_string_value(json_object_get(v, "state"))
				   : "broken",
			       (long long)json_integer_value(json_object_get(v, "snapshots")),
			       cur ? cur : "-");
		}
	}
	json_decref(arr);
	return CLI_OK;
}

static const char info_usage[] = "Usage: cairn info NAME [--json]\n\n"
				 "The bundle's configuration, state and snapshots.\n";

int cli_vm_info_main(int argc, char **argv)
{
	struct flag_opts f = {0};
	int i = parse_simple("info", argc, argv, &f, NULL, NULL, NULL, NULL);
	if (i < 0)
		return CLI_USAGE;
	if (f.help)
		return fputs(info_usage, stdout), CLI_OK;
	if (argc - i != 1)
		return cli_usage_error("info", "one NAME is required");
	json_t *j;
	if (mgr_info(argv[i], &j) < 0)
		return cli_fail();
	if (f.json) {
		print_json(j);
	} else {
		json_t *cfg = json_object_get(j, "config");
		printf("bundle:      %s\n", json_string_value(json_object_get(j, "bundle")));
		printf("state:       %s\n", json_string_value(json_object_get(j, "state")));
		printf("machine id:  %s\n", json_string_value(json_object_get(j, "machine_id")));
		printf("memory:      %lld MiB, %lld vCPU(s)\n",
		       (long long)json_integer_value(json_object_get(cfg, "mem_bytes")) >> 20,
		       (long long)json_integer_value(json_object_get(cfg, "cpus")));
		printf("kernel:      %s\n", json_string_value(json_object_get(cfg, "kernel")));
		const char *cl = json_string_value(json_object_get(cfg, "cmdline"));
		printf("cmdline:     %s\n", cl ? cl : "");
		json_t *nics = json_object_get(cfg, "nics"), *nic;
		size_t k;
		if (!json_array_size(nics))
			printf("nic:         none\n");
		json_array_foreach(nics, k, nic)
			printf("nic %zu:       %s, mac %s\n", k,
			       json_string_value(json_object_get(nic, "backend")),
			       json_string_value(json_object_get(nic, "mac")));
		printf("snapshots:   %zu\n", json_object_size(json_object_get(j, "snapshots")));
		printf("disk usage:  %lld bytes\n",
		       (long long)json_integer_value(json_object_get(j, "disk_usage_bytes")));
	}
	json_decref(j);
	return CLI_OK;
}

static const char destroy_usage[] =
    "Usage: cairn destroy NAME\n\n"
    "Remove a stopped VM bundle and everything in it.  Refused while "
    "it runs or\nwhile a linked clone uses its layers.\n";

int cli_vm_destroy_main(int argc, char **argv)
{
	struct flag_opts f = {0};
	int i = parse_simple("destroy", argc, argv, &f, NULL, NULL, NULL, NULL);
	if (i < 0)
		return CLI_USAGE;
	if (f.help)
		return fputs(destroy_usage, stdout), CLI_OK;
	if (argc - i != 1)
		return cli_usage_error("destroy", "one NAME is required");
	return mgr_destroy(argv[i]) < 0 ? cli_fail() : CLI_OK;
}

static const char stop_usage[] =
    "Usage: cairn stop NAME [--save] [--json]\n\n"
    "End the running VM; with --save, first take a whole-machine snapshot\n"
    "(\"suspend-DATE\") that the next 'cairn run NAME' resumes.\n";

int cli_vm_stop_main(int argc, char **argv)
{
	struct flag_opts f = {0};
	bool save = false;
	static const char *const extra[] = {"save", NULL};
	bool *vals[] = {&save};
	int i = parse_simple("stop", argc, argv, &f, extra, vals, NULL, NULL);
	if (i < 0)
		return CLI_USAGE;
	if (f.help)
		return fputs(stop_usage, stdout), CLI_OK;
	if (argc - i != 1)
		return cli_usage_error("stop", "one NAME is required");
	json_t *rep = json_object();
	return finish(mgr_stop(argv[i], save, progress(), rep), f.json, rep,
		      save ? "suspended" : "stopped");
}

static const char check_usage[] =
    "Usage: cairn check NAME [--repair] [--json]\n\n"
    "Verify the bundle: vm.json, the snapshot tree, every layer (qcow2 check and\n"
    "backing file), every snapshot's state and memory checksums, leftovers of\n"
    "interrupted operations.  --repair finishes or undoes interrupted operations,\n"
    "removes leftovers and frees leaked clusters.  Exit 0 when consistent.\n";

int cli_vm_check_main(int argc, char **argv)
{
	struct flag_opts f = {0};
	bool repair = false;
	static const char *const extra[] = {"repair", NULL};
	bool *vals[] = {&repair};
	int i = parse_simple("check", argc, argv, &f, extra, vals, NULL, NULL);
	if (i < 0)
		return CLI_USAGE;
	if (f.help)
		return fputs(check_usage, stdout), CLI_OK;
	if (argc - i != 1)
		return cli_usage_error("check", "one NAME is required");
	json_t *rep = json_object();
	int r = mgr_check(argv[i], repair, progress(), rep);
	if (f.json) {
		print_json(rep);
	} else {
		size_t k;
		json_t *v;
		json_array_foreach(json_object_get(rep, "problems"), k, v)
		    printf("problem: %s\n", json_string_value(v));
		json_array_foreach(json_object_get(rep, "repaired"), k, v)
		    printf("repaired: %s\n", json_string_value(v));
		if (r == 0)
			printf("%s: ok\n", argv[i]);
	}
	json_decref(rep);
	return r < 0 ? cli_fail() : CLI_OK;
}

static const char clone_usage[] =
    "Usage: cairn clone NAME SNAP NEW [--full] [--boot] [--net SPEC]... [--json]\n\n"
    "Make the bundle NEW from snapshot SNAP of NAME.  A linked clone (default)\n"
    "shares SNAP's frozen layers read-only (NAME then refuses to delete SNAP);\n"
    "--full copies them.  The clone gets a new machine id, new disk serials and a\n"
    "random seed.  When SNAP has memory (a whole-machine snapshot) the clone's first\n"
    "run resumes SNAP's running machine on the clone's own disk layers (it keeps\n"
    "a copy of SNAP's memory and state); --boot boots it afresh from SNAP's disk.\n\n"
    "  --net SPEC   the clone's NIC backends, one per NIC of NAME (or one 'none'):\n"
    "               default NAME's; a TAP NIC is refused without --net (the clone\n"
    "               must not share NAME's TAP).  A resumed clone keeps its MACs, a\n"
    "               booted one gets new ones (unless mac=).\n";

int cli_vm_clone_main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"full", no_argument, NULL, 'f'}, {"boot", no_argument, NULL, 'b'},
	    {"net", required_argument, NULL, 'E'}, {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},	{NULL, 0, NULL, 0},
	};
	struct mgr_clone_opts o = {0};
	const char *nets[VM_MAX_NICS];
	bool json = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'f': o.full = true; break;
		case 'b': o.boot = true; break;
		case 'j': json = true; break;
		case 'E':
			if (cli_parse_net("clone", optarg, nets, &o.nnets) != 0)
				return CLI_USAGE;
			break;
		case 'h': return fputs(clone_usage, stdout), CLI_OK;
		default:
			return cli_usage_error("clone", "unknown or incomplete option '%s'",
					       argv[optind - 1]);
		}
	}
	if (argc - optind != 3)
		return cli_usage_error("clone", "NAME SNAP NEW are required");
	if (o.nnets > 1 && cli_nets_have_none(nets, o.nnets))
		return cli_usage_error("clone", "--net none gives no NIC: not with another --net");
	o.nets = nets;
	json_t *rep = json_object();
	char **a = argv + optind;
	return finish(mgr_clone(a[0], a[1], a[2], &o, progress(), rep), json, rep, "cloned");
}

static const char snapshot_usage[] =
    "Usage: cairn snapshot create NAME SNAP [--disk-only | --full] [--description TEXT]\n"
    "                             [--json]\n"
    "       cairn snapshot list NAME [--json]\n"
    "       cairn snapshot revert NAME SNAP [--save-current SNAP2] [--json]\n"
    "       cairn snapshot delete NAME SNAP [--json]\n"
    "\n"
    "create: a running VM is recorded whole (memory, devices, disks) and goes on\n"
    "        (--disk-only: its memory is not kept); its memory image holds the\n"
    "        pages changed since the snapshot it descends from (--full: all of\n"
    "        RAM).  A stopped VM's disks are frozen (disk only).\n"
    "list:   the tree: name, time, memory, own and shared bytes; '*' marks where\n"
    "        the VM is now (its state descends from that snapshot).\n"
    "revert: the VM's state becomes SNAP's (the current state is discarded unless\n"
    "        --save-current names a snapshot to keep it in).  A running VM is\n"
    "        ended and started again from SNAP (console then in NAME/console.log).\n"
    "delete: leaf or inner; every other snapshot keeps its exact content; the\n"
    "        freed bytes are reported.\n";

static void print_tree(json_t *t)
{
	json_t *arr = json_object_get(t, "snapshots");
	printf("%-32s %-20s %-6s %12s %12s\n", "NAME", "CREATED", "MEMORY", "OWN", "SHARED");
	size_t k;
	json_t *v;
	json_array_foreach(arr, k, v)
	{
		char name[160];
		int d = (int)json_integer_value(json_object_get(v, "depth"));
		bool cur = json_is_true(json_object_get(v, "current"));
		snprintf(name, sizeof(name), "%*s%s%s%s", 2 * d, "", d ? "`-" : "",
			 json_string_value(json_object_get(v, "name")), cur ? " *" : "");
		printf("%-32s %-20s %-6s %12lld %12lld\n", name,
		       json_string_value(json_object_get(v, "created")),
		       json_is_true(json_object_get(v, "memory")) ? "yes" : "no",
		       (long long)json_integer_value(json_object_get(v, "own_bytes")),
		       (long long)json_integer_value(json_object_get(v, "shared_bytes")));
	}
	const char *cur = json_string_value(json_object_get(t, "current"));
	printf("now: %s, %s%s\n", json_string_value(json_object_get(t, "state")),
	       cur ? "after * " : "no snapshot yet", cur ? cur : "");
}

int cli_vm_snapshot_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(snapshot_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_USAGE : CLI_OK;
	}
	const char *sub = argv[1];
	struct flag_opts f = {0};
	bool disk_only = false, full = false;
	static const char *const extra[] = {"disk-only", "full", NULL};
	bool *vals[] = {&disk_only, &full};
	static const char *const strs[] = {"description", "save-current", NULL};
	const char *sv[2] = {NULL, NULL};
	int i = parse_simple("snapshot", argc - 1, argv + 1, &f, extra, vals, strs, sv);
	if (i < 0)
		return CLI_USAGE;
	if (f.help)
		return fputs(snapshot_usage, stdout), CLI_OK;
	int npos = argc - 1 - i;
	char **pos = argv + 1 + i;
	json_t *rep = json_object();
	if (!strcmp(sub, "create") && npos == 2) {
		unsigned fl = (disk_only ? MGR_SNAP_DISK_ONLY : 0) | (full ? MGR_SNAP_FULL : 0);
		return finish(mgr_snapshot_create(pos[0], pos[1], fl, sv[0], progress(), rep),
			      f.json, rep, "snapshot taken");
	}
	if (!strcmp(sub, "revert") && npos == 2)
		return finish(mgr_snapshot_revert(pos[0], pos[1], sv[1], progress(), rep), f.json,
			      rep, "reverted");
	if (!strcmp(sub, "delete") && npos == 2) {
		int r = mgr_snapshot_delete(pos[0], pos[1], progress(), rep);
		char msg[128];
		snprintf(msg, sizeof(msg), "deleted; %lld bytes freed",
			 (long long)json_integer_value(json_object_get(rep, "freed_bytes")));
		return finish(r, f.json, rep, msg);
	}
	json_decref(rep);
	if (!strcmp(sub, "list") && npos == 1) {
		json_t *t;
		if (mgr_snapshot_list(pos[0], &t) < 0)
			return cli_fail();
		if (f.json)
			print_json(t);
		else
			print_tree(t);
		json_decref(t);
		return CLI_OK;
	}
	return cli_usage_error("snapshot", "'%s' with %d argument(s): see the usage", sub, npos);
}

static const char run_bundle_usage[] =
    "Usage: cairn run NAME [--detach]\n\n"
    "Boot the VM of bundle NAME, or resume it when it was suspended or reverted to\n"
    "a whole-machine snapshot.  The control socket is NAME/control.sock; the\n"
    "console is this terminal, or NAME/console.log with --detach (which returns\n"
    "once the VM runs).\n";

int cli_vm_run_main(int argc, char **argv)
{
	/* `cairn run NAME`: the first argument is a bundle directory */
	if (argc < 2 || argv[1][0] == '-')
		return -1;
	char vj[PATH_MAX];
	snprintf(vj, sizeof(vj), "%s/vm.json", argv[1]);
	struct stat st;
	if (stat(vj, &st) < 0)
		return -1;
	bool detach = false;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--detach"))
			detach = true;
		else if (!strcmp(argv[i], "--help"))
			return fputs(run_bundle_usage, stdout), CLI_OK;
		else
			return cli_usage_error("run", "unexpected '%s' after the bundle name",
					       argv[i]);
	}
	log_set_level(LOG_WARN);
	if (!detach)
		term_raw();
	int r = mgr_run(argv[1], detach);
	term_restore();
	return r < 0 ? cli_fail() : r;
}
