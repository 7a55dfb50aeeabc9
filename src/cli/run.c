/* `cairn run`: boot a guest from a kernel and disks given on the command
 * line, with the serial console on this terminal. */
#include "cli/cli.h"
#include "cli/term.h"
#include "util/err.h"
#include "util/log.h"
#include "util/size.h"
#include "vmm/config.h"
#include "vmm/disk_path.h"
#include "vmm/vmm.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static const char run_usage[] =
	"Usage: cairn run --kernel FILE [options]\n"
	"       cairn run --restore DIR [--control SOCK] [--restore-mode map|copy] [--net ...]\n"
	"                 [--disk-path OLD=NEW]...\n"
	"\n"
	"Boot a guest under KVM.  The serial console (COM1) is this terminal; with a\n"
	"terminal, Ctrl-A x quits.\n"
	"\n"
	"  --kernel FILE        Linux bzImage, or an ELF with a PVH entry note\n"
	"  --initrd FILE        initial ramdisk\n"
	"  --cmdline STR        kernel command line\n"
	"  --mem SIZE           guest memory (default 512M; a bare number is MiB)\n"
	"  --cpus N             number of vCPUs (default 1, at most 64)\n"
	"  --disk FILE[,readonly][,format=raw|qcow2][,serial=ID]\n"
	"                       a virtio-blk disk (repeatable; raw or qcow2, detected)\n"
	"  --no-pvm-quirks      on PVM hosts, do not adapt Linux guests (docs/pvm.md)\n"
	"  --control SOCK       serve the control socket SOCK (docs/control.md)\n"
	"  --net user[,hostfwd=PROTO::HOSTPORT-:GUESTPORT]...[,mac=MAC] | tap=IFNAME[,mac=MAC]\n"
	"        | none         a virtio-net NIC (repeatable): user-mode networking\n"
	"                       (NAT, 10.0.2.0/24, gateway 10.0.2.2, guest 10.0.2.15;\n"
	"                       PROTO udp or tcp), or the TAP device IFNAME (created\n"
	"                       if missing and cairn has CAP_NET_ADMIN; offloads);\n"
	"                       with --restore, the backends of the snapshot's NICs\n"
	"                       (one each, or one 'none' for all)\n"
	"  --rng getrandom|none a virtio-rng device fed by the host's getrandom()\n"
	"                       (default), or none\n"
	"  --restore DIR        start from the whole-machine snapshot in DIR\n"
	"  --restore-mode MODE  map (default: memory loads as the guest touches it)\n"
	"                       or copy (read all memory first)\n"
	"  --no-verify          restore without checking every memory chunk first\n"
	"  --disk-dir DIR       where a restore creates the new disk overlays\n"
	"                       (default: beside the snapshot's frozen layers)\n"
	"  --disk-path OLD=NEW  with --restore: the disk the snapshot recorded at OLD\n"
	"                       is at NEW (repeatable); NEW must be that snapshot's\n"
	"                       frozen layer (qcow2, the recorded size, its frozen\n"
	"                       mark, kept by mv and cp -a)\n"
	"  -v, --verbose        more messages (twice: debug)\n"
	"  -q, --quiet          errors only\n"
	"  -h, --help           this help\n"
	"\n"
	"Exit status: 0 when the guest resets or is quit; the byte a guest writes to\n"
	"the debug-exit port 0x501; 1 on failure; 2 on a usage error.\n";

static int parse_disk(const char *arg, struct disk_config *d)
{
	char *s = strdup(arg);
	if (!s)
		return -1;
	char *save = NULL, *tok = strtok_r(s, ",", &save);
	if (!tok || !*tok) {
		free(s);
		return -1;
	}
	d->path = strdup(tok);
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "readonly") || !strcmp(tok, "ro"))
			d->readonly = true;
		else if (!strncmp(tok, "format=", 7))
			d->format = strdup(tok + 7);
		else if (!strncmp(tok, "serial=", 7))
			d->serial = strdup(tok + 7);
		else {
			free(s);
			return -1;
		}
	}
	free(s);
	return 0;
}

/* An option's value, owned by the configuration (vm_config_free frees it). */
static void set_str(char **field, const char *value)
{
	free(*field);
	*field = strdup(value);
}

/* A NIC's MAC unless mac= says: 52:54:00:12:34:56 and up, as QEMU numbers
 * them. */
static void qemu_mac(int i, uint8_t mac[6])
{
	const uint8_t m[6] = {0x52, 0x54, 0x00, 0x12, 0x34, (uint8_t)(0x56 + i)};
	memcpy(mac, m, 6);
}

int cli_run_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"kernel", required_argument, NULL, 'k'}, {"initrd", required_argument, NULL, 'i'},
		{"cmdline", required_argument, NULL, 'c'}, {"mem", required_argument, NULL, 'm'},
		{"cpus", required_argument, NULL, 'n'},   {"disk", required_argument, NULL, 'd'},
		{"no-pvm-quirks", no_argument, NULL, 'P'}, {"verbose", no_argument, NULL, 'v'},
		{"control", required_argument, NULL, 'C'}, {"restore", required_argument, NULL, 'R'},
		{"restore-mode", required_argument, NULL, 'M'}, {"no-verify", no_argument, NULL, 'N'},
		{"disk-dir", required_argument, NULL, 'D'}, {"net", required_argument, NULL, 'E'},
		{"rng", required_argument, NULL, 'G'},
		{"disk-path", required_argument, NULL, 'O'},
		{"quiet", no_argument, NULL, 'q'},         {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct vm_config cfg = {.mem_size = 512ULL << 20, .ncpus = 1, .pvm_quirks = true,
				.console_in = STDIN_FILENO, .console_out = STDOUT_FILENO};
	struct vmm_opts opts = {.restore_mode = RESTORE_MAP, .verify_memory = true};
	const char *restore = NULL;
	const char *nets[VM_MAX_NICS];
	int nnets = 0;
	static struct disk_path_override moved[VM_MAX_DISKS];
	int nmoved = 0;
	int verbose = 0, c, status = CLI_OK;
	bool quiet = false;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+vqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'k': set_str(&cfg.kernel, optarg); break;
		case 'i': set_str(&cfg.initrd, optarg); break;
		case 'c': set_str(&cfg.cmdline, optarg); break;
		case 'm':
			if (size_parse(optarg, 1ULL << 20, &cfg.mem_size) < 0) {
				status = cli_usage_error("run", "invalid --mem '%s'", optarg);
				goto out;
			}
			break;
		case 'n': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 64) {
				status = cli_usage_error("run", "--cpus takes 1 to 64, not '%s'",
							 optarg);
				goto out;
			}
			cfg.ncpus = (int)n;
			break;
		}
		case 'd':
			if (cfg.ndisks == VM_MAX_DISKS) {
				status = cli_usage_error("run", "at most %d disks", VM_MAX_DISKS);
				goto out;
			}
			if (parse_disk(optarg, &cfg.disks[cfg.ndisks++]) < 0) {
				status = cli_usage_error("run", "invalid --disk '%s'", optarg);
				goto out;
			}
			break;
		case 'E':
			if ((status = cli_parse_net("run", optarg, nets, &nnets)) != 0)
				goto out;
			break;
		case 'G':
			if (!strcmp(optarg, "none")) {
				cfg.no_rng = true;
			} else if (!strcmp(optarg, "getrandom")) {
				cfg.no_rng = false;
			} else {
				status = cli_usage_error("run", "--rng is getrandom or none");
				goto out;
			}
			break;
		case 'O':
			if (nmoved == VM_MAX_DISKS) {
				status = cli_usage_error("run", "at most %d --disk-path", VM_MAX_DISKS);
				goto out;
			}
			if (disk_path_parse(optarg, &moved[nmoved++]) < 0) {
				status = cli_usage_error("run", "%s", err_msg());
				goto out;
			}
			break;
		case 'P': cfg.pvm_quirks = false; break;
		case 'C': opts.control = optarg; break;
		case 'R': restore = optarg; break;
		case 'N': opts.verify_memory = false; break;
		case 'D': opts.disk_dir = optarg; break;
		case 'M':
			if (!strcmp(optarg, "map")) {
				opts.restore_mode = RESTORE_MAP;
			} else if (!strcmp(optarg, "copy")) {
				opts.restore_mode = RESTORE_COPY;
			} else {
				status = cli_usage_error("run", "--restore-mode is map or copy");
				goto out;
			}
			break;
		case 'v': verbose++; break;
		case 'q': quiet = true; break;
		case 'h': fputs(run_usage, stdout); goto out;
		default:
			status = cli_usage_error("run", "unknown or incomplete option '%s'",
						 argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		status = cli_usage_error("run", "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (restore && (cfg.kernel || cfg.initrd || cfg.cmdline || cfg.ndisks || cfg.no_rng)) {
		status = cli_usage_error("run", "--restore takes the machine from the snapshot: no "
						"--kernel, --initrd, --cmdline, --disk or --rng");
		goto out;
	}
	if (nmoved && !restore) {
		status = cli_usage_error("run", "--disk-path is for --restore");
		goto out;
	}
	/* an OLD the snapshot does not have is a usage error, said up front */
	int known = nmoved ? disk_path_check_snapshot(restore, moved, nmoved) : 0;
	if (known) {
		status = known > 0 ? cli_usage_error("run", "%s", err_msg()) : cli_fail();
		goto out;
	}
	opts.disk_paths = moved;
	opts.ndisk_paths = nmoved;
	if (!cfg.kernel && !restore) {
		status = cli_usage_error("run", "--kernel is required");
		goto out;
	}
	if (restore) {
		opts.net_backends = nets;
		opts.nnet_backends = nnets;
	} else if (vm_config_set_nics(&cfg, nets, nnets, qemu_mac) < 0) {
		status = cli_usage_error("run", "%s", err_msg());
		goto out;
	}
	log_set_level(quiet ? LOG_ERROR : verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);

	struct vmm *vmm;
	if ((restore ? vmm_restore(restore, &opts, &vmm) : vmm_create(&cfg, &opts, &vmm)) < 0) {
		status = cli_fail();
		goto out;
	}
	term_raw();
	int r = vmm_run(vmm);
	term_restore();
	vmm_destroy(vmm);
	status = r < 0 ? cli_fail() : r;
out:
	vm_config_free(&cfg);
	return status;
}
