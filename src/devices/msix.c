#include "devices/msix.h"
#include "devices/pci.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define PCI_CAP_ID_MSIX 0x11
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_FMASK 0x4000
#define MSIX_VEC_MASKED 0x1

static uint16_t msix_ctrl(struct msix *m)
{
	uint16_t v;
	memcpy(&v, m->pci->cfg + m->cap_off + 2, 2);
	return v;
}

bool msix_enabled(struct msix *m)
{
	return msix_ctrl(m) & MSIX_CTRL_ENABLE;
}

int msix_init(struct msix *m, struct pci_dev *pci, unsigned nvec, int bar, uint32_t table_off,
	      uint32_t pba_off)
{
	memset(m, 0, sizeof(*m));
	if (nvec == 0 || nvec > MSIX_MAX_VECTORS)
		return err_set(EINVAL, "MSI-X: %u vectors", nvec);
	m->pci = pci;
	m->nvec = nvec;
	pthread_mutex_init(&m->lock, NULL);
	uint8_t body[10], wmask[10] = {0};
	uint16_t ctrl = (uint16_t)(nvec - 1);
	uint32_t table = table_off | (uint32_t)bar, pba = pba_off | (uint32_t)bar;
	memcpy(body, &ctrl, 2);
	memcpy(body + 2, &table, 4);
	memcpy(body + 6, &pba, 4);
	wmask[1] = (MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK) >> 8;
	m->cap_off = pci_add_cap(pci, PCI_CAP_ID_MSIX, body, wmask, sizeof(body));
	if (m->cap_off < 0)
		return err_set(-m->cap_off, "MSI-X capability");
	for (unsigned i = 0; i < nvec; i++)
		m->vec[i].ctrl = MSIX_VEC_MASKED;
	return 0;
}

void msix_destroy(struct msix *m)
{
	pthread_mutex_destroy(&m->lock);
}

static bool msix_masked(struct msix *m, unsigned i)
{
	return (msix_ctrl(m) & MSIX_CTRL_FMASK) || (m->vec[i].ctrl & MSIX_VEC_MASKED);
}

static void msix_fire(struct msix *m, struct msix_vector *v)
{
	if (vm_signal_msi(m->pci->vm, (uint64_t)v->addr_hi << 32 | v->addr_lo, v->data) < 0)
		log_warn("MSI-X: %s", err_msg());
}

void msix_notify(struct msix *m, unsigned i)
{
	if (i >= m->nvec)
		return;
	pthread_mutex_lock(&m->lock);
	if (msix_masked(m, i))
		m->vec[i].pending = true;
	else
		msix_fire(m, &m->vec[i]);
	pthread_mutex_unlock(&m->lock);
}

/* After the table or control changed: deliver what was pending while the
 * vector was masked. */
static void msix_sync(struct msix *m, unsigned i)
{
	struct msix_vector *v = &m->vec[i];
	if (!msix_masked(m, i) && v->pending) {
		v->pending = false;
		msix_fire(m, v);
	}
}

void msix_table_read(struct msix *m, uint64_t off, void *data, unsigned len)
{
	memset(data, 0, len);
	unsigned i = (unsigned)(off / MSIX_ENTRY_SIZE);
	if (i >= m->nvec || (off % 4) + len > 8)
		return;
	pthread_mutex_lock(&m->lock);
	memcpy(data, (uint8_t *)&m->vec[i] + (off % MSIX_ENTRY_SIZE), len);
	pthread_mutex_unlock(&m->lock);
}

void msix_table_write(struct msix *m, uint64_t off, const void *data, unsigned len)
{
	unsigned i = (unsigned)(off / MSIX_ENTRY_SIZE);
	unsigned o = (unsigned)(off % MSIX_ENTRY_SIZE);
	if (i >= m->nvec || o + len > MSIX_ENTRY_SIZE)
		return;
	pthread_mutex_lock(&m->lock);
	struct msix_vector *v = &m->vec[i];
	memcpy((uint8_t *)v + o, data, len);
	v->ctrl &= MSIX_VEC_MASKED;
	msix_sync(m, i);
	pthread_mutex_unlock(&m->lock);
}

void msix_pba_read(struct msix *m, uint64_t off, void *data, unsigned len)
{
	uint64_t bits = 0;
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < m->nvec; i++)
		if (m->vec[i].pending)
			bits |= 1ULL << i;
	pthread_mutex_unlock(&m->lock);
	memset(data, 0, len);
	if (off < 8)
		memcpy(data, (uint8_t *)&bits + off, len > 8 - off ? 8 - off : len);
}

void msix_control_written(struct msix *m)
{
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < m->nvec; i++)
		msix_sync(m, i);
	pthread_mutex_unlock(&m->lock);
}

int msix_snapshot(struct msix *m, struct state_buf *sb)
{
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < m->nvec; i++) {
		struct msix_vector *v = &m->vec[i];
		STATE_FIELD(sb, v->addr_lo);
		STATE_FIELD(sb, v->addr_hi);
		STATE_FIELD(sb, v->data);
		STATE_FIELD(sb, v->ctrl);
		STATE_FIELD(sb, v->pending);
	}
	if (sb->restoring && !sb->err)
		for (unsigned i = 0; i < m->nvec; i++)
			msix_sync(m, i);
	pthread_mutex_unlock(&m->lock);
	return sb->err;
}
