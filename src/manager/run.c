/* run and stop: the VM's process, its run lock, detaching. */
#include "manager/mgr_internal.h"
#include "util/err.h"
#include "util/fileutil.h"
#include "vmm/config_json.h"
#include "vmm/vmm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The machine to boot: the recorded configuration on the active layers,
 * the clone seed (if any) on the command line. */
static int boot_config(const struct bundle *b, struct vm_config *cfg)
{
	json_t *j = vm_config_to_json(&b->config);
	int r = vm_config_from_json(j, "vm.json", cfg);
	json_decref(j);
	if (r < 0)
		return r;
	if (!b->has_active || b->active.n != cfg->ndisks)
		return err_set(EINVAL, "%s: vm.json: \"active\" does not list one layer per disk",
			       b->dir);
	for (int i = 0; i < cfg->ndisks; i++) {
		free(cfg->disks[i].path);
		cfg->disks[i].path = strdup(b->active.path[i]);
	}
	const char *seed = b->seed;
	if (seed) {
		const char *c = cfg->cmdline ? cfg->cmdline : "";
		size_t n = strlen(c) + strlen(seed) + 32;
		char *s = malloc(n);
		/* The test guest takes ';'-separated jobs: the seed becomes an
		 * echo job in front; for Linux a kernel parameter at the end. */
		if (strchr(c, ';'))
			snprintf(s, n, "echo cairn.seed=%s; %s", seed, c);
		else
			snprintf(s, n, "%s%scairn.seed=%s", c, *c ? " " : "", seed);
		free(cfg->cmdline);
		cfg->cmdline = s;
	}
	return 0;
}

/* The run lock names the process that runs the VM. */
static void run_lock_write_pid(int fd)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) == 0)
		(void)!pwrite(fd, line, (size_t)n, 0);
}

static int take_run_lock(const struct bundle *b, int *fd)
{
	char p[PATH_MAX];
	bundle_path(b, p, sizeof(p), "run.lock");
	int f = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f < 0)
		return err_set(errno, "%s", p);
	if (flock(f, LOCK_EX | LOCK_NB) < 0) {
		close(f);
		return err_set(EBUSY, "%s: the VM is already running", b->dir);
	}
	run_lock_write_pid(f);
	*fd = f;
	return 0;
}

/* The VM has ended (by itself, or asked by a writer that holds the lock
 * and does this itself): its overlays can be named relative now. */
static void run_ended(struct bundle *b)
{
	int fd;
	if (bundle_trylock(b->dir, "cairn run (ended)", &fd) < 0) {
		err_clear();
		return;
	}
	if (bundle_reload(b) == 0 && !b->pending)
		mgr_relink_all(b);
	err_clear();
	close(fd);
}

/* Restore snapshot S (in SD) from its layers where the bundle has them
 * now; ACT = the layers the restored VM writes to (the overlays the
 * restore made, as the VMM says). */
static int restore_snapshot(const struct bundle *b, const struct bundle_snapshot *s,
			    const char *sd, const struct vmm_opts *base, struct vmm **vmm,
			    struct bundle_layers *act)
{
	struct vmm_opts opts = *base;
	opts.disk_layers = (const char *const *)s->layers.path;
	opts.ndisk_layers = s->layers.n;
	/* the NICs' backends are the bundle's (a clone's are its own), not
	 * whatever the snapshot's process had */
	const char *nets[VM_MAX_NICS];
	for (int i = 0; i < b->config.nnics; i++)
		nets[i] = b->config.nics[i].backend;
	if (b->config.nnics) {
		opts.net_backends = nets;
		opts.nnet_backends = b->config.nnics;
	}
	int r = vmm_restore(sd, &opts, vmm);
	const char *paths[VM_MAX_DISKS];
	int n = r == 0 ? vmm_disk_layers(*vmm, paths, VM_MAX_DISKS) : 0;
	for (int i = 0; r == 0 && i < n; i++)
		r = bundle_layers_add(act, paths[i]);
	return r;
}

/* Build the VM (boot or resume) and record where it now writes. */
static int run_setup(struct bundle *b, const struct vmm_opts *opts, int console_in, int console_out,
		     struct vmm **vmm)
{
	const char *resume = b->resume;
	if (!resume) {
		struct vm_config cfg = {0};
		int r = boot_config(b, &cfg);
		cfg.console_in = console_in;
		cfg.console_out = console_out;
		if (r == 0)
			r = vmm_create(&cfg, opts, vmm);
		vm_config_free(&cfg);
		return r;
	}
	char sd[PATH_MAX];
	mgr_snap_dir(b, resume, sd, sizeof(sd));
	struct bundle_layers act = {0};
	struct bundle_snapshot *s = bundle_snap(b, resume);
	int r = s ? restore_snapshot(b, s, sd, opts, vmm, &act)
		  : err_set(EINVAL, "%s: the snapshot %s to resume does not exist", b->dir, resume);
	if (r == 0) {
		bundle_layers_free(&b->active);
		b->active = act;
		b->has_active = true;
		bundle_set_str(&b->resume, NULL);
		r = bundle_save(b);
	} else {
		bundle_layers_free(&act);
	}
	if (r < 0 && *vmm) {
		vmm_destroy(*vmm);
		*vmm = NULL;
	}
	return r;
}

/* What a detached VM's process tells the command that started it when its
 * start failed: the errno (a full disk stays ENOSPC) and the message.  One
 * write to a pipe of less than PIPE_BUF: read whole. */
struct start_report {
	int err;
	char msg[ERR_MSG_MAX];
};

int mgr_run(const char *name, bool detach)
{
	struct bundle *b;
	int r = mgr_open_write(name, "cairn run", &b);
	if (r < 0)
		return r;
	int runfd = -1, pipefd[2] = {-1, -1};
	if ((r = take_run_lock(b, &runfd)) < 0)
		goto out;
	char sock[PATH_MAX], logp[PATH_MAX], disks[PATH_MAX];
	bundle_path(b, sock, sizeof(sock), "control.sock");
	bundle_path(b, logp, sizeof(logp), "console.log");
	bundle_path(b, disks, sizeof(disks), "disks");
	struct vmm_opts opts = {
	    .control = sock, .restore_mode = RESTORE_MAP, .verify_memory = true, .disk_dir = disks};
	int cin = STDIN_FILENO, cout = STDOUT_FILENO;
	if (detach) {
		if (pipe2(pipefd, O_CLOEXEC) < 0) {
			r = err_set(errno, "pipe");
			goto out;
		}
		pid_t pid = fork();
		if (pid < 0) {
			r = err_set(errno, "fork");
			goto out;
		}
		if (pid > 0) {
			/* parent: wait for "ok" or the child's errno and message */
			close(pipefd[1]);
			struct start_report rep = {0};
			ssize_t n = read(pipefd[0], &rep, sizeof(rep));
			close(pipefd[0]);
			close(runfd);
			bundle_close(b);
			if (n == 2 && !memcmp(&rep, "ok", 2))
				return 0;
			/* it failed: once this returns, it has ended (it held the
			 * run lock: a retry must not find the VM "running") */
			waitpid(pid, NULL, 0);
			if (n < (ssize_t)offsetof(struct start_report, msg) + 1)
				return err_set(EIO, "%s: the VM process ended during start-up",
					       name);
			rep.msg[sizeof(rep.msg) - 1] = 0;
			return err_set(rep.err > 0 && rep.err < 4096 ? rep.err : EIO, "%s",
				       rep.msg);
		}
		close(pipefd[0]);
		setsid();
		run_lock_write_pid(runfd); /* this process holds it now, not the parent */
		/* console input: the FIFO NAME/console.in (opened read-write so
		 * that it never reports end of file), for scripts */
		char inp[PATH_MAX];
		bundle_path(b, inp, sizeof(inp), "console.in");
		unlink(inp);
		if (mkfifo(inp, 0600) < 0 || (cin = open(inp, O_RDWR | O_CLOEXEC)) < 0)
			cin = open("/dev/null", O_RDONLY | O_CLOEXEC);
		cout = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (cout < 0) {
			r = err_set(errno, "%s", logp);
			goto child_fail;
		}
		dup2(cout, STDOUT_FILENO);
		dup2(cout, STDERR_FILENO);
		dup2(cin, STDIN_FILENO);
		cin = STDIN_FILENO;
		cout = STDOUT_FILENO;
	}
	mgr_relink_all(b); /* layers left by a VM that ended by itself */
	mgr_clone_register_moved(b, true);
	struct vmm *vmm = NULL;
	r = run_setup(b, &opts, cin, cout, &vmm);
	if (r < 0)
		goto child_fail;
	/* the VM runs: other writers (snapshot, stop) may come in */
	close(b->lock_fd);
	b->lock_fd = -1;
	if (detach) {
		(void)!write(pipefd[1], "ok", 2);
		close(pipefd[1]);
	}
	r = vmm_run(vmm);
	vmm_destroy(vmm);
	run_ended(b);
	if (detach)
		exit(r < 0 ? 1 : r);
	goto out;
child_fail:
	if (detach) {
		struct start_report rep = {.err = -r};
		snprintf(rep.msg, sizeof(rep.msg), "%s", err_msg());
		(void)!write(pipefd[1], &rep,
			     offsetof(struct start_report, msg) + strlen(rep.msg) + 1);
		exit(1);
	}
out:
	if (runfd >= 0)
		close(runfd);
	bundle_close(b);
	return r;
}

int mgr_stop(const char *name, bool save, const struct mgr_progress *pr, json_t *report)
{
	struct bundle *b;
	int r = mgr_open_write(name, save ? "cairn stop --save" : "cairn stop", &b);
	if (r < 0)
		return r;
	if (!bundle_running(b->dir, NULL)) {
		r = err_set(EINVAL, "%s: the VM is not running", b->dir);
		goto out;
	}
	if (save) {
		char sname[64];
		time_t t = time(NULL);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(sname, sizeof(sname), "suspend-%Y%m%d-%H%M%S", &tm);
		if (bundle_snap_by_name(b, sname))
			snprintf(sname + strlen(sname), 16, "-%d", (int)getpid());
		err_clear();
		r = mgr_snapshot_running(b, sname, "saved by cairn stop --save", true, 0, pr,
					 report);
	} else {
		json_t *req = json_pack("{s:s}", "cmd", "quit");
		r = mgr_ctl_request(b, req, NULL);
		json_decref(req);
		if (r == 0)
			r = mgr_wait_stopped(b, 60);
	}
	if (r == 0 && !bundle_running(b->dir, NULL))
		mgr_relink_all(b); /* the VM's overlays: named relative now it has ended */
out:
	bundle_close(b);
	return r;
}
