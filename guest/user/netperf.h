/* UDP throughput jobs over inet.c: `netsend` streams numbered datagrams,
 * `netrecv` counts them (docs/guest.md; the host side is bench/netperf.py). */
#ifndef GUEST_NETPERF_H
#define GUEST_NETPERF_H

#include <stdint.h>

/* netsend ADDR PORT MB [KBPS]: MB MiB to ADDR:PORT, paced to KBPS KiB/s
   (0: as fast as the device takes them), then the end marker. */
int netperf_send(const char *addr, uint64_t port, uint64_t mb, uint64_t kbps);
/* netrecv PORT [IDLE]: counts datagrams until an end marker or IDLE seconds
   without a datagram. */
int netperf_recv(uint64_t port, uint64_t idle_s);

#endif
