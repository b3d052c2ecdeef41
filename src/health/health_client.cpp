#include "health/health_client.h"

#include "bootstrap/socket.h"
#include "base/error.h"

namespace chorus {

HealthAnswer healthCall(const WireAddr& addr, const HealthRequest& req, const void* payload, size_t bytes, Deadline deadline) {
  // The service was up when its address was published: a refusal means its owner is gone.
  Fd fd = connectTo(addr, deadline, /*retryRefused=*/false);
  HealthRequest r = req;
  r.payloadBytes = static_cast<uint32_t>(bytes);
  sendAll(fd.get(), &r, sizeof r, deadline);
  if (bytes) sendAll(fd.get(), payload, bytes, deadline);
  HealthReply reply;
  recvAll(fd.get(), &reply, sizeof reply, deadline);
  if (reply.code > static_cast<uint32_t>(HealthStatusCode::Refused) || reply.bytes > kHealthMaxPayload)
    CHORUS_THROW(chorusInternalError, "malformed health reply from %s (code %u, %u bytes)", addrToString(addr).c_str(), reply.code,
                 reply.bytes);
  HealthAnswer answer;
  answer.code = static_cast<HealthStatusCode>(reply.code);
  answer.payload.resize(reply.bytes);
  if (reply.bytes) recvAll(fd.get(), answer.payload.data(), reply.bytes, deadline);
  return answer;
}

}  // namespace chorus
