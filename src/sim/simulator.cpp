#include "sim/simulator.h"

#include <algorithm>
#include <array>
#include <deque>
#include <limits>
#include <memory>
#include <queue>
#include <unordered_map>

#include "base/error.h"
#include "exec/executor.h"

namespace chorus::sim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr size_t kMaxPath = 8;  // the generators' longest path is 6 links
// A step of a simulated rank, for the critical path.
constexpr uint64_t kNoStep = ~uint64_t{0};
uint64_t packStep(int rank, uint32_t step) { return static_cast<uint64_t>(rank) << 32 | step; }

// The links one message crosses (as link classes when ranks are folded, simulator.h).
struct Path {
  std::array<uint32_t, kMaxPath> link{};
  uint32_t size = 0;
  const uint32_t* begin() const { return link.data(); }
  const uint32_t* end() const { return link.data() + size; }
};

// Messages from a to b: the posted halves waiting for their other half, in posting order; and
// the matched ones, which cross one at a time in order (as on a transport's FIFO, a TCP stream
// or a queue pair): the next starts when the one before has finished. With folded ranks a
// channel stands for every pair (a + kT, b + kT).
struct Channel {
  int src = 0, dst = 0;  // simulated ranks
  Path path;
  double latencyUs = 0;  // overhead plus the links' latencies
  std::deque<std::pair<uint32_t, double>> sends, recvs;  // step, time posted
  std::deque<uint32_t> queued;                           // matched flows waiting for the channel
  bool busy = false;                                     // a flow is starting or crossing
  uint64_t lastSend = kNoStep;  // the send of the message that crossed last
  double lastEnd = 0;           // and when it ended
};

struct Flow {
  uint32_t sendStep = 0, recvStep = 0;
  double remaining = 0;  // bytes
  double rate = 0;       // bytes/us
  double since = 0;      // when `remaining` was last brought up to date
  double readyAt = 0;    // when it may start: matched, plus overhead and latency
  Channel* channel = nullptr;
  uint32_t version = 0;  // bumped at every rate change and reuse: older finish entries are stale
  uint64_t gate = kNoStep;  // what let the later-posted half be posted (the critical path)
  std::array<uint32_t, kMaxPath> slot{};  // per link of its path: its place in that link's list
};

// A flow's predicted end at its current rate.
struct Finish {
  double time;
  uint32_t flow, version;
  bool operator>(const Finish& o) const { return time > o.time; }
};

struct Event {
  double time;
  int kind;  // 0: flow starts, 1: step done
  int rank;
  uint32_t id;  // flow slot or step index
  bool operator>(const Event& o) const { return time > o.time; }
};

// One simulated rank: its schedule, the executor's plan for it, and readiness by counters
// (a step is ready when its last dependency completes; nothing is rescanned).
struct RankState {
  explicit RankState(const RankSchedule& s)
      : plan(s), pending(s.steps.size()), cursorOf(s.steps.size(), ~0u), startAt(s.steps.size(), 0), endAt(s.steps.size(), 0),
        pred(s.steps.size(), kNoStep) {
    for (uint32_t i = 0; i < s.steps.size(); ++i) pending[i] = s.steps[i].depCount;
    dependentsAt.assign(s.steps.size() + 1, 0);
    for (uint32_t d : s.deps) ++dependentsAt[d + 1];
    for (size_t i = 0; i < s.steps.size(); ++i) dependentsAt[i + 1] += dependentsAt[i];
    dependents.resize(s.deps.size());
    std::vector<uint32_t> fill(dependentsAt.begin(), dependentsAt.end() - 1);
    for (uint32_t i = 0; i < s.steps.size(); ++i) {
      const Step& st = s.steps[i];
      for (uint32_t k = 0; k < st.depCount; ++k) dependents[fill[s.deps[st.depBegin + k]]++] = i;
    }
    for (size_t k = 0; k < plan.peers.size(); ++k) {
      plan.cursors[k] = ExecPlan::PeerCursor{&plan.peers[k]};
      for (uint32_t i : plan.peers[k].sends) cursorOf[i] = static_cast<uint32_t>(k);
      for (uint32_t i : plan.peers[k].recvs) cursorOf[i] = static_cast<uint32_t>(k);
    }
    remaining = s.steps.size();
  }
  ExecPlan plan;
  std::vector<uint32_t> pending;  // dependencies not yet done, per step
  std::vector<uint32_t> dependentsAt, dependents;  // CSR: the steps that depend on step i
  std::vector<uint32_t> cursorOf;  // per message step: its peer cursor
  std::vector<uint32_t> dirtyCursors;
  size_t remaining = 0;
  // The critical path (SimResult::critical): when each step started (a message: its flow; until
  // then, when it became ready) and ended, and the step whose end let it start.
  std::vector<double> startAt, endAt;
  std::vector<uint64_t> pred;  // packStep(rank, step), or kNoStep
};

class Sim {
 public:
  Sim(const Fabric& f, const std::vector<RankSchedule>& s, size_t es, const SimOptions& o, int period)
      : f_(f), s_(s), es_(es), o_(o), p_(f.ranks()), t_(period ? period : f.ranks()) {
    CHORUS_CHECK_ARG(static_cast<int>(s.size()) == t_, "simulate: %zu schedules for %d simulated ranks (fabric of %d)", s.size(),
                     t_, p_);
    linkClass_ = f.linkClasses(t_);
    CHORUS_CHECK_ARG(!linkClass_.empty(), "simulate: the fabric is not the same every %d ranks, so its ranks cannot be folded", t_);
    for (const RankSchedule& rs : s) ranks_.push_back(std::make_unique<RankState>(rs));
    const size_t links = f.links().size();
    result_.linkBytes.assign(links, 0);
    result_.rankEndUs.assign(t_, 0);
    nextStart_.assign(t_, 0);
    if (o.linkLoad) result_.linkLoad.bytes.resize(links);
    dirtyMark_.assign(t_, 0);
    linkCap_.assign(links, 0);
    linkFlows_.resize(links);
    linkSeen_.assign(links, 0);
    linkCount_.assign(links, 0);
  }

  SimResult run() {
    for (int r = 0; r < t_; ++r) {
      RankState& rs = *ranks_[r];
      for (uint32_t i = 0; i < rs.pending.size(); ++i)
        if (rs.pending[i] == 0) ready(r, i, 0, kNoStep);
      issue(r, 0);
    }
    std::vector<uint32_t> started;  // flows that started at `now`
    while (true) {
      // The next thing to happen: a queued event or the first active flow to drain (stale
      // entries of the finish heap, from before a flow's rate changed, are dropped).
      while (!finishes_.empty() && finishes_.top().version != flows_[finishes_.top().flow].version) finishes_.pop();
      const double nextEvent = events_.empty() ? kInf : events_.top().time;
      const double nextFinish = finishes_.empty() ? kInf : finishes_.top().time;
      const double now = std::min(nextEvent, nextFinish);
      if (now == kInf) break;
      started.clear();
      while (!finishes_.empty() && finishes_.top().time <= now) {
        const Finish fin = finishes_.top();
        finishes_.pop();
        if (fin.version != flows_[fin.flow].version) continue;
        finishFlow(fin.flow, now);
      }
      while (!events_.empty() && events_.top().time <= now) {
        Event e = events_.top();
        events_.pop();
        if (e.kind == 0) {
          // A rank starts one message per gap_us at most (its NIC's message rate).
          double& slot = nextStart_[flows_[e.id].channel->src];
          if (now < slot) {
            events_.push({slot, 0, e.rank, e.id});
            continue;
          }
          slot = now + f_.gapUs();
          startFlow(e.id, now);
          started.push_back(e.id);
        } else {
          complete(e.rank, e.id, now);
        }
      }
      if (!started.empty() || !seedLinks_.empty()) recomputeRates(started, now);
      for (size_t k = 0; k < dirty_.size(); ++k) {
        dirtyMark_[dirty_[k]] = 0;
        issue(dirty_[k], now);
      }
      dirty_.clear();
    }
    for (int r = 0; r < t_; ++r) {
      if (ranks_[r]->remaining == 0) continue;
      CHORUS_THROW(chorusInternalError, "simulate: rank %d never finished (%zu of %zu steps left): the schedules deadlock", r,
                   ranks_[r]->remaining, s_[r].steps.size());
    }
    // Folded: rank r did what rank r mod T did; each simulated message stands for p / T.
    const uint64_t fold = static_cast<uint64_t>(p_ / t_);
    result_.messages *= fold;
    result_.wireBytes *= fold;
    std::vector<double> end(p_);
    for (int r = 0; r < p_; ++r) end[r] = result_.rankEndUs[r % t_];
    result_.rankEndUs.swap(end);
    for (size_t l = 0; l < linkClass_.size(); ++l) result_.linkBytes[l] = result_.linkBytes[linkClass_[l]];
    result_.simulatedRanks = t_;
    criticalPath();
    return result_;
  }

  // Adds what flow fl moved since its last update (at its rate) to its links' bins.
  void recordLoad(const Flow& fl, double now) {
    if (!o_.linkLoad || now <= fl.since || fl.rate <= 0) return;
    LinkLoadOverTime& ll = result_.linkLoad;
    constexpr size_t n = LinkLoadOverTime::kLoadBins;
    while (now > ll.binUs * n) {  // widen: merge pairs of bins
      for (std::vector<double>& row : ll.bytes) {
        if (row.empty()) continue;
        for (size_t b = 0; b < n / 2; ++b) row[b] = row[2 * b] + row[2 * b + 1];
        std::fill(row.begin() + n / 2, row.end(), 0.0);
      }
      ll.binUs *= 2;
    }
    for (uint32_t l : fl.channel->path) {
      std::vector<double>& row = ll.bytes[l];
      if (row.empty()) row.assign(n, 0.0);
      for (size_t b = static_cast<size_t>(fl.since / ll.binUs); b < n && b * ll.binUs < now; ++b) {
        const double from = std::max(fl.since, b * ll.binUs), to = std::min(now, (b + 1) * ll.binUs);
        if (to > from) row[b] += fl.rate * (to - from);
      }
    }
  }

  // Walks back from the step that ended last, each step to the one whose end let it start.
  void criticalPath() {
    CriticalPath& cp = result_.critical;
    const RankState& last = *ranks_[result_.lastRank];
    if (last.endAt.empty()) return;
    uint64_t at = packStep(result_.lastRank, static_cast<uint32_t>(std::max_element(last.endAt.begin(), last.endAt.end()) - last.endAt.begin()));
    std::unordered_map<uint32_t, double> onLink;
    while (at != kNoStep) {
      const int r = static_cast<int>(at >> 32);
      const uint32_t i = static_cast<uint32_t>(at);
      const RankState& rs = *ranks_[r];
      const Step& st = s_[r].steps[i];
      const double before = rs.pred[i] == kNoStep ? 0 : ranks_[rs.pred[i] >> 32]->endAt[static_cast<uint32_t>(rs.pred[i])];
      cp.waitUs += rs.startAt[i] - before;
      if (st.peer < 0) {
        ++cp.localSteps;
        cp.localUs += rs.endAt[i] - rs.startAt[i];
      } else {
        ++cp.messages;
        const double reduce = st.kind == StepKind::RecvReduce ? bytes(st.dst) / o_.reduceBytesPerUs : 0;
        cp.localUs += reduce;
        cp.wireUs += rs.endAt[i] - rs.startAt[i] - reduce;
        const Channel& c = st.kind == StepKind::Send ? channel(r, st.peer) : channel(st.peer, r, true);
        for (uint32_t l : c.path) onLink[l] += rs.endAt[i] - rs.startAt[i] - reduce;
      }
      at = rs.pred[i];
    }
    cp.links.assign(onLink.begin(), onLink.end());
    std::sort(cp.links.begin(), cp.links.end(), [](const auto& x, const auto& y) { return x.second > y.second || (x.second == y.second && x.first < y.first); });
    if (cp.links.size() > 5) cp.links.resize(5);
  }

 private:
  double bytes(const Region& reg) const { return static_cast<double>(reg.count * es_); }

  // Step i of rank r has no dependency left (the last was `gate`): a local step starts, a
  // message step may be posted.
  void ready(int r, uint32_t i, double now, uint64_t gate) {
    RankState& rs = *ranks_[r];
    const Step& st = s_[r].steps[i];
    rs.startAt[i] = now;
    rs.pred[i] = gate;
    if (st.peer < 0) {
      const double cost = st.kind == StepKind::Copy ? bytes(st.dst) / o_.copyBytesPerUs : bytes(st.dst) / o_.reduceBytesPerUs;
      events_.push({now + cost, 1, r, i});
    } else {
      rs.dirtyCursors.push_back(rs.cursorOf[i]);
    }
  }

  // Posts what rank r may post now: per peer and direction, in schedule order (the executor's
  // rule), each step once its dependencies are done.
  void issue(int r, double now) {
    RankState& rs = *ranks_[r];
    for (size_t k = 0; k < rs.dirtyCursors.size(); ++k) {
      ExecPlan::PeerCursor& q = rs.plan.cursors[rs.dirtyCursors[k]];
      const std::vector<uint32_t>& sends = q.steps->sends;
      const std::vector<uint32_t>& recvs = q.steps->recvs;
      while (q.sendIssued < sends.size() && rs.pending[sends[q.sendIssued]] == 0) {
        const uint32_t i = sends[q.sendIssued++];
        if (rs.startAt[i] < now && q.sendIssued > 1) rs.pred[i] = rs.pred[sends[q.sendIssued - 2]];  // held by the queue
        Channel& c = channel(r, s_[r].steps[i].peer);
        c.sends.push_back({i, now});
        match(c, now);
      }
      while (q.recvIssued < recvs.size() && rs.pending[recvs[q.recvIssued]] == 0) {
        const uint32_t i = recvs[q.recvIssued++];
        if (rs.startAt[i] < now && q.recvIssued > 1) rs.pred[i] = rs.pred[recvs[q.recvIssued - 2]];
        Channel& c = channel(s_[r].steps[i].peer, r, /*receiver=*/true);
        c.recvs.push_back({i, now});
        match(c, now);
      }
    }
    rs.dirtyCursors.clear();
  }

  // The channel of messages from rank a to rank b (absolute ranks; one of them simulated, the
  // one named by `receiver`). Keyed by the simulated sender and the distance to the receiver,
  // which is what every pair it stands for shares.
  Channel& channel(int a, int b, bool receiver = false) {
    const int d = ((b - a) % p_ + p_) % p_;
    const int src = receiver ? a % t_ : a;
    const uint64_t key = static_cast<uint64_t>(src) * static_cast<uint64_t>(p_) + static_cast<uint64_t>(d);
    auto [it, fresh] = channels_.try_emplace(key);
    Channel& c = it->second;
    if (fresh) {
      c.src = src;
      c.dst = (src + d) % t_;
      f_.path(src, (src + d) % p_, &scratchPath_);
      CHORUS_ASSERT(scratchPath_.size() <= kMaxPath);
      c.latencyUs = f_.alphaUs();
      for (uint32_t l : scratchPath_) {
        c.latencyUs += f_.links()[l].latencyUs;
        c.path.link[c.path.size++] = linkClass_[l];
      }
    }
    return c;
  }

  uint32_t newFlow() {
    if (!freeFlows_.empty()) {
      const uint32_t id = freeFlows_.back();
      freeFlows_.pop_back();
      return id;
    }
    flows_.emplace_back();
    flowSeen_.push_back(0);
    return static_cast<uint32_t>(flows_.size() - 1);
  }

  void match(Channel& c, double now) {
    while (!c.sends.empty() && !c.recvs.empty()) {
      auto [sendStep, sendAt] = c.sends.front();
      auto [recvStep, recvAt] = c.recvs.front();
      c.sends.pop_front();
      c.recvs.pop_front();
      const uint32_t id = newFlow();
      Flow& fl = flows_[id];
      fl.sendStep = sendStep;
      fl.recvStep = recvStep;
      fl.remaining = bytes(s_[c.src].steps[sendStep].src);
      fl.rate = 0;
      ++fl.version;
      ++result_.messages;
      result_.wireBytes += static_cast<uint64_t>(fl.remaining);
      for (uint32_t l : c.path) result_.linkBytes[l] += fl.remaining;
      fl.readyAt = std::max(now, std::max(sendAt, recvAt)) + c.latencyUs;
      fl.gate = sendAt >= recvAt ? ranks_[c.src]->pred[sendStep] : ranks_[c.dst]->pred[recvStep];
      fl.channel = &c;
      if (c.busy) {
        c.queued.push_back(id);
      } else {
        c.busy = true;
        events_.push({fl.readyAt, 0, c.src, id});
      }
    }
  }

  void startFlow(uint32_t i, double now) {
    Flow& fl = flows_[i];
    Channel& c = *fl.channel;
    fl.since = now;
    for (uint32_t k = 0; k < c.path.size; ++k) {
      std::vector<uint64_t>& on = linkFlows_[c.path.link[k]];
      fl.slot[k] = static_cast<uint32_t>(on.size());
      on.push_back(static_cast<uint64_t>(i) << 8 | k);
    }
    // Held by the message before it on the pair, or by the later of its two halves.
    const uint64_t gate = now > fl.readyAt && c.lastEnd >= now ? c.lastSend : fl.gate;
    for (auto [r, step] : {std::pair{c.src, fl.sendStep}, std::pair{c.dst, fl.recvStep}}) {
      ranks_[r]->startAt[step] = now;
      ranks_[r]->pred[step] = gate;
    }
  }

  void finishFlow(uint32_t i, double now) {
    Flow& fl = flows_[i];
    recordLoad(fl, now);
    fl.remaining = 0;
    ++fl.version;
    Channel& c = *fl.channel;
    for (uint32_t k = 0; k < c.path.size; ++k) {
      // Out of the link's list in O(1): the last entry takes its place.
      const uint32_t l = c.path.link[k];
      std::vector<uint64_t>& on = linkFlows_[l];
      const uint64_t last = on.back();
      on[fl.slot[k]] = last;
      flows_[last >> 8].slot[last & 0xff] = fl.slot[k];
      on.pop_back();
      if (!linkSeen_[l]) {  // seeds the rate update: the flows left on these links may speed up
        linkSeen_[l] = 1;
        seedLinks_.push_back(l);
      }
    }
    c.lastSend = packStep(c.src, fl.sendStep);
    c.lastEnd = now;
    c.busy = !c.queued.empty();
    if (c.busy) {
      const uint32_t next = c.queued.front();
      c.queued.pop_front();
      events_.push({std::max(now, flows_[next].readyAt), 0, c.src, next});
    }
    complete(c.src, fl.sendStep, now);
    const Step& rs = s_[c.dst].steps[fl.recvStep];
    if (rs.kind == StepKind::RecvReduce) events_.push({now + bytes(rs.dst) / o_.reduceBytesPerUs, 1, c.dst, fl.recvStep});
    else complete(c.dst, fl.recvStep, now);
    freeFlows_.push_back(i);
  }

  void complete(int r, uint32_t step, double now) {
    RankState& rs = *ranks_[r];
    rs.endAt[step] = now;
    for (uint32_t k = rs.dependentsAt[step]; k < rs.dependentsAt[step + 1]; ++k) {
      const uint32_t j = rs.dependents[k];
      if (--rs.pending[j] == 0) ready(r, j, now, packStep(r, step));
    }
    if (--rs.remaining == 0) {
      result_.rankEndUs[r] = now;
      if (now >= result_.timeUs) {
        result_.timeUs = now;
        result_.lastRank = r;
      }
    }
    if (!dirtyMark_[r]) {
      dirtyMark_[r] = 1;
      dirty_.push_back(r);
    }
  }

  // Max-min fair rates by progressive filling (the most contended link fixes the rate of its
  // flows, which are then taken out of every other link they cross; repeat), over the flows
  // that share a link, directly or through others, with a flow that started or ended: no other
  // rate can change.
  void recomputeRates(const std::vector<uint32_t>& started, double now) {
    ++result_.events;
    comp_.clear();
    used_.clear();
    std::vector<uint32_t>& stack = seedLinks_;  // the links of flows that ended, then of those that started
    for (uint32_t i : started)
      for (uint32_t l : flows_[i].channel->path)
        if (!linkSeen_[l]) {
          linkSeen_[l] = 1;
          stack.push_back(l);
        }
    while (!stack.empty()) {
      const uint32_t l = stack.back();
      stack.pop_back();
      used_.push_back(l);
      for (uint64_t entry : linkFlows_[l]) {
        const uint32_t i = static_cast<uint32_t>(entry >> 8);
        if (flowSeen_[i]) continue;
        flowSeen_[i] = 1;
        comp_.push_back(i);
        for (uint32_t m : flows_[i].channel->path)
          if (!linkSeen_[m]) {
            linkSeen_[m] = 1;
            stack.push_back(m);
          }
      }
    }
    for (uint32_t l : used_) {
      linkSeen_[l] = 0;
      linkCap_[l] = f_.links()[l].bytesPerUs;
      linkCount_[l] = static_cast<int>(linkFlows_[l].size());
    }
    for (uint32_t i : comp_) flowSeen_[i] = 0;
    open_.swap(comp_);
    while (!open_.empty()) {
      double share = kInf;
      for (uint32_t i : open_)
        for (uint32_t l : flows_[i].channel->path) share = std::min(share, linkCap_[l] / linkCount_[l]);
      still_.clear();
      for (uint32_t i : open_) {
        bool bottlenecked = false;
        for (uint32_t l : flows_[i].channel->path)
          if (linkCap_[l] / linkCount_[l] <= share * (1 + 1e-12)) bottlenecked = true;
        if (!bottlenecked) {
          still_.push_back(i);
          continue;
        }
        setRate(i, share, now);
        for (uint32_t l : flows_[i].channel->path) {
          linkCap_[l] -= share;
          --linkCount_[l];
        }
      }
      open_.swap(still_);
    }
  }

  void setRate(uint32_t i, double rate, double now) {
    Flow& fl = flows_[i];
    recordLoad(fl, now);
    fl.remaining = std::max(0.0, fl.remaining - fl.rate * (now - fl.since));
    fl.since = now;
    if (fl.rate == rate) return;  // its finish entry still holds
    fl.rate = rate;
    ++fl.version;
    finishes_.push({now + fl.remaining / rate, i, fl.version});
  }

  const Fabric& f_;
  const std::vector<RankSchedule>& s_;
  const size_t es_;
  const SimOptions o_;
  const int p_;  // the fabric's ranks
  const int t_;  // the simulated ranks: 0..t_-1, each standing for every rank r with r % t_ the same
  std::vector<uint32_t> linkClass_;
  std::vector<std::unique_ptr<RankState>> ranks_;
  std::unordered_map<uint64_t, Channel> channels_;
  std::vector<Flow> flows_;
  std::vector<uint32_t> freeFlows_;
  std::vector<std::vector<uint64_t>> linkFlows_;  // per link: the active flows crossing it (flow << 8 | index in its path)
  std::vector<uint8_t> linkSeen_, flowSeen_;
  std::vector<uint32_t> seedLinks_, comp_, used_, open_, still_, scratchPath_;
  std::priority_queue<Finish, std::vector<Finish>, std::greater<Finish>> finishes_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::vector<int> dirty_;
  std::vector<uint8_t> dirtyMark_;
  std::vector<double> linkCap_;
  std::vector<double> nextStart_;  // per simulated rank: when it may start its next message (gap_us)
  std::vector<int> linkCount_;
  SimResult result_;
};

}  // namespace

SimResult simulate(const Fabric& fabric, const std::vector<RankSchedule>& schedules, size_t elemSize, const SimOptions& options,
                   int period) {
  return Sim(fabric, schedules, elemSize, options, period).run();
}

}  // namespace chorus::sim
