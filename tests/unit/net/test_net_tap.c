/* The TAP backend (src/net/net_tap.c) against a real TAP device, in a
 * network namespace of the test's own (unshare: root needed, as in CI; the
 * namespace and its devices go with the process).  The host side is seen
 * through a packet socket bound to the device:
 * - the device is created (cairn may: root) with a vnet header;
 * - a frame sent with NEEDS_CSUM in its vnet header reaches the host side
 *   as a frame whose checksum is still to be completed (the kernel read the
 *   header), byte for byte after the header;
 * - a frame the host side sends comes out of the event loop with a vnet
 *   header before it;
 * - the device deleted under us: the link goes down, the peer is told once. */
#include "net/net.h"
#include "test.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static struct {
	struct evloop *loop;
	uint8_t frame[2048], hdr[NET_VNET_HDR_LEN];
	size_t len;
	bool got_hdr, got, link_down;
} rx;

static void on_receive(void *opaque, const uint8_t *vhdr, const void *frame, size_t len)
{
	/* only ours: the kernel sends its own (IPv6 neighbour discovery, MLD)
	 * once the device is up */
	if (len < 6 || memcmp(frame, "\x52\x54\x00\x12\x34\x56", 6))
		return;
	rx.got_hdr = vhdr != NULL;
	if (vhdr)
		memcpy(rx.hdr, vhdr, sizeof(rx.hdr));
	rx.len = len < sizeof(rx.frame) ? len : sizeof(rx.frame);
	memcpy(rx.frame, frame, rx.len);
	rx.got = true;
	evloop_stop(rx.loop);
}

static void on_link(void *opaque, bool up)
{
	rx.link_down = !up;
	evloop_stop(rx.loop);
}

static void *run_loop(void *arg)
{
	evloop_run(rx.loop);
	return NULL;
}

/* Run the loop until a callback stops it (or 5 s: a stop from here). */
static void loop_until_event(void)
{
	pthread_t t;
	pthread_create(&t, NULL, run_loop, NULL);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	if (pthread_timedjoin_np(t, NULL, &dl) != 0) {
		evloop_stop(rx.loop);
		pthread_join(t, NULL);
	}
}

/* A UDP/IPv4 frame, 10.9.0.1:1000 -> 10.9.0.2:2000, 16 payload bytes. */
static size_t udp_frame(uint8_t *f)
{
	static const uint8_t head[42] = {
	    0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, /* Ethernet */
	    0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2, /* IPv4 */
	    0x03, 0xe8, 0x07, 0xd0, 0, 24, 0, 0};				     /* UDP */
	memcpy(f, head, sizeof(head));
	for (int i = 0; i < 16; i++)
		f[42 + i] = (uint8_t)(0xa0 + i);
	return 58;
}

int main(void)
{
	log_set_level(LOG_ERROR);
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "unshare(CLONE_NEWNET): %s: this test needs root (CI runs as root)\n",
			strerror(errno));
		return 1;
	}
	CHECK_EQ(evloop_create(&rx.loop), 0);
	struct net_spec spec;
	CHECK_EQ(net_spec_parse("tap=ut0", &spec), 0);
	const struct net_peer peer = {on_receive, on_link, NULL, NULL};
	struct net_tap *t = NULL;
	int r = net_tap_open(&spec, rx.loop, &peer, &t);
	if (r < 0)
		fprintf(stderr, "net_tap_open: %s\n", err_msg());
	CHECK_EQ(r, 0);
	if (r < 0)
		TEST_DONE();
	CHECK(net_tap_has_vnet_hdr(t));
	CHECK(net_tap_link_up(t));
	CHECK_EQ(net_tap_set_offloads(t, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4), 0);

	/* the device up, and a packet socket on it */
	unsigned idx = if_nametoindex("ut0");
	CHECK(idx != 0);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr = {0};
	strcpy(ifr.ifr_name, "ut0");
	CHECK_EQ(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	CHECK_EQ(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	close(s);
	int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	CHECK(ps >= 0);
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				  .sll_ifindex = (int)idx};
	CHECK_EQ(bind(ps, (struct sockaddr *)&sll, sizeof(sll)), 0);
	int one = 1;
	CHECK_EQ(setsockopt(ps, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)), 0);

	/* guest -> host: NEEDS_CSUM, checksum at 34 + 6 (UDP) */
	uint8_t f[64];
	size_t flen = udp_frame(f);
	uint8_t hdr[NET_VNET_HDR_LEN] = {1, 0, 0, 0, 0, 0, 34, 0, 6, 0};
	net_tap_send(t, hdr, f, flen);
	bool seen = false;
	for (int tries = 0; tries < 50 && !seen; tries++) {
		struct pollfd pfd = {ps, POLLIN, 0};
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		uint8_t buf[2048], ctl[256];
		struct iovec iov = {buf, sizeof(buf)};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				   .msg_controllen = sizeof(ctl)};
		ssize_t n = recvmsg(ps, &m, 0);
		if (n != (ssize_t)flen || memcmp(buf + 6, f + 6, 6))
			continue; /* the kernel's own (IPv6 router solicitations...) */
		seen = true;
		CHECK(!memcmp(buf, f, flen));
		unsigned status = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
			if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA)
				status = ((struct tpacket_auxdata *)CMSG_DATA(c))->tp_status;
		CHECK(status & TP_STATUS_CSUMNOTREADY); /* the header was the kernel's to read */
	}
	CHECK(seen);

	/* host -> guest: a frame out of the device comes with a vnet header */
	uint8_t out[60];
	memcpy(out, f, 58);
	memcpy(out, "\x52\x54\x00\x12\x34\x56", 6);
	out[58] = out[59] = 0;
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, out, 6);
	CHECK_EQ(sendto(ps, out, sizeof(out), 0, (struct sockaddr *)&sll, sizeof(sll)),
		 (ssize_t)sizeof(out));
	loop_until_event();
	CHECK(rx.got && rx.got_hdr);
	CHECK_EQ(rx.len, sizeof(out));
	CHECK(!memcmp(rx.frame, out, sizeof(out)));
	CHECK_EQ(rx.hdr[1], 0); /* no segmentation */

	/* the device deleted under us: the next frame finds it gone (EBADFD),
	 * the link goes down, the peer is told; later frames are dropped.
	 * (The loop stopped once for good: the read side's EPOLLERR is
	 * tests/integration/net/tap.sh's.) */
	CHECK_EQ(system("ip link del ut0"), 0);
	CHECK(!rx.link_down);
	net_tap_send(t, hdr, f, flen);
	CHECK(rx.link_down);
	CHECK(!net_tap_link_up(t));
	rx.link_down = false;
	net_tap_send(t, hdr, f, flen);
	CHECK(!rx.link_down); /* told once */
	close(ps);
	net_tap_close(t);
	evloop_destroy(rx.loop);
	TEST_DONE();
}
