// One request to a rank's health service (health_service.h) and its reply.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/deadline.h"
#include "bootstrap/peer_card.h"
#include "health/health_wire.h"

namespace chorus {

struct HealthAnswer {
  HealthStatusCode code = HealthStatusCode::Ok;
  std::vector<uint8_t> payload;
};

// Connects to the service at addr, sends req (+ payload), returns its reply. Throws chorus::Error:
// chorusRemoteError when nobody listens there any more (the rank died or destroyed its
// communicator) or the connection breaks, chorusTimeout at the deadline (e.g. a stopped rank,
// whose kernel still accepts the connection), chorusInternalError on a malformed reply.
HealthAnswer healthCall(const WireAddr& addr, const HealthRequest& req, const void* payload, size_t bytes, Deadline deadline);

// The largest reply or request payload accepted: the status of every rank of the largest
// communicator the gather serves, with room to spare.
constexpr size_t kHealthMaxPayload = 64u << 20;

}  // namespace chorus
