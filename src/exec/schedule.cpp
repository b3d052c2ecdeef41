#include "exec/schedule.h"

#include <algorithm>
#include <sstream>

#include "base/error.h"

namespace chorus {

uint32_t RankSchedule::add(const Step& step, std::initializer_list<uint32_t> dependsOn) {
  Step s = step;
  s.depBegin = static_cast<uint32_t>(deps.size());
  s.depCount = static_cast<uint32_t>(dependsOn.size());
  for (uint32_t d : dependsOn) {
    CHORUS_ASSERT(d < steps.size());
    deps.push_back(d);
  }
  steps.push_back(s);
  return static_cast<uint32_t>(steps.size() - 1);
}

std::vector<int> RankSchedule::peers() const {
  std::vector<int> out;
  for (const Step& s : steps) {
    if (s.peer < 0) continue;
    if (std::find(out.begin(), out.end(), s.peer) == out.end()) out.push_back(s.peer);
  }
  return out;
}

const char* stepKindName(StepKind kind) {
  switch (kind) {
    case StepKind::Send: return "send";
    case StepKind::Recv: return "recv";
    case StepKind::RecvReduce: return "recvReduce";
    case StepKind::Copy: return "copy";
    case StepKind::Divide: return "divide";
  }
  return "?";
}

RankSchedule mergeSchedules(const std::vector<const RankSchedule*>& calls) {
  RankSchedule out;
  CHORUS_ASSERT(!calls.empty());
  out.rank = calls[0]->rank;
  out.nranks = calls[0]->nranks;
  for (size_t k = 0; k < calls.size(); ++k) {
    const RankSchedule& c = *calls[k];
    out.algorithm += (k ? "+" : "") + c.algorithm;
    uint32_t base = static_cast<uint32_t>(out.steps.size());
    auto renumber = [k](Region r) {
      r.buf = bufferOfCall(static_cast<int>(k), r.buf);
      return r;
    };
    for (const Step& st : c.steps) {
      Step s = st;
      s.src = renumber(s.src);
      s.dst = renumber(s.dst);
      s.depBegin = static_cast<uint32_t>(out.deps.size());
      for (uint32_t d = 0; d < st.depCount; ++d) out.deps.push_back(base + c.deps[st.depBegin + d]);
      out.steps.push_back(s);
    }
  }
  return out;
}

static std::string regionText(const Region& r) {
  static const char* const kNames[] = {"in", "out", "scratch"};
  std::ostringstream os;
  int b = static_cast<int>(r.buf);
  if (b >= kBuffersPerCall) os << "call" << b / kBuffersPerCall << ".";
  os << kNames[b % kBuffersPerCall] << "[" << r.offset << "+" << r.count << "]";
  return os.str();
}

std::string RankSchedule::describe() const {
  std::ostringstream os;
  os << algorithm << " rank " << rank << "/" << nranks << ", " << steps.size() << " steps\n";
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    os << "  " << i << ": " << stepKindName(s.kind);
    if (s.peer >= 0) os << " peer " << s.peer;
    if (s.kind == StepKind::Send || s.kind == StepKind::Copy || s.kind == StepKind::RecvReduce) os << " src " << regionText(s.src);
    if (s.kind != StepKind::Send) os << " dst " << regionText(s.dst);
    if (s.depCount) {
      os << " after";
      for (uint32_t d = 0; d < s.depCount; ++d) os << " " << deps[s.depBegin + d];
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace chorus
