#include "core/knob_agreement.h"

#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "base/error.h"

namespace chorus {
namespace {

// The settings, by variable name, with this rank's value as text.
std::vector<std::pair<const char*, std::string>> agreedKnobs(const Config& c) {
  std::vector<std::pair<const char*, std::string>> k = {
      {"CHORUS_ALGO", c.algoTune},
      {"CHORUS_SLICE_BYTES", std::to_string(c.sliceBytes)},
      {"CHORUS_TUNE_LATENCY_US", std::to_string(c.tuneLatencyUs)},
      {"CHORUS_TUNE_BANDWIDTH_GBPS", std::to_string(c.tuneBandwidthGBps)},
      {"CHORUS_TRANSPORT", c.transport},
      {"CHORUS_TRANSPORT_MAP", c.transportMap},
      {"CHORUS_NET_CHUNK", std::to_string(c.netChunkBytes)},
      {"CHORUS_TCP_NSOCKS", std::to_string(c.tcpNumSockets)},
      {"CHORUS_TCP_CHUNK", std::to_string(c.tcpChunkBytes)},
      {"CHORUS_SHM_SLOT_BYTES", std::to_string(c.shmSlotBytes)},
      {"CHORUS_SHM_NSLOTS", std::to_string(c.shmNumSlots)},
      {"CHORUS_SHM_FIFO_BYTES", std::to_string(c.shmFifoBytes)},
      {"CHORUS_CLUSTER_FILE", c.clusterFile},
  };
  return k;
}

// What is compared: the value, except for a file, whose contents count (paths may differ by host).
std::string comparedValue(const char* name, const std::string& value) {
  if (std::string(name) != "CHORUS_CLUSTER_FILE" || value.empty()) return value;
  std::ifstream in(value, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

uint32_t fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char ch : s) h = (h ^ ch) * 16777619u;
  return h;
}

}  // namespace

void fillKnobHashes(const Config& config, PeerCard* card) {
  auto knobs = agreedKnobs(config);
  static_assert(kAgreedKnobs == 13, "agreedKnobs lists kAgreedKnobs settings");
  for (int i = 0; i < kAgreedKnobs; ++i) card->knobHash[i] = fnv1a(comparedValue(knobs[i].first, knobs[i].second));
}

void checkKnobAgreement(const Config& config, const std::vector<PeerCard>& cards, int rank) {
  auto knobs = agreedKnobs(config);
  for (int i = 0; i < kAgreedKnobs; ++i) {
    std::string others;
    int count = 0;
    for (size_t r = 0; r < cards.size(); ++r) {
      if (cards[r].knobHash[i] == cards[rank].knobHash[i]) continue;
      if (++count <= 8) others += format("%s%zu", others.empty() ? "" : ",", r);
    }
    if (count)
      CHORUS_THROW(chorusInvalidUsage,
                   "%s differs between ranks: rank %d has \"%s\", rank(s) %s%s have another value; every rank of a communicator "
                   "must set it the same",
                   knobs[i].first, rank, knobs[i].second.c_str(), others.c_str(), count > 8 ? format(" and %d more", count - 8).c_str() : "");
  }
}

}  // namespace chorus
