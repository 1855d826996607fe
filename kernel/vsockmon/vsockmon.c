// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vsockmon: a network device that shows every AF_VSOCK packet to packet sockets.
 * `ip link add type vsockmon` creates one; while it is up it is a vsock core tap.
 */
#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/if_arp.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <net/af_vsock.h>
#include <net/rtnetlink.h>
#include <uapi/linux/vsockmon.h>

#define VSOCKMON_KIND "vsockmon"
/*
 * Not a limit (frames reach 32 + 44 + 64 KiB): capture tools size their buffers from the
 * MTU, so use the in-tree driver's value (64 KiB payload + our header).
 */
#define VSOCKMON_MTU (64 * 1024 + sizeof(struct af_vsockmon_hdr))

struct vsockmon {
	struct vsock_tap tap;
};

/*
 * The vsock core hands us a frame it built: af_vsockmon_hdr, hdr->len bytes of
 * transport header, then the payload. Packet sockets have already seen it by the time
 * we run (dev_queue_xmit delivers to taps first); here we only count it. A frame too
 * short for the header it announces counts as a drop: that would be a core bug.
 */
static netdev_tx_t vsockmon_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct af_vsockmon_hdr buf;
	const struct af_vsockmon_hdr *hdr;

	hdr = skb_header_pointer(skb, 0, sizeof(buf), &buf);
	if (!hdr || skb->len < sizeof(*hdr) + le16_to_cpu(hdr->len))
		dev_core_stats_rx_dropped_inc(dev);
	else
		dev_lstats_add(dev, skb->len);
	consume_skb(skb);
	return NETDEV_TX_OK;
}

static int vsockmon_init(struct net_device *dev)
{
	dev->lstats = netdev_alloc_pcpu_stats(struct pcpu_lstats);
	return dev->lstats ? 0 : -ENOMEM;
}

static void vsockmon_uninit(struct net_device *dev)
{
	free_percpu(dev->lstats);
	dev->lstats = NULL;
}

/* Up: join the vsock core's tap list (it takes a reference on this module). */
static int vsockmon_open(struct net_device *dev)
{
	struct vsockmon *vm = netdev_priv(dev);

	vm->tap.dev = dev;
	vm->tap.module = THIS_MODULE;
	return vsock_add_tap(&vm->tap);
}

/* Down: leave it; vsock_remove_tap waits for deliveries in flight (synchronize_net). */
static int vsockmon_close(struct net_device *dev)
{
	struct vsockmon *vm = netdev_priv(dev);

	return vsock_remove_tap(&vm->tap);
}

/* Frames come to us from the vsock core, so they count as received by the monitor. */
static void vsockmon_get_stats64(struct net_device *dev,
				 struct rtnl_link_stats64 *stats)
{
	dev_lstats_read(dev, &stats->rx_packets, &stats->rx_bytes);
	stats->tx_packets = 0;
	stats->tx_bytes = 0;
}

static const struct net_device_ops vsockmon_ops = {
	.ndo_init = vsockmon_init,
	.ndo_uninit = vsockmon_uninit,
	.ndo_open = vsockmon_open,
	.ndo_stop = vsockmon_close,
	.ndo_start_xmit = vsockmon_xmit,
	.ndo_get_stats64 = vsockmon_get_stats64,
};

static u32 vsockmon_get_link(struct net_device *dev)
{
	return 1;
}

static const struct ethtool_ops vsockmon_ethtool_ops = {
	.get_link = vsockmon_get_link,
};

static void vsockmon_setup(struct net_device *dev)
{
	dev->type = ARPHRD_VSOCKMON;
	dev->priv_flags |= IFF_NO_QUEUE;
	dev->flags = IFF_NOARP;
	dev->netdev_ops = &vsockmon_ops;
	dev->ethtool_ops = &vsockmon_ethtool_ops;
	dev->needs_free_netdev = true;
	dev->features = NETIF_F_SG | NETIF_F_FRAGLIST | NETIF_F_HIGHDMA |
			NETIF_F_LLTX;
	dev->mtu = VSOCKMON_MTU;
	dev->min_mtu = sizeof(struct af_vsockmon_hdr);
	dev->max_mtu = 0;	/* no upper bound: the MTU limits nothing here */
}

/* A monitor has no link-layer address: refuse one rather than ignore it. */
static int vsockmon_validate(struct nlattr *tb[], struct nlattr *data[],
			     struct netlink_ext_ack *extack)
{
	if (tb[IFLA_ADDRESS]) {
		NL_SET_ERR_MSG(extack, "vsockmon devices have no link-layer address");
		return -EINVAL;
	}
	return 0;
}

static struct rtnl_link_ops vsockmon_link_ops __read_mostly = {
	.kind = VSOCKMON_KIND,
	.priv_size = sizeof(struct vsockmon),
	.setup = vsockmon_setup,
	.validate = vsockmon_validate,
};

static int __init vsockmon_module_init(void)
{
	return rtnl_link_register(&vsockmon_link_ops);
}

/* Deletes every remaining vsockmon device; none is up, or we would still be pinned. */
static void __exit vsockmon_module_exit(void)
{
	rtnl_link_unregister(&vsockmon_link_ops);
}

module_init(vsockmon_module_init);
module_exit(vsockmon_module_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("qemu-slim developers");
MODULE_DESCRIPTION("AF_VSOCK packet capture device (qemu-slim out-of-tree build)");
MODULE_VERSION("1.0.0-qs");
MODULE_ALIAS_RTNL_LINK(VSOCKMON_KIND);
