/* virtio-ccw shim (virtio 1.2 §4.3).  See ccw.h; s390 control blocks are
 * big-endian (§4.3), feature words little-endian (§4.3.2.4). */
#include "virtio/ccw.h"

#include <errno.h>
#include <string.h>

/* A channel program is bounded so a looping one (TIC back to itself
 * through a command) ends in a program check, not a hung vCPU. */
#define CCW_MAX_CHAIN 256

static uint16_t be16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64_get(const uint8_t *p)
{
	return (uint64_t)be32_get(p) << 32 | be32_get(p + 4);
}

static void be16_put(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* ---- interrupts (§4.3.3.1) ---- */

static void or_guest_byte(const struct guest_memory *mem, uint64_t gpa,
			  uint8_t mask, uint8_t *old)
{
	uint8_t *p;

	if (guest_memory_translate(mem, gpa, 1, (void **)&p) == 0) {
		uint8_t o = __atomic_fetch_or(p, mask, __ATOMIC_SEQ_CST);

		if (old)
			*old = o;
	}
}

/* Set bit |bit| (0 = least significant) of a big-endian 64-bit
 * indicator word in guest memory. */
static void set_be64_bit(const struct guest_memory *mem, uint64_t gpa,
			 unsigned bit)
{
	or_guest_byte(mem, gpa + 7 - bit / 8, (uint8_t)(1u << (bit % 8)), NULL);
}

static void ccw_notify_queue(void *transport, unsigned qidx, uint16_t vector)
{
	struct virtio_ccw *ccw = transport;

	(void)vector;
	if (__atomic_load_n(&ccw->adapter_ind, __ATOMIC_ACQUIRE)) {
		/* §4.3.3.1.2: indicator bits count from the left, one per
		 * queue starting at bit_nr; then the summary byte. */
		uint64_t bit = ccw->bit_nr + qidx;
		uint8_t old = 1;

		or_guest_byte(ccw->mem, ccw->adapter_indicators + bit / 8,
			      (uint8_t)(0x80u >> (bit % 8)), NULL);
		or_guest_byte(ccw->mem, ccw->summary_indicator, 0x01, &old);
		/* SHOULD interrupt only if the summary was not already set. */
		if (!old && ccw->adapter_irq)
			ccw->adapter_irq(ccw->irq_opaque, ccw->isc);
	} else if (__atomic_load_n(&ccw->classic_ind, __ATOMIC_ACQUIRE)) {
		if (qidx >= 64)
			return;
		set_be64_bit(ccw->mem, ccw->indicators, qidx);
		if (ccw->io_irq)
			ccw->io_irq(ccw->irq_opaque);
	}
}

static void ccw_notify_config(void *transport, uint16_t vector)
{
	struct virtio_ccw *ccw = transport;

	(void)vector;
	if (!__atomic_load_n(&ccw->conf_ind, __ATOMIC_ACQUIRE))
		return;
	set_be64_bit(ccw->mem, ccw->config_indicators, 0);
	if (ccw->io_irq)
		ccw->io_irq(ccw->irq_opaque);
}

static const struct virtio_transport_ops ccw_transport_ops = {
	.notify_queue = ccw_notify_queue,
	.notify_config = ccw_notify_config,
};

int virtio_ccw_init(struct virtio_ccw *ccw, struct virtio_device *dev,
		    const struct guest_memory *mem, uint32_t schid,
		    virtio_ccw_io_irq_fn io_irq,
		    virtio_ccw_adapter_irq_fn adapter_irq, void *irq_opaque)
{
	memset(ccw, 0, sizeof(*ccw));
	ccw->dev = dev;
	ccw->mem = mem;
	ccw->schid = schid;
	ccw->io_irq = io_irq;
	ccw->adapter_irq = adapter_irq;
	ccw->irq_opaque = irq_opaque;
	ccw->revision = -1;
	pthread_mutex_init(&ccw->lock, NULL);
	dev->legacy = false;
	virtio_device_set_transport(dev, &ccw_transport_ops, ccw);
	return 0;
}

static void clear_indicators(struct virtio_ccw *ccw)
{
	__atomic_store_n(&ccw->classic_ind, false, __ATOMIC_RELEASE);
	__atomic_store_n(&ccw->adapter_ind, false, __ATOMIC_RELEASE);
	__atomic_store_n(&ccw->conf_ind, false, __ATOMIC_RELEASE);
}

void virtio_ccw_enable_subchannel(struct virtio_ccw *ccw)
{
	pthread_mutex_lock(&ccw->lock);
	ccw->revision = -1;
	pthread_mutex_unlock(&ccw->lock);
}

/* ---- one command ---- */

enum ccw_outcome {
	CCW_OK,
	CCW_REJECT,      /* unit check, command reject */
	CCW_BAD_LENGTH,  /* incorrect length */
	CCW_PROG_CHECK,  /* program check */
	CCW_PROT_CHECK,  /* data address not in guest memory */
};

struct ccw_cmd {
	uint8_t code, flags;
	uint16_t count;
	uint32_t data;      /* guest address of the data area */
	uint16_t residual;  /* out */
};

/* §4.3.1.3 length rules for a command that needs exactly |need| bytes:
 * without SLI any other count is an incorrect length; with SLI a short
 * count is a check condition and a long one is accepted. */
static enum ccw_outcome check_len(struct ccw_cmd *c, uint32_t need)
{
	if (c->count == need) {
		c->residual = 0;
		return CCW_OK;
	}
	if (!(c->flags & CCW_FLAG_SLI))
		return CCW_BAD_LENGTH;
	if (c->count < need)
		return CCW_REJECT;
	c->residual = (uint16_t)(c->count - need);
	return CCW_OK;
}

static enum ccw_outcome get_data(struct virtio_ccw *ccw, struct ccw_cmd *c,
				 void *buf, uint32_t len)
{
	return guest_memory_read(ccw->mem, c->data, buf, len) ? CCW_PROT_CHECK
							      : CCW_OK;
}

static enum ccw_outcome put_data(struct virtio_ccw *ccw, struct ccw_cmd *c,
				 const void *buf, uint32_t len)
{
	return guest_memory_write(ccw->mem, c->data, buf, len) ? CCW_PROT_CHECK
							       : CCW_OK;
}

#define TRY(expr)                                 \
	do {                                      \
		enum ccw_outcome o_ = (expr);     \
		if (o_ != CCW_OK)                 \
			return o_;                \
	} while (0)

static enum ccw_outcome cmd_sense_id(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	uint8_t id[8] = { 0xff, VIRTIO_CCW_CU_TYPE >> 8,
			  VIRTIO_CCW_CU_TYPE & 0xff,
			  (uint8_t)ccw->dev->device_id, 0, 0, 0, 0 };

	TRY(check_len(c, sizeof(id)));
	return put_data(ccw, c, id, sizeof(id));
}

static enum ccw_outcome cmd_sense(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	uint8_t sense[32] = { ccw->sense };
	uint32_t n = c->count < sizeof(sense) ? c->count : sizeof(sense);

	/* Basic sense: deliver what fits; the sense is then consumed. */
	if (n == 0)
		return (c->flags & CCW_FLAG_SLI) ? CCW_OK : CCW_BAD_LENGTH;
	TRY(put_data(ccw, c, sense, n));
	c->residual = (uint16_t)(c->count - n);
	ccw->sense = 0;
	return CCW_OK;
}

static enum ccw_outcome cmd_set_rev(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	uint8_t hdr[4];
	uint16_t rev, len;

	if (c->count < 4)
		return (c->flags & CCW_FLAG_SLI) ? CCW_REJECT : CCW_BAD_LENGTH;
	TRY(get_data(ccw, c, hdr, 4));
	rev = be16_get(hdr);
	len = be16_get(hdr + 2);
	/* §4.3.2.1.1: one revision per enablement; only 1 and 2 (we are
	 * non-transitional: 0 is rejected), neither carries data. */
	if (ccw->revision >= 0 || (rev != 1 && rev != 2) || len != 0)
		return CCW_REJECT;
	TRY(check_len(c, 4));
	ccw->revision = rev;
	return CCW_OK;
}

static enum ccw_outcome cmd_read_feat(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	uint8_t d[5];
	uint32_t word;

	TRY(check_len(c, 5));
	TRY(get_data(ccw, c, d, 5));
	word = virtio_device_features_word(ccw->dev, d[4]);
	memcpy(d, &word, 4); /* le32 (x86 hosts are little-endian) */
	return put_data(ccw, c, d, 4);
}

static enum ccw_outcome cmd_write_feat(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	uint8_t d[5];
	uint32_t word;

	TRY(check_len(c, 5));
	TRY(get_data(ccw, c, d, 5));
	memcpy(&word, d, 4);
	virtio_driver_features_write_word(ccw->dev, d[4], word);
	return CCW_OK;
}

/* §4.3.2.5: the whole config is transferred; a shorter count (a driver
 * reading up to the field it wants) is fine, a longer one needs SLI. */
static enum ccw_outcome conf_len(struct virtio_ccw *ccw, struct ccw_cmd *c,
				 uint32_t *n)
{
	uint32_t size = ccw->dev->config_size;

	if (c->count <= size) {
		*n = c->count;
		c->residual = 0;
		return CCW_OK;
	}
	if (!(c->flags & CCW_FLAG_SLI))
		return CCW_BAD_LENGTH;
	*n = size;
	c->residual = (uint16_t)(c->count - size);
	return CCW_OK;
}

static enum ccw_outcome cmd_read_conf(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	uint8_t buf[256];
	uint32_t n, off;

	TRY(conf_len(ccw, c, &n));
	for (off = 0; off < n; off += sizeof(buf)) {
		uint32_t chunk = n - off < sizeof(buf) ? n - off : sizeof(buf);

		virtio_config_read(ccw->dev, off, buf, chunk);
		if (guest_memory_write(ccw->mem, c->data + off, buf, chunk))
			return CCW_PROT_CHECK;
	}
	return CCW_OK;
}

static enum ccw_outcome cmd_write_conf(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	uint8_t buf[256];
	uint32_t n, off;

	TRY(conf_len(ccw, c, &n));
	/* Check the whole source first: a write is all or nothing. */
	if (n && !guest_memory_is_ram(ccw->mem, c->data, n))
		return CCW_PROT_CHECK;
	for (off = 0; off < n; off += sizeof(buf)) {
		uint32_t chunk = n - off < sizeof(buf) ? n - off : sizeof(buf);

		if (guest_memory_read(ccw->mem, c->data + off, buf, chunk))
			return CCW_PROT_CHECK;
		virtio_config_write(ccw->dev, off, buf, chunk);
	}
	return CCW_OK;
}

static enum ccw_outcome cmd_write_status(struct virtio_ccw *ccw,
					 struct ccw_cmd *c)
{
	uint8_t s, now;

	TRY(check_len(c, 1));
	TRY(get_data(ccw, c, &s, 1));
	if (s == 0) {
		virtio_reset(ccw->dev);
		clear_indicators(ccw);
		return CCW_OK;
	}
	/* §4.3.2.3.2: if the status cannot be set it stays as it was and
	 * the command is rejected. */
	if (virtio_set_status(ccw->dev, s) < 0)
		return CCW_REJECT;
	now = virtio_get_status(ccw->dev) & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	return now == (s & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET) ? CCW_OK
							       : CCW_REJECT;
}

static enum ccw_outcome cmd_read_status(struct virtio_ccw *ccw,
					struct ccw_cmd *c)
{
	uint8_t s;

	/* §4.3.2.3: READ_STATUS exists from revision 2 on. */
	if (ccw->revision < 2)
		return CCW_REJECT;
	TRY(check_len(c, 1));
	s = virtio_get_status(ccw->dev);
	return put_data(ccw, c, &s, 1);
}

static enum ccw_outcome cmd_set_vq(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	uint8_t d[32];
	uint64_t desc, driver, device;
	uint16_t index, num;
	struct virtq *q;

	TRY(check_len(c, sizeof(d)));
	TRY(get_data(ccw, c, d, sizeof(d)));
	/* struct vq_info_block: desc, res0 (ignored, §4.3.2.2.1), index,
	 * num, driver, device. */
	desc = be64_get(d);
	index = be16_get(d + 12);
	num = be16_get(d + 14);
	driver = be64_get(d + 16);
	device = be64_get(d + 24);
	if (index >= ccw->dev->nr_queues)
		return CCW_REJECT;
	q = &ccw->dev->queues[index];
	if (desc == 0) { /* the driver takes the queue away */
		virtio_queue_disable(ccw->dev, index);
		return CCW_OK;
	}
	if (q->ready || num == 0 || num > q->max_size)
		return CCW_REJECT;
	q->size = num;
	q->desc_addr = desc;
	q->driver_addr = driver;
	q->device_addr = device;
	return virtio_queue_enable(ccw->dev, index) ? CCW_REJECT : CCW_OK;
}

static enum ccw_outcome cmd_read_vq_conf(struct virtio_ccw *ccw,
					 struct ccw_cmd *c)
{
	uint8_t d[4];
	uint16_t index;

	TRY(check_len(c, 4));
	TRY(get_data(ccw, c, d, 2));
	index = be16_get(d);
	be16_put(d + 2, index < ccw->dev->nr_queues ?
				 ccw->dev->queues[index].max_size : 0);
	return put_data(ccw, c, d, 4);
}

static enum ccw_outcome read_ind_addr(struct virtio_ccw *ccw,
				      struct ccw_cmd *c, uint64_t *addr)
{
	uint8_t d[8];

	TRY(check_len(c, 8));
	TRY(get_data(ccw, c, d, 8));
	*addr = be64_get(d);
	/* The indicator word must be guest RAM, or we could never set it. */
	return guest_memory_is_ram(ccw->mem, *addr, 8) ? CCW_OK : CCW_REJECT;
}

static enum ccw_outcome cmd_set_ind(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	uint64_t addr;

	/* §4.3.2.6.1: not once two-stage indicators are in use. */
	if (ccw->adapter_ind)
		return CCW_REJECT;
	TRY(read_ind_addr(ccw, c, &addr));
	ccw->indicators = addr;
	__atomic_store_n(&ccw->classic_ind, true, __ATOMIC_RELEASE);
	return CCW_OK;
}

static enum ccw_outcome cmd_set_conf_ind(struct virtio_ccw *ccw,
					 struct ccw_cmd *c)
{
	uint64_t addr;

	TRY(read_ind_addr(ccw, c, &addr));
	ccw->config_indicators = addr;
	__atomic_store_n(&ccw->conf_ind, true, __ATOMIC_RELEASE);
	return CCW_OK;
}

static enum ccw_outcome cmd_set_ind_adapter(struct virtio_ccw *ccw,
					    struct ccw_cmd *c)
{
	uint8_t d[25];
	uint64_t summary, ind, bit_nr, bytes;

	/* §4.3.2.6.3.1: not once classic indicators are in use. */
	if (ccw->classic_ind)
		return CCW_REJECT;
	TRY(check_len(c, sizeof(d)));
	TRY(get_data(ccw, c, d, sizeof(d)));
	summary = be64_get(d);
	ind = be64_get(d + 8);
	bit_nr = be64_get(d + 16);
	if (bit_nr > (1ull << 32))
		return CCW_REJECT;
	bytes = (bit_nr + ccw->dev->nr_queues + 7) / 8;
	if (!guest_memory_is_ram(ccw->mem, summary, 1) ||
	    !guest_memory_is_ram(ccw->mem, ind, bytes))
		return CCW_REJECT;
	ccw->summary_indicator = summary;
	ccw->adapter_indicators = ind;
	ccw->bit_nr = bit_nr;
	ccw->isc = d[24];
	__atomic_store_n(&ccw->adapter_ind, true, __ATOMIC_RELEASE);
	return CCW_OK;
}

static enum ccw_outcome cmd_vdev_reset(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	TRY(check_len(c, 0));
	/* §4.3.3.3.1: the reset is complete (status 0, queues quiesced)
	 * before the command concludes. */
	virtio_reset(ccw->dev);
	clear_indicators(ccw);
	return CCW_OK;
}

static bool is_virtio_command(uint8_t code)
{
	switch (code) {
	case CCW_CMD_SET_VQ: case CCW_CMD_VDEV_RESET: case CCW_CMD_SET_IND:
	case CCW_CMD_SET_CONF_IND: case CCW_CMD_SET_IND_ADAPTER:
	case CCW_CMD_READ_FEAT: case CCW_CMD_WRITE_FEAT:
	case CCW_CMD_READ_CONF: case CCW_CMD_WRITE_CONF:
	case CCW_CMD_WRITE_STATUS: case CCW_CMD_READ_VQ_CONF:
	case CCW_CMD_READ_STATUS:
		return true;
	default:
		return false;
	}
}

static enum ccw_outcome run_command(struct virtio_ccw *ccw, struct ccw_cmd *c)
{
	c->residual = c->count;
	/* §4.3.2.1 (legacy note): without a revision, a non-transitional
	 * device rejects every virtio command. */
	if (is_virtio_command(c->code) && ccw->revision < 1)
		return CCW_REJECT;
	switch (c->code) {
	case CCW_CMD_NOOP:
		c->residual = 0;
		return CCW_OK;
	case CCW_CMD_SENSE:
		return cmd_sense(ccw, c);
	case CCW_CMD_SENSE_ID:
		return cmd_sense_id(ccw, c);
	case CCW_CMD_SET_VIRTIO_REV:
		return cmd_set_rev(ccw, c);
	case CCW_CMD_READ_FEAT:
		return cmd_read_feat(ccw, c);
	case CCW_CMD_WRITE_FEAT:
		return cmd_write_feat(ccw, c);
	case CCW_CMD_READ_CONF:
		return cmd_read_conf(ccw, c);
	case CCW_CMD_WRITE_CONF:
		return cmd_write_conf(ccw, c);
	case CCW_CMD_WRITE_STATUS:
		return cmd_write_status(ccw, c);
	case CCW_CMD_READ_STATUS:
		return cmd_read_status(ccw, c);
	case CCW_CMD_SET_VQ:
		return cmd_set_vq(ccw, c);
	case CCW_CMD_READ_VQ_CONF:
		return cmd_read_vq_conf(ccw, c);
	case CCW_CMD_SET_IND:
		return cmd_set_ind(ccw, c);
	case CCW_CMD_SET_CONF_IND:
		return cmd_set_conf_ind(ccw, c);
	case CCW_CMD_SET_IND_ADAPTER:
		return cmd_set_ind_adapter(ccw, c);
	case CCW_CMD_VDEV_RESET:
		return cmd_vdev_reset(ccw, c);
	default:
		/* §4.3.1.3: command reject for anything unsupported. */
		return CCW_REJECT;
	}
}

/* ---- channel program ---- */

int virtio_ccw_start(struct virtio_ccw *ccw, uint64_t cpa,
		     struct virtio_ccw_result *res)
{
	unsigned executed = 0;
	bool after_tic = false;
	int ret = 0;

	memset(res, 0, sizeof(*res));
	pthread_mutex_lock(&ccw->lock);
	for (;;) {
		uint8_t raw[8];
		struct ccw_cmd c;
		enum ccw_outcome o;

		res->cpa = cpa + 8;
		/* CCWs are doubleword aligned, in 31-bit addressable RAM. */
		if ((cpa & 7) || cpa >= (1ull << 31) ||
		    ++executed > CCW_MAX_CHAIN ||
		    guest_memory_read(ccw->mem, cpa, raw, 8)) {
			res->cstat = CCW_CSTAT_PROGRAM;
			ret = -EFAULT;
			break;
		}
		c.code = raw[0];
		c.flags = raw[1];
		c.count = be16_get(raw + 2);
		c.data = be32_get(raw + 4) & 0x7fffffff;
		c.residual = c.count;

		if (c.code == CCW_CMD_TIC) {
			/* Two TICs in a row are a program check. */
			if (after_tic) {
				res->cstat = CCW_CSTAT_PROGRAM;
				ret = -EFAULT;
				break;
			}
			after_tic = true;
			cpa = c.data;
			continue;
		}
		after_tic = false;
		if (c.flags & (CCW_FLAG_CD | CCW_FLAG_IDA | CCW_FLAG_SUSPEND)) {
			res->cstat = CCW_CSTAT_PROGRAM;
			ret = -EFAULT;
			break;
		}

		o = run_command(ccw, &c);
		res->residual = c.residual;
		if (o == CCW_REJECT) {
			ccw->sense = CCW_SENSE_CMD_REJECT;
			res->dstat = CCW_DSTAT_CE | CCW_DSTAT_DE | CCW_DSTAT_UC;
			ret = -EIO;
			break;
		}
		if (o == CCW_PROT_CHECK) {
			res->cstat = CCW_CSTAT_PROTECTION;
			ret = -EFAULT;
			break;
		}
		if (o == CCW_BAD_LENGTH) {
			/* §4.3.1.3: incorrect length ends the chain. */
			res->cstat = CCW_CSTAT_IL;
			res->dstat = CCW_DSTAT_CE | CCW_DSTAT_DE;
			ret = -EINVAL;
			break;
		}
		if (!(c.flags & CCW_FLAG_CC)) {
			res->dstat = CCW_DSTAT_CE | CCW_DSTAT_DE;
			break;
		}
		cpa += 8;
	}
	pthread_mutex_unlock(&ccw->lock);
	return ret;
}

int virtio_ccw_notify(struct virtio_ccw *ccw, uint64_t gpr2, uint64_t gpr3,
		      uint64_t *cookie)
{
	/* §4.3.3.2.1: bits 0-31 (the high half) of GPR2 are ignored. */
	if ((uint32_t)gpr2 != ccw->schid)
		return -ENODEV;
	/* No VIRTIO_F_NOTIFICATION_DATA: GPR3 is the queue index. */
	if (gpr3 < ccw->dev->nr_queues)
		virtio_queue_kick(ccw->dev, (unsigned)gpr3);
	if (cookie)
		*cookie = 0;
	return 0;
}
