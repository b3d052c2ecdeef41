#include "collectives/verifier.h"

#include <algorithm>
#include <exception>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "base/error.h"

namespace chorus {
namespace {

// Rank ids fit the 16 bits of a set's runs and of rankOf_.
constexpr int kMaxRanks = 1024;
// The run keeps 16 bytes per element of every rank's buffers: more than this many elements in
// all (512 MB) is a test that asks too much of one process, not a schedule bug.
constexpr size_t kMaxElements = size_t{1} << 25;

std::string rankCountError(size_t p) {
  return p >= 1 && p <= static_cast<size_t>(kMaxRanks) ? "" : format("%zu ranks: the verifier supports 1 to %d", p, kMaxRanks);
}

// Sets of ranks, hash-consed: a set is a small id, equal sets have equal ids, and the union of
// two ids is computed once. A set is stored as its sorted runs of consecutive ranks: the sets
// the algorithms build (ring arcs, subtrees, hypercube faces) are a few runs, so a p = 1024 run
// keeps its many distinct sets in little memory, and an element holds only the id.
class RankSets {
 public:
  static constexpr uint32_t kOverlap = ~0u;  // unite(): the sets share a rank

  explicit RankSets(int p) : p_(p) {
    offset_ = {0, 0};  // id 0: the empty set (an element nothing has written)
    size_ = {0};
    for (int r = 0; r < p; ++r) intern({run(r, r + 1)});  // ids 1..p: the single ranks
    full_ = intern({run(0, p)});
  }

  uint32_t single(int rank) const { return static_cast<uint32_t>(rank) + 1; }
  uint32_t full() const { return full_; }
  int size(uint32_t id) const { return size_[id]; }
  bool isSingle(uint32_t id) const { return id >= 1 && id <= static_cast<uint32_t>(p_); }

  // The union of two disjoint sets, or kOverlap.
  uint32_t unite(uint32_t a, uint32_t b) {
    if (a > b) std::swap(a, b);
    uint64_t key = static_cast<uint64_t>(a) << 32 | b;
    auto it = unions_.find(key);
    if (it != unions_.end()) return it->second;
    merged_.clear();
    uint32_t i = offset_[a], ie = offset_[a + 1], j = offset_[b], je = offset_[b + 1];
    uint32_t id = 0;
    while (i < ie || j < je) {
      uint32_t s = (j >= je || (i < ie && lo(pool_[i]) < lo(pool_[j]))) ? pool_[i++] : pool_[j++];
      if (!merged_.empty() && lo(s) < hi(merged_.back())) {
        id = kOverlap;
        break;
      }
      if (!merged_.empty() && lo(s) == hi(merged_.back())) {
        merged_.back() = run(lo(merged_.back()), hi(s));
      } else {
        merged_.push_back(s);
      }
    }
    if (id != kOverlap) id = intern(merged_);
    unions_.emplace(key, id);
    return id;
  }

  bool contains(uint32_t id, int rank) const {
    for (uint32_t i = offset_[id]; i < offset_[id + 1]; ++i)
      if (rank >= lo(pool_[i]) && rank < hi(pool_[i])) return true;
    return false;
  }

  // "{0-3,5}" (long sets shortened).
  std::string text(uint32_t id) const {
    std::string t = "{";
    for (uint32_t i = offset_[id]; i < offset_[id + 1]; ++i) {
      if (i - offset_[id] == 8) {
        t += ",...";
        break;
      }
      int l = lo(pool_[i]), h = hi(pool_[i]);
      t += (i == offset_[id] ? "" : ",") + (h == l + 1 ? std::to_string(l) : std::to_string(l) + "-" + std::to_string(h - 1));
    }
    return t + "}";
  }

 private:
  static uint32_t run(int lo, int hi) { return static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16; }
  static int lo(uint32_t s) { return static_cast<int>(s & 0xffff); }
  static int hi(uint32_t s) { return static_cast<int>(s >> 16); }

  uint32_t intern(const std::vector<uint32_t>& runs) {
    uint64_t h = 1469598103934665603ull;
    for (uint32_t s : runs) h = (h ^ s) * 1099511628211ull;
    auto range = byHash_.equal_range(h);
    for (auto it = range.first; it != range.second; ++it) {
      uint32_t id = it->second;
      if (offset_[id + 1] - offset_[id] == runs.size() && std::equal(runs.begin(), runs.end(), pool_.begin() + offset_[id]))
        return id;
    }
    uint32_t id = static_cast<uint32_t>(size_.size());
    CHORUS_ASSERT(id < (1u << 31));  // the id shares a word with the index (see Sym)
    int n = 0;
    for (uint32_t s : runs) n += hi(s) - lo(s);
    pool_.insert(pool_.end(), runs.begin(), runs.end());
    offset_.push_back(static_cast<uint32_t>(pool_.size()));
    size_.push_back(n);
    byHash_.emplace(h, id);
    return id;
  }

  int p_;
  uint32_t full_ = 0;
  std::vector<uint32_t> pool_;    // runs of all sets: lo | hi << 16, [lo, hi)
  std::vector<uint32_t> offset_;  // set id's runs are pool_[offset_[id], offset_[id + 1])
  std::vector<int> size_;
  std::unordered_multimap<uint64_t, uint32_t> byHash_;
  std::unordered_map<uint64_t, uint32_t> unions_;
  std::vector<uint32_t> merged_;
};

// An element's symbol: index in the source Input (bits 0-31), rank set id (32-62), divided
// (63). 0 is the empty set: nothing has written the element.
using Sym = uint64_t;
constexpr Sym kDivided = Sym{1} << 63;
Sym makeSym(size_t index, uint32_t set, bool divided) { return index | static_cast<Sym>(set) << 32 | (divided ? kDivided : 0); }
uint32_t symIndex(Sym s) { return static_cast<uint32_t>(s); }
uint32_t symSet(Sym s) { return static_cast<uint32_t>(s >> 32) & 0x7fffffffu; }
bool symDivided(Sym s) { return (s & kDivided) != 0; }

struct Cell {
  Sym sym = 0;
  uint32_t writer = 0;   // 1 + global id of the in-flight receive that writes the element; 0: none
  uint16_t readers = 0;  // in-flight steps that read it (sends, reduce operands)
  uint8_t writable = 0;  // Scratch, or a part of Output the collective defines
};

// A run of a rank's Output the collective defines: Output[out, out + count) holds elements
// index.. of the Input of the ranks in `set` (reduced over all of them, for a reduction).
struct Expect {
  size_t out, count, index;
  uint32_t set;
};

struct RankMem {
  // Where each BufferId starts in `cells` (Input and Output overlap for an in-place call).
  size_t base[kBuffersPerCall] = {}, size[kBuffersPerCall] = {};
  std::vector<Cell> cells;
  std::vector<Expect> expect;
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

  // What rank r's Output must hold at the end (the layout table of collective.h).
  std::vector<Expect> expectations(int r) {
    const CollArgs& a = a_[r];
    const size_t n = a.count;
    const uint32_t all = sets_.full();
    std::vector<Expect> e;
    auto blocksFromEveryRank = [&](size_t index) {
      for (int j = 0; j < p_; ++j) e.push_back({static_cast<size_t>(j) * n, n, index, sets_.single(j)});
    };
    switch (a.coll) {
      case Coll::AllReduce: e.push_back({0, n, 0, all}); break;
      case Coll::Broadcast: e.push_back({0, n, 0, sets_.single(a.root)}); break;
      case Coll::Reduce:
        if (r == a.root) e.push_back({0, n, 0, all});
        break;
      case Coll::AllGather: blocksFromEveryRank(0); break;
      case Coll::ReduceScatter: e.push_back({0, n, r * n, all}); break;
      case Coll::AlltoAll: blocksFromEveryRank(r * n); break;
      case Coll::Gather:
        if (r == a.root) blocksFromEveryRank(0);
        break;
      case Coll::Scatter: e.push_back({0, n, r * n, sets_.single(a.root)}); break;
      case Coll::AllGatherV:
        for (int j = 0; j < p_; ++j) e.push_back({a.displs[j], a.counts[j], 0, sets_.single(j)});
        break;
      case Coll::ReduceScatterV: e.push_back({0, a.counts[r], a.displs[r], all}); break;
      case Coll::AlltoAllV:
        for (int i = 0; i < p_; ++i) e.push_back({a.recvDispls[i], a.recvCounts[i], a_[i].sendDispls[r], sets_.single(i)});
        break;
      case Coll::kCount: break;
    }
    e.erase(std::remove_if(e.begin(), e.end(), [](const Expect& x) { return x.count == 0; }), e.end());
    return e;
  }

  bool setUpMemory() {
    const bool reduction = isReduction(a_[0].coll);
    mem_.resize(p_);
    size_t total = 0;
    for (int r = 0; r < p_; ++r) {
      const CollArgs& a = a_[r];
      RankMem& m = mem_[r];
      size_t in = inputElems(a, r), out = outputElems(a, r), scratch = s_[r].scratchElems;
      if (in > 0xffffffffu) return fail(format("rank %d: %zu input elements; the verifier indexes 2^32", r, in));
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
      total += array + scratch;
      if (total > kMaxElements)
        return fail(format("the buffers of all ranks exceed %zu elements: too large to verify", kMaxElements));
      m.cells.assign(array + scratch, Cell{});
      for (size_t k = 0; k < in; ++k) m.cells[m.base[kIn] + k].sym = makeSym(k, sets_.single(r), false);
      m.expect = expectations(r);
      for (const Expect& e : m.expect) {
        if (e.out + e.count > out)
          return fail(format("rank %d: arguments put a block at out[%zu+%zu], past its %zu elements", r, e.out, e.count, out));
        if (reduction && e.index + e.count > in)
          return fail(format("rank %d: arguments read in[%zu+%zu], past its %zu elements", r, e.index, e.count, in));
        for (size_t k = 0; k < e.count; ++k) {
          Cell& c = m.cells[m.base[kOut] + e.out + k];
          if (c.writable) return fail(format("rank %d: arguments put two blocks at out[%zu]", r, e.out + k));
          c.writable = 1;
        }
      }
      for (size_t k = 0; k < scratch; ++k) m.cells[array + k].writable = 1;
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

  Cell* cells(int r, const Region& reg) { return mem_[r].cells.data() + mem_[r].base[static_cast<size_t>(reg.buf)] + reg.offset; }

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
    for (int r = 0; r < p_; ++r) stepBase_[r + 1] = stepBase_[r] + static_cast<uint32_t>(s_[r].steps.size());
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
        const Cell* c = cells(r, st.dst);
        for (size_t k = 0; k < st.dst.count; ++k)
          if (!c[k].writable)
            return fail(
                format("%s writes %s, which the call must leave unchanged (%s)", text(g).c_str(), elem(st.dst, k).c_str(),
                       addrIsInput(r, addr(r, st.dst) + k) ? "the caller's input" : "outside the blocks the collective defines"));
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
  // its receives in schedule order (two counting passes over the steps; a p x p table finds a
  // pair's channel). Checks the paired sizes, and builds the reverse dependency lists.
  bool buildChannels() {
    const uint32_t total = stepBase_[p_];
    std::vector<uint32_t> table(static_cast<size_t>(p_) * p_, kNoChannel);
    chanOf_.assign(total, kNoChannel);
    posOf_.assign(total, 0);
    for (uint32_t g = 0; g < total; ++g) {
      const Step& st = step(g);
      bool sending = st.kind == StepKind::Send;
      if (!sending && !isRecv(st.kind)) continue;
      int from = sending ? rankOf_[g] : st.peer, to = sending ? st.peer : rankOf_[g];
      uint32_t& c = table[static_cast<size_t>(from) * p_ + to];
      if (c == kNoChannel) {
        c = static_cast<uint32_t>(channels_.size());
        channels_.push_back({});
        channels_.back().from = from;
        channels_.back().to = to;
      }
      chanOf_[g] = c;
      posOf_[g] = sending ? channels_[c].sends++ : channels_[c].recvs++;
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

  // The k-th message of channel c arrives: the receive writes its destination and both steps
  // are done.
  void deliver(uint32_t c, uint32_t k) {
    const Channel& ch = channels_[c];
    uint32_t sg = sendSteps_[ch.sendBegin + k], rg = recvSteps_[ch.recvBegin + k];
    const Step& ss = step(sg);
    const Step& rs = step(rg);
    Cell* in = cells(ch.from, ss.src);
    Cell* dst = cells(ch.to, rs.dst);
    const size_t n = rs.dst.count;
    for (size_t i = 0; i < n; ++i) --in[i].readers;
    if (rs.kind == StepKind::Recv) {
      for (size_t i = 0; i < n; ++i) {
        dst[i].sym = in[i].sym;
        dst[i].writer = 0;
      }
    } else {
      Cell* local = cells(ch.to, rs.src);
      for (size_t i = 0; i < n; ++i) {
        --local[i].readers;
        Sym l = local[i].sym, m = in[i].sym;
        // Runs of elements share their sets: the last union is reused without a lookup.
        if (((l ^ m) & 0xffffffffu) == 0 && ((l | m) & kDivided) == 0 && symSet(l) == lastA_ && symSet(m) == lastB_ &&
            lastUnion_ != RankSets::kOverlap) {
          dst[i].sym = makeSym(symIndex(l), lastUnion_, false);
        } else {
          Sym s = reduce(rg, i, l, m);
          if (!result_.ok) return;
          dst[i].sym = s;
        }
        dst[i].writer = 0;
      }
    }
    complete(sg);
    complete(rg);
  }

  Sym reduce(uint32_t g, size_t k, Sym local, Sym incoming) {
    const Step& st = step(g);
    if (symDivided(local) || symDivided(incoming)) {
      fail(format("%s reduces %s after it was divided", text(g).c_str(), elem(st.dst, k).c_str()));
      return 0;
    }
    if (symIndex(local) != symIndex(incoming)) {
      fail(format("%s combines %s with %s", text(g).c_str(), symText(local).c_str(), symText(incoming).c_str()));
      return 0;
    }
    uint32_t a = symSet(local), b = symSet(incoming);
    if (a != lastA_ || b != lastB_) {
      lastA_ = a;
      lastB_ = b;
      lastUnion_ = sets_.unite(a, b);
    }
    if (lastUnion_ == RankSets::kOverlap) {
      int twice = 0;
      while (!(sets_.contains(a, twice) && sets_.contains(b, twice))) ++twice;
      fail(format("%s counts rank %d twice in %s: local %s, incoming %s", text(g).c_str(), twice, elem(st.dst, k).c_str(),
                  symText(local).c_str(), symText(incoming).c_str()));
      return 0;
    }
    return makeSym(symIndex(local), lastUnion_, false);
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
        const int r = rankOf_[g];
        Cell* dst = cells(r, st.dst);
        if (st.kind == StepKind::Copy) {
          Cell* src = cells(r, st.src);
          copyBuf_.resize(st.src.count);
          for (size_t k = 0; k < st.src.count; ++k) {  // memmove: the regions may overlap
            copyBuf_[k] = src[k].sym;
            --src[k].readers;
          }
          for (size_t k = 0; k < st.dst.count; ++k) dst[k].sym = copyBuf_[k];
        } else {
          for (size_t k = 0; k < st.dst.count; ++k) {
            if (!divide(g, k)) return;
            --dst[k].readers;
          }
        }
        for (size_t k = 0; k < st.dst.count; ++k) dst[k].writer = 0;
      }
      complete(g);
    }
  }

  // The executor skips a copy onto itself: it touches nothing.
  bool selfCopy(uint32_t g) const {
    const Step& st = step(g);
    return st.kind == StepKind::Copy && addr(rankOf_[g], st.src) == addr(rankOf_[g], st.dst);
  }

  bool divide(uint32_t g, size_t k) {
    const Step& st = step(g);
    Sym& s = cells(rankOf_[g], st.dst)[k].sym;
    if (symDivided(s)) return fail(format("%s divides %s a second time", text(g).c_str(), elem(st.dst, k).c_str()));
    if (symSet(s) != sets_.full())
      return fail(format("%s divides %s, which holds %s, before it is fully reduced", text(g).c_str(), elem(st.dst, k).c_str(),
                         symText(s).c_str()));
    s |= kDivided;
    return true;
  }

  void complete(uint32_t g) {
    state_[g] = kDone;
    --remaining_;
    for (uint32_t i = revBegin_[g]; i < revBegin_[g + 1]; ++i)
      if (--depsLeft_[rev_[i]] == 0) makeReady(rev_[i]);
  }

  // ---- hazards -------------------------------------------------------------------------------

  // Step g reads `reg` from now until it completes: the element is marked as read.
  bool beginRead(uint32_t g, const Region& reg) {
    Cell* c = cells(rankOf_[g], reg);
    for (size_t k = 0; k < reg.count; ++k) {
      if (c[k].sym == 0 || (c[k].writer && c[k].writer != g + 1)) return readError(g, reg, k);
      if (c[k].readers == 0xffff)
        return fail(format("%s: more than 65535 steps read %s at once", text(g).c_str(), elem(reg, k).c_str()));
      ++c[k].readers;
    }
    return true;
  }

  bool readError(uint32_t g, const Region& reg, size_t k) {
    const Cell& c = cells(rankOf_[g], reg)[k];
    if (c.sym == 0) return fail(format("%s reads %s before anything wrote it", text(g).c_str(), elem(reg, k).c_str()));
    return fail(format("%s reads %s while %s may be writing it (missing dependency on that receive)", text(g).c_str(),
                       elem(reg, k).c_str(), text(c.writer - 1).c_str()));
  }

  // Step g writes `reg` from now until it completes: the element is marked as written.
  bool beginWrite(uint32_t g, const Region& reg) {
    Cell* c = cells(rankOf_[g], reg);
    for (size_t k = 0; k < reg.count; ++k) {
      if (c[k].readers || c[k].writer) return writeError(g, reg, k);
      c[k].writer = g + 1;
    }
    return true;
  }

  bool writeError(uint32_t g, const Region& reg, size_t k) {
    const int r = rankOf_[g];
    const Cell& c = cells(r, reg)[k];
    if (c.readers)
      return fail(format("%s writes %s while %s may still be reading it (missing write-after-read dependency)", text(g).c_str(),
                         elem(reg, k).c_str(), text(inFlightReader(r, addr(r, reg) + k)).c_str()));
    return fail(format("%s writes %s while %s may also be writing it (missing dependency)", text(g).c_str(), elem(reg, k).c_str(),
                       text(c.writer - 1).c_str()));
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

  std::string symText(Sym s) const {
    if (symSet(s) == 0) return "nothing (never written)";
    uint32_t set = symSet(s);
    std::string t = sets_.isSingle(set) ? format("element %u of rank %u's input", symIndex(s), set - 1)
                                        : format("element %u reduced over %d of %d ranks %s", symIndex(s), sets_.size(set), p_,
                                                 sets_.text(set).c_str());
    return t + (symDivided(s) ? ", divided" : "");
  }

  void checkOutputs() {
    const bool divided = isReduction(a_[0].coll) && a_[0].average;
    // With one rank an average's division by 1 may be skipped or done.
    const Sym mask = p_ == 1 ? ~kDivided : ~Sym{0};
    for (int r = 0; r < p_; ++r) {
      const RankMem& m = mem_[r];
      const Cell* out = m.cells.data() + m.base[static_cast<size_t>(BufferId::Output)];
      for (const Expect& e : m.expect) {
        for (size_t k = 0; k < e.count; ++k) {
          Sym want = makeSym(e.index + k, e.set, divided && e.set == sets_.full());
          Sym got = out[e.out + k].sym;
          if ((got & mask) != (want & mask))
            return (void)fail(format("rank %d: out[%zu] holds %s; it should hold %s", r, e.out + k, symText(got).c_str(),
                                     symText(want).c_str()));
        }
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
  uint32_t lastA_ = 0, lastB_ = 0, lastUnion_ = 0;  // reduce(): the last union (runs of elements share it)
  std::vector<Sym> copyBuf_;
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
