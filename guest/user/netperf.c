/*
 * UDP throughput from the guest's side.  A datagram is a 16-byte header,
 * big-endian (the layout bench/netperf.py and the stream test read):
 *   0..3  "cnb1"   4..7  kind (0 data, 1 end)
 *   8..15 data: its sequence number from 0; end: how many data datagrams
 *         were sent
 * then filler up to PAYLOAD bytes.  UDP and not TCP: the guest has no TCP,
 * and a datagram stream shows loss (gaps in the numbers) instead of hiding
 * it in retransmissions.
 */
#include "netperf.h"
#include "inet.h"
#include "ulib.h"
#include "vnet.h"

#define PAYLOAD 1400
#define HDR 16
#define KIND_DATA 0
#define KIND_END 1
#define SPORT 40000
#define END_COPIES 3 /* the end marker may be dropped like any datagram */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void header(uint8_t *d, uint32_t kind, uint64_t n)
{
	memcpy(d, "cnb1", 4);
	put32(d + 4, kind);
	put64(d + 8, n);
}

/* MiB/s times ten, from bytes and nanoseconds (no floating point here). */
static uint64_t rate_x10(uint64_t bytes, uint64_t ns)
{
	uint64_t us = ns / 1000 ? ns / 1000 : 1;
	return bytes * 10000000ull / us / MIB;
}

int netperf_send(const char *addr, uint64_t port, uint64_t mb, uint64_t kbps)
{
	uint32_t dst;
	if (inet_parse_ip(addr, &dst) || !port || port > 65535 || !mb || mb > 1000000) {
		cpu_printf("netsend FAILED (arguments: ADDR PORT MB [KBPS])");
		return -1;
	}
	if (inet_open("netsend"))
		return -1;
	static uint8_t d[PAYLOAD];
	for (unsigned i = HDR; i < PAYLOAD; i++)
		d[i] = (uint8_t)i;
	uint64_t count = (mb * MIB + PAYLOAD - 1) / PAYLOAD;
	/* the first datagram resolves the next hop: the clock starts after it */
	header(d, KIND_DATA, 0);
	if (inet_udp_send(dst, SPORT, (uint16_t)port, d, PAYLOAD)) {
		cpu_printf("netsend FAILED (no route to %s, or the device needs a reset)", addr);
		return -1;
	}
	uint64_t t0 = now_ns();
	for (uint64_t seq = 1; seq < count; seq++) {
		if (kbps) {
			uint64_t due = t0 + seq * PAYLOAD * 1000000 / (kbps * 1024) * 1000;
			while (now_ns() < due)
				cpu_relax();
		}
		header(d, KIND_DATA, seq);
		if (inet_udp_send(dst, SPORT, (uint16_t)port, d, PAYLOAD)) {
			cpu_printf("netsend FAILED (datagram %lu not taken by the device)",
				   (unsigned long)seq);
			return -1;
		}
	}
	int flushed = vnet_flush(now_ns() + NS_PER_SEC);
	uint64_t ns = now_ns() - t0;
	header(d, KIND_END, count);
	for (int i = 0; i < END_COPIES; i++) {
		inet_udp_send(dst, SPORT, (uint16_t)port, d, HDR);
		sleep_until(now_ns() + 20000000);
	}
	uint64_t bytes = count * PAYLOAD, r = rate_x10(bytes - PAYLOAD, ns);
	cpu_printf("netsend to=%s:%lu bytes=%lu datagrams=%lu ms=%lu MiBps=%lu.%lu%s", addr,
		   (unsigned long)port, (unsigned long)bytes, (unsigned long)count,
		   (unsigned long)(ns / 1000000), (unsigned long)(r / 10), (unsigned long)(r % 10),
		   flushed ? " (the device did not take the last datagrams)" : "");
	return 0;
}

int netperf_recv(uint64_t port, uint64_t idle_s)
{
	if (!port || port > 65535 || !idle_s) {
		cpu_printf("netrecv FAILED (arguments: PORT [IDLE])");
		return -1;
	}
	if (inet_open("netrecv"))
		return -1;
	static uint8_t d[INET_UDP_MAX];
	inet_udp_listen((uint16_t)port);
	cpu_printf("netrecv port=%lu ready", (unsigned long)port);
	uint64_t got = 0, bytes = 0, next = 0, lost = 0, t_first = 0, t_last = 0;
	int end = 0, rc = 0;
	while (!end) {
		int n = inet_udp_recv(d, now_ns() + idle_s * NS_PER_SEC);
		if (n == -2)
			break;
		if (n < 0) {
			cpu_printf("netrecv FAILED (the device needs a reset)");
			rc = -1;
			break;
		}
		if (n < HDR || memcmp(d, "cnb1", 4))
			continue; /* not ours */
		uint64_t seq = get64(d + 8);
		if (get32(d + 4) == KIND_END) {
			/* the sender's count: datagrams missing after our last */
			if (seq > next)
				lost += seq - next;
			end = 1;
			break;
		}
		uint64_t now = now_ns();
		if (!got)
			t_first = now;
		t_last = now;
		got++;
		bytes += (uint64_t)n;
		if (seq >= next) {
			lost += seq - next;
			next = seq + 1;
		} else if (lost) {
			lost--; /* late, counted missing before */
		}
	}
	inet_udp_listen(0);
	uint64_t ns = t_last - t_first, r = rate_x10(got > 1 ? bytes - bytes / got : 0, ns);
	cpu_printf("netrecv port=%lu bytes=%lu datagrams=%lu lost=%lu ms=%lu MiBps=%lu.%lu %s",
		   (unsigned long)port, (unsigned long)bytes, (unsigned long)got,
		   (unsigned long)lost, (unsigned long)(ns / 1000000), (unsigned long)(r / 10),
		   (unsigned long)(r % 10), end ? "end" : "idle");
	if (!rc && !got) {
		cpu_printf("netrecv FAILED (no datagram within %lu s)", (unsigned long)idle_s);
		rc = -1;
	}
	return rc;
}
