// Which transport each pair of ranks uses. Pairs fall in three classes:
//   local    the two ranks share a host (shared memory can reach)
//   rack     different hosts of one cluster-file group (`host ... group=G`, docs/TOPOLOGY.md)
//   network  any other pair
// Each class has a list of transports in order of preference. A pair uses the first transport
// of its class's list that BOTH ranks have (PeerCard::transports): the choice is symmetric and
// every rank computes the same one. A transport that a rank fails to create is left out of its
// card (with a warning naming why) only when every list it appears in has another entry;
// otherwise creating the communicator fails with that reason. Nothing falls back silently: a
// fallback happens only where the user listed one, and the choice of every pair is logged.
//
// Defaults: local=shm, rack=network=tcp; with CHORUS_NET_PLUGIN set, rack=network=plugin.
// CHORUS_TRANSPORT=X makes every list just X. CHORUS_TRANSPORT_MAP overrides lists per class:
//   "local=shm,network=ucx|tcp"   (classes: local, rack, network; '|' separates preferences)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/config.h"
#include "transports/transport.h"

namespace chorus {

enum class PairClass : uint8_t { Local = 0, Rack = 1, Network = 2 };
constexpr int kNumPairClasses = 3;
const char* pairClassName(PairClass c);

class TransportPolicy {
 public:
  // From CHORUS_TRANSPORT, CHORUS_TRANSPORT_MAP and CHORUS_NET_PLUGIN; a malformed map throws
  // chorusInvalidArgument naming the bad entry.
  static TransportPolicy fromConfig(const Config& config);

  const std::vector<TransportId>& prefs(PairClass c) const { return prefs_[static_cast<int>(c)]; }
  // Bits (1 << TransportId) of every transport some list names: what a rank tries to create.
  uint32_t wanted() const;
  // Throws chorusInvalidUsage when some class has no transport among `have` (this rank's bits),
  // with `failures` (why the missing ones could not be created) in the message.
  void checkUsable(uint32_t have, const std::string& failures) const;
  // The transport of a pair of class c between ranks with transports a and b; throws
  // chorusInvalidUsage naming the class and both ranks' transports when they share none.
  TransportId choose(PairClass c, uint32_t a, uint32_t b, int rankA, int rankB) const;
  // The class's transport if every rank has it (first such in the list): what the cluster view
  // declares for the class; false when the ranks' transports differ.
  bool common(PairClass c, const std::vector<uint32_t>& everyRank, TransportId* id) const;
  std::string describe() const;  // "local=shm network=ucx|tcp ..."

 private:
  std::vector<TransportId> prefs_[kNumPairClasses];
};

std::string transportBitsText(uint32_t bits);  // "shm,tcp"

}  // namespace chorus
