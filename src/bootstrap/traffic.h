// What one rank's bootstrap has put on the wire and taken off it, counted always (a few
// relaxed atomic adds per message): the check-in at the root, the card all-gather, and every
// later out-of-band message (allgather, barrier, transport setup, split). CHORUS_DEBUG=INFO
// prints it in the init and connect lines (docs/ENV.md).
#pragma once

#include <cstdint>
#include <string>

namespace chorus {

struct BootstrapTraffic {
  // Messages: the check-in and the root's answer count one each; every Oob message one, sent
  // when posted, received when a recv takes it (not when it arrives early).
  uint64_t msgsSent = 0;
  uint64_t msgsRecv = 0;
  // Bytes on the wire above TCP: records, frame headers, the Auth that opens a connection (an
  // accepted one's when it arrives).
  uint64_t bytesSent = 0;
  uint64_t bytesRecv = 0;
  // TCP connections this rank opened (to the root and to peers) and accepted from peers.
  uint64_t connsOpened = 0;
  uint64_t connsAccepted = 0;

  BootstrapTraffic operator-(const BootstrapTraffic& o) const {
    return {msgsSent - o.msgsSent,   msgsRecv - o.msgsRecv,         bytesSent - o.bytesSent,
            bytesRecv - o.bytesRecv, connsOpened - o.connsOpened, connsAccepted - o.connsAccepted};
  }
};

// "messages 11 out / 11 in, bytes 3480 / 3416, connections 6 opened / 5 accepted" (for logs).
std::string describeTraffic(const BootstrapTraffic& t);

}  // namespace chorus
