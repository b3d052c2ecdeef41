#include "exec/call_stamp.h"

namespace chorus {

std::string rawMismatchText(int peer, const CallStamp& sent, const CallStamp& posted) {
  std::string diff;
  auto field = [&](const char* name, long long theirs, long long ours) {
    if (theirs != ours) diff += format("%s%s %lld vs %lld", diff.empty() ? "" : ", ", name, theirs, ours);
  };
  field("kind", static_cast<int>(sent.kind), static_cast<int>(posted.kind));
  field("seq", static_cast<long long>(sent.seq), static_cast<long long>(posted.seq));
  field("count", static_cast<long long>(sent.count), static_cast<long long>(posted.count));
  field("collective", sent.coll, posted.coll);
  field("dtype", sent.dtype, posted.dtype);
  field("op", sent.op, posted.op);
  field("algorithm", sent.algo, posted.algo);
  field("root", sent.root, posted.root);
  return format("rank %d sent a message of another call (theirs vs ours: %s)", peer, diff.c_str());
}

}  // namespace chorus
