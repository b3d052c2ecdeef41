// Which provider and domains the libfabric plugin uses (fi_getinfo).
#pragma once

#include <rdma/fabric.h>

#include <vector>

namespace chorus::ofi {

// The fi_info entries to open as devices, one per domain of the chosen provider, each a copy
// the caller owns (fi_freeinfo). Empty on failure, with the reason logged.
//
// Provider: CHORUS_OFI_PROVIDER if set (the prov_name hint, e.g. "tcp;ofi_rxm", "shm"); else
// libfabric's own FI_PROVIDER filter applies; else the first provider fi_getinfo lists.
// Domains: every domain of that provider, non-loopback first; CHORUS_OFI_DOMAIN (a comma
// separated list of domain names) keeps only those; for socket providers (tcp, sockets, udp)
// CHORUS_SOCKET_IFNAME (an interface name prefix, as for Chorus's TCP transport) keeps the
// domains it matches when it matches any.
std::vector<fi_info*> discoverDevices();

}  // namespace chorus::ofi
