// helloProblem (tcp_hello.h).
#include "transports/tcp/tcp_hello.h"

#include "base/error.h"

namespace chorus::tcp {

std::string helloProblem(const Hello& h, const HelloExpect& e) {
  if (h.magic != kHelloMagic) return "not a Chorus TCP hello";
  if (h.secret[0] != e.secret[0] || h.secret[1] != e.secret[1]) return "wrong secret";
  if (h.commId != e.commId)
    return format("hello for another communicator (%#llx)", static_cast<unsigned long long>(h.commId));
  if (h.toRank != e.rank) return format("hello addressed to rank %d", h.toRank);
  if (h.fromRank < 0 || h.fromRank >= e.rank)
    return format("hello from rank %d, which should not dial rank %d", h.fromRank, e.rank);
  if (h.numSockets != e.numSockets)
    return format("peer uses %d sockets per pair, this rank %d", h.numSockets, e.numSockets);
  if (h.socketIndex < 0 || h.socketIndex >= e.numSockets) return format("socket index %d out of range", h.socketIndex);
  return "";
}

}  // namespace chorus::tcp
