#include "sim/simulator.h"

#include <algorithm>
#include <cmath>
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

struct Flow {
  int src = 0, dst = 0;
  uint32_t sendStep = 0, recvStep = 0;
  double remaining = 0;  // bytes
  double rate = 0;       // bytes/us
  std::vector<uint32_t> path;
  bool active = false;   // started (past overhead and latency), not finished
};

// Posted halves of messages a -> b waiting for their other half, in posting order.
struct Channel {
  std::deque<std::pair<uint32_t, double>> sends, recvs;  // step, time posted
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
    for (int r = 0; r < p_; ++r) localStarted_[r].assign(s_[r].steps.size(), 0);
    remaining_.resize(p_);
    for (int r = 0; r < p_; ++r) remaining_[r] = s_[r].steps.size();
    result_.linkBytes.assign(f.links().size(), 0);
    result_.rankEndUs.assign(p_, 0);
    dirtyMark_.assign(p_, 0);
    linkCap_.assign(f.links().size(), 0);
    linkCount_.assign(f.links().size(), 0);
  }

  SimResult run() {
    for (int r = 0; r < p_; ++r) advance(r, 0);
    double now = 0;
    while (true) {
      // The next thing to happen: a queued event or the first active flow to drain.
      double next = events_.empty() ? kInf : events_.top().time;
      for (uint32_t i : active_) next = std::min(next, now + flows_[i].remaining / flows_[i].rate);
      if (next == kInf) break;
      const double dt = next - now;
      now = next;
      // Drain every active flow by dt; those within a rounding error of empty end now.
      std::vector<uint32_t> ended;
      for (uint32_t i : active_) {
        Flow& fl = flows_[i];
        fl.remaining -= fl.rate * dt;
        if (fl.remaining <= 1e-9 * std::max(1.0, fl.rate)) ended.push_back(i);
      }
      bool ratesChanged = !ended.empty();
      for (uint32_t i : ended) finishFlow(i, now);
      while (!events_.empty() && events_.top().time <= now) {
        Event e = events_.top();
        events_.pop();
        if (e.kind == 0) {
          flows_[e.id].active = true;
          active_.push_back(e.id);
          ratesChanged = true;
        } else {
          complete(e.rank, e.id, now);
        }
      }
      for (size_t k = 0; k < dirty_.size(); ++k) {  // advance() may complete nothing, so no growth
        dirtyMark_[dirty_[k]] = 0;
        advance(dirty_[k], now);
      }
      dirty_.clear();
      if (ratesChanged) recomputeRates();
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
    for (uint32_t i : plan.local) {
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
      flows_.push_back(std::move(fl));
      const uint32_t id = static_cast<uint32_t>(flows_.size() - 1);
      events_.push({std::max(now, std::max(sendAt, recvAt)) + latency, 0, a, id});
    }
  }

  void finishFlow(uint32_t i, double now) {
    Flow& fl = flows_[i];
    fl.active = false;
    fl.remaining = 0;
    std::vector<uint32_t>().swap(fl.path);  // a long run keeps millions of finished flows
    active_.erase(std::find(active_.begin(), active_.end(), i));
    complete(fl.src, fl.sendStep, now);
    const Step& rs = s_[fl.dst].steps[fl.recvStep];
    if (rs.kind == StepKind::RecvReduce) events_.push({now + bytes(rs.dst) / o_.reduceBytesPerUs, 1, fl.dst, fl.recvStep});
    else complete(fl.dst, fl.recvStep, now);
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

  // Max-min fair rates by progressive filling: the most contended link fixes the rate of its
  // flows, which are then taken out of every other link they cross; repeat.
  void recomputeRates() {
    ++result_.events;
    std::vector<uint32_t> used;
    for (uint32_t i : active_) {
      flows_[i].rate = 0;
      for (uint32_t l : flows_[i].path) {
        if (linkCount_[l]++ == 0) {
          used.push_back(l);
          linkCap_[l] = f_.links()[l].bytesPerUs;
        }
      }
    }
    std::vector<uint32_t> open = active_;
    while (!open.empty()) {
      double share = kInf;
      for (uint32_t l : used)
        if (linkCount_[l] > 0) share = std::min(share, linkCap_[l] / linkCount_[l]);
      // Every open flow crossing a link at that share is fixed at it.
      std::vector<uint32_t> still;
      for (uint32_t i : open) {
        bool bottlenecked = false;
        for (uint32_t l : flows_[i].path)
          if (linkCount_[l] > 0 && linkCap_[l] / linkCount_[l] <= share * (1 + 1e-12)) bottlenecked = true;
        if (!bottlenecked) {
          still.push_back(i);
          continue;
        }
        flows_[i].rate = share;
        for (uint32_t l : flows_[i].path) {
          linkCap_[l] -= share;
          --linkCount_[l];
        }
      }
      open.swap(still);
    }
    for (uint32_t l : used) linkCount_[l] = 0;
  }

  const Fabric& f_;
  const std::vector<RankSchedule>& s_;
  const size_t es_;
  const SimOptions o_;
  const int p_;
  std::vector<std::unique_ptr<ExecPlan>> plans_;
  std::vector<std::vector<uint8_t>> localStarted_;
  std::vector<size_t> remaining_;
  std::unordered_map<uint64_t, Channel> channels_;
  std::vector<Flow> flows_;
  std::vector<uint32_t> active_;
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
