/* `cairn img`: qcow2/raw image tools with qemu-img's option names.  Only
 * argument parsing and output live here; the work is in src/disk/. */
#include "cli/cli.h"
#include "disk/block.h"
#include "disk/chain.h"
#include "disk/qcow2.h"
#include "disk/qcow2_check.h"
#include "util/err.h"
#include "util/size.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_img_bench(int argc, char **argv);

static const char img_usage[] =
    "Usage: cairn img COMMAND [options] FILE...\n"
    "\n"
    "Image tools for qcow2 (v3; v2 read-only) and raw files, with qemu-img's option\n"
    "names.  Backing chains are followed; formats are detected unless -f is given.\n"
    "\n"
    "  create  [-f qcow2|raw] [-b BACKING [-F FMT]] [-o cluster_size=N] [-u] FILE [SIZE]\n"
    "  info    [-f FMT] [-U] [--backing-chain] [--json|--output=json] FILE\n"
    "  check   [-f FMT] [-U | -r leaks] [--json|--output=json] FILE\n"
    "  commit  [-f FMT] [-b BASE] [-d] [-p] FILE\n"
    "  stream  [-b BASE [-F FMT]] [-p] FILE      (pull backing data into FILE)\n"
    "  rebase  [-f FMT] [-u] -b BACKING [-F FMT] [-p] FILE   (-b \"\" = none)\n"
    "  map     [-f FMT] [-U] [--json|--output=json] FILE\n"
    "  convert [-f FMT] [-U] [-O qcow2|raw] [-o cluster_size=N] [-B BACKING [-F FMT]] [-p] SRC DST\n"
    "  compare [-f FMT] [-F FMT] [-U] A B\n"
    "  bench   [-c N] [-s SIZE] [-S STEP] [-o OFF] [-w] [--flush-interval=N] FILE\n"
    "  io      [-f FMT] [-v] -c CMD [-c CMD...] FILE   (test helper; CMD: read|write\n"
    "          [-P BYTE] [-z] OFF LEN, discard OFF LEN, flush; -v: \"done N\" per command)\n"
    "\n"
    "Images are locked as QEMU locks them: an image a VM (cairn's or QEMU's) writes is\n"
    "refused, and a frozen snapshot layer cannot be opened for writing; -U\n"
    "(--force-share) reads without locks.\n"
    "\n"
    "Exit status: 0 ok, 1 failed, 2 usage error; check: 0 clean, 2 corruptions,\n"
    "3 leaks only (1 when the check could not run); compare: 0 same, 1 different,\n"
    "2 error.\n";

enum { OPT_JSON = 0x100, OPT_OUTPUT, OPT_BACKING_CHAIN };

static int usage_err(const char *cmd, const char *msg)
{
	return cli_usage_error("img", "%s: %s", cmd, msg);
}

static int parse_num(const char *s, uint64_t *out)
{
	if (!strncmp(s, "0x", 2) || !strncmp(s, "0X", 2)) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(s, &end, 16);
		if (errno || *end)
			return -EINVAL;
		*out = v;
		return 0;
	}
	return size_parse(s, 1, out);
}

/* -o key=value[,key=value]: cluster_size, backing_file, backing_fmt, size. */
struct img_opts {
	uint32_t cluster_size;
	const char *backing, *backing_fmt;
};

static int parse_o(char *arg, struct img_opts *o)
{
	for (char *save = NULL, *kv = strtok_r(arg, ",", &save); kv;
	     kv = strtok_r(NULL, ",", &save)) {
		char *v = strchr(kv, '=');
		if (!v)
			return -EINVAL;
		*v++ = 0;
		uint64_t n;
		if (!strcmp(kv, "cluster_size")) {
			if (parse_num(v, &n) < 0 || n > UINT32_MAX)
				return -EINVAL;
			o->cluster_size = (uint32_t)n;
		} else if (!strcmp(kv, "backing_file")) {
			o->backing = v;
		} else if (!strcmp(kv, "backing_fmt")) {
			o->backing_fmt = v;
		} else if (!strcmp(kv, "compat")) {
			if (strcmp(v, "1.1") && strcmp(v, "v3"))
				return -EINVAL;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

static bool json_flag(int c, const char *arg, bool *json)
{
	if (c == OPT_JSON) {
		*json = true;
		return true;
	}
	if (c == OPT_OUTPUT) {
		*json = !strcmp(arg, "json");
		return !strcmp(arg, "json") || !strcmp(arg, "human");
	}
	return false;
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
	if (s)
		puts(s);
	free(s);
	json_decref(j);
}

static void progress_print(void *opaque, uint64_t done, uint64_t total)
{
	(void)opaque;
	printf("    (%.2f/100%%)\r", total ? 100.0 * (double)done / (double)total : 100.0);
	if (done >= total)
		putchar('\n');
	fflush(stdout);
}

static const struct chain_progress progress = {progress_print, NULL};

static const struct option common_longopts[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"backing-chain", no_argument, NULL, OPT_BACKING_CHAIN},
    {"force-share", no_argument, NULL, 'U'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static bool want_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	return false;
}

/* ---- create ----------------------------------------------------------- */

static int img_create(int argc, char **argv)
{
	const char *fmt = "qcow2";
	struct img_opts o = {0};
	int c;
	while ((c = getopt_long(argc, argv, "+f:b:F:o:uqh", common_longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'b':
			o.backing = optarg;
			break;
		case 'F':
			o.backing_fmt = optarg;
			break;
		case 'o':
			if (parse_o(optarg, &o) < 0)
				return usage_err("create", "bad -o option");
			break;
		case 'u':
		case 'q':
			break;
		default:
			return usage_err("create", "bad option");
		}
	}
	if (optind >= argc || argc - optind > 2)
		return usage_err("create", "expected FILE [SIZE]");
	const char *path = argv[optind];
	uint64_t size = 0;
	if (optind + 1 < argc && parse_num(argv[optind + 1], &size) < 0)
		return usage_err("create", "bad SIZE");
	if (!strcmp(fmt, "raw")) {
		if (o.backing)
			return usage_err("create", "raw images have no backing file");
		FILE *f = fopen(path, "w");
		if (!f || ftruncate(fileno(f), (off_t)size) < 0) {
			if (f)
				fclose(f);
			err_set(errno, "%s: cannot create", path);
			return cli_fail();
		}
		fclose(f);
		return CLI_OK;
	}
	if (strcmp(fmt, "qcow2"))
		return usage_err("create", "format must be qcow2 or raw");
	if (!size && !o.backing)
		return usage_err("create", "SIZE is needed without a backing file");
	struct qcow2_create_opts co = {.size = size,
				       .cluster_size = o.cluster_size,
				       .backing = o.backing,
				       .backing_fmt = o.backing_fmt};
	return qcow2_create(path, &co) < 0 ? cli_fail() : CLI_OK;
}

/* ---- info ------------------------------------------------------------- */

static json_t *info_json(struct block_dev *bd)
{
	json_t *j = json_object();
	struct stat st;
	json_object_set_new(j, "virtual-size", json_integer((json_int_t)bd->size));
	json_object_set_new(j, "filename", json_string(bd->path));
	struct qcow2_info qi;
	bool q = qcow2_get_info(bd, &qi) == 0;
	if (q)
		json_object_set_new(j, "cluster-size", json_integer((json_int_t)qi.cluster_size));
	json_object_set_new(j, "format", json_string(bd->format));
	if (stat(bd->path, &st) == 0)
		json_object_set_new(j, "actual-size", json_integer((json_int_t)st.st_blocks * 512));
	if (q) {
		json_t *d = json_object();
		json_object_set_new(d, "compat", json_string(qi.version >= 3 ? "1.1" : "0.10"));
		json_object_set_new(d, "compression-type", json_string(qi.compression));
		json_object_set_new(d, "lazy-refcounts", json_boolean(qi.lazy_refcounts));
		json_object_set_new(d, "refcount-bits", json_integer(qi.refcount_bits));
		json_object_set_new(d, "corrupt", json_boolean(qi.corrupt));
		json_object_set_new(d, "extended-l2", json_boolean(qi.extended_l2));
		json_t *fs = json_object();
		json_object_set_new(fs, "type", json_string("qcow2"));
		json_object_set_new(fs, "data", d);
		json_object_set_new(j, "format-specific", fs);
		if (qi.backing) {
			char *full = qcow2_resolve_backing(bd->path, qi.backing);
			json_object_set_new(j, "backing-filename", json_string(qi.backing));
			json_object_set_new(j, "full-backing-filename",
					    json_string(full ? full : ""));
			free(full);
			if (qi.backing_fmt)
				json_object_set_new(j, "backing-filename-format",
						    json_string(qi.backing_fmt));
		}
		json_object_set_new(j, "dirty-flag", json_boolean(qi.dirty));
		json_object_set_new(j, "snapshots", json_integer(qi.nb_snapshots));
	}
	return j;
}

static void human_size(char *buf, size_t n, uint64_t v)
{
	static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double d = (double)v;
	int i = 0;
	while (d >= 1024 && i < 5) {
		d /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, n, "%llu B", (unsigned long long)v);
	else
		snprintf(buf, n, "%.3g %s", d, u[i]);
}

static void info_human(json_t *j)
{
	char a[32], b[32];
	uint64_t vs = (uint64_t)json_integer_value(json_object_get(j, "virtual-size"));
	human_size(a, sizeof(a), vs);
	human_size(b, sizeof(b), (uint64_t)json_integer_value(json_object_get(j, "actual-size")));
	printf("image: %s\nfile format: %s\nvirtual size: %s (%llu bytes)\ndisk size: %s\n",
	       json_string_value(json_object_get(j, "filename")),
	       json_string_value(json_object_get(j, "format")), a, (unsigned long long)vs, b);
	json_t *cs = json_object_get(j, "cluster-size");
	if (cs)
		printf("cluster_size: %lld\n", (long long)json_integer_value(cs));
	json_t *bf = json_object_get(j, "backing-filename");
	if (bf) {
		printf("backing file: %s", json_string_value(bf));
		json_t *full = json_object_get(j, "full-backing-filename");
		if (strcmp(json_string_value(full), json_string_value(bf)))
			printf(" (actual path: %s)", json_string_value(full));
		putchar('\n');
		json_t *bff = json_object_get(j, "backing-filename-format");
		if (bff)
			printf("backing file format: %s\n", json_string_value(bff));
	}
	json_t *fs = json_object_get(json_object_get(j, "format-specific"), "data");
	if (fs) {
		printf("Format specific information:\n");
		const char *name;
		json_t *v;
		json_object_foreach(fs, name, v)
		{
			/* qemu-img prints "refcount bits", JSON has "refcount-bits" */
			char k[64];
			snprintf(k, sizeof(k), "%s", name);
			for (char *q = k; *q; q++)
				if (*q == '-')
					*q = ' ';
			if (json_is_string(v))
				printf("    %s: %s\n", k, json_string_value(v));
			else if (json_is_boolean(v))
				printf("    %s: %s\n", k, json_is_true(v) ? "true" : "false");
			else
				printf("    %s: %lld\n", k, (long long)json_integer_value(v));
		}
	}
}

static int img_info(int argc, char **argv)
{
	const char *fmt = NULL;
	bool json = false, chain = false;
	unsigned share = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+f:Uh", common_longopts, NULL)) != -1) {
		if (c == 'f')
			fmt = optarg;
		else if (c == OPT_BACKING_CHAIN)
			chain = true;
		else if (c == 'U')
			share = BLOCK_FORCE_SHARE;
		else if (!json_flag(c, optarg, &json))
			return usage_err("info", "bad option");
	}
	if (argc - optind != 1)
		return usage_err("info", "expected one FILE");
	json_t *all = json_array();
	char *path = strdup(argv[optind]);
	int rc = CLI_OK;
	dev_t devs[1001];
	ino_t inos[1001];
	int nseen = 0;
	while (path) {
		struct block_dev *bd;
		struct stat st;
		if (stat(path, &st) == 0) {
			for (int i = 0; i < nseen; i++) {
				if (devs[i] == st.st_dev && inos[i] == st.st_ino) {
					err_set(ELOOP,
						"%s: backing file loop: %s is already in the chain",
						argv[optind], path);
					nseen = -1;
					break;
				}
			}
			if (nseen < 0 || nseen == 1001) {
				if (nseen == 1001)
					err_set(ELOOP, "%s: backing chain too deep", argv[optind]);
				rc = cli_fail();
				break;
			}
			devs[nseen] = st.st_dev;
			inos[nseen++] = st.st_ino;
		}
		if (block_open(path, fmt, BLOCK_RDONLY | BLOCK_NO_BACKING | share, &bd) < 0) {
			rc = cli_fail();
			break;
		}
		json_t *j = info_json(bd);
		json_array_append_new(all, j);
		free(path);
		path = NULL;
		json_t *full = json_object_get(j, "full-backing-filename");
		if (chain && full) {
			path = strdup(json_string_value(full));
			json_t *bff = json_object_get(j, "backing-filename-format");
			fmt = bff ? (json_string_value(bff)[0] == 'r' ? "raw" : "qcow2") : NULL;
		}
		block_close(bd);
	}
	free(path);
	if (rc == CLI_OK) {
		if (json && !chain) {
			print_json(json_incref(json_array_get(all, 0)));
		} else if (json) {
			print_json(json_incref(all));
		} else {
			for (size_t i = 0; i < json_array_size(all); i++) {
				if (i)
					putchar('\n');
				info_human(json_array_get(all, i));
			}
		}
	}
	json_decref(all);
	return rc;
}

/* ---- check ------------------------------------------------------------ */

static int img_check(int argc, char **argv)
{
	const char *fmt = NULL;
	bool json = false, quiet = false;
	unsigned flags = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+f:r:qUh", common_longopts, NULL)) != -1) {
		if (c == 'f') {
			fmt = optarg;
		} else if (c == 'r') {
			if (strcmp(optarg, "leaks") && strcmp(optarg, "all"))
				return usage_err("check", "-r takes leaks or all");
			flags |= QCOW2_CHECK_REPAIR_LEAKS;
		} else if (c == 'q') {
			quiet = true;
		} else if (c == 'U') {
			flags |= QCOW2_CHECK_FORCE_SHARE;
		} else if (!json_flag(c, optarg, &json)) {
			return usage_err("check", "bad option");
		}
	}
	if (argc - optind != 1)
		return usage_err("check", "expected one FILE");
	if ((flags & QCOW2_CHECK_FORCE_SHARE) && (flags & QCOW2_CHECK_REPAIR_LEAKS))
		return usage_err("check", "-U reads only: it cannot go with -r");
	const char *path = argv[optind];
	struct block_dev *bd;
	if (block_open(path, fmt, BLOCK_RDONLY | BLOCK_NO_BACKING | BLOCK_FORCE_SHARE, &bd) < 0)
		return cli_fail();
	bool q = !strcmp(bd->format, "qcow2");
	block_close(bd);
	if (!q) {
		fprintf(stderr, "cairn: %s: format %s does not support checks\n", path,
			fmt ? fmt : "raw");
		return 63;
	}
	struct qcow2_check_result res;
	if (qcow2_check(path, flags, &res, quiet || json ? NULL : stderr) < 0)
		return cli_fail();
	if (json) {
		json_t *j = json_object();
		json_object_set_new(j, "image-end-offset",
				    json_integer((json_int_t)res.image_end_offset));
		json_object_set_new(j, "total-clusters",
				    json_integer((json_int_t)res.total_clusters));
		json_object_set_new(j, "check-errors", json_integer((json_int_t)res.check_errors));
		json_object_set_new(j, "leaks", json_integer((json_int_t)res.leaks));
		json_object_set_new(j, "corruptions", json_integer((json_int_t)res.corruptions));
		json_object_set_new(j, "leaks-fixed", json_integer((json_int_t)res.leaks_fixed));
		json_object_set_new(j, "allocated-clusters",
				    json_integer((json_int_t)res.allocated_clusters));
		json_object_set_new(j, "filename", json_string(path));
		json_object_set_new(j, "format", json_string("qcow2"));
		json_object_set_new(j, "fragmented-clusters",
				    json_integer((json_int_t)res.fragmented_clusters));
		json_object_set_new(j, "compressed-clusters",
				    json_integer((json_int_t)res.compressed_clusters));
		print_json(j);
	} else if (!quiet) {
		if (!res.corruptions && !res.leaks && !res.check_errors)
			printf("No errors were found on the image.\n");
		if (res.corruptions)
			printf("\n%llu errors were found on the image.\nData may be corrupted, or "
			       "further writes to the image may corrupt it.\n",
			       (unsigned long long)res.corruptions);
		if (res.leaks)
			printf("\n%llu leaked clusters were found on the image.\nThis means waste "
			       "of disk space, but no harm to data.\n",
			       (unsigned long long)res.leaks);
		if (res.check_errors)
			printf("\n%llu internal errors have occurred during the check.\n",
			       (unsigned long long)res.check_errors);
		if (res.total_clusters)
			printf("%llu/%llu = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed "
			       "clusters\n",
			       (unsigned long long)res.allocated_clusters,
			       (unsigned long long)res.total_clusters,
			       100.0 * (double)res.allocated_clusters / (double)res.total_clusters,
			       res.allocated_clusters ? 100.0 * (double)res.fragmented_clusters /
							    (double)res.allocated_clusters
						      : 0.0,
			       res.allocated_clusters ? 100.0 * (double)res.compressed_clusters /
							    (double)res.allocated_clusters
						      : 0.0);
		printf("Image end offset: %llu\n", (unsigned long long)res.image_end_offset);
	}
	if (res.check_errors)
		return 1;
	if (res.corruptions)
		return 2;
	if (res.leaks)
		return 3;
	return 0;
}

/* ---- commit, stream, rebase ------------------------------------------- */

static int img_commit(int argc, char **argv)
{
	const char *base = NULL;
	bool prog = false;
	unsigned flags = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+f:b:dpqt:h", common_longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
		case 'q':
		case 't':
			break;
		case 'b':
			base = optarg;
			break;
		case 'd':
			flags |= CHAIN_COMMIT_KEEP_TOP;
			break;
		case 'p':
			prog = true;
			break;
		default:
			return usage_err("commit", "bad option");
		}
	}
	if (argc - optind != 1)
		return usage_err("commit", "expected one FILE");
	if (chain_commit(argv[optind], base, flags, prog ? &progress : NULL) < 0)
		return cli_fail();
	printf("Image committed.\n");
	return CLI_OK;
}

static int img_stream(int argc, char **argv)
{
	const char *base = NULL, *base_fmt = NULL;
	bool prog = false;
	int c;
	while ((c = getopt_long(argc, argv, "+f:b:F:pqh", common_longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
		case 'q':
			break;
		case 'b':
			base = optarg;
			break;
		case 'F':
			base_fmt = optarg;
			break;
		case 'p':
			prog = true;
			break;
		default:
			return usage_err("stream", "bad option");
		}
	}
	if (argc - optind != 1)
		return usage_err("stream", "expected one FILE");
	return chain_stream(argv[optind], base, base_fmt, prog ? &progress : NULL) < 0 ? cli_fail()
										       : CLI_OK;
}

static int img_rebase(int argc, char **argv)
{
	const char *backing = NULL, *bfmt = NULL;
	bool prog = false, unsafe = false, have_b = false;
	int c;
	while ((c = getopt_long(argc, argv, "+f:b:F:upqt:T:h", common_longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
		case 'q':
		case 't':
		case 'T':
			break;
		case 'b':
			backing = optarg;
			have_b = true;
			break;
		case 'F':
			bfmt = optarg;
			break;
		case 'u':
			unsafe = true;
			break;
		case 'p':
			prog = true;
			break;
		default:
			return usage_err("rebase", "bad option");
		}
	}
	if (argc - optind != 1 || !have_b)
		return usage_err("rebase", "expected -b BACKING and one FILE");
	return chain_rebase(argv[optind], backing, bfmt, unsafe, prog ? &progress : NULL) < 0
		   ? cli_fail()
		   : CLI_OK;
}

/* ---- map -------------------------------------------------------------- */

static bool extent_joins(const struct chain_extent *a, const struct chain_extent *b)
{
	return a->depth == b->depth && a->present == b->present && a->zero == b->zero &&
	       a->data == b->data && a->compressed == b->compressed &&
	       a->has_offset == b->has_offset &&
	       (!a->has_offset || a->offset + a->length == b->offset) &&
	       (a->file == b->file || (a->file && b->file && !strcmp(a->file, b->file)));
}

static void map_print(const struct chain_extent *e, bool json, json_t *arr)
{
	if (json) {
		json_t *j = json_object();
		json_object_set_new(j, "start", json_integer((json_int_t)e->start));
		json_object_set_new(j, "length", json_integer((json_int_t)e->length));
		json_object_set_new(j, "depth", json_integer(e->depth));
		json_object_set_new(j, "present", json_boolean(e->present));
		json_object_set_new(j, "zero", json_boolean(e->zero));
		json_object_set_new(j, "data", json_boolean(e->data));
		json_object_set_new(j, "compressed", json_boolean(e->compressed));
		if (e->has_offset)
			json_object_set_new(j, "offset", json_integer((json_int_t)e->offset));
		if (e->file)
			json_object_set_new(j, "filename", json_string(e->file));
		json_array_append_new(arr, j);
	} else if (e->data && e->has_offset) {
		printf("%#-16llx%#-16llx%#-16llx%s\n", (unsigned long long)e->start,
		       (unsigned long long)e->length, (unsigned long long)e->offset, e->file);
	}
}

static int img_map(int argc, char **argv)
{
	const char *fmt = NULL;
	bool json = false;
	unsigned share = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+f:Uh", common_longopts, NULL)) != -1) {
		if (c == 'f')
			fmt = optarg;
		else if (c == 'U')
			share = BLOCK_FORCE_SHARE;
		else if (!json_flag(c, optarg, &json))
			return usage_err("map", "bad option");
	}
	if (argc - optind != 1)
		return usage_err("map", "expected one FILE");
	struct block_dev *bd;
	if (block_open(argv[optind], fmt, BLOCK_RDONLY | share, &bd) < 0)
		return cli_fail();
	json_t *arr = json_array();
	if (!json)
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	struct chain_extent cur = {0}, e;
	bool have = false;
	int r = 0;
	for (uint64_t off = 0; off < bd->size; off += e.length) {
		if ((r = chain_map_extent(bd, off, &e)) < 0)
			break;
		if (have && extent_joins(&cur, &e)) {
			cur.length += e.length;
			continue;
		}
		if (have)
			map_print(&cur, json, arr);
		cur = e;
		have = true;
	}
	if (r == 0 && have)
		map_print(&cur, json, arr);
	if (r == 0 && json)
		print_json(json_incref(arr));
	json_decref(arr);
	block_close(bd);
	return r < 0 ? cli_fail() : CLI_OK;
}

/* ---- convert, compare ------------------------------------------------- */

static int img_convert(int argc, char **argv)
{
	struct chain_convert_opts co = {0};
	struct img_opts o = {0};
	bool prog = false;
	int c;
	while ((c = getopt_long(argc, argv, "+f:O:o:B:F:pqt:T:Uh", common_longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			co.src_fmt = optarg;
			break;
		case 'U':
			co.force_share = true;
			break;
		case 'B':
			co.backing = optarg;
			break;
		case 'F':
			co.backing_fmt = optarg;
			break;
		case 'O':
			co.dst_fmt = optarg;
			break;
		case 'o':
			if (parse_o(optarg, &o) < 0)
				return usage_err("convert", "bad -o option");
			break;
		case 'p':
			prog = true;
			break;
		case 'q':
		case 't':
		case 'T':
			break;
		default:
			return usage_err("convert", "bad option");
		}
	}
	if (argc - optind != 2)
		return usage_err("convert", "expected SRC DST");
	co.cluster_size = o.cluster_size;
	return chain_convert(argv[optind], argv[optind + 1], &co, prog ? &progress : NULL) < 0
		   ? cli_fail()
		   : CLI_OK;
}

static int img_compare(int argc, char **argv)
{
	const char *fa = NULL, *fb = NULL;
	unsigned share = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+f:F:pqsUh", common_longopts, NULL)) != -1) {
		if (c == 'f')
			fa = optarg;
		else if (c == 'F')
			fb = optarg;
		else if (c == 'U')
			share = BLOCK_FORCE_SHARE;
		else if (!strchr("pqs", c))
			return usage_err("compare", "bad option");
	}
	if (argc - optind != 2)
		return usage_err("compare", "expected two images");
	bool same;
	uint64_t diff = 0;
	if (chain_compare(argv[optind], fa ? fa : fb, argv[optind + 1], fb ? fb : fa, share, &same,
			  &diff) < 0) {
		cli_fail();
		return 2;
	}
	if (same) {
		printf("Images are identical.\n");
		return 0;
	}
	printf("Content mismatch at offset %llu!\n", (unsigned long long)diff);
	return 1;
}

/* ---- io: a tiny qemu-io for tests ------------------------------------- */

static int io_cmd(struct block_dev *bd, char *cmd)
{
	char *argv[16];
	int argc = 0;
	for (char *save = NULL, *t = strtok_r(cmd, " ", &save); t && argc < 15;
	     t = strtok_r(NULL, " ", &save))
		argv[argc++] = t;
	if (!argc)
		return 0;
	int pat = -1;
	bool zero = false;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-P") && i + 1 < argc)
			pat = (int)strtol(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-z"))
			zero = true;
	}
	if (!strcmp(argv[0], "flush"))
		return block_flush(bd);
	uint64_t off, len;
	if (argc - i != 2 || parse_num(argv[i], &off) < 0 || parse_num(argv[i + 1], &len) < 0 ||
	    len > (1u << 30))
		return err_set(EINVAL, "io: bad command '%s'", argv[0]);
	if (!strcmp(argv[0], "discard"))
		return block_discard(bd, off, len);
	if (!strcmp(argv[0], "write") && zero)
		return block_write_zeroes(bd, off, len);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return err_set(ENOMEM, "io");
	int r;
	if (!strcmp(argv[0], "write")) {
		memset(buf, pat < 0 ? 0xcd : pat, len);
		r = block_write(bd, buf, off, len);
	} else if (!strcmp(argv[0], "read")) {
		r = block_read(bd, buf, off, len);
		for (uint64_t k = 0; r == 0 && pat >= 0 && k < len; k++)
			if (buf[k] != (uint8_t)pat)
				r = err_set(EILSEQ, "%s: pattern mismatch at %llu: %#x != %#x",
					    bd->path, (unsigned long long)(off + k), buf[k], pat);
	} else {
		r = err_set(EINVAL, "io: unknown command '%s'", argv[0]);
	}
	free(buf);
	return r;
}

static int img_io(int argc, char **argv)
{
	const char *fmt = NULL;
	static char *cmds[8192];
	int ncmds = 0, c;
	bool verbose = false;
	while ((c = getopt_long(argc, argv, "+f:c:vh", common_longopts, NULL)) != -1) {
		if (c == 'f')
			fmt = optarg;
		else if (c == 'v')
			verbose = true;
		else if (c == 'c' && ncmds < 8192)
			cmds[ncmds++] = optarg;
		else
			return usage_err("io", "bad option");
	}
	if (argc - optind != 1)
		return usage_err("io", "expected one FILE");
	struct block_dev *bd;
	if (block_open(argv[optind], fmt, 0, &bd) < 0)
		return cli_fail();
	int r = 0;
	for (int i = 0; i < ncmds && r == 0; i++) {
		r = io_cmd(bd, cmds[i]);
		if (r == 0 && verbose) {
			/* An acknowledgement per command, for crash tests. */
			printf("done %d\n", i);
			fflush(stdout);
		}
	}
	if (r < 0) {
		cli_fail();
		block_close(bd);
		return CLI_FAILED;
	}
	block_close(bd);
	return CLI_OK;
}

int cli_img_main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
	    {"create", img_create}, {"info", img_info},	      {"check", img_check},
	    {"commit", img_commit}, {"stream", img_stream},   {"rebase", img_rebase},
	    {"map", img_map},	    {"convert", img_convert}, {"compare", img_compare},
	    {"io", img_io},	    {"bench", cli_img_bench},
	};
	if (argc < 2) {
		fputs(img_usage, stderr);
		return CLI_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(img_usage, stdout);
		return CLI_OK;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name))
			continue;
		if (want_help(argc - 1, argv + 1)) {
			fputs(img_usage, stdout);
			return CLI_OK;
		}
		optind = 1;
		opterr = 1;
		return cmds[i].fn(argc - 1, argv + 1);
	}
	return cli_usage_error("img", "unknown command '%s'", argv[1]);
}
