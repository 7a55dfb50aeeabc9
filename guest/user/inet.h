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

/* For jobs that speak UDP themselves (netperf.c). */
/* Set up the NIC (prints "WHAT FAILED (reason)" when there is none): 0 or -1. */
int inet_open(const char *what);
/* A dotted quad into a host-order address: 0, or -1 when it is not one. */
int inet_parse_ip(const char *s, uint32_t *out);
/* One datagram of LEN <= INET_UDP_MAX bytes from SPORT to DST:DPORT, its
   next hop resolved by ARP first: 0, or -1 (no ARP reply, or the device
   needs a reset). */
#define INET_UDP_MAX 1472
int inet_udp_send(uint32_t dst, uint16_t sport, uint16_t dport, const void *data, unsigned len);
/* Receive datagrams for PORT from now on (0: none). */
void inet_udp_listen(uint16_t port);
/* The next datagram for the listened port into BUF (INET_UDP_MAX bytes):
   its length (>= 0), -2 at DEADLINE (ns), -1 when the device needs a reset.
   Frames for others (ARP, ping) are handled on the way. */
int inet_udp_recv(uint8_t *buf, uint64_t deadline);

#endif
