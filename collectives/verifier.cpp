#include "collectives/verifier.h"

#include <bitset>
#include <deque>

#include "core/error.h"

namespace chorus {
namespace {

constexpr int kMaxRanks = 1024;
using Symbol = std::bitset<kMaxRanks>;  // which ranks' inputs an element holds; empty = unwritten

struct Message {
  int fromRank;
  uint32_t sendStep;
  std::vector<Symbol> posted;  // the data as it was when the send was posted
};

struct RankState {
  std::vector<Symbol> input, output;
  std::vector<uint8_t> started, done;
  size_t remaining = 0;
};

class Verifier {
 public:
  Verifier(const std::vector<RankSchedule>& s, size_t count, bool inPlace) : s_(s), count_(count), inPlace_(inPlace) {}

  VerifyResult run() {
    int p = static_cast<int>(s_.size());
    if (p < 1 || p > kMaxRanks) return fail(format("%d ranks: the verifier supports 1 to %d", p, kMaxRanks));
    st_.resize(p);
    channels_.assign(static_cast<size_t>(p) * p, {});
    for (int r = 0; r < p; ++r) {
      RankState& rs = st_[r];
      rs.input.assign(count_, Symbol());
      for (auto& e : rs.input) e.set(r);
      if (!inPlace_) rs.output.assign(count_, Symbol());
      rs.started.assign(s_[r].steps.size(), 0);
      rs.done.assign(s_[r].steps.size(), 0);
      rs.remaining = s_[r].steps.size();
    }
    // Repeatedly: post every ready send; complete every receive whose message is there.
    bool progressed = true;
    while (progressed && result_.ok) {
      progressed = false;
      for (int r = 0; r < p && result_.ok; ++r) progressed |= stepRank(r);
    }
    if (!result_.ok) return result_;
    for (int r = 0; r < p; ++r)
      if (st_[r].remaining) return fail(format("rank %d: %zu steps never ran (deadlock or unmatched send/recv)", r, st_[r].remaining));
    for (size_t c = 0; c < channels_.size(); ++c)
      if (!channels_[c].empty()) return fail(format("%zu unreceived message(s) from rank %zu to rank %zu", channels_[c].size(), c / p, c % p));
    Symbol all;
    for (int r = 0; r < p; ++r) all.set(r);
    for (int r = 0; r < p; ++r)
      for (size_t i = 0; i < count_; ++i)
        if (out(r)[i] != all)
          return fail(format("rank %d element %zu holds %zu of %d contributions", r, i, out(r)[i].count(), p));
    return result_;
  }

 private:
  std::vector<Symbol>& out(int r) { return inPlace_ ? st_[r].input : st_[r].output; }
  std::vector<Symbol>& buf(int r, BufferId b) { return b == BufferId::Input ? st_[r].input : out(r); }

  VerifyResult fail(const std::string& e) {
    if (result_.ok) {
      result_.ok = false;
      result_.error = e;
    }
    return result_;
  }

  bool depsDone(int r, const Step& step) const {
    for (uint32_t d = 0; d < step.depCount; ++d)
      if (!st_[r].done[s_[r].deps[step.depBegin + d]]) return false;
    return true;
  }

  bool inRange(const Region& reg) const { return reg.offset <= count_ && reg.count <= count_ - reg.offset; }

  std::vector<Symbol> read(int r, uint32_t i, const Region& reg) {
    if (!inRange(reg)) {
      fail(format("rank %d step %u: region [%zu+%zu] outside %zu elements", r, i, reg.offset, reg.count, count_));
      return {};
    }
    auto& b = buf(r, reg.buf);
    std::vector<Symbol> v(b.begin() + reg.offset, b.begin() + reg.offset + reg.count);
    for (size_t k = 0; k < v.size(); ++k)
      if (v[k].none()) {
        fail(format("rank %d step %u (%s) reads element %zu before anything wrote it", r, i, stepKindName(s_[r].steps[i].kind), reg.offset + k));
        break;
      }
    return v;
  }

  // Advances rank r as far as it can; true if anything happened.
  bool stepRank(int r) {
    bool any = false;
    const RankSchedule& sched = s_[r];
    // Per peer and direction, only the first not-started step may start (FIFO matching).
    std::vector<uint8_t> sendBlocked(s_.size(), 0), recvBlocked(s_.size(), 0);
    for (uint32_t i = 0; i < sched.steps.size() && result_.ok; ++i) {
      RankState& rs = st_[r];
      if (rs.done[i]) continue;
      const Step& step = sched.steps[i];
      bool isSend = step.kind == StepKind::Send;
      bool isRecv = step.kind == StepKind::Recv || step.kind == StepKind::RecvReduce;
      if (step.peer >= static_cast<int>(s_.size()) || ((isSend || isRecv) && step.peer < 0)) {
        fail(format("rank %d step %u: bad peer %d", r, i, step.peer));
        return false;
      }
      if (rs.started[i]) continue;  // a posted send: completes when the receiver consumes it
      if (isSend && sendBlocked[step.peer]) continue;
      if (isRecv && recvBlocked[step.peer]) continue;
      if (!depsDone(r, step)) {
        if (isSend) sendBlocked[step.peer] = 1;
        if (isRecv) recvBlocked[step.peer] = 1;
        continue;
      }
      if (isSend) {
        channels_[static_cast<size_t>(r) * s_.size() + step.peer].push_back({r, i, read(r, i, step.src)});
        rs.started[i] = 1;
        any = true;
      } else if (isRecv) {
        auto& q = channels_[static_cast<size_t>(step.peer) * s_.size() + r];
        if (q.empty()) {
          recvBlocked[step.peer] = 1;
          continue;
        }
        Message m = std::move(q.front());
        q.pop_front();
        const Step& sendStep = s_[step.peer].steps[m.sendStep];
        std::vector<Symbol> late = read(step.peer, m.sendStep, sendStep.src);
        if (!result_.ok) return false;
        if (late != m.posted) {
          fail(format("rank %d step %u: its send buffer changed before rank %d received it (missing dependency)", step.peer, m.sendStep, r));
          return false;
        }
        if (m.posted.size() != step.dst.count) {
          fail(format("rank %d step %u receives %zu elements but rank %d step %u sent %zu", r, i, step.dst.count, step.peer, m.sendStep, m.posted.size()));
          return false;
        }
        if (!inRange(step.dst)) {
          fail(format("rank %d step %u: destination outside the buffer", r, i));
          return false;
        }
        std::vector<Symbol> local;
        if (step.kind == StepKind::RecvReduce) local = read(r, i, step.src);
        if (!result_.ok) return false;
        auto& dst = buf(r, step.dst.buf);
        for (size_t k = 0; k < step.dst.count; ++k) {
          if (step.kind == StepKind::RecvReduce) {
            if ((local[k] & m.posted[k]).any()) {
              fail(format("rank %d step %u: element %zu would count a contribution twice", r, i, step.dst.offset + k));
              return false;
            }
            dst[step.dst.offset + k] = local[k] | m.posted[k];
          } else {
            dst[step.dst.offset + k] = m.posted[k];
          }
        }
        st_[step.peer].done[m.sendStep] = 1;
        --st_[step.peer].remaining;
        rs.done[i] = 1;
        --rs.remaining;
        any = true;
      } else if (step.kind == StepKind::Copy) {
        std::vector<Symbol> v = read(r, i, step.src);
        if (!result_.ok || !inRange(step.dst)) return fail(format("rank %d step %u: bad copy", r, i)).ok;
        std::copy(v.begin(), v.end(), buf(r, step.dst.buf).begin() + step.dst.offset);
        rs.done[i] = 1;
        --rs.remaining;
        any = true;
      } else {  // Divide: the data must already be complete
        std::vector<Symbol> v = read(r, i, step.dst);
        if (!result_.ok) return false;
        for (size_t k = 0; k < v.size(); ++k)
          if (static_cast<int>(v[k].count()) != step.divisor || static_cast<int>(s_.size()) != step.divisor)
            return fail(format("rank %d step %u divides element %zu holding %zu contributions by %d", r, i, step.dst.offset + k, v[k].count(), step.divisor)).ok;
        rs.done[i] = 1;
        --rs.remaining;
        any = true;
      }
    }
    return any;
  }

  const std::vector<RankSchedule>& s_;
  size_t count_;
  bool inPlace_;
  std::vector<RankState> st_;
  std::vector<std::deque<Message>> channels_;
  VerifyResult result_;
};

}  // namespace

VerifyResult verifyAllReduce(const std::vector<RankSchedule>& schedules, size_t count, bool inPlace) {
  return Verifier(schedules, count, inPlace).run();
}

}  // namespace chorus
