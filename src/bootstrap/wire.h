// Private to src/bootstrap: the records the bootstrap puts on the wire. Fixed-size, plain old
// data, sent in host byte order (every rank of a communicator runs the same build on the same
// architecture; the version field catches builds that disagree on the layout).
#pragma once

#include <cstdint>

#include "bootstrap/peer_card.h"

namespace chorus::wire {

constexpr uint32_t kHelloMagic = 0x43484f48;  // "CHOH": rank -> root check-in
constexpr uint32_t kReplyMagic = 0x43484f52;  // "CHOR": root -> rank answer
constexpr uint32_t kAuthMagic = 0x43484f41;   // "CHOA": first bytes of an Oob connection
constexpr uint32_t kVersion = 1;

// Rank -> root, once, right after connecting.
struct Hello {
  uint32_t magic = kHelloMagic;
  uint32_t version = kVersion;
  uint64_t secret[2] = {0, 0};
  uint64_t commId = 0;
  int32_t rank = -1;
  int32_t nranks = 0;
  WireAddr listenAddr;  // the rank's bootstrap listener
  uint32_t pad = 0;
};
static_assert(sizeof(Hello) == 64, "Hello layout changed: bump kVersion");

// Root -> rank, once. code == chorusSuccess: `count` PeerAddr records follow (the ranks this
// rank sends to during the Bruck all-gather of the cards). Otherwise `textLen` bytes of error
// text follow and `code` is the chorusResult_t the rank should throw.
struct Reply {
  uint32_t magic = kReplyMagic;
  int32_t code = 0;
  uint32_t count = 0;
  uint32_t textLen = 0;
};
static_assert(sizeof(Reply) == 16, "Reply layout changed: bump kVersion");

struct PeerAddr {
  int32_t rank = -1;
  uint32_t pad = 0;
  WireAddr addr;
};
static_assert(sizeof(PeerAddr) == 28, "PeerAddr layout changed: bump kVersion");

// Sender -> receiver, once per Oob connection (one connection per direction and peer pair).
struct Auth {
  uint32_t magic = kAuthMagic;
  uint32_t version = kVersion;
  uint64_t secret[2] = {0, 0};
  uint64_t commId = 0;
  int32_t fromRank = -1;
  int32_t toRank = -1;  // guards against a stale address now used by another rank
};
static_assert(sizeof(Auth) == 40, "Auth layout changed: bump kVersion");

// Precedes every Oob message.
struct FrameHeader {
  uint32_t tag = 0;
  uint32_t pad = 0;
  uint64_t bytes = 0;
};
static_assert(sizeof(FrameHeader) == 16, "FrameHeader layout changed: bump kVersion");

// Largest Oob message a receiver accepts; larger sizes mean a corrupt stream.
constexpr uint64_t kMaxMessageBytes = 1ull << 32;

// The ranks `rank` sends to in Bruck's all-gather, in round order: (rank - 2^k) mod nranks for
// k = 0 .. ceil(log2 nranks) - 1. The root sends each rank exactly these addresses.
inline int bruckSendPeer(int rank, int nranks, int distance) {
  return ((rank - distance) % nranks + nranks) % nranks;
}
inline int bruckRecvPeer(int rank, int nranks, int distance) { return (rank + distance) % nranks; }
inline int log2Ceil(int n) {
  int k = 0;
  while ((1ll << k) < n) ++k;
  return k;
}

}  // namespace chorus::wire
