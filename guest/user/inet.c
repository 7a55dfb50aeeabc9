/*
 * Ethernet, ARP, IPv4, ICMP echo and UDP for the test guest: just enough
 * for `udpecho` and `ping`.  One frame is handled at a time, as it comes
 * off the receive queue; a datagram for the job's port waits in a single
 * slot until the job takes it.  Addresses are host-order uint32_t.
 */
#include "inet.h"
#include "ulib.h"
#include "vnet.h"

#define MY_IP 0x0a00020fu /* 10.0.2.15 */
#define GW_IP 0x0a000202u /* 10.0.2.2 */
#define NETMASK 0xffffff00u
#define ETH_ARP 0x0806
#define ETH_IP 0x0800
#define PROTO_ICMP 1
#define PROTO_UDP 17
#define ARP_SLOTS 8
#define PING_ID 0x4341

static uint8_t mymac[6];
static struct {
	uint32_t ip;
	uint8_t mac[6];
} arp_cache[ARP_SLOTS];
static unsigned arp_next;
static uint16_t ip_id;
static uint8_t rxf[VNET_MAX_FRAME], txf[1514];

/* what the current job waits for */
static uint16_t udp_port;
static struct {
	int full;
	uint32_t src;
	uint16_t sport, len;
	uint8_t data[INET_UDP_MAX];
} udp_in;
static struct {
	uint16_t seq; /* 0: not waiting */
	int got;
	uint8_t ttl;
} ping_wait;

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint16_t csum(const uint8_t *p, unsigned len)
{
	uint32_t s = 0;
	for (unsigned i = 0; i + 1 < len; i += 2)
		s += get16(p + i);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static const uint8_t *arp_lookup(uint32_t ip)
{
	for (unsigned i = 0; i < ARP_SLOTS; i++)
		if (arp_cache[i].ip == ip)
			return arp_cache[i].mac;
	return 0;
}

static void arp_learn(uint32_t ip, const uint8_t *mac)
{
	for (unsigned i = 0; i < ARP_SLOTS; i++)
		if (arp_cache[i].ip == ip) {
			memcpy(arp_cache[i].mac, mac, 6);
			return;
		}
	arp_cache[arp_next].ip = ip;
	memcpy(arp_cache[arp_next].mac, mac, 6);
	arp_next = (arp_next + 1) % ARP_SLOTS;
}

static void eth_header(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, mymac, 6);
	put16(f + 12, type);
}

static void arp_send(uint16_t op, const uint8_t *tha, uint32_t tpa)
{
	static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	uint8_t *f = txf;
	eth_header(f, op == 1 ? bcast : tha, ETH_ARP);
	uint8_t *a = f + 14;
	put16(a, 1);
	put16(a + 2, ETH_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, mymac, 6);
	put32(a + 14, MY_IP);
	memset(a + 18, 0, 6);
	if (op == 2)
		memcpy(a + 18, tha, 6);
	put32(a + 24, tpa);
	vnet_send(f, 60); /* padded to the Ethernet minimum */
}

static void arp_input(const uint8_t *a, unsigned len)
{
	if (len < 28 || get16(a) != 1 || get16(a + 2) != ETH_IP || a[4] != 6 || a[5] != 4)
		return;
	uint16_t op = get16(a + 6);
	uint32_t spa = get32(a + 14), tpa = get32(a + 24);
	if (tpa != MY_IP)
		return;
	arp_learn(spa, a + 8);
	if (op == 1)
		arp_send(2, a + 8, spa);
}

static int ip_send(uint32_t dst, uint8_t proto, const uint8_t *payload, unsigned len);

static void icmp_input(uint32_t src, uint8_t ttl, const uint8_t *p, unsigned len)
{
	if (len < 8 || csum(p, len))
		return;
	if (p[0] == 8) { /* echo request: the same back as a reply */
		uint8_t r[1480];
		if (len > sizeof(r))
			return;
		memcpy(r, p, len);
		r[0] = 0;
		put16(r + 2, 0);
		put16(r + 2, csum(r, len));
		ip_send(src, PROTO_ICMP, r, len);
	} else if (p[0] == 0 && get16(p + 4) == PING_ID && ping_wait.seq &&
		   get16(p + 6) == ping_wait.seq) {
		ping_wait.got = 1;
		ping_wait.ttl = ttl;
	}
}

static void udp_input(uint32_t src, const uint8_t *u, unsigned len)
{
	if (len < 8 || get16(u + 4) < 8 || get16(u + 4) > len)
		return;
	unsigned dlen = get16(u + 4) - 8u;
	if (!udp_port || get16(u + 2) != udp_port || udp_in.full || dlen > sizeof(udp_in.data))
		return;
	udp_in.src = src;
	udp_in.sport = get16(u);
	udp_in.len = (uint16_t)dlen;
	memcpy(udp_in.data, u + 8, dlen);
	udp_in.full = 1;
}

static void ip_input(const uint8_t *ip, unsigned len)
{
	if (len < 20 || (ip[0] >> 4) != 4)
		return;
	unsigned hl = (ip[0] & 15) * 4u, tot = get16(ip + 2);
	if (hl < 20 || tot < hl || tot > len || csum(ip, hl))
		return;
	if (get32(ip + 16) != MY_IP || (get16(ip + 6) & 0x3fff))
		return; /* not ours, or a fragment */
	uint32_t src = get32(ip + 12);
	if (ip[9] == PROTO_ICMP)
		icmp_input(src, ip[8], ip + hl, tot - hl);
	else if (ip[9] == PROTO_UDP)
		udp_input(src, ip + hl, tot - hl);
}

/* Handle frames until DEADLINE or until one arrived: -1 device needs reset. */
static int poll_once(uint64_t deadline)
{
	int n = vnet_recv(rxf, deadline);
	if (n <= 14)
		return n < 0 ? -1 : 0;
	uint16_t type = get16(rxf + 12);
	if (type == ETH_ARP)
		arp_input(rxf + 14, (unsigned)n - 14);
	else if (type == ETH_IP)
		ip_input(rxf + 14, (unsigned)n - 14);
	return 0;
}

/* The next hop's MAC: asked for up to 3 times, a second each. */
static const uint8_t *resolve(uint32_t ip)
{
	uint32_t hop = (ip & NETMASK) == (MY_IP & NETMASK) ? ip : GW_IP;
	for (int tries = 0; tries < 3; tries++) {
		const uint8_t *m = arp_lookup(hop);
		if (m)
			return m;
		arp_send(1, 0, hop);
		uint64_t deadline = now_ns() + NS_PER_SEC;
		while (!(m = arp_lookup(hop)) && now_ns() < deadline)
			if (poll_once(deadline) < 0)
				return 0;
		if (m)
			return m;
	}
	return 0;
}

static int ip_send(uint32_t dst, uint8_t proto, const uint8_t *payload, unsigned len)
{
	if (len > 1480)
		return -1;
	const uint8_t *mac = resolve(dst);
	if (!mac)
		return -1;
	uint8_t dmac[6];
	memcpy(dmac, mac, 6);
	uint8_t *f = txf;
	eth_header(f, dmac, ETH_IP);
	uint8_t *ip = f + 14;
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, (uint16_t)(20 + len));
	put16(ip + 4, ip_id++);
	put16(ip + 6, 0x4000); /* don't fragment */
	ip[8] = 64;
	ip[9] = proto;
	put16(ip + 10, 0);
	put32(ip + 12, MY_IP);
	put32(ip + 16, dst);
	put16(ip + 10, csum(ip, 20));
	memmove(ip + 20, payload, len);
	unsigned flen = 14 + 20 + len;
	if (flen < 60) {
		memset(f + flen, 0, 60 - flen);
		flen = 60;
	}
	return vnet_send(f, flen);
}

int inet_parse_ip(const char *s, uint32_t *out)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned n = 0, digits = 0;
		while (*s >= '0' && *s <= '9' && digits < 4) {
			n = n * 10 + (unsigned)(*s++ - '0');
			digits++;
		}
		if (!digits || n > 255 || (i < 3 ? *s++ != '.' : *s != 0))
			return -1;
		v = v << 8 | n;
	}
	*out = v;
	return 0;
}

static void fmt_ip(char *b, uint32_t ip)
{
	fmt(b, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

/* A gratuitous ARP: who-has our own address, so the segment learns where
   we are now (after a restore, the device asks for it). */
static void announce(void)
{
	arp_send(1, 0, MY_IP);
}

int inet_open(const char *what)
{
	if (vnet_open(what))
		return -1;
	vnet_mac(mymac);
	vnet_set_announce(announce);
	return 0;
}

int inet_udpecho(uint64_t port, uint64_t n)
{
	if (!port || port > 65535) {
		cpu_printf("udpecho FAILED (port %lu)", (unsigned long)port);
		return -1;
	}
	if (inet_open("udpecho"))
		return -1;
	/* the gateway learns our MAC from the request (so its first datagram
	   for us need not wait for an ARP exchange) */
	if (!resolve(GW_IP))
		cpu_printf("udpecho: warning: no ARP reply from the gateway");
	udp_port = (uint16_t)port;
	udp_in.full = 0;
	cpu_printf("udpecho port=%lu ready", (unsigned long)port);
	uint64_t done = 0;
	while (!n || done < n) {
		if (poll_once(now_ns() + NS_PER_SEC) < 0) {
			cpu_printf("udpecho FAILED (the device needs a reset)");
			udp_port = 0;
			return -1;
		}
		if (!udp_in.full)
			continue;
		uint8_t u[8 + sizeof(udp_in.data)];
		put16(u, udp_port);
		put16(u + 2, udp_in.sport);
		put16(u + 4, (uint16_t)(8 + udp_in.len));
		put16(u + 6, 0); /* no checksum (IPv4 allows it) */
		memcpy(u + 8, udp_in.data, udp_in.len);
		udp_in.full = 0;
		if (ip_send(udp_in.src, PROTO_UDP, u, 8u + udp_in.len) == 0)
			done++;
	}
	udp_port = 0;
	/* the last echo out of the VM before the next job (an exit) runs */
	if (vnet_flush(now_ns() + NS_PER_SEC))
		cpu_printf("udpecho: warning: the device did not take the last echo");
	cpu_printf("udpecho port=%lu n=%lu done", (unsigned long)port, (unsigned long)n);
	return 0;
}

int inet_ping(const char *addr, uint64_t count)
{
	uint32_t dst;
	if (inet_parse_ip(addr, &dst)) {
		cpu_printf("ping FAILED (not an IPv4 address: '%s')", addr);
		return -1;
	}
	if (inet_open("ping"))
		return -1;
	char a[16];
	fmt_ip(a, dst);
	uint64_t received = 0;
	for (uint64_t i = 1; i <= count; i++) {
		uint8_t p[8 + 32];
		p[0] = 8;
		p[1] = 0;
		put16(p + 2, 0);
		put16(p + 4, PING_ID);
		put16(p + 6, (uint16_t)i);
		for (unsigned k = 0; k < 32; k++)
			p[8 + k] = (uint8_t)('a' + k % 26);
		put16(p + 2, csum(p, sizeof(p)));
		ping_wait.seq = (uint16_t)i;
		ping_wait.got = 0;
		uint64_t t0 = now_ns(), deadline = t0 + NS_PER_SEC;
		if (ip_send(dst, PROTO_ICMP, p, sizeof(p)) < 0) {
			cpu_printf("ping %s seq=%lu: no route (no ARP reply)", a, (unsigned long)i);
			continue;
		}
		while (!ping_wait.got && now_ns() < deadline)
			if (poll_once(deadline) < 0)
				break;
		if (ping_wait.got) {
			received++;
			cpu_printf("ping %s seq=%lu bytes=32 ttl=%u time=%luus", a,
				   (unsigned long)i, ping_wait.ttl,
				   (unsigned long)((now_ns() - t0) / 1000));
		} else {
			cpu_printf("ping %s seq=%lu timeout", a, (unsigned long)i);
		}
	}
	ping_wait.seq = 0;
	cpu_printf("ping %s sent=%lu received=%lu", a, (unsigned long)count,
		   (unsigned long)received);
	if (!received) {
		cpu_printf("ping FAILED (no reply from %s)", a);
		return -1;
	}
	return 0;
}

int inet_udp_send(uint32_t dst, uint16_t sport, uint16_t dport, const void *data, unsigned len)
{
	uint8_t u[8 + INET_UDP_MAX];
	if (len > INET_UDP_MAX)
		return -1;
	put16(u, sport);
	put16(u + 2, dport);
	put16(u + 4, (uint16_t)(8 + len));
	put16(u + 6, 0); /* no checksum (IPv4 allows it) */
	memcpy(u + 8, data, len);
	return ip_send(dst, PROTO_UDP, u, 8 + len);
}

void inet_udp_listen(uint16_t port)
{
	udp_port = port;
	udp_in.full = 0;
}

int inet_udp_recv(uint8_t *buf, uint64_t deadline)
{
	while (!udp_in.full) {
		if (now_ns() >= deadline)
			return -2;
		if (poll_once(deadline) < 0)
			return -1;
	}
	memcpy(buf, udp_in.data, udp_in.len);
	udp_in.full = 0;
	return udp_in.len;
}
