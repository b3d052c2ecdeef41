// What every rank tells every other rank at init (all-gathered by the bootstrap): who it is,
// where it lives, and how its transports can be reached. Plain old data: it goes on the wire.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

#include "topology/topo_card.h"

namespace chorus {

// How many settings the ranks of a communicator must agree on (src/core/knob_agreement.cpp).
constexpr int kAgreedKnobs = 13;

// A socket address small enough to put on the wire (IPv4 or IPv6).
struct WireAddr {
  uint16_t family = 0;  // AF_INET or AF_INET6
  uint16_t port = 0;    // host byte order
  uint8_t addr[16] = {};
};

struct PeerCard {
  int32_t rank = -1;
  int32_t pid = 0;
  uint64_t hostHash = 0;  // equal for ranks that share a host (and so may use shm)
  uint64_t pidNamespace = 0;  // equal when pids mean the same process to both ranks
  char hostname[64] = {};
  WireAddr bootstrapAddr;  // the rank's bootstrap listener (out-of-band messages)
  WireAddr tcpAddr;        // the TCP transport's data listener
  WireAddr healthAddr;      // the rank's health service (src/health/health_service.h)
  uint32_t transports = 0; // bit (1 << TransportId) per transport this rank has (transports/transport.h)
  // Hashes of the settings every rank must share (src/core/knob_agreement.h).
  uint32_t knobHash[kAgreedKnobs] = {};
  TopoCard topo;           // binding, NICs, accelerators (src/topology/topo_card.h)
};

}  // namespace chorus
