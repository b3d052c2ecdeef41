#include "sim/simulator.h"

#include <algorithm>
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

// Posted halves of messages a -> b waiting for their other half, in posting order; and the
// messages already matched, which cross one at a time in order (as on a transport's FIFO, a TCP
// stream or a queue pair): the next starts when the one before has finished.
struct Channel {
  std::deque<std::pair<uint32_t, double>> sends, recvs;  // step, time posted
  std::deque<uint32_t> queued;                           // matched flows waiting for the channel
  bool busy = false;                                     // a flow is starting or crossing
};

struct Flow {
  int src = 0, dst = 0;
  uint32_t sendStep = 0, recvStep = 0;
  double remaining = 0;  // bytes
  double rate = 0;       // bytes/us
  std::vector<uint32_t> path;
  double since = 0;      // when `remaining` was last brought up to date
  double readyAt = 0;    // when it may start: matched, plus overhead and latency
  Channel* channel = nullptr;
  uint32_t version = 0;  // bumped at every rate change: older finish-heap entries are stale
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
  uint32_t id;  // flow index or step index
  bool operator>(const Event& o) const { return time > o.time; }
};

class Sim {
 public:
  Sim(const Fabric& f, const std::vector<RankSchedule>& s, size_t es, const SimOptions& o)
      : f_(f), s_(s), es_(es), o_(o), p_(static_cast<int>(s.size())) {
    CHORUS_CHECK_ARG(p_ == f.ranks(), "simulate: %d schedules for a fabric of %d ranks", p_, f.ranks());
    for (const RankSchedule& rs : s) {
      plans_.push_back(std::make_unique<ExecPlan>(rs));
      ExecPlan& plan = *plans_.back();
      std::fill(plan.done.begin(), plan.done.end(), 0);
      for (size_t k = 0; k < plan.cursors.size(); ++k) plan.cursors[k] = ExecPlan::PeerCursor{&plan.peers[k]};
    }
    localStarted_.resize(p_);
    localFrom_.assign(p_, 0);
    for (int r = 0; r < p_; ++r) localStarted_[r].assign(s_[r].steps.size(), 0);
    remaining_.resize(p_);
    for (int r = 0; r < p_; ++r) remaining_[r] = s_[r].steps.size();
    result_.linkBytes.assign(f.links().size(), 0);
    result_.rankEndUs.assign(p_, 0);
    dirtyMark_.assign(p_, 0);
    linkCap_.assign(f.links().size(), 0);
    linkFlows_.resize(f.links().size());
    linkSeen_.assign(f.links().size(), 0);
    linkCount_.assign(f.links().size(), 0);
  }

  SimResult run() {
    for (int r = 0; r < p_; ++r) advance(r, 0);
    double now = 0;
    std::vector<uint32_t> changed;  // flows started or ended at `now`
    while (true) {
      // The next thing to happen: a queued event or the first active flow to drain (stale
      // entries of the finish heap, from before a flow's rate changed, are dropped).
      while (!finishes_.empty() && finishes_.top().version != flows_[finishes_.top().flow].version) finishes_.pop();
      const double nextEvent = events_.empty() ? kInf : events_.top().time;
      const double nextFinish = finishes_.empty() ? kInf : finishes_.top().time;
      const double next = std::min(nextEvent, nextFinish);
      if (next == kInf) break;
      now = next;
      changed.clear();
      while (!finishes_.empty() && finishes_.top().time <= now) {
        const Finish f = finishes_.top();
        finishes_.pop();
        if (f.version != flows_[f.flow].version) continue;
        changed.push_back(f.flow);
        finishFlow(f.flow, now);
      }
      while (!events_.empty() && events_.top().time <= now) {
        Event e = events_.top();
        events_.pop();
        if (e.kind == 0) {
          startFlow(e.id, now);
          changed.push_back(e.id);
        } else {
          complete(e.rank, e.id, now);
        }
      }
      if (!changed.empty()) recomputeRates(changed, now);
      for (size_t k = 0; k < dirty_.size(); ++k) {
        dirtyMark_[dirty_[k]] = 0;
        advance(dirty_[k], now);
      }
      dirty_.clear();
    }
    for (int r = 0; r < p_; ++r) {
      if (remaining_[r] == 0) continue;
      CHORUS_THROW(chorusInternalError, "simulate: rank %d never finished (%zu of %zu steps left): the schedules deadlock", r,
                   remaining_[r], s_[r].steps.size());
    }
    return result_;
  }

 private:
  bool depsDone(int r, uint32_t i) const {
    const RankSchedule& rs = s_[r];
    const Step& st = rs.steps[i];
    for (uint32_t d = 0; d < st.depCount; ++d)
      if (!plans_[r]->done[rs.deps[st.depBegin + d]]) return false;
    return true;
  }
  double bytes(const Region& reg) const { return static_cast<double>(reg.count * es_); }

  // Issues whatever rank r may issue now (the executor's rules).
  void advance(int r, double now) {
    ExecPlan& plan = *plans_[r];
    const RankSchedule& rs = s_[r];
    for (ExecPlan::PeerCursor& q : plan.cursors) {
      const std::vector<uint32_t>& sends = q.steps->sends;
      const std::vector<uint32_t>& recvs = q.steps->recvs;
      while (q.sendIssued < sends.size() && depsDone(r, sends[q.sendIssued])) {
        uint32_t i = sends[q.sendIssued++];
        Channel& c = channel(r, rs.steps[i].peer);
        c.sends.push_back({i, now});
        match(r, rs.steps[i].peer, c, now);
      }
      while (q.recvIssued < recvs.size() && depsDone(r, recvs[q.recvIssued])) {
        uint32_t i = recvs[q.recvIssued++];
        Channel& c = channel(rs.steps[i].peer, r);
        c.recvs.push_back({i, now});
        match(rs.steps[i].peer, r, c, now);
      }
    }
    // Local steps: from the first one not yet started (those before it all have been).
    size_t& from = localFrom_[r];
    while (from < plan.local.size() && localStarted_[r][plan.local[from]]) ++from;
    for (size_t k = from; k < plan.local.size(); ++k) {
      const uint32_t i = plan.local[k];
      if (localStarted_[r][i] || !depsDone(r, i)) continue;
      localStarted_[r][i] = 1;
      const Step& st = rs.steps[i];
      double cost = st.kind == StepKind::Copy ? bytes(st.dst) / o_.copyBytesPerUs : bytes(st.dst) / o_.reduceBytesPerUs;
      events_.push({now + cost, 1, r, i});
    }
  }

  Channel& channel(int a, int b) { return channels_[static_cast<uint64_t>(a) * static_cast<uint64_t>(p_) + static_cast<uint64_t>(b)]; }

  void match(int a, int b, Channel& c, double now) {
    while (!c.sends.empty() && !c.recvs.empty()) {
      auto [sendStep, sendAt] = c.sends.front();
      auto [recvStep, recvAt] = c.recvs.front();
      c.sends.pop_front();
      c.recvs.pop_front();
      Flow fl;
      fl.src = a;
      fl.dst = b;
      fl.sendStep = sendStep;
      fl.recvStep = recvStep;
      fl.remaining = bytes(s_[a].steps[sendStep].src);
      f_.path(a, b, &fl.path);
      double latency = f_.alphaUs();
      for (uint32_t l : fl.path) latency += f_.links()[l].latencyUs;
      ++result_.messages;
      result_.wireBytes += static_cast<uint64_t>(fl.remaining);
      for (uint32_t l : fl.path) result_.linkBytes[l] += fl.remaining;
      fl.readyAt = std::max(now, std::max(sendAt, recvAt)) + latency;
      fl.channel = &c;
      flows_.push_back(std::move(fl));
      flowSeen_.push_back(0);
      const uint32_t id = static_cast<uint32_t>(flows_.size() - 1);
      if (c.busy) {
        c.queued.push_back(id);
      } else {
        c.busy = true;
        events_.push({flows_[id].readyAt, 0, a, id});
      }
    }
  }

  void startFlow(uint32_t i, double now) {
    Flow& fl = flows_[i];
    fl.since = now;
    for (uint32_t l : fl.path) linkFlows_[l].push_back(i);
  }

  void finishFlow(uint32_t i, double now) {
    Flow& fl = flows_[i];
    fl.remaining = 0;
    ++fl.version;
    for (uint32_t l : fl.path) {
      std::vector<uint32_t>& on = linkFlows_[l];
      on.erase(std::find(on.begin(), on.end(), i));
    }
    Channel& c = *fl.channel;
    c.busy = !c.queued.empty();
    if (c.busy) {
      const uint32_t next = c.queued.front();
      c.queued.pop_front();
      events_.push({std::max(now, flows_[next].readyAt), 0, flows_[next].src, next});
    }
    complete(fl.src, fl.sendStep, now);
    const Step& rs = s_[fl.dst].steps[fl.recvStep];
    if (rs.kind == StepKind::RecvReduce) events_.push({now + bytes(rs.dst) / o_.reduceBytesPerUs, 1, fl.dst, fl.recvStep});
    else complete(fl.dst, fl.recvStep, now);
    retired_.push_back(i);  // its path seeds the rate update, then goes
  }

  void complete(int r, uint32_t step, double now) {
    plans_[r]->done[step] = 1;
    if (--remaining_[r] == 0) result_.rankEndUs[r] = now;
    if (remaining_[r] == 0 && now >= result_.timeUs) {
      result_.timeUs = now;
      result_.lastRank = r;
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
  void recomputeRates(const std::vector<uint32_t>& changed, double now) {
    ++result_.events;
    std::vector<uint32_t> comp, used;
    std::vector<uint32_t> stack;
    for (uint32_t i : changed)
      for (uint32_t l : flows_[i].path)
        if (!linkSeen_[l]) {
          linkSeen_[l] = 1;
          stack.push_back(l);
        }
    while (!stack.empty()) {
      const uint32_t l = stack.back();
      stack.pop_back();
      used.push_back(l);
      for (uint32_t i : linkFlows_[l]) {
        if (flowSeen_[i]) continue;
        flowSeen_[i] = 1;
        comp.push_back(i);
        for (uint32_t m : flows_[i].path)
          if (!linkSeen_[m]) {
            linkSeen_[m] = 1;
            stack.push_back(m);
          }
      }
    }
    for (uint32_t l : used) {
      linkSeen_[l] = 0;
      linkCap_[l] = f_.links()[l].bytesPerUs;
      linkCount_[l] = static_cast<int>(linkFlows_[l].size());
    }
    for (uint32_t i : comp) flowSeen_[i] = 0;
    std::vector<uint32_t> open = comp, still;
    while (!open.empty()) {
      double share = kInf;
      for (uint32_t i : open)
        for (uint32_t l : flows_[i].path) share = std::min(share, linkCap_[l] / linkCount_[l]);
      still.clear();
      for (uint32_t i : open) {
        bool bottlenecked = false;
        for (uint32_t l : flows_[i].path)
          if (linkCap_[l] / linkCount_[l] <= share * (1 + 1e-12)) bottlenecked = true;
        if (!bottlenecked) {
          still.push_back(i);
          continue;
        }
        setRate(i, share, now);
        for (uint32_t l : flows_[i].path) {
          linkCap_[l] -= share;
          --linkCount_[l];
        }
      }
      open.swap(still);
    }
    for (uint32_t i : retired_) std::vector<uint32_t>().swap(flows_[i].path);  // a long run keeps millions of finished flows
    retired_.clear();
  }

  void setRate(uint32_t i, double rate, double now) {
    Flow& fl = flows_[i];
    fl.remaining = std::max(0.0, fl.remaining - fl.rate * (now - fl.since));
    fl.since = now;
    if (fl.rate == rate && fl.version) return;  // its finish entry still holds
    fl.rate = rate;
    ++fl.version;
    finishes_.push({now + fl.remaining / rate, i, fl.version});
  }

  const Fabric& f_;
  const std::vector<RankSchedule>& s_;
  const size_t es_;
  const SimOptions o_;
  const int p_;
  std::vector<std::unique_ptr<ExecPlan>> plans_;
  std::vector<std::vector<uint8_t>> localStarted_;
  std::vector<size_t> localFrom_;
  std::vector<size_t> remaining_;
  std::unordered_map<uint64_t, Channel> channels_;
  std::vector<Flow> flows_;
  std::vector<std::vector<uint32_t>> linkFlows_;  // per link: the active flows crossing it
  std::vector<uint8_t> linkSeen_, flowSeen_;
  std::vector<uint32_t> retired_;
  std::priority_queue<Finish, std::vector<Finish>, std::greater<Finish>> finishes_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::vector<int> dirty_;
  std::vector<uint8_t> dirtyMark_;
  std::vector<double> linkCap_;
  std::vector<int> linkCount_;
  SimResult result_;
};

}  // namespace

SimResult simulate(const Fabric& fabric, const std::vector<RankSchedule>& schedules, size_t elemSize, const SimOptions& options) {
  return Sim(fabric, schedules, elemSize, options).run();
}

}  // namespace chorus::sim
