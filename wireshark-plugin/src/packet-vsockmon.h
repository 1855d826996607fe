/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The vsockmon dissector: AF_VSOCK frames of LINKTYPE_VSOCK (af_vsockmon_hdr +
 * virtio_vsock_hdr + payload) with conversation, credit and seqpacket analysis.
 */
#ifndef PACKET_VSOCKMON_H
#define PACKET_VSOCKMON_H

void proto_register_vsockmon(void);
void proto_reg_handoff_vsockmon(void);

#endif
