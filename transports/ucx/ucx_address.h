// Which IP address the UCX listener binds and which one its handle advertises.
#pragma once

#include <sys/socket.h>

#include "chorus/net_plugin.h"
#include "transports/ucx/ucx_comm.h"

namespace chorus::ucxnet {

struct ListenAddress {
  sockaddr_storage bind{};       // what the ucp_listener binds (port 0: the kernel picks one)
  socklen_t bindLen = 0;
  sockaddr_storage advertise{};  // the address a peer connects to (the port is filled in later)
  socklen_t advertiseLen = 0;
  char ifname[64] = {};          // the interface the advertised address belongs to (for logs)
};

// 1. CHORUS_SOCKET_IFNAME set (an interface name prefix, as for Chorus's TCP transport): bind and
//    advertise that interface's first IPv4 address, else its first usable (non-link-local) IPv6
//    one; a prefix that matches nothing is chorusNetInvalidUsage.
// 2. Else, when UCX_NET_DEVICES names a network interface (e.g. "eth1"; RDMA ports like "mlx5_0:1"
//    are skipped) that has an address: that address (UCX's connection manager refuses addresses
//    on devices UCX_NET_DEVICES leaves out).
// 3. Else bind 0.0.0.0 and advertise the first up, non-loopback IPv4 address, else 127.0.0.1.
chorusNetResult_t chooseListenAddress(ListenAddress* out);

// The handle's address as a sockaddr for ucp_ep_create; false when the handle is malformed.
bool handleToSockaddr(const UcxHandle& h, sockaddr_storage* ss, socklen_t* len);
// "ip:port" of a handle, for logs.
void handleToString(const UcxHandle& h, char* buf, size_t n);

}  // namespace chorus::ucxnet
