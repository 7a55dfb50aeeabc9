/* A TAP device as a NIC's backend: /dev/net/tun with IFF_TAP | IFF_NO_PI,
 * and IFF_VNET_HDR when the kernel has it (then every frame carries
 * virtio-net's 12-byte header both ways, and the guest's checksum and
 * segmentation offloads pass through).
 *
 * TUNSETIFF attaches to an existing TAP device of that name, or, when there
 * is none and cairn has CAP_NET_ADMIN, the kernel creates one; cairn never
 * makes it persistent, so a device it created goes when cairn exits, and a
 * persistent one (`ip tuntap add`) stays.
 *
 * The descriptor is non-blocking and served by the event loop: at most
 * TAP_READS_PER_TURN frames per wakeup, so the loop's other work goes on
 * under a flood; a frame the kernel cannot take (queue full) is dropped.
 * While the NIC cannot take frames (no receive buffers, its backlog full)
 * the descriptor is out of the loop: frames wait in the TAP's own queue,
 * which drops them when full, until the NIC resumes us.
 * A device that vanishes (deleted at run time: reads fail with EBADFD)
 * takes the link down; the VM goes on. */
#include "net/net.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define TAP_READS_PER_TURN 64
/* A frame the guest may take (GSO with GUEST_TSO): header, then up to
 * NET_MAX_FRAME bytes; room beyond (a VLAN tag) tells a longer one, which
 * is dropped. */
#define TAP_BUF (NET_VNET_HDR_LEN + NET_MAX_FRAME + 64)

struct net_tap {
	int fd;
	struct evloop *loop;
	struct net_peer peer;
	char name[NET_IFNAME_MAX];
	bool vnet_hdr, up, paused;
	uint64_t tx_dropped, rx_dropped;
	uint8_t buf[TAP_BUF];
};

/* The device is gone: no more frames either way, the NIC's link goes down. */
static void tap_gone(struct net_tap *t, int err)
{
	if (!t->up)
		return;
	log_warn("TAP %s: %s; the NIC's link is down", t->name, strerror(err));
	t->up = false;
	if (!t->paused)
		evloop_del(t->loop, t->fd);
	close(t->fd);
	t->fd = -1;
	if (t->peer.link_changed)
		t->peer.link_changed(t->peer.opaque, false);
}

/* Errors that mean a frame was refused, not that the device went away:
 * the queue is full, the interface is down (EIO on write), the kernel
 * refused a header. */
static bool tap_transient(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ENOBUFS ||
	       err == ENOMEM || err == EINVAL || err == EMSGSIZE || err == EIO;
}

static void tap_readable(void *opaque, uint32_t events)
{
	struct net_tap *t = opaque;
	for (int i = 0; i < TAP_READS_PER_TURN && t->up; i++) {
		if (t->peer.can_receive && !t->peer.can_receive(t->peer.opaque)) {
			t->paused = true;
			evloop_del(t->loop, t->fd);
			return;
		}
		ssize_t n = read(t->fd, t->buf, sizeof(t->buf));
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			if (errno == EFAULT || errno == EINVAL || errno == EMSGSIZE) {
				t->rx_dropped++; /* a frame longer than our buffer */
				continue;
			}
			/* EBADFD: the device was deleted under us. */
			tap_gone(t, errno);
			return;
		}
		size_t hdr = t->vnet_hdr ? NET_VNET_HDR_LEN : 0;
		if ((size_t)n < hdr || (size_t)n - hdr > NET_MAX_FRAME) {
			t->rx_dropped++;
			continue;
		}
		t->peer.receive(t->peer.opaque, hdr ? t->buf : NULL, t->buf + hdr,
				(size_t)n - hdr);
	}
	(void)events;
}

void net_tap_send(struct net_tap *t, const uint8_t *vhdr, const void *frame, size_t len)
{
	if (!t->up) {
		t->tx_dropped++;
		return;
	}
	struct iovec iov[2] = {{(void *)vhdr, NET_VNET_HDR_LEN}, {(void *)frame, len}};
	int first = t->vnet_hdr ? 0 : 1;
	ssize_t n = writev(t->fd, iov + first, 2 - first);
	if (n >= 0)
		return;
	if (tap_transient(errno)) {
		if (++t->tx_dropped == 1)
			log_debug("TAP %s: frame dropped: %s", t->name, strerror(errno));
		return;
	}
	tap_gone(t, errno);
}

void net_tap_rx_resume(struct net_tap *t)
{
	if (!t->paused || !t->up)
		return;
	int r = evloop_add(t->loop, t->fd, EPOLLIN, tap_readable, t);
	if (r < 0) {
		log_warn("TAP %s: %s: no more frames for the guest", t->name, strerror(-r));
		return;
	}
	t->paused = false;
}

bool net_tap_link_up(const struct net_tap *t)
{
	return t->up;
}

bool net_tap_has_vnet_hdr(const struct net_tap *t)
{
	return t->vnet_hdr;
}

int net_tap_set_offloads(struct net_tap *t, unsigned offloads)
{
	unsigned arg = 0;
	if (offloads & NET_OFFLOAD_CSUM) /* segmentation needs checksums */
		arg = TUN_F_CSUM | (offloads & NET_OFFLOAD_TSO4 ? TUN_F_TSO4 : 0) |
		      (offloads & NET_OFFLOAD_TSO6 ? TUN_F_TSO6 : 0) |
		      (offloads & NET_OFFLOAD_TSO_ECN ? TUN_F_TSO_ECN : 0);
	if (!t->up)
		return 0;
	if (ioctl(t->fd, TUNSETOFFLOAD, arg) < 0)
		return err_set(errno, "TAP %s: TUNSETOFFLOAD %#x", t->name, arg);
	return 0;
}

/* Why TUNSETIFF failed, in the user's terms. */
static int tap_open_error(const char *name, int e, bool existed)
{
	if (!existed && e == EPERM)
		return err_set(ENODEV,
			       "TAP %s: no such interface, and cairn may not create one (it needs "
			       "CAP_NET_ADMIN; or make it first: ip tuntap add %s mode tap)",
			       name, name);
	if (e == EPERM)
		return err_set(EPERM, "TAP %s: not permitted (the device belongs to another user?)",
			       name);
	if (e == EBUSY)
		return err_set(EBUSY, "TAP %s: in use by another process", name);
	if (e == EINVAL)
		return err_set(EINVAL, "TAP %s: not a TAP device (a TUN device, or another kind?)",
			       name);
	return err_set(e, "TAP %s: cannot attach", name);
}

int net_tap_open(const struct net_spec *spec, struct evloop *loop, const struct net_peer *peer,
		 struct net_tap **out)
{
	struct net_tap *t = calloc(1, sizeof(*t));
	if (!t)
		return err_set(ENOMEM, "TAP %s", spec->ifname);
	memcpy(t->name, spec->ifname, sizeof(t->name));
	t->loop = loop;
	t->peer = *peer;
	t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		int e = errno;
		free(t);
		return err_set(e, "TAP %s: /dev/net/tun", spec->ifname);
	}
	unsigned features = 0;
	if (ioctl(t->fd, TUNGETFEATURES, &features) < 0)
		features = 0;
	t->vnet_hdr = features & IFF_VNET_HDR;
	bool existed = if_nametoindex(t->name) != 0;
	struct ifreq ifr = {0};
	memcpy(ifr.ifr_name, t->name, sizeof(t->name));
	ifr.ifr_flags = (short)(IFF_TAP | IFF_NO_PI | (t->vnet_hdr ? IFF_VNET_HDR : 0));
	int r = 0;
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0)
		r = tap_open_error(t->name, errno, existed);
	int hdr = NET_VNET_HDR_LEN;
	if (r == 0 && t->vnet_hdr && ioctl(t->fd, TUNSETVNETHDRSZ, &hdr) < 0)
		r = err_set(errno, "TAP %s: TUNSETVNETHDRSZ", t->name);
	if (r == 0 && t->vnet_hdr && ioctl(t->fd, TUNSETOFFLOAD, 0) < 0)
		r = err_set(errno, "TAP %s: TUNSETOFFLOAD", t->name);
	if (r == 0 && (r = evloop_add(loop, t->fd, EPOLLIN, tap_readable, t)) < 0)
		r = err_set(-r, "TAP %s: event loop", t->name);
	if (r < 0) {
		close(t->fd);
		free(t);
		return r;
	}
	t->up = true;
	log_info("TAP %s: %s%s", t->name, existed ? "attached" : "created (goes when cairn exits)",
		 t->vnet_hdr ? ", with a vnet header" : "");
	*out = t;
	return 0;
}

void net_tap_close(struct net_tap *t)
{
	if (!t)
		return;
	if (t->fd >= 0) {
		if (!t->paused)
			evloop_del(t->loop, t->fd);
		close(t->fd);
	}
	free(t);
}
