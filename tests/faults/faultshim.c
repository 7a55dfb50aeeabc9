/* libfaultshim.so: injected I/O faults for tests (after QEMU's blkdebug and
 * iotest 026), loaded with LD_PRELOAD into the real cairn binary.
 *
 * CAIRN_FAULT selects what it does (tests/faults/README.md has the details):
 *   op=pwrite+fsync,path=SUB,not=SUB,nth=N,errno=EIO[,sticky=1][,log=FILE]
 *       the Nth call (counted from 1) of one of the listed ops on a path that
 *       contains SUB (and none of the not= substrings) fails with errno; with
 *       sticky=1 every later matching call fails too (a full disk stays
 *       full); log=FILE appends one line per matching call.
 *   count:FILE      = op=all,log=FILE: only counts (one line per call)
 *   ctl:FILE        the spec lives in FILE (struct fault_shared, written by
 *                   the test): re-read whenever its generation changes, so
 *                   a long-lived process (a VM) can be armed and disarmed.
 * The call counter lives in shared memory: a MAP_SHARED anonymous page for
 * a spec in the environment (shared by every process forked after the load,
 * e.g. `cairn run --detach`'s VM process and a fork snapshot writer; an
 * exec'd program starts its own count) or the ctl file (shared by every
 * process that maps it, across exec too).
 *
 * Ops: write, writev, pwrite (pwrite64), pwritev (pwritev64, pwritev2,
 * pwritev64v2), splice (matched on the output fd), fsync, fdatasync,
 * ftruncate (ftruncate64), fallocate (fallocate64), rename, renameat,
 * renameat2; and the calls that make or remove names: open (open, open64,
 * openat, openat64, fopen, fopen64, mkstemp, mkostemp and their 64s; only
 * opens that may write or create: O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, or a
 * mode other than "r"/"rb"), mkdir (mkdir, mkdirat, mkdtemp), unlink
 * (unlink, unlinkat), rmdir (rmdir, unlinkat with AT_REMOVEDIR), mkfifo,
 * xattr (setxattr, lsetxattr, fsetxattr, removexattr, lremovexattr,
 * fremovexattr) and chmod (chmod, fchmod).  mkstemp/mkostemp/mkdtemp are
 * caught whole: glibc makes their file or directory with internal calls an
 * LD_PRELOAD cannot see.  fd-based calls are matched on /proc/self/fd/N;
 * only fds that name a file system path (starting with '/') ever match, so
 * pipes, sockets and terminals are never counted.  The shim's own I/O uses
 * raw syscalls.
 */
#undef _FILE_OFFSET_BITS /* we define both pwrite and pwrite64 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

enum fault_op {
	OP_WRITE,
	OP_WRITEV,
	OP_PWRITE,
	OP_PWRITEV,
	OP_SPLICE,
	OP_FSYNC,
	OP_FDATASYNC,
	OP_FTRUNCATE,
	OP_FALLOCATE,
	OP_RENAME,
	OP_RENAMEAT,
	OP_RENAMEAT2,
	OP_OPEN,
	OP_MKDIR,
	OP_UNLINK,
	OP_RMDIR,
	OP_MKFIFO,
	OP_XATTR,
	OP_CHMOD,
	OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "write",	 "writev",    "pwrite", "pwritev",  "splice",	 "fsync", "fdatasync",
    "ftruncate", "fallocate", "rename", "renameat", "renameat2", "open",  "mkdir",
    "unlink",	 "rmdir",     "mkfifo", "xattr",    "chmod"};

#define FAULT_MAGIC 0x544c554146524143ULL /* "CARFAULT" */
#define SPEC_MAX 2048
#define MAX_NOT 8

/* The shared page (the ctl file's layout: tests/faults/campaign.py writes
 * it).  A writer fills spec, zeroes calls and fired, then bumps gen. */
struct fault_shared {
	uint64_t magic;
	uint64_t gen;
	uint64_t calls; /* matching calls so far */
	uint64_t fired; /* calls made to fail */
	char spec[SPEC_MAX];
};

struct fault_cfg {
	unsigned ops; /* bit per enum fault_op; 0 = disarmed */
	char path[PATH_MAX];
	char nots[MAX_NOT][256];
	int nnot;
	uint64_t nth; /* 0 = never fail (count only) */
	int err;
	int sticky;
	char log[PATH_MAX];
};

static struct fault_shared *shared;
static int ctl_mode;
/* configurations are immutable once published; re-arming takes the next
 * slot, so a thread still reading an old one is safe for CFG_SLOTS re-arms */
#define CFG_SLOTS 16
static struct fault_cfg cfg_pool[CFG_SLOTS];
static unsigned cfg_next;
static struct fault_cfg *cfg;
static uint64_t cfg_gen = UINT64_MAX;
static int cfg_lock;

static void shim_die(const char *msg)
{
	syscall(SYS_write, 2, "libfaultshim: ", 14);
	syscall(SYS_write, 2, msg, strlen(msg));
	syscall(SYS_write, 2, "\n", 1);
	_exit(125);
}

static int parse_errno(const char *s)
{
	static const struct {
		const char *name;
		int val;
	} names[] = {{"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT},
		     {"EROFS", EROFS}, {"EFBIG", EFBIG}, {"EINTR", EINTR}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i].name))
			return names[i].val;
	char *end;
	long v = strtol(s, &end, 10);
	if (*s && !*end && v > 0 && v < 4096)
		return (int)v;
	shim_die("bad errno= in CAIRN_FAULT");
	return 0;
}

static unsigned parse_ops(char *s)
{
	unsigned ops = 0;
	for (char *save = NULL, *t = strtok_r(s, "+|", &save); t; t = strtok_r(NULL, "+|", &save)) {
		if (!strcmp(t, "all")) {
			ops |= (1u << OP_COUNT) - 1;
			continue;
		}
		int i;
		for (i = 0; i < OP_COUNT && strcmp(t, op_names[i]); i++)
			;
		if (i == OP_COUNT)
			shim_die(
			    "unknown op in CAIRN_FAULT (write writev pwrite pwritev splice fsync "
			    "fdatasync ftruncate fallocate rename renameat renameat2 open mkdir "
			    "unlink rmdir mkfifo xattr chmod all)");
		ops |= 1u << i;
	}
	return ops;
}

static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	if (n >= size)
		shim_die("value too long in CAIRN_FAULT");
	memcpy(dst, src, n + 1);
}

/* "key=value,..." into c; an empty spec disarms */
static void parse_spec(const char *spec, struct fault_cfg *c)
{
	char buf[SPEC_MAX];
	memset(c, 0, sizeof(*c));
	c->err = EIO;
	copy_str(buf, sizeof(buf), spec);
	if (!strncmp(buf, "count:", 6)) {
		c->ops = (1u << OP_COUNT) - 1;
		copy_str(c->log, sizeof(c->log), buf + 6);
		return;
	}
	int have_op = 0;
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *v = strchr(t, '=');
		if (!v)
			shim_die("expected key=value in CAIRN_FAULT");
		*v++ = 0;
		if (!strcmp(t, "op")) {
			c->ops = parse_ops(v);
			have_op = 1;
		} else if (!strcmp(t, "path")) {
			copy_str(c->path, sizeof(c->path), v);
		} else if (!strcmp(t, "not")) {
			if (c->nnot == MAX_NOT)
				shim_die("too many not= in CAIRN_FAULT");
			copy_str(c->nots[c->nnot++], sizeof(c->nots[0]), v);
		} else if (!strcmp(t, "nth")) {
			c->nth = strtoull(v, NULL, 10);
		} else if (!strcmp(t, "errno")) {
			c->err = parse_errno(v);
		} else if (!strcmp(t, "sticky")) {
			c->sticky = atoi(v);
		} else if (!strcmp(t, "log") || !strcmp(t, "count")) {
			copy_str(c->log, sizeof(c->log), v);
		} else {
			shim_die("unknown key in CAIRN_FAULT (op path not nth errno sticky log)");
		}
	}
	if (!have_op && (c->nth || c->log[0]))
		c->ops = (1u << OP_COUNT) - 1;
}

/* a fork while another thread re-reads the spec must not leave the child's
 * lock taken (only the forking thread lives on in the child) */
static void shim_atfork_child(void)
{
	__atomic_store_n(&cfg_lock, 0, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void shim_init(void)
{
	const char *env = getenv("CAIRN_FAULT");
	pthread_atfork(NULL, NULL, shim_atfork_child);
	if (!env || !*env)
		return;
	if (!strncmp(env, "ctl:", 4)) {
		int fd = (int)syscall(SYS_openat, AT_FDCWD, env + 4, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			shim_die("cannot open the ctl: file of CAIRN_FAULT");
		shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		syscall(SYS_close, fd);
		if (shared == MAP_FAILED || shared->magic != FAULT_MAGIC)
			shim_die("the ctl: file of CAIRN_FAULT is not a fault control file");
		ctl_mode = 1;
		return;
	}
	shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		      0);
	if (shared == MAP_FAILED)
		shim_die("mmap");
	shared->magic = FAULT_MAGIC;
	copy_str(shared->spec, sizeof(shared->spec), env);
	shared->gen = 1;
}

/* the current configuration, or NULL when nothing is armed */
static struct fault_cfg *cur_cfg(void)
{
	if (!shared)
		return NULL;
	uint64_t gen = __atomic_load_n(&shared->gen, __ATOMIC_ACQUIRE);
	if (gen == __atomic_load_n(&cfg_gen, __ATOMIC_ACQUIRE))
		return __atomic_load_n(&cfg, __ATOMIC_ACQUIRE);
	while (__atomic_exchange_n(&cfg_lock, 1, __ATOMIC_ACQUIRE))
		;
	if (gen != cfg_gen) {
		char spec[SPEC_MAX];
		memcpy(spec, shared->spec, sizeof(spec));
		spec[SPEC_MAX - 1] = 0;
		struct fault_cfg *c = &cfg_pool[cfg_next++ % CFG_SLOTS];
		parse_spec(spec, c);
		__atomic_store_n(&cfg, c->ops ? c : NULL, __ATOMIC_RELEASE);
		__atomic_store_n(&cfg_gen, gen, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&cfg_lock, 0, __ATOMIC_RELEASE);
	return __atomic_load_n(&cfg, __ATOMIC_ACQUIRE);
}

static int fd_path(int fd, char *buf, size_t size)
{
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, buf, size - 1);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return buf[0] == '/' ? 0 : -1;
}

/* a path as given to rename*(), made absolute against dirfd or the cwd */
static int at_path(int dirfd, const char *p, char *buf, size_t size)
{
	if (p[0] == '/') {
		snprintf(buf, size, "%s", p);
		return 0;
	}
	char dir[PATH_MAX];
	if (dirfd == AT_FDCWD ? !getcwd(dir, sizeof(dir)) : fd_path(dirfd, dir, sizeof(dir)) < 0)
		return -1;
	size_t dl = strlen(dir), pl = strlen(p);
	if (dl + 1 + pl >= size)
		return -1;
	memcpy(buf, dir, dl);
	buf[dl] = '/';
	memcpy(buf + dl + 1, p, pl + 1);
	return 0;
}

static int path_matches(const struct fault_cfg *c, const char *p)
{
	if (!p || p[0] != '/' || (c->path[0] && !strstr(p, c->path)))
		return 0;
	for (int i = 0; i < c->nnot; i++)
		if (strstr(p, c->nots[i]))
			return 0;
	return 1;
}

/* Whether a call of the op can say ENOSPC on a real full disk: calls that
 * allocate (data, a name, an inode, an xattr).  Removing a name, changing
 * a mode and opening an existing file need no space. */
static const unsigned char op_allocates[OP_COUNT] = {
    [OP_WRITE] = 1,    [OP_WRITEV] = 1,	   [OP_PWRITE] = 1,    [OP_PWRITEV] = 1,   [OP_SPLICE] = 1,
    [OP_FSYNC] = 1,    [OP_FDATASYNC] = 1, [OP_FTRUNCATE] = 1, [OP_FALLOCATE] = 1, [OP_RENAME] = 1,
    [OP_RENAMEAT] = 1, [OP_RENAMEAT2] = 1, [OP_OPEN] = 1,      [OP_MKDIR] = 1,	   [OP_UNLINK] = 0,
    [OP_RMDIR] = 0,    [OP_MKFIFO] = 1,	   [OP_XATTR] = 1,     [OP_CHMOD] = 0};
/* set by a wrapper for the call it checks next: 0 or 1, -1 the op's default
 * (an open that creates nothing, a removexattr) */
static __thread int call_allocates = -1;

static void log_call(const struct fault_cfg *c, uint64_t n, enum fault_op op, const char *p,
		     const char *p2, int fail, int allocates)
{
	char line[2 * PATH_MAX + 128];
	int len = snprintf(line, sizeof(line), "%llu %d %s %s%s%s%s%s%s\n", (unsigned long long)n,
			   (int)getpid(), op_names[op], p, p2 ? " -> " : "", p2 ? p2 : "",
			   fail ? " FAIL " : "", fail ? strerrorname_np(c->err) : "",
			   allocates ? "" : " !");
	if (len <= 0)
		return;
	if (len >= (int)sizeof(line))
		len = sizeof(line) - 1;
	int fd = (int)syscall(SYS_openat, AT_FDCWD, c->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
			      0644);
	if (fd < 0)
		return;
	syscall(SYS_write, fd, line, (size_t)len);
	syscall(SYS_close, fd);
}

/* Decides one call: 0 = go on to the real function, else the errno to fail
 * with.  p2 is the second path of a rename (either path may match).  With
 * ENOSPC or EDQUOT a call that needs no space never fails (a full disk
 * still lets a file be removed): it is counted, and logged with a "!". */
static int fault_check(enum fault_op op, int fd, int dirfd, const char *p1, int dirfd2,
		       const char *p2)
{
	int allocates = call_allocates < 0 ? op_allocates[op] : call_allocates;
	call_allocates = -1;
	struct fault_cfg *c = cur_cfg();
	if (!c || !(c->ops & (1u << op)))
		return 0;
	int saved = errno;
	char a[PATH_MAX], b[PATH_MAX];
	const char *pa = NULL, *pb = NULL;
	if (p1) {
		pa = at_path(dirfd, p1, a, sizeof(a)) == 0 ? a : NULL;
		pb = p2 && at_path(dirfd2, p2, b, sizeof(b)) == 0 ? b : NULL;
	} else {
		pa = fd_path(fd, a, sizeof(a)) == 0 ? a : NULL;
	}
	if (!path_matches(c, pa) && !path_matches(c, pb)) {
		errno = saved;
		return 0;
	}
	uint64_t n = __atomic_add_fetch(&shared->calls, 1, __ATOMIC_ACQ_REL);
	int fail = c->nth && (n == c->nth || (c->sticky && n > c->nth));
	if (fail && !allocates && (c->err == ENOSPC || c->err == EDQUOT))
		fail = 0;
	if (fail)
		__atomic_add_fetch(&shared->fired, 1, __ATOMIC_ACQ_REL);
	if (c->log[0])
		log_call(c, n, op, pa ? pa : "?", pb, fail, allocates);
	errno = saved;
	return fail ? c->err : 0;
}

static void *real_fn(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);
	if (!f)
		shim_die(name);
	return f;
}

/* REAL(name, type): the next definition of name (libc's, or ASan's
 * interceptor's target), resolved once */
#define REAL(name, type)                                                                     \
	static type real_##name;                                                             \
	if (!__atomic_load_n(&real_##name, __ATOMIC_ACQUIRE))                                \
		__atomic_store_n(&real_##name, (type)real_fn(#name), __ATOMIC_RELEASE);

#define FAIL_IF(op, fd)                                                                      \
	do {                                                                                 \
		int e_ = fault_check(op, fd, AT_FDCWD, NULL, AT_FDCWD, NULL);                \
		if (e_) {                                                                    \
			errno = e_;                                                          \
			return -1;                                                           \
		}                                                                            \
	} while (0)

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*pwritev2_fn)(int, const struct iovec *, int, off_t, int);
typedef ssize_t (*splice_fn)(int, loff_t *, int, loff_t *, size_t, unsigned int);
typedef int (*fd_fn)(int);
typedef int (*ftruncate_fn)(int, off_t);
typedef int (*fallocate_fn)(int, int, off_t, off_t);
typedef int (*rename_fn)(const char *, const char *);
typedef int (*renameat_fn)(int, const char *, int, const char *);
typedef int (*renameat2_fn)(int, const char *, int, const char *, unsigned int);

ssize_t write(int fd, const void *buf, size_t len)
{
	REAL(write, write_fn);
	FAIL_IF(OP_WRITE, fd);
	return real_write(fd, buf, len);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(writev, writev_fn);
	FAIL_IF(OP_WRITEV, fd);
	return real_writev(fd, iov, cnt);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite, pwrite_fn);
	FAIL_IF(OP_PWRITE, fd);
	return real_pwrite(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	REAL(pwrite64, pwrite_fn);
	FAIL_IF(OP_PWRITE, fd);
	return real_pwrite64(fd, buf, len, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(pwritev, pwritev_fn);
	FAIL_IF(OP_PWRITEV, fd);
	return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
	REAL(pwritev64, pwritev_fn);
	FAIL_IF(OP_PWRITEV, fd);
	return real_pwritev64(fd, iov, cnt, off);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	REAL(pwritev2, pwritev2_fn);
	FAIL_IF(OP_PWRITEV, fd);
	return real_pwritev2(fd, iov, cnt, off, flags);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags)
{
	REAL(pwritev64v2, pwritev2_fn);
	FAIL_IF(OP_PWRITEV, fd);
	return real_pwritev64v2(fd, iov, cnt, off, flags);
}

ssize_t splice(int in, loff_t *in_off, int out, loff_t *out_off, size_t len, unsigned int flags)
{
	REAL(splice, splice_fn);
	FAIL_IF(OP_SPLICE, out);
	return real_splice(in, in_off, out, out_off, len, flags);
}

int fsync(int fd)
{
	REAL(fsync, fd_fn);
	FAIL_IF(OP_FSYNC, fd);
	return real_fsync(fd);
}

int fdatasync(int fd)
{
	REAL(fdatasync, fd_fn);
	FAIL_IF(OP_FDATASYNC, fd);
	return real_fdatasync(fd);
}

int ftruncate(int fd, off_t len)
{
	REAL(ftruncate, ftruncate_fn);
	FAIL_IF(OP_FTRUNCATE, fd);
	return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len)
{
	REAL(ftruncate64, ftruncate_fn);
	FAIL_IF(OP_FTRUNCATE, fd);
	return real_ftruncate64(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	REAL(fallocate, fallocate_fn);
	FAIL_IF(OP_FALLOCATE, fd);
	return real_fallocate(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	REAL(fallocate64, fallocate_fn);
	FAIL_IF(OP_FALLOCATE, fd);
	return real_fallocate64(fd, mode, off, len);
}

#define FAIL_IF_PATHS(op, d1, p1, d2, p2)                                                    \
	do {                                                                                 \
		int e_ = fault_check(op, -1, d1, p1, d2, p2);                                \
		if (e_) {                                                                    \
			errno = e_;                                                          \
			return -1;                                                           \
		}                                                                            \
	} while (0)

int rename(const char *from, const char *to)
{
	REAL(rename, rename_fn);
	FAIL_IF_PATHS(OP_RENAME, AT_FDCWD, from, AT_FDCWD, to);
	return real_rename(from, to);
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
	REAL(renameat, renameat_fn);
	FAIL_IF_PATHS(OP_RENAMEAT, fd1, from, fd2, to);
	return real_renameat(fd1, from, fd2, to);
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned int flags)
{
	REAL(renameat2, renameat2_fn);
	FAIL_IF_PATHS(OP_RENAMEAT2, fd1, from, fd2, to);
	return real_renameat2(fd1, from, fd2, to, flags);
}

/* ---- the calls that make or remove names ---- */

#define FAIL_IF_PATH(op, d, p) FAIL_IF_PATHS(op, d, p, AT_FDCWD, NULL)

/* A path-based call that returns a pointer (fopen, mkdtemp): NULL and errno. */
#define FAIL_NULL_IF_PATH(op, d, p)                                                                \
	do {                                                                                       \
		int e_ = fault_check(op, -1, d, p, AT_FDCWD, NULL);                                \
		if (e_) {                                                                          \
			errno = e_;                                                                \
			return NULL;                                                               \
		}                                                                                  \
	} while (0)

static int open_writes(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) ||
	       (flags & O_TMPFILE) == O_TMPFILE;
}

/* an open allocates only when it creates the file */
static int open_creates(int dirfd, const char *path, int flags)
{
	if ((flags & O_TMPFILE) == O_TMPFILE)
		return 1;
	if (!(flags & O_CREAT))
		return 0;
	int saved = errno;
	int exists = faccessat(dirfd, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	errno = saved;
	return !exists;
}

static mode_t open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef FILE *(*fopen_fn)(const char *, const char *);
typedef int (*mkstemp_fn)(char *);
typedef int (*mkostemp_fn)(char *, int);
typedef char *(*mkdtemp_fn)(char *);
typedef int (*mkdir_fn)(const char *, mode_t);
typedef int (*mkdirat_fn)(int, const char *, mode_t);
typedef int (*path_fn)(const char *);
typedef int (*unlinkat_fn)(int, const char *, int);
typedef int (*mkfifo_fn)(const char *, mode_t);
typedef int (*setxattr_fn)(const char *, const char *, const void *, size_t, int);
typedef int (*fsetxattr_fn)(int, const char *, const void *, size_t, int);
typedef int (*removexattr_fn)(const char *, const char *);
typedef int (*fremovexattr_fn)(int, const char *);
typedef int (*chmod_fn)(const char *, mode_t);
typedef int (*fchmod_fn)(int, mode_t);

#define DEF_OPEN(name)                                                                             \
	int name(const char *path, int flags, ...)                                                 \
	{                                                                                          \
		REAL(name, open_fn);                                                               \
		va_list ap;                                                                        \
		va_start(ap, flags);                                                               \
		mode_t mode = open_mode(flags, ap);                                                \
		va_end(ap);                                                                        \
		if (open_writes(flags)) {                                                          \
			call_allocates = open_creates(AT_FDCWD, path, flags);                      \
			FAIL_IF_PATH(OP_OPEN, AT_FDCWD, path);                                     \
		}                                                                                  \
		return real_##name(path, flags, mode);                                             \
	}
DEF_OPEN(open)
DEF_OPEN(open64)

#define DEF_OPENAT(name)                                                                           \
	int name(int dirfd, const char *path, int flags, ...)                                      \
	{                                                                                          \
		REAL(name, openat_fn);                                                             \
		va_list ap;                                                                        \
		va_start(ap, flags);                                                               \
		mode_t mode = open_mode(flags, ap);                                                \
		va_end(ap);                                                                        \
		if (open_writes(flags)) {                                                          \
			call_allocates = open_creates(dirfd, path, flags);                         \
			FAIL_IF_PATH(OP_OPEN, dirfd, path);                                        \
		}                                                                                  \
		return real_##name(dirfd, path, flags, mode);                                      \
	}
DEF_OPENAT(openat)
DEF_OPENAT(openat64)

#define DEF_FOPEN(name)                                                                            \
	FILE *name(const char *path, const char *mode)                                             \
	{                                                                                          \
		REAL(name, fopen_fn);                                                              \
		if (mode && strpbrk(mode, "wa+")) {                                                \
			call_allocates = open_creates(AT_FDCWD, path, O_CREAT);                    \
			FAIL_NULL_IF_PATH(OP_OPEN, AT_FDCWD, path);                                \
		}                                                                                  \
		return real_##name(path, mode);                                                    \
	}
DEF_FOPEN(fopen)
DEF_FOPEN(fopen64)

#define DEF_MKSTEMP(name)                                                                          \
	int name(char *tmpl)                                                                       \
	{                                                                                          \
		REAL(name, mkstemp_fn);                                                            \
		FAIL_IF_PATH(OP_OPEN, AT_FDCWD, tmpl);                                             \
		return real_##name(tmpl);                                                          \
	}
DEF_MKSTEMP(mkstemp)
DEF_MKSTEMP(mkstemp64)

#define DEF_MKOSTEMP(name)                                                                         \
	int name(char *tmpl, int flags)                                                            \
	{                                                                                          \
		REAL(name, mkostemp_fn);                                                           \
		FAIL_IF_PATH(OP_OPEN, AT_FDCWD, tmpl);                                             \
		return real_##name(tmpl, flags);                                                   \
	}
DEF_MKOSTEMP(mkostemp)
DEF_MKOSTEMP(mkostemp64)

char *mkdtemp(char *tmpl)
{
	REAL(mkdtemp, mkdtemp_fn);
	FAIL_NULL_IF_PATH(OP_MKDIR, AT_FDCWD, tmpl);
	return real_mkdtemp(tmpl);
}

int mkdir(const char *path, mode_t mode)
{
	REAL(mkdir, mkdir_fn);
	FAIL_IF_PATH(OP_MKDIR, AT_FDCWD, path);
	return real_mkdir(path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
	REAL(mkdirat, mkdirat_fn);
	FAIL_IF_PATH(OP_MKDIR, dirfd, path);
	return real_mkdirat(dirfd, path, mode);
}

int unlink(const char *path)
{
	REAL(unlink, path_fn);
	FAIL_IF_PATH(OP_UNLINK, AT_FDCWD, path);
	return real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
	REAL(unlinkat, unlinkat_fn);
	FAIL_IF_PATH(flags & AT_REMOVEDIR ? OP_RMDIR : OP_UNLINK, dirfd, path);
	return real_unlinkat(dirfd, path, flags);
}

int rmdir(const char *path)
{
	REAL(rmdir, path_fn);
	FAIL_IF_PATH(OP_RMDIR, AT_FDCWD, path);
	return real_rmdir(path);
}

int mkfifo(const char *path, mode_t mode)
{
	REAL(mkfifo, mkfifo_fn);
	FAIL_IF_PATH(OP_MKFIFO, AT_FDCWD, path);
	return real_mkfifo(path, mode);
}

#define DEF_SETXATTR(name)                                                                         \
	int name(const char *path, const char *key, const void *val, size_t len, int flags)        \
	{                                                                                          \
		REAL(name, setxattr_fn);                                                           \
		FAIL_IF_PATH(OP_XATTR, AT_FDCWD, path);                                            \
		return real_##name(path, key, val, len, flags);                                    \
	}
DEF_SETXATTR(setxattr)
DEF_SETXATTR(lsetxattr)

int fsetxattr(int fd, const char *key, const void *val, size_t len, int flags)
{
	REAL(fsetxattr, fsetxattr_fn);
	FAIL_IF(OP_XATTR, fd);
	return real_fsetxattr(fd, key, val, len, flags);
}

#define DEF_REMOVEXATTR(name)                                                                      \
	int name(const char *path, const char *key)                                                \
	{                                                                                          \
		REAL(name, removexattr_fn);                                                        \
		call_allocates = 0;                                                                \
		FAIL_IF_PATH(OP_XATTR, AT_FDCWD, path);                                            \
		return real_##name(path, key);                                                     \
	}
DEF_REMOVEXATTR(removexattr)
DEF_REMOVEXATTR(lremovexattr)

int fremovexattr(int fd, const char *key)
{
	REAL(fremovexattr, fremovexattr_fn);
	call_allocates = 0;
	FAIL_IF(OP_XATTR, fd);
	return real_fremovexattr(fd, key);
}

int chmod(const char *path, mode_t mode)
{
	REAL(chmod, chmod_fn);
	FAIL_IF_PATH(OP_CHMOD, AT_FDCWD, path);
	return real_chmod(path, mode);
}

int fchmod(int fd, mode_t mode)
{
	REAL(fchmod, fchmod_fn);
	FAIL_IF(OP_CHMOD, fd);
	return real_fchmod(fd, mode);
}
