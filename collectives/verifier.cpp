#include "collectives/verifier.h"

#include <algorithm>
#include <exception>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "base/error.h"
#include "collectives/element_runs.h"
#include "collectives/rank_sets.h"

namespace chorus {
namespace {

// Rank ids fit the 16 bits of rankOf_ (0 to 65535; RankSets takes as many).
constexpr int kMaxRanks = RankSets::kMaxRanks;
constexpr uint32_t kOneRank = ElementSym::kOneRank;

std::string rankCountError(size_t p) {
  return p >= 1 && p <= static_cast<size_t>(kMaxRanks) ? "" : format("%zu ranks: the verifier supports 1 to %d", p, kMaxRanks);
}

// A run of a rank's Output the collective defines: Output[out, out + count) must hold `want`
// and its successors (affine: element k holds want.at(k)), divided where the call averages.
struct Expect {
  size_t out, count;
  ElementSym want;
};

struct RankMem {
  // Where each BufferId starts in `elems` (Input and Output overlap for an in-place call).
  size_t base[kBuffersPerCall] = {}, size[kBuffersPerCall] = {};
  ElementRuns elems{0};
  std::vector<Expect> expect;
};

// The symbols of a region, in order: `n` elements from `sym` on (affine).
struct Piece {
  uint64_t n;
  ElementSym sym;
};

enum StepState : uint8_t { kWaiting, kReady, kPosted, kDone };  // kReady: deps done, queued behind earlier messages

// The messages from one rank to another: the k-th send pairs with the k-th receive.
struct Channel {
  int from = 0, to = 0;
  uint32_t sendBegin = 0, sends = 0, recvBegin = 0, recvs = 0;  // in sendSteps_ / recvSteps_
  uint32_t sendsPosted = 0, recvsPosted = 0;
};

const char* bufName(BufferId b) {
  switch (b) {
    case BufferId::Input: return "in";
    case BufferId::Output: return "out";
    case BufferId::Scratch: return "scratch";
  }
  return "buffer?";
}

bool isRecv(StepKind k) { return k == StepKind::Recv || k == StepKind::RecvReduce; }
bool readsSrc(StepKind k) { return k == StepKind::Send || k == StepKind::RecvReduce || k == StepKind::Copy; }
bool writesDst(StepKind k) { return k != StepKind::Send; }

class Verifier {
 public:
  Verifier(const std::vector<CollArgs>& args, const std::vector<RankSchedule>& schedules)
      : a_(args), s_(schedules), p_(static_cast<int>(args.size())), sets_(std::clamp(p_, 1, kMaxRanks)) {}

  VerifyResult run() {
    if (checkArgs() && setUpMemory() && checkSteps() && buildChannels()) {
      simulate();
      if (result_.ok) {
        if (remaining_) reportStuck();
        else checkOutputs();
      }
    }
    return result_;
  }

 private:
  bool fail(const std::string& e) {
    if (result_.ok) {
      result_.ok = false;
      result_.error = e;
    }
    return false;
  }

  // ---- arguments and memory ----------------------------------------------------------------

  bool checkArgs() {
    if (!rankCountError(a_.size()).empty()) return fail(rankCountError(a_.size()));
    if (s_.size() != a_.size()) return fail(format("%zu schedules for %d ranks", s_.size(), p_));
    const CollArgs& a0 = a_[0];
    if (a0.coll >= Coll::kCount) return fail(format("unknown collective %d", static_cast<int>(a0.coll)));
    for (int r = 0; r < p_; ++r) {
      const CollArgs& a = a_[r];
      if (a.rank != r || a.nranks != p_)
        return fail(format("arguments %d say rank %d of %d (expected %d of %d)", r, a.rank, a.nranks, r, p_));
      if (a.coll != a0.coll || a.count != a0.count || a.root != a0.root || a.inPlace != a0.inPlace || a.average != a0.average ||
          a.counts != a0.counts || a.displs != a0.displs)
        return fail(format("rank %d's arguments differ from rank 0's", r));
    }
    if (!checkLayouts()) return false;
    Coll c = a0.coll;
    bool rooted = c == Coll::Broadcast || c == Coll::Reduce || c == Coll::Gather || c == Coll::Scatter;
    if (rooted && (a0.root < 0 || a0.root >= p_)) return fail(format("root %d outside 0..%d", a0.root, p_ - 1));
    if ((c == Coll::AllGatherV || c == Coll::ReduceScatterV) &&
        (a0.counts.size() != static_cast<size_t>(p_) || a0.displs.size() != static_cast<size_t>(p_)))
      return fail(
          format("%s needs %d counts and displacements (got %zu, %zu)", collName(c), p_, a0.counts.size(), a0.displs.size()));
    if (c == Coll::AlltoAllV) {
      for (int r = 0; r < p_; ++r) {
        const CollArgs& a = a_[r];
        for (const auto* v : {&a.sendCounts, &a.sendDispls, &a.recvCounts, &a.recvDispls})
          if (v->size() != static_cast<size_t>(p_)) return fail(format("rank %d: alltoallv vectors need %d entries", r, p_));
      }
      for (int i = 0; i < p_; ++i)
        for (int j = 0; j < p_; ++j)
          if (a_[i].sendCounts[j] != a_[j].recvCounts[i])
            return fail(format("alltoallv arguments disagree: rank %d sends %zu elements to rank %d, which expects %zu", i,
                               a_[i].sendCounts[j], j, a_[j].recvCounts[i]));
    }
    return true;
  }

  // Every rank must see the same rank layout (a null one is the flat layout), and a valid one:
  // the topology-aware builders derive peers and block sizes from it on each rank separately.
  bool checkLayouts() {
    RankLayout flat0;
    const RankLayout& l0 = layoutOf(a_[0], &flat0);
    for (int r = 1; r < p_; ++r) {
      if (a_[r].layout == a_[0].layout) continue;
      RankLayout flat;
      const RankLayout& l = layoutOf(a_[r], &flat);
      if (l.hosts != l0.hosts || l.hostOf != l0.hostOf || l.ringOrder != l0.ringOrder || l.weight != l0.weight)
        return fail(format("rank %d's rank layout differs from rank 0's", r));
    }
    try {
      checkLayout(l0, p_);
    } catch (const std::exception& e) {
      return fail(format("invalid rank layout: %s", e.what()));
    }
    return true;
  }

  // Every rank's input elements have global ids: rank s's element i is gbase_[s] + i.
  ElementSym inputSym(int s, size_t index) const { return {gbase_[s] + index, kOneRank, false}; }
  // An element reduced over every rank (with one rank, that rank's input element).
  ElementSym reducedSym(size_t index) const { return p_ == 1 ? inputSym(0, index) : ElementSym{index, sets_.full(), false}; }
  int rankOfId(uint64_t id) const {
    return static_cast<int>(std::upper_bound(gbase_.begin(), gbase_.end(), id) - gbase_.begin()) - 1;
  }

  // What rank r's Output must hold at the end (the layout table of collective.h), as affine
  // runs: blocks that continue each other (an all-gather's, from consecutive ranks) are one.
  bool expectations(int r, std::vector<Expect>* e) {
    const CollArgs& a = a_[r];
    const size_t n = a.count, out = outputElems(a, r);
    // Output[at, at + count) holds elements index.. of rank src's Input (src < 0: reduced over
    // all), which has `in` elements (and for src >= 0 the ranks after it, whose ids follow).
    auto block = [&](size_t at, size_t count, int src, size_t index, size_t in) {
      if (count == 0) return true;
      if (at + count > out)
        return fail(format("rank %d: arguments put a block at out[%zu+%zu], past its %zu elements", r, at, count, out));
      if (index + count > in)
        return src < 0 ? fail(format("rank %d: arguments read in[%zu+%zu], past its %zu elements", r, index, count, in))
                       : fail(format("rank %d: arguments read rank %d's in[%zu+%zu], past its %zu elements", r, src, index,
                                     count, in));
      ElementSym want = src < 0 ? reducedSym(index) : inputSym(src, index);
      if (!e->empty() && e->back().out + e->back().count == at && e->back().want.at(e->back().count) == want)
        e->back().count += count;
      else
        e->push_back({at, count, want});
      return true;
    };
    auto from = [&](int src) { return inputElems(a_[src < 0 ? r : src], src < 0 ? r : src); };
    auto blocksFromEveryRank = [&](size_t index) {
      // All-gather, gather: every rank's input is its block, so block j's ids follow block
      // j-1's and the whole Output is one run (p blocks one by one would cost p^2 in all).
      if (index == 0 && gbase_[p_] == static_cast<uint64_t>(p_) * n) return block(0, p_ * n, 0, 0, p_ * n);
      for (int j = 0; j < p_; ++j)
        if (!block(static_cast<size_t>(j) * n, n, j, index, from(j))) return false;
      return true;
    };
    switch (a.coll) {
      case Coll::AllReduce: return block(0, n, -1, 0, from(-1));
      case Coll::Broadcast: return block(0, n, a.root, 0, from(a.root));
      case Coll::Reduce: return r != a.root || block(0, n, -1, 0, from(-1));
      case Coll::AllGather: return blocksFromEveryRank(0);
      case Coll::ReduceScatter: return block(0, n, -1, r * n, from(-1));
      case Coll::AlltoAll: return blocksFromEveryRank(r * n);
      case Coll::Gather: return r != a.root || blocksFromEveryRank(0);
      case Coll::Scatter: return block(0, n, a.root, r * n, from(a.root));
      case Coll::AllGatherV:
        for (int j = 0; j < p_; ++j)
          if (!block(a.displs[j], a.counts[j], j, 0, from(j))) return false;
        return true;
      case Coll::ReduceScatterV: return block(0, a.counts[r], -1, a.displs[r], from(-1));
      case Coll::AlltoAllV:
        for (int i = 0; i < p_; ++i)
          if (!block(a.recvDispls[i], a.recvCounts[i], i, a_[i].sendDispls[r], from(i))) return false;
        return true;
      case Coll::kCount: break;
    }
    return true;
  }

  bool setUpMemory() {
    gbase_.assign(p_ + 1, 0);
    for (int r = 0; r < p_; ++r) gbase_[r + 1] = gbase_[r] + inputElems(a_[r], r);
    mem_.resize(p_);
    for (int r = 0; r < p_; ++r) {
      const CollArgs& a = a_[r];
      RankMem& m = mem_[r];
      size_t in = inputElems(a, r), out = outputElems(a, r), scratch = s_[r].scratchElems;
      bool outInsideIn = false;
      size_t off = 0, array = in + out;
      const size_t kIn = static_cast<size_t>(BufferId::Input), kOut = static_cast<size_t>(BufferId::Output);
      if (inPlaceAlias(a, r, &outInsideIn, &off)) {
        m.base[outInsideIn ? kOut : kIn] = off;
        array = outInsideIn ? std::max(in, off + out) : std::max(out, off + in);
      } else {
        m.base[kOut] = in;
      }
      m.base[static_cast<size_t>(BufferId::Scratch)] = array;
      m.size[kIn] = in;
      m.size[kOut] = out;
      m.size[static_cast<size_t>(BufferId::Scratch)] = scratch;
      m.elems = ElementRuns(array + scratch);
      m.elems.write(m.base[kIn], in, inputSym(r, 0));
      if (!expectations(r, &m.expect)) return false;
      auto markWritable = [&](ElementRun& run, uint64_t, uint64_t) { return run.writable = true; };
      for (const Expect& e : m.expect) {
        const size_t lo = m.base[kOut] + e.out;
        size_t twice = 0;
        if (!m.elems.scan(lo, lo + e.count, [&](const ElementSym&, const ElementRun& run, uint64_t b, uint64_t) {
              twice = b - m.base[kOut];
              return !run.writable;
            }))
          return fail(format("rank %d: arguments put two blocks at out[%zu]", r, twice));
        m.elems.update(lo, lo + e.count, markWritable);
      }
      m.elems.update(array, array + scratch, markWritable);
    }
    return true;
  }

  // ---- steps ---------------------------------------------------------------------------------

  const Step& step(uint32_t g) const { return s_[rankOf_[g]].steps[g - stepBase_[rankOf_[g]]]; }

  // "rank 2 step 7 (send to 3, out[16+8])"
  std::string text(uint32_t g) const {
    const Step& st = step(g);
    std::string t = format("rank %d step %u (%s", rankOf_[g], g - stepBase_[rankOf_[g]], stepKindName(st.kind));
    if (st.kind == StepKind::Send) t += format(" to %d", st.peer);
    if (isRecv(st.kind)) t += format(" from %d", st.peer);
    if (readsSrc(st.kind)) t += format(", %s[%zu+%zu]", bufName(st.src.buf), st.src.offset, st.src.count);
    if (writesDst(st.kind)) t += format(" -> %s[%zu+%zu]", bufName(st.dst.buf), st.dst.offset, st.dst.count);
    return t + ")";
  }

  static std::string elem(const Region& reg, size_t k) { return format("%s[%zu]", bufName(reg.buf), reg.offset + k); }

  bool checkRegion(uint32_t g, const Region& reg) {
    int r = rankOf_[g];
    size_t b = static_cast<size_t>(reg.buf);
    if (b >= static_cast<size_t>(kBuffersPerCall))
      return fail(format("%s uses buffer %zu: only one call's buffers (0-2) are verified", text(g).c_str(), b));
    size_t size = mem_[r].size[b];
    if (reg.offset > size || reg.count > size - reg.offset)
      return fail(format("%s: region %s[%zu+%zu] is outside the buffer's %zu elements", text(g).c_str(), bufName(reg.buf),
                         reg.offset, reg.count, size));
    return true;
  }

  bool checkSteps() {
    stepBase_.assign(p_ + 1, 0);
    uint64_t steps = 0;
    for (int r = 0; r < p_; ++r) {
      steps += s_[r].steps.size();
      if (steps >= 0xffffffffu) return fail(format("more than %u steps in all: the verifier numbers them in 32 bits", 0xffffffffu - 1));
      stepBase_[r + 1] = static_cast<uint32_t>(steps);
    }
    const uint32_t total = stepBase_[p_];
    rankOf_.resize(total);
    for (int r = 0; r < p_; ++r)
      std::fill(rankOf_.begin() + stepBase_[r], rankOf_.begin() + stepBase_[r + 1], static_cast<uint16_t>(r));
    const CollArgs& a = a_[0];
    for (uint32_t g = 0; g < total; ++g) {
      const int r = rankOf_[g];
      const RankSchedule& sched = s_[r];
      const Step& st = step(g);
      if (st.kind > StepKind::Divide)
        return fail(format("rank %d step %u: unknown kind %d", r, g - stepBase_[r], static_cast<int>(st.kind)));
      bool comm = st.kind == StepKind::Send || isRecv(st.kind);
      if (comm && (st.peer < 0 || st.peer >= p_ || st.peer == r))
        return fail(format("%s: bad peer %d", text(g).c_str(), st.peer));
      if (!comm && st.peer >= 0)
        return fail(format("%s has peer %d: the executor would queue it as a receive", text(g).c_str(), st.peer));
      if (static_cast<size_t>(st.depBegin) + st.depCount > sched.deps.size())
        return fail(format("%s: dependency list past the schedule's %zu deps", text(g).c_str(), sched.deps.size()));
      for (uint32_t d = 0; d < st.depCount; ++d)
        if (sched.deps[st.depBegin + d] >= sched.steps.size())
          return fail(format("%s depends on step %u, which does not exist", text(g).c_str(), sched.deps[st.depBegin + d]));
      if (readsSrc(st.kind) && !checkRegion(g, st.src)) return false;
      if (writesDst(st.kind) && !checkRegion(g, st.dst)) return false;
      if ((st.kind == StepKind::Copy || st.kind == StepKind::RecvReduce) && st.src.count != st.dst.count)
        return fail(format("%s: source and destination sizes differ", text(g).c_str()));
      if (st.kind == StepKind::RecvReduce) {
        size_t s = addr(r, st.src), d = addr(r, st.dst);
        if (s != d && s < d + st.dst.count && d < s + st.src.count)
          return fail(format("%s: the local operand overlaps the destination at another offset", text(g).c_str()));
      }
      if (st.kind == StepKind::Divide) {
        if (!isReduction(a.coll)) return fail(format("%s: %s is not a reduction", text(g).c_str(), collName(a.coll)));
        if (!a.average) return fail(format("%s: the call does not average", text(g).c_str()));
        if (st.divisor != p_) return fail(format("%s divides by %d, not by nranks = %d", text(g).c_str(), st.divisor, p_));
      }
      if (writesDst(st.kind)) {
        const size_t lo = addr(r, st.dst);
        size_t k = 0;
        if (!mem_[r].elems.scan(lo, lo + st.dst.count, [&](const ElementSym&, const ElementRun& run, uint64_t b, uint64_t) {
              k = b - lo;
              return run.writable;
            }))
          return fail(format("%s writes %s, which the call must leave unchanged (%s)", text(g).c_str(), elem(st.dst, k).c_str(),
                             addrIsInput(r, lo + k) ? "the caller's input" : "outside the blocks the collective defines"));
      }
    }
    return true;
  }

  size_t addr(int r, const Region& reg) const { return mem_[r].base[static_cast<size_t>(reg.buf)] + reg.offset; }
  bool addrIsInput(int r, size_t a) const {
    const RankMem& m = mem_[r];
    return a >= m.base[0] && a < m.base[0] + m.size[0];
  }

  // Pairs every rank's sends with its peers' receives: channel (from, to) lists its sends and
  // its receives in schedule order. Channels are numbered by sender, then receiver, so a
  // receive finds its channel by a binary search among its sender's (no p x p table). Checks
  // the paired sizes, and builds the reverse dependency lists.
  bool buildChannels() {
    const uint32_t total = stepBase_[p_];
    chanOf_.assign(total, kNoChannel);
    posOf_.assign(total, 0);
    std::vector<uint32_t> chanBegin(p_ + 1, 0), slot(p_, kNoChannel);
    std::vector<int> peers;
    for (int a = 0; a < p_; ++a) {
      chanBegin[a] = static_cast<uint32_t>(channels_.size());
      peers.clear();
      for (uint32_t g = stepBase_[a]; g < stepBase_[a + 1]; ++g)
        if (step(g).kind == StepKind::Send && slot[step(g).peer] == kNoChannel) {
          slot[step(g).peer] = 0;
          peers.push_back(step(g).peer);
        }
      std::sort(peers.begin(), peers.end());
      for (int to : peers) {
        slot[to] = static_cast<uint32_t>(channels_.size());
        channels_.push_back({});
        channels_.back().from = a;
        channels_.back().to = to;
      }
      for (uint32_t g = stepBase_[a]; g < stepBase_[a + 1]; ++g)
        if (step(g).kind == StepKind::Send) {
          chanOf_[g] = slot[step(g).peer];
          posOf_[g] = channels_[chanOf_[g]].sends++;
        }
      for (int to : peers) slot[to] = kNoChannel;
    }
    chanBegin[p_] = static_cast<uint32_t>(channels_.size());
    std::unordered_map<uint64_t, uint32_t> unsent;  // receives from a rank that sends nothing to the receiver
    for (uint32_t g = 0; g < total; ++g) {
      const Step& st = step(g);
      if (!isRecv(st.kind)) continue;
      const int from = st.peer, to = rankOf_[g];
      auto first = channels_.begin() + chanBegin[from], last = channels_.begin() + chanBegin[from + 1];
      auto it = std::lower_bound(first, last, to, [](const Channel& ch, int t) { return ch.to < t; });
      uint32_t c = static_cast<uint32_t>(it - channels_.begin());
      if (it == last || it->to != to) {
        auto [u, fresh] = unsent.try_emplace(static_cast<uint64_t>(from) << 32 | static_cast<uint32_t>(to),
                                             static_cast<uint32_t>(channels_.size()));
        if (fresh) {
          channels_.push_back({});
          channels_.back().from = from;
          channels_.back().to = to;
        }
        c = u->second;
      }
      chanOf_[g] = c;
      posOf_[g] = channels_[c].recvs++;
    }
    uint32_t sends = 0, recvs = 0;
    for (Channel& ch : channels_) {
      ch.sendBegin = sends;
      ch.recvBegin = recvs;
      sends += ch.sends;
      recvs += ch.recvs;
    }
    sendSteps_.resize(sends);
    recvSteps_.resize(recvs);
    for (uint32_t g = 0; g < total; ++g) {
      if (chanOf_[g] == kNoChannel) continue;
      const Channel& ch = channels_[chanOf_[g]];
      if (step(g).kind == StepKind::Send) sendSteps_[ch.sendBegin + posOf_[g]] = g;
      else recvSteps_[ch.recvBegin + posOf_[g]] = g;
    }
    for (const Channel& ch : channels_) {
      for (uint32_t k = 0; k < std::min(ch.sends, ch.recvs); ++k) {
        uint32_t sg = sendSteps_[ch.sendBegin + k], rg = recvSteps_[ch.recvBegin + k];
        if (step(sg).src.count != step(rg).dst.count)
          return fail(format("message %u from rank %d to rank %d: %s sends %zu elements, %s receives %zu", k, ch.from, ch.to,
                             text(sg).c_str(), step(sg).src.count, text(rg).c_str(), step(rg).dst.count));
      }
    }
    // Reverse dependencies (CSR) and counters.
    depsLeft_.assign(total, 0);
    revBegin_.assign(total + 1, 0);
    forEachDep([&](uint32_t g, uint32_t d) {
      ++depsLeft_[g];
      ++revBegin_[d + 1];
    });
    for (uint32_t g = 0; g < total; ++g) revBegin_[g + 1] += revBegin_[g];
    rev_.resize(revBegin_[total]);
    std::vector<uint32_t> fill(revBegin_.begin(), revBegin_.end() - 1);
    forEachDep([&](uint32_t g, uint32_t d) { rev_[fill[d]++] = g; });
    return true;
  }

  template <typename F>
  void forEachDep(F f) {
    for (uint32_t g = 0; g < stepBase_[p_]; ++g) {
      const int r = rankOf_[g];
      const Step& st = step(g);
      for (uint32_t d = 0; d < st.depCount; ++d) f(g, stepBase_[r] + s_[r].deps[st.depBegin + d]);
    }
  }

  // ---- the run -------------------------------------------------------------------------------

  void simulate() {
    const uint32_t total = stepBase_[p_];
    state_.assign(total, kWaiting);
    remaining_ = total;
    for (uint32_t g = 0; g < total; ++g)
      if (depsLeft_[g] == 0) makeReady(g);
    // The order is the adversary's. Among steps that are ready together, messages are posted
    // before local steps run: a send then reads before a copy that it does not wait for
    // writes (the executor may do that: it posts before it runs local steps in a pass), and
    // a copy that does not wait for a send or receive of the same elements meets it in
    // flight. Local steps that are ready together run as one batch that may go in any order,
    // so two of them touching the same elements without a dependency are a conflict too.
    // Only when nothing else can happen does a message complete, one at a time, so every
    // in-flight window is as wide as the executor allows.
    while (result_.ok) {
      if (postHead_ < readyPosts_.size()) {
        start(readyPosts_[postHead_++]);
      } else if (localHead_ < readyLocal_.size()) {
        runLocalBatch();
      } else if (matchHead_ < matches_.size()) {
        auto [c, k] = matches_[matchHead_++];
        deliver(c, k);
      } else {
        break;
      }
    }
  }

  void makeReady(uint32_t g) { (chanOf_[g] == kNoChannel ? readyLocal_ : readyPosts_).push_back(g); }

  // A message step's dependencies are done: it is posted once the steps before it on its
  // channel are (the executor's per-peer order).
  void start(uint32_t g) {
    state_[g] = kReady;
    if (step(g).kind == StepKind::Send) postSends(chanOf_[g]);
    else postRecvs(chanOf_[g]);
  }

  void postSends(uint32_t c) {
    Channel& ch = channels_[c];
    while (ch.sendsPosted < ch.sends) {
      uint32_t g = sendSteps_[ch.sendBegin + ch.sendsPosted];
      if (state_[g] != kReady || !beginRead(g, step(g).src)) return;
      state_[g] = kPosted;
      if (ch.sendsPosted++ < ch.recvsPosted) matches_.push_back({c, ch.sendsPosted - 1});
    }
  }

  void postRecvs(uint32_t c) {
    Channel& ch = channels_[c];
    while (ch.recvsPosted < ch.recvs) {
      uint32_t g = recvSteps_[ch.recvBegin + ch.recvsPosted];
      if (state_[g] != kReady) return;
      const Step& st = step(g);
      // The destination first: a local operand that is the destination is this step's own.
      if (!beginWrite(g, st.dst) || (st.kind == StepKind::RecvReduce && !beginRead(g, st.src))) return;
      state_[g] = kPosted;
      if (ch.recvsPosted++ < ch.sendsPosted) matches_.push_back({c, ch.recvsPosted - 1});
    }
  }

  // The symbols of rank r's region, as pieces, as the step reading it completes (its read
  // marks go).
  void takeRead(int r, const Region& reg, std::vector<Piece>* pieces) {
    pieces->clear();
    const size_t lo = addr(r, reg);
    mem_[r].elems.update(lo, lo + reg.count, [&](ElementRun& run, uint64_t b, uint64_t e) {
      --run.readers;
      if (!pieces->empty() && pieces->back().sym.at(pieces->back().n) == run.sym) pieces->back().n += e - b;  // continues
      else pieces->push_back({e - b, run.sym});
      return true;
    });
  }

  // Writes the pieces to rank r's region as the step writing it completes.
  void write(int r, const Region& reg, const std::vector<Piece>& pieces) {
    size_t at = addr(r, reg);
    for (const Piece& pc : pieces) {
      mem_[r].elems.write(at, pc.n, pc.sym);
      at += pc.n;
    }
  }

  // The k-th message of channel c arrives: the receive writes its destination and both steps
  // are done.
  void deliver(uint32_t c, uint32_t k) {
    const Channel& ch = channels_[c];
    uint32_t sg = sendSteps_[ch.sendBegin + k], rg = recvSteps_[ch.recvBegin + k];
    const Step& rs = step(rg);
    takeRead(ch.from, step(sg).src, &incoming_);
    if (rs.kind == StepKind::Recv) {
      write(ch.to, rs.dst, incoming_);
    } else {
      takeRead(ch.to, rs.src, &local_);
      if (!reduce(rg, local_, incoming_, &sums_)) return;
      write(ch.to, rs.dst, sums_);
    }
    complete(sg);
    complete(rg);
  }

  // An operand of a reduction: the source index, the rank set, and for how many elements on
  // both stay affine (an input id's run may run into the next rank's input).
  struct Summand {
    uint64_t index;
    uint32_t set;
    uint64_t span;
  };
  Summand summand(const ElementSym& s) const {
    if (s.set != kOneRank) return {s.value, s.set, ~uint64_t{0}};
    int r = rankOfId(s.value);
    return {s.value - gbase_[r], sets_.single(r), gbase_[r + 1] - s.value};
  }

  // Step g (a RecvReduce) combines the local operand with the incoming one, piece by piece.
  bool reduce(uint32_t g, const std::vector<Piece>& local, const std::vector<Piece>& incoming, std::vector<Piece>* sums) {
    const Step& st = step(g);
    sums->clear();
    size_t i = 0, j = 0;
    uint64_t ui = 0, uj = 0, k = 0;  // used of local[i], of incoming[j]; elements done
    while (i < local.size() && j < incoming.size()) {
      ElementSym l = local[i].sym.at(ui), m = incoming[j].sym.at(uj);
      if (l.divided || m.divided) return fail(format("%s reduces %s after it was divided", text(g).c_str(), elem(st.dst, k).c_str()));
      Summand a = summand(l), b = summand(m);
      if (a.index != b.index)
        return fail(format("%s combines %s with %s", text(g).c_str(), symText(l).c_str(), symText(m).c_str()));
      uint32_t u = sets_.unite(a.set, b.set);
      if (u == RankSets::kOverlap)
        return fail(format("%s counts rank %d twice in %s: local %s, incoming %s", text(g).c_str(), sets_.firstCommon(a.set, b.set),
                           elem(st.dst, k).c_str(), symText(l).c_str(), symText(m).c_str()));
      uint64_t n = std::min({local[i].n - ui, incoming[j].n - uj, a.span, b.span});
      sums->push_back({n, ElementSym{a.index, u, false}});
      k += n;
      if ((ui += n) == local[i].n) ++i, ui = 0;
      if ((uj += n) == incoming[j].n) ++j, uj = 0;
    }
    return true;
  }

  // Runs the local steps that are ready now: all start (their accesses are marked, so two
  // that conflict fail), then each runs and completes.
  void runLocalBatch() {
    const size_t begin = localHead_, end = readyLocal_.size();
    localHead_ = end;
    for (size_t i = begin; i < end; ++i) {
      uint32_t g = readyLocal_[i];
      const Step& st = step(g);
      if (selfCopy(g)) continue;
      const Region& src = st.kind == StepKind::Copy ? st.src : st.dst;  // a Divide reads what it writes
      if (!beginWrite(g, st.dst) || !beginRead(g, src)) return;
      state_[g] = kPosted;
    }
    for (size_t i = begin; i < end; ++i) {
      uint32_t g = readyLocal_[i];
      const Step& st = step(g);
      if (!selfCopy(g)) {
        if (st.kind == StepKind::Copy) {  // memmove: the regions may overlap
          takeRead(rankOf_[g], st.src, &local_);
          write(rankOf_[g], st.dst, local_);
        } else if (!divide(g)) {
          return;
        }
      }
      complete(g);
    }
  }

  // The executor skips a copy onto itself: it touches nothing.
  bool selfCopy(uint32_t g) const {
    const Step& st = step(g);
    return st.kind == StepKind::Copy && addr(rankOf_[g], st.src) == addr(rankOf_[g], st.dst);
  }

  bool isFull(const ElementSym& s) const { return s.set == sets_.full() || (p_ == 1 && s.set == kOneRank); }

  bool divide(uint32_t g) {
    const Step& st = step(g);
    const size_t lo = addr(rankOf_[g], st.dst);
    size_t k = 0;
    ElementSym bad;
    if (mem_[rankOf_[g]].elems.update(lo, lo + st.dst.count, [&](ElementRun& run, uint64_t b, uint64_t) {
          --run.readers;
          run.writer = 0;
          k = b - lo;
          bad = run.sym;
          if (run.sym.divided || !isFull(run.sym)) return false;
          run.sym.divided = true;
          return true;
        }))
      return true;
    if (bad.divided) return fail(format("%s divides %s a second time", text(g).c_str(), elem(st.dst, k).c_str()));
    return fail(format("%s divides %s, which holds %s, before it is fully reduced", text(g).c_str(), elem(st.dst, k).c_str(),
                       symText(bad).c_str()));
  }

  void complete(uint32_t g) {
    state_[g] = kDone;
    --remaining_;
    for (uint32_t i = revBegin_[g]; i < revBegin_[g + 1]; ++i)
      if (--depsLeft_[rev_[i]] == 0) makeReady(rev_[i]);
  }

  // ---- hazards -------------------------------------------------------------------------------

  // Step g reads `reg` from now until it completes: the elements are marked as read.
  bool beginRead(uint32_t g, const Region& reg) {
    const int r = rankOf_[g];
    const size_t lo = addr(r, reg);
    size_t k = 0;
    ElementRun bad;
    if (mem_[r].elems.update(lo, lo + reg.count, [&](ElementRun& run, uint64_t b, uint64_t) {
          if (run.sym.set == 0 || (run.writer && run.writer != g + 1) || run.readers == 0xffff) {
            k = b - lo;
            bad = run;
            return false;
          }
          ++run.readers;
          return true;
        }))
      return true;
    if (bad.sym.set == 0) return fail(format("%s reads %s before anything wrote it", text(g).c_str(), elem(reg, k).c_str()));
    if (bad.writer && bad.writer != g + 1)
      return fail(format("%s reads %s while %s may be writing it (missing dependency on that receive)", text(g).c_str(),
                         elem(reg, k).c_str(), text(bad.writer - 1).c_str()));
    return fail(format("%s: more than 65535 steps read %s at once", text(g).c_str(), elem(reg, k).c_str()));
  }

  // Step g writes `reg` from now until it completes: the elements are marked as written.
  bool beginWrite(uint32_t g, const Region& reg) {
    const int r = rankOf_[g];
    const size_t lo = addr(r, reg);
    size_t k = 0;
    ElementRun bad;
    if (mem_[r].elems.update(lo, lo + reg.count, [&](ElementRun& run, uint64_t b, uint64_t) {
          if (run.readers || run.writer) {
            k = b - lo;
            bad = run;
            return false;
          }
          run.writer = g + 1;
          return true;
        }))
      return true;
    if (bad.readers)
      return fail(format("%s writes %s while %s may still be reading it (missing write-after-read dependency)", text(g).c_str(),
                         elem(reg, k).c_str(), text(inFlightReader(r, lo + k)).c_str()));
    return fail(format("%s writes %s while %s may also be writing it (missing dependency)", text(g).c_str(), elem(reg, k).c_str(),
                       text(bad.writer - 1).c_str()));
  }

  // For an error message: the posted step of rank r that reads element `a`.
  uint32_t inFlightReader(int r, size_t a) const {
    for (uint32_t g = stepBase_[r]; g < stepBase_[r + 1]; ++g) {
      const Step& st = step(g);
      if (state_[g] == kPosted && readsSrc(st.kind) && a >= addr(r, st.src) && a < addr(r, st.src) + st.src.count) return g;
    }
    return stepBase_[r];
  }

  // ---- the end -------------------------------------------------------------------------------

  std::string symText(const ElementSym& s) const {
    if (s.set == 0) return "nothing (never written)";
    std::string t;
    if (s.set == kOneRank) {
      int r = rankOfId(s.value);
      t = format("element %zu of rank %d's input", static_cast<size_t>(s.value - gbase_[r]), r);
    } else {
      t = format("element %zu reduced over %d of %d ranks %s", static_cast<size_t>(s.value), sets_.size(s.set), p_,
                 sets_.text(s.set).c_str());
    }
    return t + (s.divided ? ", divided" : "");
  }

  void checkOutputs() {
    const bool divided = isReduction(a_[0].coll) && a_[0].average;
    for (int r = 0; r < p_; ++r) {
      const RankMem& m = mem_[r];
      const size_t out = m.base[static_cast<size_t>(BufferId::Output)];
      for (const Expect& e : m.expect) {
        ElementSym want = e.want, wrong, got;
        want.divided = divided;
        size_t k = 0;
        if (!m.elems.scan(out + e.out, out + e.out + e.count, [&](const ElementSym& s, const ElementRun&, uint64_t b, uint64_t) {
              k = b - out;
              wrong = want.at(k - e.out);
              got = s;
              ElementSym same = s;
              if (p_ == 1) same.divided = wrong.divided;  // with one rank an average's division by 1 may be skipped or done
              return same == wrong;
            }))
          return (void)fail(
              format("rank %d: out[%zu] holds %s; it should hold %s", r, k, symText(got).c_str(), symText(wrong).c_str()));
      }
    }
  }

  // Nothing can run but steps remain: say why, following what the first stuck step waits for.
  void reportStuck() {
    std::string why;
    for (const Channel& ch : channels_)
      if (ch.sends != ch.recvs) {
        why = format("rank %d sends %u messages to rank %d, which receives %u from it", ch.from, ch.sends, ch.to, ch.recvs);
        break;
      }
    if (why.empty()) {
      uint32_t g = 0;
      while (state_[g] == kDone) ++g;
      why = text(g);
      std::unordered_set<uint32_t> seen;
      for (int hops = 0; hops < 16; ++hops) {
        if (!seen.insert(g).second) {
          why += " (a cycle)";
          break;
        }
        const Step& st = step(g);
        bool send = st.kind == StepKind::Send;
        if (state_[g] == kWaiting) {
          const RankSchedule& s = s_[rankOf_[g]];
          uint32_t d = 0;
          while (state_[stepBase_[rankOf_[g]] + s.deps[st.depBegin + d]] == kDone) ++d;
          g = stepBase_[rankOf_[g]] + s.deps[st.depBegin + d];
          why += " waits for " + text(g);
        } else if (state_[g] == kReady) {  // only messages are ever ready or posted but not done
          const Channel& ch = channels_[chanOf_[g]];
          g = send ? sendSteps_[ch.sendBegin + ch.sendsPosted] : recvSteps_[ch.recvBegin + ch.recvsPosted];
          why += " is queued behind " + text(g);
        } else {  // posted: its partner is not
          const Channel& ch = channels_[chanOf_[g]];
          g = send ? recvSteps_[ch.recvBegin + posOf_[g]] : sendSteps_[ch.sendBegin + posOf_[g]];
          why += " is posted; its partner " + text(g);
        }
      }
    }
    fail(format("%zu steps never ran (deadlock): %s", remaining_, why.c_str()));
  }

  static constexpr uint32_t kNoChannel = ~0u;

  const std::vector<CollArgs>& a_;
  const std::vector<RankSchedule>& s_;
  const int p_;
  RankSets sets_;
  std::vector<RankMem> mem_;
  std::vector<uint64_t> gbase_;  // rank s's input element i has global id gbase_[s] + i
  // Steps of all ranks have global ids: rank r's step i is stepBase_[r] + i.
  std::vector<uint32_t> stepBase_;
  std::vector<uint16_t> rankOf_;
  std::vector<uint8_t> state_;
  std::vector<uint32_t> depsLeft_, revBegin_, rev_, chanOf_, posOf_;
  std::vector<Channel> channels_;
  std::vector<uint32_t> sendSteps_, recvSteps_;
  // FIFO queues (every step is queued once, every message once).
  std::vector<uint32_t> readyPosts_, readyLocal_;        // steps whose dependencies are done
  std::vector<std::pair<uint32_t, uint32_t>> matches_;  // (channel, message index): both sides posted
  size_t postHead_ = 0, localHead_ = 0, matchHead_ = 0;
  size_t remaining_ = 0;
  std::vector<Piece> incoming_, local_, sums_;  // deliver() and runLocalBatch()
  VerifyResult result_;
};

}  // namespace

VerifyResult verifyCollective(const std::vector<CollArgs>& perRank, const std::vector<RankSchedule>& schedules) {
  return Verifier(perRank, schedules).run();
}

VerifyResult verifyAlgorithm(Algo algo, const std::vector<CollArgs>& perRank) {
  if (!rankCountError(perRank.size()).empty()) return {false, rankCountError(perRank.size())};
  std::vector<RankSchedule> schedules;
  schedules.reserve(perRank.size());
  for (size_t r = 0; r < perRank.size(); ++r) {
    try {
      schedules.push_back(buildSchedule(algo, perRank[r]));
    } catch (const std::exception& e) {
      return {false,
              format("rank %zu: building the %s %s schedule failed: %s", r, algoName(algo), collName(perRank[r].coll), e.what())};
    }
  }
  return verifyCollective(perRank, schedules);
}

VerifyResult verifyAlgorithm(Algo algo, const CollArgs& proto) {
  if (proto.nranks < 1 || proto.nranks > kMaxRanks)
    return {false, format("%d ranks: the verifier supports 1 to %d", proto.nranks, kMaxRanks)};
  std::vector<CollArgs> perRank(proto.nranks, proto);
  for (size_t r = 0; r < perRank.size(); ++r) perRank[r].rank = static_cast<int>(r);
  return verifyAlgorithm(algo, perRank);
}

VerifyResult verifyAllReduce(const std::vector<RankSchedule>& schedules, size_t count, bool inPlace) {
  std::vector<CollArgs> perRank(schedules.size());
  bool average = false;
  for (const RankSchedule& s : schedules)
    for (const Step& st : s.steps) average |= st.kind == StepKind::Divide;
  for (size_t r = 0; r < perRank.size(); ++r) {
    perRank[r].coll = Coll::AllReduce;
    perRank[r].rank = static_cast<int>(r);
    perRank[r].nranks = static_cast<int>(schedules.size());
    perRank[r].count = count;
    perRank[r].inPlace = inPlace;
    perRank[r].average = average;
  }
  return verifyCollective(perRank, schedules);
}

}  // namespace chorus
