// The rank's side of the check-in: the root's answer (a wire::Reply and its body) as
// SocketBootstrap::checkIn reads it (rootAnswerBodyBytes, parseRootAnswer in
// src/bootstrap/bootstrap.h). Whatever a broken or hostile root sends, the rank reads a
// bounded body and either gets the addresses it needs or a typed error.
//
// Input: 4 bytes (nranks = 1 + u16 % 4096, rank = u16 % nranks), a 16-byte Reply, then the body
// as received (any length; the real code reads exactly rootAnswerBodyBytes of it).
#include <chorus/chorus.h>

#include "bootstrap/bootstrap.h"
#include "bootstrap/wire.h"
#include "base/error.h"
#include "fuzz_util.h"

using namespace chorus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Reader in(data, size);
  const int nranks = 1 + in.pod<uint16_t>() % 4096;
  const int rank = in.pod<uint16_t>() % nranks;
  wire::Reply reply = in.pod<wire::Reply>();
  std::string body = in.rest();
  size_t want = 0;
  try {
    want = rootAnswerBodyBytes(reply, nranks);
  } catch (const Error& e) {
    return 0;  // the rank stops reading: a malformed header
  }
  FUZZ_CHECK(want <= (1u << 16) || want == static_cast<size_t>(wire::log2Ceil(nranks)) * sizeof(wire::PeerAddr));
  // What the socket delivered: the body, cut to what the rank reads (a short one is a closed
  // connection in the real code; here it must be refused too).
  size_t got = std::min(body.size(), want);
  try {
    std::vector<wire::PeerAddr> addrs = parseRootAnswer(reply, body.data(), got, rank, nranks);
    FUZZ_CHECK(reply.code == chorusSuccess);
    FUZZ_CHECK(static_cast<int>(addrs.size()) == wire::log2Ceil(nranks));
    for (size_t k = 0; k < addrs.size(); ++k) {
      FUZZ_CHECK(addrs[k].rank == wire::bruckSendPeer(rank, nranks, 1 << k));
      FUZZ_CHECK(addrs[k].addr.family == AF_INET || addrs[k].addr.family == AF_INET6);
    }
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() != chorusSuccess);
    if (reply.code != chorusSuccess && got == want)
      FUZZ_CHECK(e.code() == reply.code || (e.code() == chorusInternalError));
    // The root's text is passed on printable only.
    for (const char* c = e.what(); *c; ++c) FUZZ_CHECK(*c == '\n' || (*c >= ' ' && *c <= '~'));
  }
  return 0;
}
