/* What the control socket's server (control.c) and client (client.c)
 * share. */
#ifndef CAIRN_CONTROL_CONTROL_INTERNAL_H
#define CAIRN_CONTROL_CONTROL_INTERNAL_H

#include <sys/un.h>
#include <time.h>

/* SA = the socket address of PATH; -ENAMETOOLONG/-EINVAL with a message. */
int control_addr(const char *path, struct sockaddr_un *sa);

static inline long long control_monotime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
