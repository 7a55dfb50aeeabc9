/* virtio-net (modern virtio-pci) driven from user mode: the first
 * 1af4:1041 device, one receive and one transmit queue. */
#ifndef GUEST_VNET_H
#define GUEST_VNET_H

#include <stdint.h>

#define VNET_MAX_FRAME 9216 /* what vnet_recv takes; longer frames are dropped */

/* Sets the device up on first use (prints its line); prints "WHAT FAILED
   (reason)" and returns -1 when there is no usable device. */
int vnet_open(const char *what);
void vnet_mac(uint8_t mac[6]);
/* FN runs when the device asks the guest to announce itself (after a
   restore), before the request is acknowledged. */
void vnet_set_announce(void (*fn)(void));
/* Queue one Ethernet frame (LEN <= 1514): 0, or -1 (the device needs a reset). */
int vnet_send(const void *frame, unsigned len);
/* Wait until the device has taken every queued frame (it returns one once
   its backend has it): 0, or -1 at DEADLINE or when it needs a reset. */
int vnet_flush(uint64_t deadline);
/* The next received frame into BUF: its length; 0 at DEADLINE (ns); -1 when
   the device needs a reset. */
int vnet_recv(uint8_t *buf, uint64_t deadline);

#endif
