/* A 16550A UART.  Output goes straight to the console fd; input is read
 * by the I/O thread into a ring the guest drains through RBR.  The IRQ
 * line follows the interrupt-identification state after every access, as
 * on the real chip (the 8250 driver loops on IIR until it reads "none"). */
#include "devices/serial.h"
#include "arch/x86/layout.h"
#include "devices/device.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "util/err.h"
#include "util/evloop.h"
#include "util/fileutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define UART_RX_RING 4096

/* Registers (offset from the base port). */
enum { UART_RBR_THR = 0, UART_IER = 1, UART_IIR_FCR = 2, UART_LCR = 3, UART_MCR = 4,
       UART_LSR = 5, UART_MSR = 6, UART_SCR = 7 };
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

struct serial {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thri_pending;
	int irq_level;
	uint8_t rx[UART_RX_RING];
	unsigned rx_head, rx_count;
	int in_fd, out_fd;
	bool in_watched; /* console fd in the event loop */
	bool escape;     /* last input byte was Ctrl-A */
	bool tty;
};

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;
	if ((s->ier & IER_RDI) && s->rx_count)
		return IIR_RDI | fifo;
	if ((s->ier & IER_THRI) && s->thri_pending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

static void serial_update_irq(struct serial *s)
{
	int level = (serial_iir(s) & IIR_NONE) ? 0 : 1;
	if (level != s->irq_level) {
		s->irq_level = level;
		vm_irq_line(s->vm, COM1_IRQ, level);
	}
}

static void serial_rx_push(struct serial *s, uint8_t c)
{
	if (s->rx_count == UART_RX_RING)
		return; /* overrun: the byte is lost, as on the chip */
	s->rx[(s->rx_head + s->rx_count) % UART_RX_RING] = c;
	s->rx_count++;
}

static void serial_console_watch(struct serial *s, bool on);

static void serial_tx(struct serial *s, uint8_t c)
{
	if (s->mcr & MCR_LOOP) {
		serial_rx_push(s, c);
	} else if (s->out_fd >= 0) {
		/* A closed or broken console must not stop the guest. */
		if (file_write_all(s->out_fd, &c, 1) < 0)
			s->out_fd = -1;
	}
	s->thri_pending = true;
}

static uint8_t serial_msr(const struct serial *s)
{
	if (s->mcr & MCR_LOOP)
		return (uint8_t)(((s->mcr & MCR_DTR) ? MSR_DSR : 0) |
				 ((s->mcr & MCR_RTS) ? MSR_CTS : 0) |
				 ((s->mcr & MCR_OUT1) ? MSR_RI : 0) |
				 ((s->mcr & MCR_OUT2) ? MSR_DCD : 0));
	return MSR_DCD | MSR_DSR | MSR_CTS;
}

static void serial_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct serial *s = opaque;
	uint8_t v = 0;
	bool resume_input = false;
	pthread_mutex_lock(&s->lock);
	switch (off) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB) {
			v = s->dll;
		} else if (s->rx_count) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % UART_RX_RING;
			s->rx_count--;
			resume_input = !s->in_watched && s->rx_count < UART_RX_RING / 2;
		}
		break;
	case UART_IER:
		v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
		break;
	case UART_IIR_FCR:
		v = serial_iir(s);
		if ((v & 0x0f) == IIR_THRI)
			s->thri_pending = false; /* reading IIR acknowledges THRE */
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
		break;
	case UART_MSR:
		v = serial_msr(s);
		break;
	case UART_SCR:
		v = s->scr;
		break;
	}
	serial_update_irq(s);
	if (resume_input)
		serial_console_watch(s, true);
	pthread_mutex_unlock(&s->lock);
	memset(data, 0, len);
	*(uint8_t *)data = v;
}

static void serial_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct serial *s = opaque;
	uint8_t v = *(const uint8_t *)data;
	(void)len;
	pthread_mutex_lock(&s->lock);
	switch (off) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			serial_tx(s, v);
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
		} else {
			/* Enabling THRI with THR empty raises it at once. */
			if (!(s->ier & IER_THRI) && (v & IER_THRI))
				s->thri_pending = true;
			s->ier = v & 0x0f;
		}
		break;
	case UART_IIR_FCR:
		s->fcr = v & 0xc9;
		if (v & FCR_CLEAR_RX)
			s->rx_count = 0;
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1f;
		break;
	case UART_SCR:
		s->scr = v;
		break;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static const struct io_ops serial_io = {serial_read, serial_write};

/* Console input, in the I/O thread.  Ctrl-A x quits when the console is a
 * terminal (its signals are off in raw mode). */
static void serial_console_input(void *opaque, uint32_t events)
{
	struct serial *s = opaque;
	uint8_t buf[512];
	pthread_mutex_lock(&s->lock);
	size_t room = UART_RX_RING - s->rx_count;
	if (room > sizeof(buf))
		room = sizeof(buf);
	if (!room) {
		serial_console_watch(s, false);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	ssize_t n = read(s->in_fd, buf, room);
	if (n <= 0) {
		if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
			serial_console_watch(s, false); /* EOF: no more input */
			s->in_fd = -1;
		}
		pthread_mutex_unlock(&s->lock);
		return;
	}
	bool quit = false;
	for (ssize_t i = 0; i < n; i++) {
		if (s->tty && s->escape) {
			s->escape = false;
			if (buf[i] == 'x') {
				quit = true;
				break;
			}
			if (buf[i] != 0x01)
				serial_rx_push(s, 0x01);
		} else if (s->tty && buf[i] == 0x01) {
			s->escape = true;
			continue;
		}
		serial_rx_push(s, buf[i]);
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	if (quit)
		vm_request_exit(s->vm, VM_EXIT_QUIT, 0, "Ctrl-A x on the console");
}

static void serial_console_watch(struct serial *s, bool on)
{
	if (s->in_fd < 0 || on == s->in_watched)
		return;
	if (on) {
		/* Regular files and /dev/null cannot be polled: no console input. */
		if (evloop_add(s->vm->loop, s->in_fd, EPOLLIN, serial_console_input, s) < 0) {
			s->in_fd = -1;
			return;
		}
	} else
		evloop_del(s->vm->loop, s->in_fd);
	s->in_watched = on;
}

static void serial_destroy(void *priv)
{
	struct serial *s = priv;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int serial_snapshot(void *priv, struct state_buf *sb)
{
	struct serial *s = priv;
	pthread_mutex_lock(&s->lock);
	STATE_FIELD(sb, s->ier);
	STATE_FIELD(sb, s->lcr);
	STATE_FIELD(sb, s->mcr);
	STATE_FIELD(sb, s->scr);
	STATE_FIELD(sb, s->fcr);
	STATE_FIELD(sb, s->dll);
	STATE_FIELD(sb, s->dlm);
	STATE_FIELD(sb, s->thri_pending);
	STATE_FIELD(sb, s->rx_head);
	STATE_FIELD(sb, s->rx_count);
	STATE_FIELD(sb, s->rx);
	if (sb->restoring && !sb->err) {
		if (s->rx_head >= UART_RX_RING || s->rx_count > UART_RX_RING) {
			sb->err = err_set(EINVAL,
					  "%s: saved receive FIFO out of range (head %u, %u bytes; "
					  "the FIFO holds %d)",
					  sb->what, s->rx_head, s->rx_count, UART_RX_RING);
		} else {
			s->irq_level = -1; /* force the line to be set again */
			serial_update_irq(s);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return sb->err;
}

static const struct device_ops serial_ops = {
	.name = "serial", .snapshot = serial_snapshot, .destroy = serial_destroy};

int serial_init(struct vm *vm, const struct devices_config *cfg)
{
	struct serial *s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(ENOMEM, "serial port");
	s->vm = vm;
	pthread_mutex_init(&s->lock, NULL);
	s->in_fd = cfg->console.in_fd;
	s->out_fd = cfg->console.out_fd;
	s->tty = s->in_fd >= 0 && isatty(s->in_fd);
	int r = iobus_register(&vm->pio, COM1_PORT, 8, &serial_io, s);
	if (r < 0) {
		serial_destroy(s);
		return err_set(-r, "serial port at %#x", COM1_PORT);
	}
	serial_console_watch(s, true);
	return device_add(vm, &serial_ops, s);
}
