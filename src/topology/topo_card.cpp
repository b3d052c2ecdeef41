// makeTopoCard (topo_card.h): squeezes a NodeTopology into the fixed-size card that rides in the
// PeerCard. NICs go fastest first (unknown speed, 0, last; equal speeds keep discovery order),
// names and kinds are cut to fit their fields and always end with a NUL, and counts saturate
// at what an int16_t holds. sanitizeTopoCard enforces the same shape on a card from elsewhere.
#include "topology/topo_card.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "topology/node_topology.h"

namespace chorus {
namespace {

template <size_t N>
void copyTruncated(char (&dst)[N], const std::string& src) {
  const size_t n = std::min(src.size(), N - 1);
  std::memcpy(dst, src.data(), n);
  std::memset(dst + n, 0, N - n);
}

int16_t toInt16(long long v) {
  return static_cast<int16_t>(std::clamp<long long>(v, std::numeric_limits<int16_t>::min(),
                                                    std::numeric_limits<int16_t>::max()));
}

// Each fixer returns 1 when it changed the field.
template <size_t N>
int terminate(char (&s)[N]) {
  // Bytes after the first NUL are cleared too, so that equal names compare equal as bytes.
  size_t n = strnlen(s, N - 1);
  bool changed = s[N - 1] != '\0';
  for (size_t i = n; i < N; ++i) {
    changed = changed || s[i] != '\0';
    s[i] = '\0';
  }
  return changed ? 1 : 0;
}

int atLeast(int16_t& v, int16_t lo) {
  if (v >= lo) return 0;
  v = lo;
  return 1;
}

}  // namespace

int sanitizeTopoCard(TopoCard& card) {
  int fixed = atLeast(card.boundNuma, -1) + atLeast(card.numaNodes, 0) + atLeast(card.nicCount, 0) +
              atLeast(card.accelerators, 0) + atLeast(card.cpus, 0);
  if (card.reserved != 0) {
    card.reserved = 0;
    ++fixed;
  }
  const int listed = std::min<int>(card.nicCount, kTopoCardNics);
  for (int i = 0; i < kTopoCardNics; ++i) {
    TopoCardNic& nic = card.nics[i];
    if (i >= listed) {
      static const TopoCardNic kEmpty{};
      if (std::memcmp(&nic, &kEmpty, sizeof(nic)) != 0) {
        nic = kEmpty;
        ++fixed;
      }
      continue;
    }
    fixed += terminate(nic.name) + terminate(nic.kind) + atLeast(nic.numaNode, -1);
    if (!std::isfinite(nic.speedGbps) || nic.speedGbps < 0) {
      nic.speedGbps = 0;
      ++fixed;
    }
    if (nic.reserved != 0) {
      nic.reserved = 0;
      ++fixed;
    }
  }
  return fixed;
}

TopoCard makeTopoCard(const NodeTopology& topo) {
  TopoCard card;
  card.boundNuma = toInt16(topo.boundNuma);
  card.numaNodes = toInt16(topo.numaNodes);
  card.nicCount = toInt16(static_cast<long long>(topo.nics.size()));
  card.accelerators = toInt16(static_cast<long long>(topo.accelerators.size()));
  card.cpus = toInt16(topo.pus);

  std::vector<size_t> order(topo.nics.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return topo.nics[a].speedGbps > topo.nics[b].speedGbps; });
  const size_t listed = std::min<size_t>(order.size(), kTopoCardNics);
  for (size_t i = 0; i < listed; ++i) {
    const NicInfo& nic = topo.nics[order[i]];
    TopoCardNic& out = card.nics[i];
    copyTruncated(out.name, nic.name);
    copyTruncated(out.kind, nic.kind);
    out.speedGbps = static_cast<float>(nic.speedGbps);
    out.numaNode = toInt16(nic.numaNode);
  }
  return card;
}

}  // namespace chorus
