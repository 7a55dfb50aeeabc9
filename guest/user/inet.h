/* A tiny IPv4 stack over vnet.c (the guest is 10.0.2.15/24, gateway
 * 10.0.2.2, as with user-mode networking): ARP (answers for its address,
 * resolves next hops), ICMP echo (answers requests, sends them), UDP. */
#ifndef GUEST_INET_H
#define GUEST_INET_H

#include <stdint.h>

/* udpecho PORT [N]: echoes N datagrams (0: forever); prints its lines. */
int inet_udpecho(uint64_t port, uint64_t n);
/* ping ADDR [COUNT]: COUNT echo requests one second apart at most. */
int inet_ping(const char *addr, uint64_t count);

#endif
