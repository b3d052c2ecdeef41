#include "core/transport_select.h"

#include "base/error.h"

namespace chorus {
namespace {

constexpr const char* kClassNames[kNumPairClasses] = {"local", "rack", "network"};

uint32_t bit(TransportId id) { return 1u << static_cast<unsigned>(id); }

std::vector<TransportId> parseList(const std::string& text, const std::string& entry) {
  std::vector<TransportId> out;
  size_t start = 0;
  for (;;) {
    size_t bar = text.find('|', start);
    std::string name = text.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
    TransportId id;
    CHORUS_CHECK_ARG(parseTransportId(name, &id), "CHORUS_TRANSPORT_MAP entry \"%s\": \"%s\" is not one of: shm, tcp, ucx, ofi, plugin",
                     entry.c_str(), name.c_str());
    for (TransportId seen : out)
      CHORUS_CHECK_ARG(seen != id, "CHORUS_TRANSPORT_MAP entry \"%s\" names %s twice", entry.c_str(), name.c_str());
    out.push_back(id);
    if (bar == std::string::npos) break;
    start = bar + 1;
  }
  return out;
}

// "ucx|tcp"
std::string listText(const std::vector<TransportId>& list) {
  std::string s;
  for (TransportId id : list) s += std::string(s.empty() ? "" : "|") + transportIdName(id);
  return s;
}

}  // namespace

const char* pairClassName(PairClass c) { return kClassNames[static_cast<int>(c)]; }

std::string transportBitsText(uint32_t bits) {
  std::string s;
  for (int i = 0; i < static_cast<int>(TransportId::Count); ++i)
    if (bits & (1u << i)) s += std::string(s.empty() ? "" : ",") + transportIdName(static_cast<TransportId>(i));
  return s.empty() ? "none" : s;
}

TransportPolicy TransportPolicy::fromConfig(const Config& config) {
  TransportPolicy p;
  TransportId net = config.netPlugin.empty() ? TransportId::Tcp : TransportId::Plugin;
  p.prefs_[0] = {TransportId::Shm};
  p.prefs_[1] = p.prefs_[2] = {net};
  if (!config.transport.empty()) {
    TransportId forced;
    CHORUS_CHECK_ARG(parseTransportId(config.transport, &forced), "CHORUS_TRANSPORT=\"%s\" is not a transport", config.transport.c_str());
    for (auto& list : p.prefs_) list = {forced};
    return p;  // CHORUS_TRANSPORT wins over the map
  }
  const std::string& map = config.transportMap;
  size_t start = 0;
  while (start < map.size()) {
    size_t comma = map.find(',', start);
    std::string entry = map.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? map.size() : comma + 1;
    if (entry.empty()) continue;
    size_t eq = entry.find('=');
    CHORUS_CHECK_ARG(eq != std::string::npos, "CHORUS_TRANSPORT_MAP entry \"%s\" is not class=transport[|transport...]", entry.c_str());
    std::string cls = entry.substr(0, eq);
    int k = -1;
    for (int i = 0; i < kNumPairClasses; ++i)
      if (cls == kClassNames[i]) k = i;
    CHORUS_CHECK_ARG(k >= 0, "CHORUS_TRANSPORT_MAP entry \"%s\": class \"%s\" is not one of: local, rack, network", entry.c_str(), cls.c_str());
    p.prefs_[k] = parseList(entry.substr(eq + 1), entry);
    // An unset rack class follows the network class.
    if (k == 2 && map.find("rack=") == std::string::npos) p.prefs_[1] = p.prefs_[2];
  }
  return p;
}

uint32_t TransportPolicy::wanted() const {
  uint32_t w = 0;
  for (const auto& list : prefs_)
    for (TransportId id : list) w |= bit(id);
  return w;
}

void TransportPolicy::checkUsable(uint32_t have, const std::string& failures) const {
  for (int k = 0; k < kNumPairClasses; ++k) {
    bool any = false;
    for (TransportId id : prefs_[k]) any |= (have & bit(id)) != 0;
    if (!any)
      CHORUS_THROW(chorusInvalidUsage, "no transport for %s pairs: %s could not be created here (%s)", kClassNames[k], listText(prefs_[k]).c_str(),
                   failures.empty() ? "no reason recorded" : failures.c_str());
  }
}

TransportId TransportPolicy::choose(PairClass c, uint32_t a, uint32_t b, int rankA, int rankB) const {
  for (TransportId id : prefs(c))
    if ((a & bit(id)) && (b & bit(id))) return id;
  CHORUS_THROW(chorusInvalidUsage, "ranks %d and %d (a %s pair) share no transport of %s: rank %d has %s, rank %d has %s", rankA, rankB,
               pairClassName(c), listText(prefs(c)).c_str(), rankA, transportBitsText(a).c_str(), rankB, transportBitsText(b).c_str());
}

bool TransportPolicy::common(PairClass c, const std::vector<uint32_t>& everyRank, TransportId* id) const {
  for (TransportId t : prefs(c)) {
    bool all = true;
    for (uint32_t bits : everyRank) all &= (bits & bit(t)) != 0;
    if (all) {
      *id = t;
      return true;
    }
  }
  return false;
}

std::string TransportPolicy::describe() const {
  std::string s;
  for (int k = 0; k < kNumPairClasses; ++k) {
    s += std::string(k ? " " : "") + kClassNames[k] + "=" + listText(prefs_[k]);
  }
  return s;
}

}  // namespace chorus
