// The root rendezvous' bookkeeping (RootRendezvous, src/bootstrap/root.h) under arbitrary
// check-ins: every connection is answered at most once, every answer is well formed, and a
// success answer is exactly what a correct rank accepts (parseRootAnswer).
//
// Input: a sequence of events, each one op byte then its data:
//   op % 4 == 0: a check-in of 64 raw bytes (usually refused: wrong magic or secret);
//   op % 4 == 1: a check-in whose magic, version, secret and communicator id are made right,
//                the rest (rank, nranks, listener address) from the next 64 bytes;
//   op % 4 == 2: the deadline passes;
//   op % 4 == 3: the service fails (as on an accept error).
// After each event a complete rendezvous is finished, as the service does.
#include <chorus/chorus.h>

#include <map>
#include <set>

#include "bootstrap/bootstrap.h"
#include "bootstrap/root.h"
#include "bootstrap/wire.h"
#include "base/error.h"
#include "fuzz_util.h"

using namespace chorus;

namespace {

UniqueIdData fuzzId() {
  UniqueIdData id;
  id.root.family = AF_INET;
  id.root.port = 4242;
  id.root.addr[0] = 127;
  id.root.addr[3] = 1;
  id.secret[0] = 0x0123456789abcdefull;
  id.secret[1] = 0xfedcba9876543210ull;
  id.commId = 0x5eed;
  return id;
}

struct Checker {
  std::map<int, wire::Hello> hellos;  // by connection
  std::set<int> answered;
  int successes = 0;

  void onAnswer(int conn, int rank, const std::string& bytes) {
    FUZZ_CHECK(answered.insert(conn).second);  // at most one answer per connection
    auto it = hellos.find(conn);
    FUZZ_CHECK(it != hellos.end());
    FUZZ_CHECK(it->second.rank == rank);
    FUZZ_CHECK(bytes.size() >= sizeof(wire::Reply));
    wire::Reply reply;
    memcpy(&reply, bytes.data(), sizeof(reply));
    FUZZ_CHECK(reply.magic == wire::kReplyMagic);
    const char* body = bytes.data() + sizeof(reply);
    size_t bodyBytes = bytes.size() - sizeof(reply);
    if (reply.code != chorusSuccess) {
      FUZZ_CHECK(reply.textLen == bodyBytes);
      FUZZ_CHECK(reply.code > chorusSuccess && reply.code < chorusNumResults);
      return;
    }
    // A success answer goes only to a rank whose check-in was consistent: it must parse.
    const wire::Hello& h = it->second;
    FUZZ_CHECK(h.nranks >= 1 && h.rank >= 0 && h.rank < h.nranks);
    std::vector<wire::PeerAddr> addrs = parseRootAnswer(reply, body, bodyBytes, h.rank, h.nranks);
    // The address given for each peer is the one that peer checked in with.
    for (const wire::PeerAddr& pa : addrs) {
      bool found = false;
      for (const auto& [c, other] : hellos)
        found = found || (other.rank == pa.rank && memcmp(&other.listenAddr, &pa.addr, sizeof(WireAddr)) == 0);
      FUZZ_CHECK(found);
    }
    ++successes;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const UniqueIdData id = fuzzId();
  fuzz::Reader in(data, size);
  Checker check;
  RootRendezvous root(id, [&](int conn, const std::string&, int rank, const std::string& bytes) {
    check.onAnswer(conn, rank, bytes);
  });
  int nextConn = 0;
  while (!in.empty() && !root.finished()) {
    uint8_t op = in.byte();
    try {
      if (op % 4 <= 1) {
        wire::Hello h = in.pod<wire::Hello>();
        if (op % 4 == 1) {
          h.magic = wire::kHelloMagic;
          h.version = wire::kVersion;
          h.secret[0] = id.secret[0];
          h.secret[1] = id.secret[1];
          h.commId = id.commId;
        }
        int conn = nextConn++;
        if (RootRendezvous::refusal(h, id)) continue;  // closed unanswered
        check.hellos[conn] = h;
        root.onCheckIn(conn, "fuzz", h);
      } else if (op % 4 == 2) {
        root.onDeadline(1.0);
        if (!root.failed()) break;  // nobody checked in: the service just ends
      } else {
        root.fail(chorusSystemError, "fuzz: accept failed");
      }
      if (root.complete()) {
        root.finish();
        FUZZ_CHECK(check.successes == root.nranks());
        break;
      }
    } catch (const Error& e) {
      // The bookkeeping itself never throws on input; an Error here is a bug.
      fprintf(stderr, "unexpected error: %s\n", e.what());
      abort();
    }
  }
  // A rendezvous that failed or finished has answered every check-in; one still waiting, none.
  const bool over = root.failed() || check.successes > 0;
  for (const auto& [conn, h] : check.hellos) FUZZ_CHECK(check.answered.count(conn) == (over ? 1u : 0u));
  return 0;
}
