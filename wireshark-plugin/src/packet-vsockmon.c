// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Dissector for Linux AF_VSOCK monitor frames (LINKTYPE_VSOCK): every header field,
 * stream indexes, credit/window analysis, resets, refusals, shutdowns, seqpacket reassembly.
 */
#define WS_BUILD_DLL
#include <wireshark.h>
#include <epan/packet.h>
#include <epan/expert.h>
#include <epan/proto_data.h>
#include <epan/decode_as.h>
#include <epan/reassemble.h>
#include <wiretap/wtap.h>

#include "packet-vsockmon.h"

#define AF_HDR_LEN 32
#define VIRTIO_HDR_LEN 44

enum { AF_OP_UNKNOWN, AF_OP_CONNECT, AF_OP_DISCONNECT, AF_OP_CONTROL, AF_OP_PAYLOAD };
enum { TRANSPORT_UNKNOWN, TRANSPORT_NO_INFO, TRANSPORT_VIRTIO };
enum { OP_INVALID, OP_REQUEST, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW,
       OP_CREDIT_UPDATE, OP_CREDIT_REQUEST };
enum { TYPE_STREAM = 1, TYPE_SEQPACKET = 2 };
#define SHUTDOWN_RCV 1u
#define SHUTDOWN_SEND 2u
#define SEQ_EOM 1u
#define SEQ_EOR 2u

static const value_string af_op_vals[] = {
	{ AF_OP_UNKNOWN, "UNKNOWN" }, { AF_OP_CONNECT, "CONNECT" },
	{ AF_OP_DISCONNECT, "DISCONNECT" }, { AF_OP_CONTROL, "CONTROL" },
	{ AF_OP_PAYLOAD, "PAYLOAD" }, { 0, NULL }
};
static const value_string transport_vals[] = {
	{ TRANSPORT_UNKNOWN, "UNKNOWN" }, { TRANSPORT_NO_INFO, "NO_INFO" },
	{ TRANSPORT_VIRTIO, "VIRTIO" }, { 0, NULL }
};
static const value_string op_vals[] = {
	{ OP_INVALID, "INVALID" }, { OP_REQUEST, "REQUEST" }, { OP_RESPONSE, "RESPONSE" },
	{ OP_RST, "RST" }, { OP_SHUTDOWN, "SHUTDOWN" }, { OP_RW, "RW" },
	{ OP_CREDIT_UPDATE, "CREDIT_UPDATE" }, { OP_CREDIT_REQUEST, "CREDIT_REQUEST" },
	{ 0, NULL }
};
static const value_string type_vals[] = {
	{ TYPE_STREAM, "STREAM" }, { TYPE_SEQPACKET, "SEQPACKET" }, { 0, NULL }
};

static int proto_vsockmon = -1;
static int hf_src_cid = -1, hf_dst_cid = -1, hf_src_port = -1, hf_dst_port = -1;
static int hf_af_op = -1, hf_transport = -1, hf_hdr_len = -1, hf_reserved = -1;
static int hf_v_src_cid = -1, hf_v_dst_cid = -1, hf_v_src_port = -1, hf_v_dst_port = -1;
static int hf_v_len = -1, hf_v_type = -1, hf_v_op = -1, hf_v_flags = -1;
static int hf_v_flag_rcv = -1, hf_v_flag_send = -1, hf_v_flag_eom = -1, hf_v_flag_eor = -1;
static int hf_v_buf_alloc = -1, hf_v_fwd_cnt = -1;
static int hf_transport_hdr = -1, hf_payload = -1, hf_payload_len = -1;
static int hf_stream = -1, hf_in_flight = -1, hf_credit = -1, hf_peer_buf_alloc = -1;
static int hf_msg_len = -1;
static int hf_fragments = -1, hf_fragment = -1, hf_fragment_overlap = -1;
static int hf_fragment_overlap_conflict = -1, hf_fragment_multiple_tails = -1;
static int hf_fragment_too_long = -1, hf_fragment_error = -1, hf_fragment_count = -1;
static int hf_reassembled_in = -1, hf_reassembled_length = -1, hf_reassembled_data = -1;

static gint ett_vsockmon = -1, ett_virtio = -1, ett_flags = -1, ett_analysis = -1;
static gint ett_fragment = -1, ett_fragments = -1;

static expert_field ei_truncated = EI_INIT, ei_bad_hdr_len = EI_INIT, ei_bad_len = EI_INIT;
static expert_field ei_mismatch = EI_INIT, ei_unknown = EI_INIT, ei_reserved = EI_INIT;
static expert_field ei_reset = EI_INIT, ei_refused = EI_INIT, ei_shutdown = EI_INIT;
static expert_field ei_closed = EI_INIT, ei_window_full = EI_INIT, ei_credit_exceeded = EI_INIT;
static expert_field ei_credit_request = EI_INIT, ei_fwd_cnt = EI_INIT;

static dissector_handle_t vsockmon_handle;
static dissector_table_t port_table;
static heur_dissector_list_t heur_list;
static reassembly_table seq_reassembly;

static const fragment_items seq_frag_items = {
	&ett_fragment, &ett_fragments, &hf_fragments, &hf_fragment, &hf_fragment_overlap,
	&hf_fragment_overlap_conflict, &hf_fragment_multiple_tails, &hf_fragment_too_long,
	&hf_fragment_error, &hf_fragment_count, &hf_reassembled_in, &hf_reassembled_length,
	&hf_reassembled_data, "Message fragments"
};

/* ---- conversation state, built on the first pass and kept per frame ---- */

typedef struct {
	guint64 cid;
	guint32 port;
} endpoint_t;

typedef struct {
	endpoint_t a, b;   /* a < b */
} conn_key_t;

typedef struct {
	gboolean seen;       /* buf_alloc/fwd_cnt known from a packet this side sent */
	guint32 buf_alloc;
	guint32 fwd_cnt;
	guint32 tx_cnt;      /* payload bytes this side sent (wraps like the kernel's) */
	guint32 shutdown;    /* SHUTDOWN flags this side sent */
	guint32 msg_id;      /* seqpacket reassembly: current message of this side */
	gboolean in_msg;
} side_t;

enum { ST_NONE, ST_REQUESTED, ST_ESTABLISHED, ST_CLOSED };

typedef struct {
	guint32 stream;
	int state;
	int requester;       /* side index that sent REQUEST */
	gboolean from_start; /* first seen at its REQUEST: byte counts are exact */
	side_t side[2];
} conn_t;

/* What the analysis concluded for one frame (stored at the first pass). */
typedef struct {
	guint32 stream;
	gboolean has_credit;
	guint32 in_flight;   /* after this RW: sent minus what the peer forwarded */
	guint32 peer_buf;
	gboolean window_full, credit_exceeded, refused, reset, closed, fwd_cnt_bad;
	guint32 msg_id;      /* seqpacket message id for reassembly (0: none) */
} frame_info_t;

static wmem_map_t *conns;
static guint32 next_stream;
static guint32 next_msg_id;

static guint conn_hash(gconstpointer k)
{
	const conn_key_t *c = k;

	return g_int64_hash(&c->a.cid) ^ (c->a.port * 2654435761u) ^
	       (g_int64_hash(&c->b.cid) << 1) ^ (c->b.port * 40503u);
}

static gboolean conn_equal(gconstpointer x, gconstpointer y)
{
	const conn_key_t *a = x, *b = y;

	return a->a.cid == b->a.cid && a->a.port == b->a.port &&
	       a->b.cid == b->b.cid && a->b.port == b->b.port;
}

static void vsockmon_init(void)
{
	conns = wmem_map_new(wmem_file_scope(), conn_hash, conn_equal);
	next_stream = 0;
	next_msg_id = 1;
}

static int ep_cmp(const endpoint_t *x, const endpoint_t *y)
{
	if (x->cid != y->cid)
		return x->cid < y->cid ? -1 : 1;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return 0;
}

typedef struct {
	guint64 src_cid, dst_cid;
	guint32 src_port, dst_port, len, flags, buf_alloc, fwd_cnt;
	guint16 type, op;
} vhdr_t;

/* First pass: update the connection this frame belongs to, record the conclusions. */
static frame_info_t *analyse(packet_info *pinfo, const vhdr_t *h)
{
	frame_info_t *fi = wmem_new0(wmem_file_scope(), frame_info_t);
	endpoint_t s = { h->src_cid, h->src_port }, d = { h->dst_cid, h->dst_port };
	conn_key_t key;
	conn_t *c;
	int me, peer;

	if (ep_cmp(&s, &d) <= 0) {
		key.a = s; key.b = d; me = 0;
	} else {
		key.a = d; key.b = s; me = 1;
	}
	peer = !me;
	c = wmem_map_lookup(conns, &key);
	if (!c || (h->op == OP_REQUEST && c->state != ST_REQUESTED)) {
		conn_key_t *k = wmem_new(wmem_file_scope(), conn_key_t);

		*k = key;
		c = wmem_new0(wmem_file_scope(), conn_t);
		c->stream = next_stream++;
		c->state = ST_NONE;
		c->from_start = h->op == OP_REQUEST;
		wmem_map_insert(conns, k, c);
	}
	fi->stream = c->stream;

	/* A reply sent by no socket (a refusal) carries buf_alloc 0: not a real window. */
	if (!(h->op == OP_RST && c->state == ST_REQUESTED)) {
		/* Seen from its REQUEST on, the peer's byte count is exact. */
		if (c->from_start && (gint32)(h->fwd_cnt - c->side[peer].tx_cnt) > 0)
			fi->fwd_cnt_bad = TRUE;
		c->side[me].seen = TRUE;
		c->side[me].buf_alloc = h->buf_alloc;
		c->side[me].fwd_cnt = h->fwd_cnt;
	}

	switch (h->op) {
	case OP_REQUEST:
		c->state = ST_REQUESTED;
		c->requester = me;
		break;
	case OP_RESPONSE:
		if (c->state == ST_REQUESTED)
			c->state = ST_ESTABLISHED;
		break;
	case OP_RST:
		fi->reset = TRUE;
		fi->refused = c->state == ST_REQUESTED && c->requester == peer;
		c->state = ST_CLOSED;
		break;
	case OP_SHUTDOWN:
		c->side[me].shutdown |= h->flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
		fi->closed = (c->side[me].shutdown & SHUTDOWN_SEND) &&
			     (c->side[peer].shutdown & SHUTDOWN_SEND);
		break;
	case OP_RW:
		c->side[me].tx_cnt += h->len;
		if (c->side[peer].seen) {
			fi->has_credit = TRUE;
			fi->peer_buf = c->side[peer].buf_alloc;
			fi->in_flight = c->side[me].tx_cnt - c->side[peer].fwd_cnt;
			/* A peer that forwarded more than was sent leaves no sane window. */
			if ((gint32)fi->in_flight < 0) {
				fi->has_credit = FALSE;
			} else {
				fi->credit_exceeded = fi->in_flight > fi->peer_buf;
				fi->window_full = fi->in_flight == fi->peer_buf;
			}
		}
		if (h->type == TYPE_SEQPACKET) {
			if (!c->side[me].in_msg) {
				c->side[me].msg_id = next_msg_id++;
				c->side[me].in_msg = TRUE;
			}
			fi->msg_id = c->side[me].msg_id;
			if (h->flags & SEQ_EOM)
				c->side[me].in_msg = FALSE;
		}
		break;
	default:
		break;
	}
	(void)pinfo;
	return fi;
}

/* ---- payload hand-off ---- */

static void dissect_payload(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree,
			    const vhdr_t *h)
{
	guint32 lo = MIN(h->src_port, h->dst_port), hi = MAX(h->src_port, h->dst_port);
	heur_dtbl_entry_t *hdtbl;

	if (dissector_try_uint(port_table, lo, tvb, pinfo, tree))
		return;
	if (dissector_try_uint(port_table, hi, tvb, pinfo, tree))
		return;
	if (dissector_try_heuristic(heur_list, tvb, pinfo, tree, &hdtbl, NULL))
		return;
	call_data_dissector(tvb, pinfo, tree);
}

/* ---- the dissector ---- */

static int dissect_vsockmon(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, void *data)
{
	guint avail = tvb_captured_length(tvb);
	proto_item *ti, *it;
	proto_tree *vt, *ht;
	guint16 af_op, transport, hdr_len;
	guint64 src_cid, dst_cid;
	guint32 src_port, dst_port;
	vhdr_t h;
	frame_info_t *fi;
	guint payload_off, payload_len;

	(void)data;
	col_set_str(pinfo->cinfo, COL_PROTOCOL, "VSOCKMON");
	col_clear(pinfo->cinfo, COL_INFO);
	ti = proto_tree_add_item(tree, proto_vsockmon, tvb, 0, -1, ENC_NA);
	vt = proto_item_add_subtree(ti, ett_vsockmon);

	if (avail < AF_HDR_LEN) {
		expert_add_info_format(pinfo, ti, &ei_truncated,
				       "Frame of %u bytes is shorter than the %u-byte af_vsockmon_hdr",
				       avail, AF_HDR_LEN);
		col_add_fstr(pinfo->cinfo, COL_INFO, "[Truncated af_vsockmon_hdr: %u bytes]", avail);
		return avail;
	}
	proto_tree_add_item_ret_uint64(vt, hf_src_cid, tvb, 0, 8, ENC_LITTLE_ENDIAN, &src_cid);
	proto_tree_add_item_ret_uint64(vt, hf_dst_cid, tvb, 8, 8, ENC_LITTLE_ENDIAN, &dst_cid);
	proto_tree_add_item_ret_uint(vt, hf_src_port, tvb, 16, 4, ENC_LITTLE_ENDIAN, &src_port);
	proto_tree_add_item_ret_uint(vt, hf_dst_port, tvb, 20, 4, ENC_LITTLE_ENDIAN, &dst_port);
	af_op = tvb_get_letohs(tvb, 24);
	it = proto_tree_add_item(vt, hf_af_op, tvb, 24, 2, ENC_LITTLE_ENDIAN);
	if (af_op > AF_OP_PAYLOAD)
		expert_add_info_format(pinfo, it, &ei_unknown, "Unknown af_vsockmon op %u", af_op);
	transport = tvb_get_letohs(tvb, 26);
	it = proto_tree_add_item(vt, hf_transport, tvb, 26, 2, ENC_LITTLE_ENDIAN);
	if (transport > TRANSPORT_VIRTIO)
		expert_add_info_format(pinfo, it, &ei_unknown, "Unknown transport %u", transport);
	hdr_len = tvb_get_letohs(tvb, 28);
	it = proto_tree_add_item(vt, hf_hdr_len, tvb, 28, 2, ENC_LITTLE_ENDIAN);
	proto_item *ri = proto_tree_add_item(vt, hf_reserved, tvb, 30, 2, ENC_NA);
	if (tvb_get_letohs(tvb, 30) != 0)
		expert_add_info(pinfo, ri, &ei_reserved);
	proto_item_append_text(ti, ", %" PRIu64 ":%u -> %" PRIu64 ":%u, %s", src_cid, src_port,
			       dst_cid, dst_port, val_to_str_const(af_op, af_op_vals, "?"));
	col_add_fstr(pinfo->cinfo, COL_INFO, "%" PRIu64 ":%u \xe2\x86\x92 %" PRIu64 ":%u %s",
		     src_cid, src_port, dst_cid, dst_port,
		     val_to_str_const(af_op, af_op_vals, "UNKNOWN"));

	if ((guint)AF_HDR_LEN + hdr_len > avail) {
		expert_add_info_format(pinfo, it, &ei_bad_hdr_len,
				       "Transport header length %u exceeds the %u bytes left in the frame",
				       hdr_len, avail - AF_HDR_LEN);
		return avail;
	}
	if (transport != TRANSPORT_VIRTIO) {
		if (hdr_len)
			proto_tree_add_item(vt, hf_transport_hdr, tvb, AF_HDR_LEN, hdr_len, ENC_NA);
		if (avail > (guint)AF_HDR_LEN + hdr_len)
			proto_tree_add_item(vt, hf_payload, tvb, AF_HDR_LEN + hdr_len, -1, ENC_NA);
		return avail;
	}
	if (hdr_len != VIRTIO_HDR_LEN) {
		expert_add_info_format(pinfo, it, &ei_bad_hdr_len,
				       "virtio transport header length is %u, expected %u",
				       hdr_len, VIRTIO_HDR_LEN);
		if (hdr_len < VIRTIO_HDR_LEN)
			return avail;
	}

	/* virtio_vsock_hdr */
	int o = AF_HDR_LEN;
	proto_item *vi = proto_tree_add_none_format(vt, hf_transport_hdr, tvb, o, VIRTIO_HDR_LEN,
						    "virtio_vsock_hdr");
	ht = proto_item_add_subtree(vi, ett_virtio);
	proto_tree_add_item_ret_uint64(ht, hf_v_src_cid, tvb, o, 8, ENC_LITTLE_ENDIAN, &h.src_cid);
	proto_tree_add_item_ret_uint64(ht, hf_v_dst_cid, tvb, o + 8, 8, ENC_LITTLE_ENDIAN, &h.dst_cid);
	proto_tree_add_item_ret_uint(ht, hf_v_src_port, tvb, o + 16, 4, ENC_LITTLE_ENDIAN, &h.src_port);
	proto_tree_add_item_ret_uint(ht, hf_v_dst_port, tvb, o + 20, 4, ENC_LITTLE_ENDIAN, &h.dst_port);
	proto_item *li = proto_tree_add_item_ret_uint(ht, hf_v_len, tvb, o + 24, 4,
						      ENC_LITTLE_ENDIAN, &h.len);
	guint32 tmp;
	proto_item *tyi = proto_tree_add_item_ret_uint(ht, hf_v_type, tvb, o + 28, 2,
						       ENC_LITTLE_ENDIAN, &tmp);
	h.type = (guint16)tmp;
	proto_item *opi = proto_tree_add_item_ret_uint(ht, hf_v_op, tvb, o + 30, 2,
						       ENC_LITTLE_ENDIAN, &tmp);
	h.op = (guint16)tmp;
	h.flags = tvb_get_letohl(tvb, o + 32);
	proto_item *fli = proto_tree_add_item(ht, hf_v_flags, tvb, o + 32, 4, ENC_LITTLE_ENDIAN);
	proto_tree *ft = proto_item_add_subtree(fli, ett_flags);
	if (h.op == OP_SHUTDOWN) {
		proto_tree_add_item(ft, hf_v_flag_rcv, tvb, o + 32, 4, ENC_LITTLE_ENDIAN);
		proto_tree_add_item(ft, hf_v_flag_send, tvb, o + 32, 4, ENC_LITTLE_ENDIAN);
	} else if (h.type == TYPE_SEQPACKET && h.op == OP_RW) {
		proto_tree_add_item(ft, hf_v_flag_eom, tvb, o + 32, 4, ENC_LITTLE_ENDIAN);
		proto_tree_add_item(ft, hf_v_flag_eor, tvb, o + 32, 4, ENC_LITTLE_ENDIAN);
	}
	proto_tree_add_item_ret_uint(ht, hf_v_buf_alloc, tvb, o + 36, 4, ENC_LITTLE_ENDIAN,
				     &h.buf_alloc);
	proto_tree_add_item_ret_uint(ht, hf_v_fwd_cnt, tvb, o + 40, 4, ENC_LITTLE_ENDIAN,
				     &h.fwd_cnt);

	if (h.op > OP_CREDIT_REQUEST)
		expert_add_info_format(pinfo, opi, &ei_unknown, "Unknown virtio-vsock op %u", h.op);
	if (h.type != TYPE_STREAM && h.type != TYPE_SEQPACKET)
		expert_add_info_format(pinfo, tyi, &ei_unknown, "Unknown socket type %u", h.type);
	if (h.src_cid != src_cid || h.dst_cid != dst_cid || h.src_port != src_port ||
	    h.dst_port != dst_port)
		expert_add_info(pinfo, vi, &ei_mismatch);

	payload_off = AF_HDR_LEN + hdr_len;
	payload_len = avail - payload_off;
	/* Compare with the length on the wire: a snaplen cut is not a malformed frame. */
	if (h.len != tvb_reported_length(tvb) - payload_off)
		expert_add_info_format(pinfo, li, &ei_bad_len,
				       "virtio len says %u payload bytes, the frame has %u",
				       h.len, tvb_reported_length(tvb) - payload_off);
	col_append_fstr(pinfo->cinfo, COL_INFO, " %s", val_to_str(h.op, op_vals, "op %u"));
	if (h.op == OP_RW)
		col_append_fstr(pinfo->cinfo, COL_INFO, " len=%u", h.len);
	if (h.op == OP_SHUTDOWN)
		col_append_fstr(pinfo->cinfo, COL_INFO, " [%s%s]",
				(h.flags & SHUTDOWN_RCV) ? "RCV" : "",
				(h.flags & SHUTDOWN_SEND) ? ((h.flags & SHUTDOWN_RCV) ? "|SEND" : "SEND") : "");

	/* Analysis */
	fi = p_get_proto_data(wmem_file_scope(), pinfo, proto_vsockmon, 0);
	if (!fi) {
		fi = analyse(pinfo, &h);
		p_add_proto_data(wmem_file_scope(), pinfo, proto_vsockmon, 0, fi);
	}
	proto_item *si = proto_tree_add_uint(vt, hf_stream, tvb, 0, 0, fi->stream);
	proto_item_set_generated(si);
	col_append_fstr(pinfo->cinfo, COL_INFO, " [stream %u]", fi->stream);
	if (fi->has_credit) {
		proto_tree *at = proto_tree_add_subtree(vt, tvb, 0, 0, ett_analysis, NULL,
							"Credit analysis");
		it = proto_tree_add_uint(at, hf_in_flight, tvb, 0, 0, fi->in_flight);
		proto_item_set_generated(it);
		it = proto_tree_add_uint(at, hf_peer_buf_alloc, tvb, 0, 0, fi->peer_buf);
		proto_item_set_generated(it);
		it = proto_tree_add_int64(at, hf_credit, tvb, 0, 0,
					  (gint64)fi->peer_buf - (gint64)fi->in_flight);
		proto_item_set_generated(it);
	}
	if (fi->credit_exceeded)
		expert_add_info_format(pinfo, opi, &ei_credit_exceeded,
				       "Credit exhausted: %u bytes in flight, peer's buffer is %u",
				       fi->in_flight, fi->peer_buf);
	else if (fi->window_full)
		expert_add_info_format(pinfo, opi, &ei_window_full,
				       "Window full: %u bytes in flight fill the peer's buffer",
				       fi->in_flight);
	if (fi->fwd_cnt_bad)
		expert_add_info(pinfo, opi, &ei_fwd_cnt);
	if (fi->refused)
		expert_add_info(pinfo, opi, &ei_refused);
	else if (fi->reset)
		expert_add_info(pinfo, opi, &ei_reset);
	if (h.op == OP_SHUTDOWN)
		expert_add_info_format(pinfo, opi, &ei_shutdown, "Shutdown: peer will %s%s%s",
				       (h.flags & SHUTDOWN_SEND) ? "send no more data" : "",
				       (h.flags & (SHUTDOWN_SEND | SHUTDOWN_RCV)) ==
					       (SHUTDOWN_SEND | SHUTDOWN_RCV) ? " and " : "",
				       (h.flags & SHUTDOWN_RCV) ? "receive no more data" : "");
	if (fi->closed)
		expert_add_info(pinfo, opi, &ei_closed);
	if (h.op == OP_CREDIT_REQUEST)
		expert_add_info(pinfo, opi, &ei_credit_request);

	if (h.op != OP_RW || payload_len == 0 || payload_off >= avail)
		return avail;
	it = proto_tree_add_uint(vt, hf_payload_len, tvb, payload_off, payload_len, payload_len);
	proto_item_set_generated(it);
	tvbuff_t *next = tvb_new_subset_remaining(tvb, payload_off);

	if (h.type == TYPE_SEQPACKET && fi->msg_id) {
		gboolean save_frag = pinfo->fragmented;
		fragment_head *fh;
		tvbuff_t *msg;

		pinfo->fragmented = TRUE;
		fh = fragment_add_seq_next(&seq_reassembly, tvb, payload_off, pinfo, fi->msg_id,
					   NULL, payload_len, !(h.flags & SEQ_EOM));
		msg = process_reassembled_data(tvb, payload_off, pinfo, "Reassembled message",
					       fh, &seq_frag_items, NULL, vt);
		pinfo->fragmented = save_frag;
		if (msg) {
			it = proto_tree_add_uint(vt, hf_msg_len, msg, 0, 0,
						 tvb_reported_length(msg));
			proto_item_set_generated(it);
			col_append_fstr(pinfo->cinfo, COL_INFO, " [message of %u bytes]",
					tvb_reported_length(msg));
			dissect_payload(msg, pinfo, tree, &h);
		} else if (!(h.flags & SEQ_EOM)) {
			col_append_str(pinfo->cinfo, COL_INFO, " [message fragment]");
			proto_tree_add_item(vt, hf_payload, tvb, payload_off, -1, ENC_NA);
		}
		return avail;
	}
	proto_tree_add_item(vt, hf_payload, tvb, payload_off, -1, ENC_NA);
	dissect_payload(next, pinfo, tree, &h);
	return avail;
}

/* ---- Decode As on vsockmon.port ---- */

static void port_prompt(packet_info *pinfo, gchar *result)
{
	(void)pinfo;
	g_snprintf(result, MAX_DECODE_AS_PROMPT_LEN, "VSOCK port");
}

static gpointer port_value(packet_info *pinfo)
{
	(void)pinfo;
	return GUINT_TO_POINTER(0);
}

void proto_register_vsockmon(void)
{
	static hf_register_info hf[] = {
		{ &hf_src_cid, { "Source CID", "vsockmon.src_cid", FT_UINT64, BASE_DEC, NULL, 0, "af_vsockmon_hdr source context id", HFILL } },
		{ &hf_dst_cid, { "Destination CID", "vsockmon.dst_cid", FT_UINT64, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_src_port, { "Source port", "vsockmon.src_port", FT_UINT32, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_dst_port, { "Destination port", "vsockmon.dst_port", FT_UINT32, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_af_op, { "Operation", "vsockmon.op", FT_UINT16, BASE_DEC, VALS(af_op_vals), 0, "af_vsockmon_hdr op", HFILL } },
		{ &hf_transport, { "Transport", "vsockmon.transport", FT_UINT16, BASE_DEC, VALS(transport_vals), 0, NULL, HFILL } },
		{ &hf_hdr_len, { "Transport header length", "vsockmon.hdr_len", FT_UINT16, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_reserved, { "Reserved", "vsockmon.reserved", FT_BYTES, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_v_src_cid, { "Source CID", "vsockmon.virtio.src_cid", FT_UINT64, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_v_dst_cid, { "Destination CID", "vsockmon.virtio.dst_cid", FT_UINT64, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_v_src_port, { "Source port", "vsockmon.virtio.src_port", FT_UINT32, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_v_dst_port, { "Destination port", "vsockmon.virtio.dst_port", FT_UINT32, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_v_len, { "Payload length", "vsockmon.virtio.len", FT_UINT32, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_v_type, { "Socket type", "vsockmon.virtio.type", FT_UINT16, BASE_DEC, VALS(type_vals), 0, NULL, HFILL } },
		{ &hf_v_op, { "Operation", "vsockmon.virtio.op", FT_UINT16, BASE_DEC, VALS(op_vals), 0, NULL, HFILL } },
		{ &hf_v_flags, { "Flags", "vsockmon.virtio.flags", FT_UINT32, BASE_HEX, NULL, 0, NULL, HFILL } },
		{ &hf_v_flag_rcv, { "Shutdown RCV", "vsockmon.virtio.flags.shutdown_rcv", FT_BOOLEAN, 32, NULL, SHUTDOWN_RCV, "Peer will receive no more data", HFILL } },
		{ &hf_v_flag_send, { "Shutdown SEND", "vsockmon.virtio.flags.shutdown_send", FT_BOOLEAN, 32, NULL, SHUTDOWN_SEND, "Peer will send no more data", HFILL } },
		{ &hf_v_flag_eom, { "End of message", "vsockmon.virtio.flags.seq_eom", FT_BOOLEAN, 32, NULL, SEQ_EOM, "SEQ_EOM: last packet of a seqpacket message", HFILL } },
		{ &hf_v_flag_eor, { "End of record", "vsockmon.virtio.flags.seq_eor", FT_BOOLEAN, 32, NULL, SEQ_EOR, "SEQ_EOR: message sent with MSG_EOR", HFILL } },
		{ &hf_v_buf_alloc, { "Buffer allocation", "vsockmon.virtio.buf_alloc", FT_UINT32, BASE_DEC, NULL, 0, "Sender's receive buffer size", HFILL } },
		{ &hf_v_fwd_cnt, { "Forward count", "vsockmon.virtio.fwd_cnt", FT_UINT32, BASE_DEC, NULL, 0, "Bytes the sender has consumed from its receive buffer", HFILL } },
		{ &hf_transport_hdr, { "Transport header", "vsockmon.transport_hdr", FT_NONE, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_payload, { "Payload", "vsockmon.payload", FT_BYTES, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_payload_len, { "Payload length", "vsockmon.payload_len", FT_UINT32, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_stream, { "Stream index", "vsockmon.stream", FT_UINT32, BASE_DEC, NULL, 0, "Connection number in this capture", HFILL } },
		{ &hf_in_flight, { "Bytes in flight", "vsockmon.analysis.in_flight", FT_UINT32, BASE_DEC, NULL, 0, "Sent by this side and not yet forwarded by the peer", HFILL } },
		{ &hf_peer_buf_alloc, { "Peer buffer", "vsockmon.analysis.peer_buf_alloc", FT_UINT32, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_credit, { "Credit left", "vsockmon.analysis.credit", FT_INT64, BASE_DEC, NULL, 0, "Peer buffer minus bytes in flight", HFILL } },
		{ &hf_msg_len, { "Message length", "vsockmon.msg_len", FT_UINT32, BASE_DEC, NULL, 0, "Length of the reassembled seqpacket message", HFILL } },
		{ &hf_fragments, { "Message fragments", "vsockmon.fragments", FT_NONE, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_fragment, { "Message fragment", "vsockmon.fragment", FT_FRAMENUM, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_fragment_overlap, { "Fragment overlap", "vsockmon.fragment.overlap", FT_BOOLEAN, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_fragment_overlap_conflict, { "Conflicting data in fragment overlap", "vsockmon.fragment.overlap.conflict", FT_BOOLEAN, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_fragment_multiple_tails, { "Multiple tail fragments", "vsockmon.fragment.multiple_tails", FT_BOOLEAN, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_fragment_too_long, { "Fragment too long", "vsockmon.fragment.too_long_fragment", FT_BOOLEAN, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_fragment_error, { "Defragmentation error", "vsockmon.fragment.error", FT_FRAMENUM, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_fragment_count, { "Fragment count", "vsockmon.fragment.count", FT_UINT32, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_reassembled_in, { "Reassembled in", "vsockmon.reassembled.in", FT_FRAMENUM, BASE_NONE, NULL, 0, NULL, HFILL } },
		{ &hf_reassembled_length, { "Reassembled length", "vsockmon.reassembled.length", FT_UINT32, BASE_DEC, NULL, 0, NULL, HFILL } },
		{ &hf_reassembled_data, { "Reassembled data", "vsockmon.reassembled.data", FT_BYTES, BASE_NONE, NULL, 0, NULL, HFILL } },
	};
	static gint *ett[] = { &ett_vsockmon, &ett_virtio, &ett_flags, &ett_analysis,
			       &ett_fragment, &ett_fragments };
	static ei_register_info ei[] = {
		{ &ei_truncated, { "vsockmon.truncated", PI_MALFORMED, PI_ERROR, "Truncated af_vsockmon_hdr", EXPFILL } },
		{ &ei_bad_hdr_len, { "vsockmon.bad_hdr_len", PI_MALFORMED, PI_ERROR, "Bad transport header length", EXPFILL } },
		{ &ei_bad_len, { "vsockmon.bad_len", PI_MALFORMED, PI_ERROR, "Payload length does not match the frame", EXPFILL } },
		{ &ei_mismatch, { "vsockmon.hdr_mismatch", PI_PROTOCOL, PI_WARN, "af_vsockmon_hdr and virtio_vsock_hdr addresses differ", EXPFILL } },
		{ &ei_unknown, { "vsockmon.unknown_value", PI_PROTOCOL, PI_WARN, "Unknown value", EXPFILL } },
		{ &ei_reserved, { "vsockmon.reserved_nonzero", PI_PROTOCOL, PI_WARN, "Reserved bytes are not zero", EXPFILL } },
		{ &ei_reset, { "vsockmon.reset", PI_SEQUENCE, PI_NOTE, "Connection reset (RST)", EXPFILL } },
		{ &ei_refused, { "vsockmon.refused", PI_SEQUENCE, PI_WARN, "Connection refused: RST in reply to REQUEST", EXPFILL } },
		{ &ei_shutdown, { "vsockmon.shutdown", PI_SEQUENCE, PI_CHAT, "Shutdown", EXPFILL } },
		{ &ei_closed, { "vsockmon.closed", PI_SEQUENCE, PI_CHAT, "Both sides have shut down sending", EXPFILL } },
		{ &ei_window_full, { "vsockmon.window_full", PI_SEQUENCE, PI_WARN, "Window full", EXPFILL } },
		{ &ei_credit_exceeded, { "vsockmon.credit_exhausted", PI_SEQUENCE, PI_ERROR, "Credit exhausted: sender exceeded the peer's buffer", EXPFILL } },
		{ &ei_credit_request, { "vsockmon.credit_request", PI_SEQUENCE, PI_CHAT, "Credit request", EXPFILL } },
		{ &ei_fwd_cnt, { "vsockmon.fwd_cnt_ahead", PI_PROTOCOL, PI_WARN, "fwd_cnt counts more bytes than the peer sent", EXPFILL } },
	};
	static build_valid_func port_da_build_value[1] = { port_value };
	static decode_as_value_t port_da_values = { port_prompt, 1, port_da_build_value };
	static decode_as_t port_da = { "vsockmon", "vsockmon.port", 1, 0, &port_da_values,
				       NULL, NULL, decode_as_default_populate_list,
				       decode_as_default_reset, decode_as_default_change, NULL };
	expert_module_t *em;

	proto_vsockmon = proto_register_protocol("Linux AF_VSOCK monitor (qemu-slim)",
						 "VSOCKMON", "vsockmon");
	proto_register_field_array(proto_vsockmon, hf, array_length(hf));
	proto_register_subtree_array(ett, array_length(ett));
	em = expert_register_protocol(proto_vsockmon);
	expert_register_field_array(em, ei, array_length(ei));
	vsockmon_handle = register_dissector("vsockmon", dissect_vsockmon, proto_vsockmon);
	port_table = register_dissector_table("vsockmon.port", "VSOCK port", proto_vsockmon,
					      FT_UINT32, BASE_DEC);
	heur_list = register_heur_dissector_list("vsockmon", proto_vsockmon);
	register_decode_as(&port_da);
	reassembly_table_register(&seq_reassembly, &addresses_reassembly_table_functions);
	register_init_routine(vsockmon_init);
}

void proto_reg_handoff_vsockmon(void)
{
	/* Payload dissectors offered by Decode As on a VSOCK port. */
	static const char *const payloads[] = { "data-text-lines", "json", "http", "tls",
						"ssh", NULL };

	/* Plugins' handoffs run after the built-in ones: this takes LINKTYPE_VSOCK over. */
	dissector_add_uint("wtap_encap", WTAP_ENCAP_VSOCK, vsockmon_handle);
	for (int i = 0; payloads[i]; i++) {
		dissector_handle_t h = find_dissector(payloads[i]);

		if (h)
			dissector_add_for_decode_as("vsockmon.port", h);
	}
}
