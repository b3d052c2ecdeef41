// The receiving end of an out-of-band connection (OobInbound, src/bootstrap/oob_sockets.h):
// an Auth record, then frames, arriving in pieces of any size. Checks: a wrong Auth is
// rejected before any frame is read, a rejected stream takes no more bytes, every message has
// the length its header announced, and the memory held for a message never runs more than
// OobInbound::kBodyStep ahead of the bytes that arrived (a header announcing 4 GiB costs
// nothing until they come).
//
// Input: one flags byte (bit 0: replace the first 40 bytes by a valid Auth, so that the fuzzer
// spends its time on the frames; bits 1-7: seed of the piece sizes), then the stream.
#include <chorus/chorus.h>

#include "bootstrap/oob_sockets.h"
#include "bootstrap/wire.h"
#include "base/error.h"
#include "fuzz_util.h"

using namespace chorus;

namespace {

constexpr int kRank = 1;
constexpr int kNranks = 4;

UniqueIdData fuzzId() {
  UniqueIdData id;
  id.secret[0] = 0x0123456789abcdefull;
  id.secret[1] = 0xfedcba9876543210ull;
  id.commId = 0x5eed;
  return id;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const UniqueIdData id = fuzzId();
  fuzz::Reader in(data, size);
  uint8_t flags = in.byte();
  std::string stream = in.rest();
  if ((flags & 1) && stream.size() >= sizeof(wire::Auth)) {
    wire::Auth a;
    a.secret[0] = id.secret[0];
    a.secret[1] = id.secret[1];
    a.commId = id.commId;
    a.fromRank = 2;
    a.toRank = kRank;
    memcpy(stream.data(), &a, sizeof(a));
  }
  OobInbound conn(id, kRank, kNranks);
  uint32_t seed = flags >> 1;
  size_t at = 0;
  bool authenticated = false;
  while (at < stream.size()) {
    auto [dst, room] = conn.space();
    if (conn.rejected()) {
      FUZZ_CHECK(dst == nullptr && room == 0);
      break;
    }
    FUZZ_CHECK(dst != nullptr && room > 0);
    FUZZ_CHECK(room <= OobInbound::kBodyStep);
    seed = seed * 1103515245u + 12345u;
    size_t piece = std::min<size_t>({room, stream.size() - at, 1 + (seed >> 16) % 97});
    memcpy(dst, stream.data() + at, piece);
    at += piece;
    OobInbound::Event ev = conn.received(piece);
    switch (ev) {
      case OobInbound::Event::None: break;
      case OobInbound::Event::Authenticated:
        FUZZ_CHECK(!authenticated);
        FUZZ_CHECK(at == sizeof(wire::Auth));
        FUZZ_CHECK(conn.peer() >= 0 && conn.peer() < kNranks);
        authenticated = true;
        break;
      case OobInbound::Event::Message: {
        FUZZ_CHECK(authenticated);
        // The header is the 16 bytes before this message's payload: find it again.
        std::vector<char> body = conn.takeBody();
        wire::FrameHeader h;
        FUZZ_CHECK(at >= sizeof(h) + body.size());
        memcpy(&h, stream.data() + at - body.size() - sizeof(h), sizeof(h));
        FUZZ_CHECK(h.bytes == body.size());
        FUZZ_CHECK(h.tag == conn.tag());
        FUZZ_CHECK(body.empty() || memcmp(body.data(), stream.data() + at - body.size(), body.size()) == 0);
        break;
      }
      case OobInbound::Event::Rejected:
        FUZZ_CHECK(!conn.why().empty());
        break;
    }
  }
  // Before the Auth is complete nobody is a peer; after a rejection nothing more is read.
  if (!authenticated) FUZZ_CHECK(conn.peer() < 0);
  return 0;
}
