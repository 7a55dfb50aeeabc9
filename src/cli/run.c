#include "cli/cli.h"
#include <stdio.h>
int cli_run_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "cairn run: not implemented yet\n");
	return CLI_FAILED;
}
