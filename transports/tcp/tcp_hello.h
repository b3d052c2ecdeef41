// The check the TCP transport's data listener makes on the Hello that opens every socket
// (tcp_wire.h), apart from the socket code: tcp_transport.cpp and the fuzz target
// (tests/fuzz/fuzz_tcp_hello.cpp) call the same function.
#pragma once

#include <cstdint>
#include <string>

#include "transports/tcp/tcp_wire.h"

namespace chorus::tcp {

// What a listener of rank `rank` accepts: the communicator's secret and id, and its own
// number of sockets per pair.
struct HelloExpect {
  uint64_t secret[2] = {0, 0};
  uint64_t commId = 0;
  int rank = -1;
  int numSockets = 0;
};

// "" when the hello is acceptable, else why not (for the log line that closes the socket).
std::string helloProblem(const Hello& h, const HelloExpect& expect);

}  // namespace chorus::tcp
