// The Hello that opens every socket to the TCP transport's data listener (tcp_wire.h), checked
// by helloProblem (transports/tcp/tcp_hello.h) as the listener does. Checks: a hello is
// accepted only with the communicator's secret and id, addressed to this rank, from a lower
// rank, with this rank's socket count and a socket index in range (so the slot it takes
// exists); the refusal text is never empty.
//
// Input: a flags byte (bit 0: make the secret and communicator id right), then hellos of 56
// bytes each, as they would arrive on successive sockets.
#include <map>
#include <utility>
#include <vector>

#include "fuzz_util.h"
#include "transports/tcp/tcp_hello.h"

using namespace chorus;
using namespace chorus::tcp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  HelloExpect expect;
  expect.secret[0] = 0x0123456789abcdefull;
  expect.secret[1] = 0xfedcba9876543210ull;
  expect.commId = 0x5eed;
  expect.rank = 3;
  expect.numSockets = 4;
  fuzz::Reader in(data, size);
  uint8_t flags = in.byte();
  // The listener's slots: (peer, connect ordinal) -> one socket per index.
  std::map<std::pair<int, uint64_t>, std::vector<bool>> slots;
  while (in.left() >= sizeof(Hello)) {
    Hello h = in.pod<Hello>();
    if (flags & 1) {
      h.magic = kHelloMagic;
      h.secret[0] = expect.secret[0];
      h.secret[1] = expect.secret[1];
      h.commId = expect.commId;
    }
    std::string problem = helloProblem(h, expect);
    if (!problem.empty()) continue;
    FUZZ_CHECK(h.magic == kHelloMagic && h.secret[0] == expect.secret[0] && h.secret[1] == expect.secret[1] &&
               h.commId == expect.commId);
    FUZZ_CHECK(h.toRank == expect.rank && h.fromRank >= 0 && h.fromRank < expect.rank);
    FUZZ_CHECK(h.numSockets == expect.numSockets);
    auto& s = slots[{h.fromRank, h.ordinal}];
    s.resize(static_cast<size_t>(expect.numSockets));
    FUZZ_CHECK(h.socketIndex >= 0 && static_cast<size_t>(h.socketIndex) < s.size());
    s[static_cast<size_t>(h.socketIndex)] = true;
  }
  return 0;
}
