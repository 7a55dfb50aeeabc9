/* `cairn img`: placeholder until the qcow2 layer lands (issue 4). */
#include "cli/cli.h"

#include <stdio.h>

int cli_img_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "cairn img: not implemented yet\n");
	return CLI_FAILED;
}
