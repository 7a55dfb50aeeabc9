/* `cairn control SOCK REQUEST`: one request to a running VM's control
 * socket, its reply on stdout (docs/control.md). */
#include "cli/cli.h"
#include "control/control.h"
#include "util/err.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char control_usage[] =
	"Usage: cairn control SOCK REQUEST [--timeout MS]\n"
	"\n"
	"Send one JSON request line to the control socket SOCK of a running VM and\n"
	"print the reply line.  REQUEST is JSON, or a bare command name:\n"
	"  cairn control vm.sock status\n"
	"  cairn control vm.sock '{\"cmd\":\"snapshot\",\"path\":\"snap1\"}'\n"
	"Exit status: 0 when the reply says ok, 1 otherwise, 2 on a usage error.\n";

int cli_control_main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(control_usage, stdout);
		return CLI_OK;
	}
	int timeout = 600000;
	if (argc == 5 && !strcmp(argv[3], "--timeout"))
		timeout = atoi(argv[4]);
	else if (argc != 3)
		return cli_usage_error("control", "needs SOCK and REQUEST");
	char line[4096];
	if (argv[2][0] == '{')
		snprintf(line, sizeof(line), "%s", argv[2]);
	else
		snprintf(line, sizeof(line), "{\"cmd\":\"%s\"}", argv[2]);
	char *reply = NULL;
	if (control_request(argv[1], line, &reply, timeout) < 0)
		return cli_fail();
	printf("%s\n", reply);
	json_t *j = json_loads(reply, 0, NULL);
	int ok = j && json_is_true(json_object_get(j, "ok"));
	json_decref(j);
	free(reply);
	return ok ? CLI_OK : CLI_FAILED;
}
