// Bandwidth-weighted all-reduce: the host levels of the hierarchical all-reduce
// (hierarchical.cpp: reduce-scatter inside each host, an exchange across hosts among the owners
// of each chunk, all-gather inside each host), with the exchange across hosts done directly and
// unevenly: host g reduces and redistributes a part of every chunk in proportion to its weight
// W_g (the sum of RankLayout::weight over its ranks), so a host behind a slow link carries less
// and its link does not pace everyone.
//
// Why two levels. A host's ranks first reduce inside the host over shared memory, so what
// crosses a host's link is the host's single contribution, whatever its rank count. Flat (every
// rank exchanging with every rank), a host of L ranks would send L copies' worth: a slow host
// with two ranks would carry 2n at least, more than the hierarchical ring's 2(H-1)/H n.
//
// Traffic across hosts (n elements of s bytes, H hosts): for every chunk, host h's owner sends
// the parts of its host sum that other hosts reduce, (1 - W_h) of it, receives (H-1) others'
// copies of its own part, W_h (H-1), then sends its finished part to H-1 hosts and receives the
// rest. Summed over the chunks (the host's owners hold them all), host h's link carries
//   n s [1 + (H - 2) W_h]    each way
// in about n s [1 + (H - 2) W_h] / B_h on a link of bandwidth B_h. src/topology/weights.cpp
// picks the W_h that minimize the largest of these times (the slow host gets a small or zero
// share); with equal links it is every host 1/H, the ring's 2(H-1)/H n. A host that owns
// nothing still sends and receives n: the bound no algorithm beats (docs/TOPOLOGY.md).
//
// Latency: the exchange is two steps of H-1 messages per owner per slice round (the ring takes
// 2(H-1) dependent steps), so it suits tens of hosts; the hierarchical ring is for thousands.
// Reductions across hosts are done by the part's owner in the fixed order own host, h+1, h+2,
// ..., then copied, so every rank gets the same bits; an average is divided once, by p.
//
// Parts (weightedSplit). With U = ceil(m / a) units of a = 64 / elemSize elements (64 bytes;
// one element when elements are larger) in a chunk of m, prefix sums S_g = W_0 + ... + W_g and
// W = S_{H-1}, host g's part ends at unit round(U S_g / W) (the last exactly at U) and starts
// where host g-1's ends; offsets are clipped to m, so only the part holding the last unit is
// short. Parts start on 64-byte boundaries, differ from their exact share by less than one unit,
// sum to m, and a weight of 0 gives an empty part. Every rank does the same double arithmetic
// on the same weights, so every rank computes the same parts.
#include <algorithm>
#include <cmath>
#include <vector>

#include "collectives/families.h"
#include "base/error.h"

namespace chorus {

void weightedSplit(size_t count, size_t align, const std::vector<double>& weights, std::vector<size_t>* offsets,
                   std::vector<size_t>* sizes) {
  const size_t n = weights.size();
  CHORUS_ASSERT(n >= 1 && align >= 1);
  const size_t units = (count + align - 1) / align;
  double total = 0;
  for (double w : weights) total += w;
  offsets->assign(n, 0);
  sizes->assign(n, 0);
  double prefix = 0;
  size_t begin = 0;  // in units
  for (size_t g = 0; g < n; ++g) {
    prefix += weights[g];
    size_t end = g == n - 1 || total <= 0 ? units : static_cast<size_t>(std::llround(static_cast<double>(units) * (prefix / total)));
    if (total <= 0) end = g == n - 1 ? units : 0;  // no weights: everything to the last
    end = std::clamp(end, begin, units);
    (*offsets)[g] = std::min(count, begin * align);
    (*sizes)[g] = std::min(count, end * align) - (*offsets)[g];
    begin = end;
  }
}

RankSchedule buildWeighted(const CollArgs& args) { return buildHostLevels(args, true); }

}  // namespace chorus
