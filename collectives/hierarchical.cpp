// Hierarchical all-reduce: a reduce-scatter inside each host, an all-reduce across hosts among
// the ranks that own the same part of the buffer, an all-gather inside each host. The slow
// links between hosts carry each byte the minimum number of times, in 2(H-1) latency steps over
// H hosts instead of the flat ring's 2(p-1); the fast links inside a host (shared memory) do the
// rest.
//
// The layout (CollArgs::layout, collectives/collective.h) says where ranks sit: host h holds
// L_h = hosts[h].size() ranks, in local order hosts[h][0..L_h-1]; hosts may differ in size and
// their ranks need not be consecutive numbers. The communicator lists hosts and their ranks in
// ring order, so the rings below follow it. A null layout is one host.
//
// Chunks and owners. The buffer is cut into K = max_h L_h chunks (RingChunks: equal, 64-byte
// aligned, the tail ones short or empty). On host h, chunk c is owned by local rank c mod L_h:
// with equal hosts every local rank owns one chunk; a smaller host's ranks own several (its
// local rank 0 owns chunks 0, L_h, 2 L_h, ...). The owners of chunk c, one per host, are the
// "same local rank" peers that all-reduce it across hosts. Chunk c is cut into H sub-chunks
// (RingChunks again; sub-chunk g finishes its inter-host reduction on host g-1), and every
// sub-chunk into slices of about sliceBytes: a piece is (round t, chunk c, sub-chunk g), slice t
// of sub-chunk g of chunk c. All sizes depend only on count, K, H, elemSize and sliceBytes, so
// every rank computes the same pieces.
//
// Phases of round t (per chunk c, in chunk order):
//   1. intra-host reduce-scatter: on every host, a ring over hosts[h] (local i -> i+1) carries
//      chunk c's pieces of round t from local rank o+1 (o = c mod L_h, the owner) round to o:
//      o+1 sends its Input, each next rank adds its Input and forwards the partial (kept in its
//      Output, which an all-reduce has whole), and o adds its Input last: o's Output then holds
//      the host's sum. Pieces that lie next to each other in memory travel as one message of up
//      to about sliceBytes (a batch), so small sub-chunks do not cost a message each.
//   2. inter-host all-reduce of chunk c among its owners: the ring all-reduce of ring.cpp over
//      hosts 0, 1, ..., H-1 (each host's owner of c talks to the previous and next host's), with
//      sub-chunks for its chunks: reduce-scatter (H-1 hops), then all-gather (H-1 hops). A host
//      with one rank has no phase 1 or 3, and its owner reads its Input directly.
//   3. intra-host all-gather: the owner sends the finished batch round the host's ring.
// An average is divided once, by p, where a piece becomes complete: the end of phase 2's
// reduce-scatter (phase 1's end with one host). Every element is reduced exactly once, in one
// fixed order (its host's ring from o+1 to o, then the hosts' ring), and then only copied, so
// every rank gets the same bits. With one host the schedule is phases 1 and 3 (a ring all-reduce
// of the host's ranks); with one rank per host it is phase 2 (the ring all-reduce over hosts).
//
// Cost (n elements of s bytes; host h has L ranks; J rounds; alpha-beta terms per round):
//   phase 1   L-1 hops per round; a rank sends every chunk it does not own and receives every
//             chunk but those its right neighbour owns: (L-1)/L n s each way with K = L.
//   phase 2   2(H-1) hops per round, on the owners only; an owner sends and receives
//             2(H-1)/H of each chunk it owns: 2(H-1)/H n/L s with K = L, so the host's link(s)
//             carry 2(H-1)/H n s each way, the ring's optimum over H hosts, spread over the L
//             owners (one NIC or rail each where the host has several).
//   phase 3   L-1 hops per round; the mirror of phase 1.
// Latency per round: 2(L-1) + 2(H-1) steps, against 2(HL-1) for the flat ring.
//
// Pipelining and message order. Rounds overlap: the schedule is emitted in iterations i, and
// iteration i holds phase 1 of round i, phase 2's reduce-scatter of round i-1, its all-gather of
// round i-2 and phase 3 of round i-3. Each rank emits its part of every event (one message of
// one piece or batch over one hop) in that one global order: iteration, phase, chunk, batch or
// sub-chunk, hop. So on every pair of ranks the sends of one and the receives of the other come
// in the same order (the matching rule of exec/schedule.h), and no deadlock is possible: every
// dependency points at an earlier event, so the earliest unfinished message would have both
// sides posted (everything it waits for, and everything queued before it on its pair, is
// earlier and done), a contradiction. The lag lets the intra-host ring (which carries phases 1
// and 3 in one queue per neighbour) run three rounds ahead of phase 2, and phase 2's next
// reduce-scatter queue behind the all-gather of two rounds back, not the last one.
//
// The weighted all-reduce (weighted.cpp) is these same levels with phase 2 done directly
// (interReduceScatterDirect, interAllGatherDirect): each owner sends every other host's owner
// that host's sub-chunk of its host sum and reduces its own sub-chunk from all of them, in the
// order h+1, h+2, ...; sub-chunks are in proportion to the host weights instead of equal. One
// message per pair and direction per (round, chunk, half), emitted in the same global order, so
// the matching and deadlock arguments above hold unchanged.
//
// Hazards the dependencies cover (the verifier runs them adversarially): a send or reduction
// waits for the step that wrote its data (RAW); a phase-2 all-gather receive waits for this
// rank's phase-2 send from the same piece, and a phase-3 receive for this rank's phase-1 send
// from the same batch (WAR: a single-copy transport reads the sender's buffer until the
// receiver is done; in place, Input is that same memory).
#include <algorithm>
#include <vector>

#include "collectives/families.h"
#include "collectives/ring.h"
#include "base/error.h"

namespace chorus {
namespace {

int wrap(int x, int n) {
  return ((x % n) + n) % n;
}

// Appends `step` after every entry of `deps` that is not kNoStep (duplicates kept once).
uint32_t addAfterAll(RankSchedule& s, const Step& step, std::vector<uint32_t> deps) {
  deps.erase(std::remove(deps.begin(), deps.end(), kNoStep), deps.end());
  std::sort(deps.begin(), deps.end());
  deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
  uint32_t i = s.add(step);
  for (uint32_t d : deps) {
    CHORUS_ASSERT(d < i);
    s.deps.push_back(d);
  }
  s.steps[i].depBegin = static_cast<uint32_t>(s.deps.size() - deps.size());
  s.steps[i].depCount = static_cast<uint32_t>(deps.size());
  return i;
}

// The decomposition of the buffer into pieces and batches, the same on every rank.
class Pieces {
 public:
  // hostWeights: null for equal sub-chunks (RingChunks), else sub-chunk g of every chunk in
  // proportion to hostWeights[g] (weightedSplit, weighted.cpp).
  Pieces(const CollArgs& a, int chunks, int hosts, const std::vector<double>* hostWeights)
      : K_(chunks), H_(hosts), align_(std::max<size_t>(1, 64 / a.elemSize)), chunks_(a.count, chunks, align_) {
    subOff_.resize(K_);
    subSize_.resize(K_);
    size_t largest = 0;
    for (int c = 0; c < K_; ++c) {
      if (hostWeights) {
        weightedSplit(chunks_.size(c), align_, *hostWeights, &subOff_[c], &subSize_[c]);
      } else {
        RingChunks sub(chunks_.size(c), H_, align_);
        for (int g = 0; g < H_; ++g) {
          subOff_[c].push_back(sub.offset(g));
          subSize_[c].push_back(sub.size(g));
        }
      }
      for (size_t n : subSize_[c]) largest = std::max(largest, n);
    }
    // Slices as the ring all-reduce cuts them: about sliceBytes, aligned, evened out over the
    // largest sub-chunk so the last round is not a sliver.
    largest = std::max<size_t>(largest, 1);
    size_t slice = std::max(align_, a.sliceBytes / a.elemSize / align_ * align_);
    rounds_ = (largest + slice - 1) / slice;
    slice_ = ((largest + rounds_ - 1) / rounds_ + align_ - 1) / align_ * align_;
    // Batches: runs of adjacent non-empty pieces of one (round, chunk), up to a slice's bytes.
    const size_t cap = std::max(slice_, slice);
    batchOf_.assign(rounds_ * K_ * H_, kNoBatch);
    batchBegin_.push_back(0);
    for (size_t t = 0; t < rounds_; ++t)
      for (int c = 0; c < K_; ++c) {
        bool open = false;
        for (int g = 0; g < H_; ++g) {
          const Region pc = piece(t, c, g, BufferId::Input);
          if (!pc.count) continue;
          Batch* last = open ? &batches_.back() : nullptr;
          if (last && last->off + last->n == pc.offset && last->n + pc.count <= cap) {
            last->n += pc.count;
            last->gEnd = g + 1;
          } else {
            batches_.push_back({pc.offset, pc.count, g, g + 1});
            open = true;
          }
          batchOf_[id(t, c, g)] = static_cast<uint32_t>(batches_.size() - 1);
        }
        batchBegin_.push_back(static_cast<uint32_t>(batches_.size()));
      }
  }

  static constexpr uint32_t kNoBatch = ~0u;
  struct Batch {
    size_t off, n;
    int gBegin, gEnd;  // its pieces are those of sub-chunks [gBegin, gEnd) that are not empty
  };

  size_t rounds() const { return rounds_; }
  size_t numPieces() const { return batchOf_.size(); }
  size_t numBatches() const { return batches_.size(); }
  size_t id(size_t t, int c, int g) const { return (t * K_ + c) * H_ + g; }

  // Slice t of sub-chunk g of chunk c, in buffer `buf` (empty when the sub-chunk is shorter).
  Region piece(size_t t, int c, int g, BufferId buf) const {
    const size_t size = subSize_[c][g];
    const size_t begin = std::min(size, t * slice_), end = std::min(size, begin + slice_);
    return {buf, chunks_.offset(c) + subOff_[c][g] + begin, end - begin};
  }
  uint32_t batchOf(size_t t, int c, int g) const { return batchOf_[id(t, c, g)]; }
  // The batches of (round t, chunk c): [first, end).
  uint32_t first(size_t t, int c) const { return batchBegin_[t * K_ + c]; }
  uint32_t end(size_t t, int c) const { return batchBegin_[t * K_ + c + 1]; }
  Region batch(uint32_t b, BufferId buf) const { return {buf, batches_[b].off, batches_[b].n}; }
  const Batch& batchInfo(uint32_t b) const { return batches_[b]; }

 private:
  int K_, H_;
  size_t align_;
  RingChunks chunks_;
  std::vector<std::vector<size_t>> subOff_, subSize_;  // per chunk, per sub-chunk (elements)
  size_t rounds_ = 1, slice_ = 1;
  std::vector<Batch> batches_;
  std::vector<uint32_t> batchOf_;     // piece id -> its batch
  std::vector<uint32_t> batchBegin_;  // (t * K + c) -> first batch
};

class Builder {
 public:
  Builder(const CollArgs& a, const RankLayout& l, const std::vector<double>* hostWeights)
      : weighted_(hostWeights != nullptr),
        a_(a),
        l_(l),
        H_(static_cast<int>(l.hosts.size())),
        h_(l.hostOf[a.rank]),
        mine_(l.hosts[h_]),
        L_(static_cast<int>(mine_.size())),
        local_(static_cast<int>(std::find(mine_.begin(), mine_.end(), a.rank) - mine_.begin())),
        K_(maxHostSize(l)),
        pc_(a, K_, H_, hostWeights),
        p1Send_(pc_.numBatches(), kNoStep),
        p1Done_(pc_.numBatches(), kNoStep),
        p2Read_(pc_.numPieces(), kNoStep),
        final_(pc_.numPieces(), kNoStep) {}

  RankSchedule build() {
    if (a_.nranks == 1) {
      if (!a_.inPlace) s_.add({StepKind::Copy, -1, 1, in(0, a_.count), out(0, a_.count)});
      return std::move(s_);
    }
    const size_t rounds = pc_.rounds();
    for (size_t i = 0; i < rounds + 3; ++i) {
      for (int part = 0; part < 4; ++part) {
        if (i < static_cast<size_t>(part) || i - part >= rounds) continue;
        const size_t t = i - part;
        for (int c = 0; c < K_; ++c) {
          if (part == 0 && L_ > 1) intraReduceScatter(t, c);
          if (part == 1 && H_ > 1 && owns(c)) weighted_ ? interReduceScatterDirect(t, c) : interReduceScatter(t, c);
          if (part == 2 && H_ > 1 && owns(c)) weighted_ ? interAllGatherDirect(t, c) : interAllGather(t, c);
          if (part == 3 && L_ > 1) intraAllGather(t, c);
        }
      }
    }
    return std::move(s_);
  }

 private:
  static int maxHostSize(const RankLayout& l) {
    size_t k = 1;
    for (const auto& h : l.hosts) k = std::max(k, h.size());
    return static_cast<int>(k);
  }

  bool owns(int c) const { return c % L_ == local_; }
  // The owner of chunk c on host h.
  int ownerOn(int h, int c) const {
    const std::vector<int>& host = l_.hosts[wrap(h, H_)];
    return host[c % static_cast<int>(host.size())];
  }
  int intraLeft() const { return mine_[wrap(local_ - 1, L_)]; }
  int intraRight() const { return mine_[wrap(local_ + 1, L_)]; }

  // A piece becomes complete (summed over every rank) at `step`: divide it for an average.
  uint32_t complete(uint32_t step, Region dst) {
    return a_.average ? s_.add({StepKind::Divide, -1, a_.nranks, {}, dst}, {step}) : step;
  }

  // Phase 1, round t, chunk c: the host's ring carries each batch from the owner's right
  // neighbour round to the owner.
  void intraReduceScatter(size_t t, int c) {
    const int hop = wrap(local_ - c % L_ - 1, L_);  // 0: starts it, L-1: the owner
    for (uint32_t b = pc_.first(t, c); b < pc_.end(t, c); ++b) {
      const Region input = pc_.batch(b, BufferId::Input), output = pc_.batch(b, BufferId::Output);
      if (hop == 0) {
        p1Send_[b] = s_.add({StepKind::Send, intraRight(), 1, input, {}});
        continue;
      }
      uint32_t rr = s_.add({StepKind::RecvReduce, intraLeft(), 1, input, output});
      if (hop < L_ - 1) {
        p1Send_[b] = s_.add({StepKind::Send, intraRight(), 1, output, {}}, {rr});
      } else {
        p1Done_[b] = H_ == 1 ? complete(rr, output) : rr;
      }
    }
  }

  // What phase 2 reduces on this owner: the host's sum in Output after phase 1, or with one
  // rank on the host its Input; and the step that wrote it.
  Region hostSum(size_t t, int c, int g) const { return pc_.piece(t, c, g, L_ > 1 ? BufferId::Output : BufferId::Input); }
  uint32_t hostSumDone(size_t t, int c, int g) const { return L_ > 1 ? p1Done_[pc_.batchOf(t, c, g)] : kNoStep; }

  // Phase 2 reduce-scatter, round t, chunk c: the ring all-reduce's first half over the hosts'
  // owners of c. This host is ring position h_; sub-chunk g starts at host g and ends on g-1.
  void interReduceScatter(size_t t, int c) {
    const int left = ownerOn(h_ - 1, c), right = ownerOn(h_ + 1, c);
    const int g0 = h_;
    if (hostSum(t, c, g0).count)
      p2Read_[pc_.id(t, c, g0)] = addStepAfter(s_, {StepKind::Send, right, 1, hostSum(t, c, g0), {}}, hostSumDone(t, c, g0));
    for (int k = 1; k < H_; ++k) {
      const int g = wrap(h_ - k, H_);
      const Region dst = pc_.piece(t, c, g, BufferId::Output);
      if (!dst.count) continue;
      uint32_t rr = addStepAfter(s_, {StepKind::RecvReduce, left, 1, hostSum(t, c, g), dst}, hostSumDone(t, c, g));
      if (k < H_ - 1) {
        p2Read_[pc_.id(t, c, g)] = s_.add({StepKind::Send, right, 1, dst, {}}, {rr});
      } else {
        final_[pc_.id(t, c, g)] = complete(rr, dst);
      }
    }
  }

  // Phase 2 all-gather, round t, chunk c: the complete sub-chunk h_+1 goes round the owners.
  void interAllGather(size_t t, int c) {
    const int left = ownerOn(h_ - 1, c), right = ownerOn(h_ + 1, c);
    const int g1 = wrap(h_ + 1, H_);
    const Region done = pc_.piece(t, c, g1, BufferId::Output);
    if (done.count) s_.add({StepKind::Send, right, 1, done, {}}, {final_[pc_.id(t, c, g1)]});
    for (int k = 1; k < H_; ++k) {
      const int g = wrap(h_ + 1 - k, H_);
      const Region dst = pc_.piece(t, c, g, BufferId::Output);
      if (!dst.count) continue;
      uint32_t rv = addStepAfter(s_, {StepKind::Recv, left, 1, {}, dst}, p2Read_[pc_.id(t, c, g)]);
      final_[pc_.id(t, c, g)] = rv;
      if (k < H_ - 1) s_.add({StepKind::Send, right, 1, dst, {}}, {rv});
    }
  }

  // Phase 2 of the weighted all-reduce, reduce-scatter, round t, chunk c: this host's owner
  // sends sub-chunk g of its host sum straight to host g's owner, and reduces its own sub-chunk
  // h_ from every other host's, in the fixed order h_+1, h_+2, ... (each RecvReduce after the
  // previous one).
  void interReduceScatterDirect(size_t t, int c) {
    for (int k = 1; k < H_; ++k) {
      const int g = wrap(h_ + k, H_);
      const Region part = hostSum(t, c, g);
      if (part.count)
        p2Read_[pc_.id(t, c, g)] = addStepAfter(s_, {StepKind::Send, ownerOn(g, c), 1, part, {}}, hostSumDone(t, c, g));
    }
    const Region dst = pc_.piece(t, c, h_, BufferId::Output);
    if (!dst.count) return;
    uint32_t last = hostSumDone(t, c, h_);
    for (int k = 1; k < H_; ++k) {
      const Region local = k == 1 ? hostSum(t, c, h_) : dst;
      last = addStepAfter(s_, {StepKind::RecvReduce, ownerOn(h_ + k, c), 1, local, dst}, last);
    }
    final_[pc_.id(t, c, h_)] = complete(last, dst);
  }

  // Phase 2 of the weighted all-reduce, all-gather, round t, chunk c: the complete sub-chunk h_
  // goes to every other host's owner, and sub-chunk g comes from host g's. A receive waits for
  // this rank's reduce-scatter send from the same place (WAR).
  void interAllGatherDirect(size_t t, int c) {
    const Region done = pc_.piece(t, c, h_, BufferId::Output);
    for (int k = 1; k < H_; ++k)
      if (done.count) s_.add({StepKind::Send, ownerOn(h_ + k, c), 1, done, {}}, {final_[pc_.id(t, c, h_)]});
    for (int k = 1; k < H_; ++k) {
      const int g = wrap(h_ - k, H_);
      const Region dst = pc_.piece(t, c, g, BufferId::Output);
      if (!dst.count) continue;
      final_[pc_.id(t, c, g)] = addStepAfter(s_, {StepKind::Recv, ownerOn(g, c), 1, {}, dst}, p2Read_[pc_.id(t, c, g)]);
    }
  }

  // Phase 3, round t, chunk c: each complete batch goes from the owner round the host's ring.
  void intraAllGather(size_t t, int c) {
    const int hop = wrap(local_ - c % L_, L_);  // 0: the owner
    for (uint32_t b = pc_.first(t, c); b < pc_.end(t, c); ++b) {
      const Region output = pc_.batch(b, BufferId::Output);
      if (hop == 0) {
        std::vector<uint32_t> ready;
        if (H_ == 1) {
          ready.push_back(p1Done_[b]);
        } else {
          for (int g = pc_.batchInfo(b).gBegin; g < pc_.batchInfo(b).gEnd; ++g)
            if (pc_.batchOf(t, c, g) == b) ready.push_back(final_[pc_.id(t, c, g)]);
        }
        addAfterAll(s_, {StepKind::Send, intraRight(), 1, output, {}}, ready);
        continue;
      }
      uint32_t rv = addStepAfter(s_, {StepKind::Recv, intraLeft(), 1, {}, output}, p1Send_[b]);
      if (hop < L_ - 1) s_.add({StepKind::Send, intraRight(), 1, output, {}}, {rv});
    }
  }

  const bool weighted_;  // phase 2 is the weighted direct exchange, not the ring
  const CollArgs& a_;
  const RankLayout& l_;
  const int H_, h_;
  const std::vector<int>& mine_;  // this host's ranks, local order
  const int L_, local_, K_;
  const Pieces pc_;
  RankSchedule s_;
  // Per batch: this rank's phase-1 send of it, and (owner) the step that completed its host sum.
  std::vector<uint32_t> p1Send_, p1Done_;
  // Per piece (owner): its phase-2 reduce-scatter send, and the step after which it is final.
  std::vector<uint32_t> p2Read_, final_;
};

}  // namespace

RankSchedule buildHostLevels(const CollArgs& args, bool weighted) {
  RankLayout flat;
  const RankLayout& layout = layoutOf(args, &flat);
  checkLayout(layout, args.nranks);
  if (args.count == 0) return {};
  if (!weighted) return Builder(args, layout, nullptr).build();
  // A host's weight is the sum of its ranks' (RankLayout::weight).
  std::vector<double> hostWeight(layout.hosts.size(), 0.0);
  for (size_t h = 0; h < layout.hosts.size(); ++h)
    for (int r : layout.hosts[h]) hostWeight[h] += layout.weight[r];
  return Builder(args, layout, &hostWeight).build();
}

RankSchedule buildHierarchical(const CollArgs& args) { return buildHostLevels(args, false); }

}  // namespace chorus
