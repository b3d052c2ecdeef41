// Which ranks share a host (and so may use shared memory): a hash of the host name, the
// kernel's boot id and the network namespace, or CHORUS_HOSTID when set. Ranks in different
// network namespaces count as different hosts, so namespace-emulated clusters behave like
// real ones.
#pragma once

#include <cstdint>
#include <string>

namespace chorus {

uint64_t hostHash(const std::string& overrideId);
std::string hostName();
// The pid namespace of the calling process (inode of /proc/self/ns/pid; 0 if unknown).
uint64_t pidNamespaceId();

}  // namespace chorus
