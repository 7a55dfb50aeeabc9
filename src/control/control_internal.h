/* What the control socket's server (control.c) and client (client.c)
 * share. */
#ifndef CAIRN_CONTROL_CONTROL_INTERNAL_H
#define CAIRN_CONTROL_CONTROL_INTERNAL_H

#include <sys/un.h>

/* SA = the socket address of PATH; -ENAMETOOLONG/-EINVAL with a message. */
int control_addr(const char *path, struct sockaddr_un *sa);

#endif
