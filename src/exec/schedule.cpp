#include "exec/schedule.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"

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

static std::string regionText(const Region& r) {
  std::ostringstream os;
  os << (r.buf == BufferId::Input ? "in" : "out") << "[" << r.offset << "+" << r.count << "]";
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
