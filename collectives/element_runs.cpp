#include "collectives/element_runs.h"

namespace chorus {

ElementRuns::ElementRuns(uint64_t size) : size_(size) {
  if (size > 0) runs_.emplace(0, ElementRun{});
}

ElementRuns::Map::const_iterator ElementRuns::locate(uint64_t at) const {
  constexpr int kSteps = 4;
  Map::const_iterator it = finger_;
  if (hasFinger_) {
    if (it->first <= at) {
      for (int i = 0; i < kSteps; ++i) {
        auto next = std::next(it);
        if (next == runs_.end() || next->first > at) return it;
        it = next;
      }
    } else {
      for (int i = 0; i < kSteps && it != runs_.begin(); ++i)
        if ((--it)->first <= at) return it;
    }
  }
  return std::prev(runs_.upper_bound(at));
}

ElementRuns::Map::iterator ElementRuns::split(uint64_t at) {
  if (at >= size_) return runs_.end();
  auto held = locate(at);
  auto it = runs_.erase(held, held);  // the same run, as a mutable iterator
  if (it->first == at) return it;
  ElementRun tail = it->second;
  tail.sym = tail.sym.at(at - it->first);
  return runs_.emplace_hint(std::next(it), at, tail);
}

bool ElementRuns::continues(Map::const_iterator a, Map::const_iterator b) const {
  const ElementRun &x = a->second, &y = b->second;
  return x.writer == y.writer && x.readers == y.readers && x.writable == y.writable && x.sym.set == y.sym.set &&
         x.sym.divided == y.sym.divided && (x.sym.set == 0 || x.sym.value + (b->first - a->first) == y.sym.value);
}

ElementRuns::Map::iterator ElementRuns::mergeAround(Map::iterator first, Map::iterator last) {
  const auto start = first == runs_.begin() ? first : std::prev(first);
  auto it = start;
  while (it != last) {
    auto next = std::next(it);
    if (next == runs_.end()) break;
    if (continues(it, next)) {
      bool wasLast = next == last;
      runs_.erase(next);
      if (wasLast) break;
    } else {
      it = next;
    }
  }
  return start;
}

void ElementRuns::becomeDense() {
  cells_.resize(size_);
  for (auto it = runs_.begin(); it != runs_.end(); ++it)
    for (uint64_t k = it->first; k < end(it); ++k) {
      cells_[k] = it->second;
      cells_[k].sym = it->second.sym.at(k - it->first);
    }
  runs_.clear();
  hasFinger_ = false;
  dense_ = true;
}

void ElementRuns::write(uint64_t at, uint64_t n, ElementSym sym) {
  update(at, at + n, [&](ElementRun& run, uint64_t b, uint64_t) {
    run.sym = sym.at(b - at);
    run.writer = 0;
    return true;
  });
}

}  // namespace chorus
