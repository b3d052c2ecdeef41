// One rank's buffers as the symbolic verifier (collectives/verifier.h) sees them: every element
// has a symbol and in-flight marks, kept as runs of consecutive elements instead of one cell
// each.
//
// A run [begin, end) holds affine symbols: element begin + k stands for `value + k` of the same
// kind (see ElementSym), with the same set, divided flag and marks. A block that a gather
// assembles from consecutive ranks' inputs is one run (its symbols are global input element
// ids, rank s's element i being base(s) + i), and so is a reduced block of consecutive indices
// over one rank set. After every update the runs it touched are merged with their neighbours
// where the symbols continue and the marks agree, so the number of runs follows the shape of the
// data, not its size: a few per rank for the log-step and ring families, one per block where the
// blocks come from unrelated places (an all-to-all's output).
//
// Cost: a std::map from a run's first element to the run; an update of [lo, hi) splits at most
// two runs, visits the runs inside and merges at its two ends, O(log runs + runs inside). Where
// the data has no such shape (an all-to-all of single elements: every element its own run) a
// node per element costs more than a cell per element, so past one run per 64 elements
// the rank switches, for good, to one ElementRun per element (24 bytes), visited one by one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <vector>

namespace chorus {

// What an element holds. kind: 0 nothing written yet; kOneRank: one rank's input element,
// value its global id; otherwise the RankSets id of the two or more ranks it sums, value the
// element's index in the source Input.
struct ElementSym {
  static constexpr uint32_t kOneRank = ~0u - 1;
  uint64_t value = 0;
  uint32_t set = 0;
  bool divided = false;

  ElementSym at(uint64_t k) const { return set == 0 ? *this : ElementSym{value + k, set, divided}; }
  bool operator==(const ElementSym&) const = default;
};

struct ElementRun {
  ElementSym sym;        // of the run's first element
  uint32_t writer = 0;   // 1 + global id of the in-flight step that writes it; 0: none
  uint16_t readers = 0;  // in-flight steps that read it
  bool writable = false; // Scratch, or a part of Output the collective defines
};

class ElementRuns {
 public:
  // `size` elements, nothing written, not writable.
  explicit ElementRuns(uint64_t size);
  // Moves keep the finger (map nodes move with the map); a copy could not.
  ElementRuns(ElementRuns&&) = default;
  ElementRuns& operator=(ElementRuns&&) = default;
  ElementRuns(const ElementRuns&) = delete;
  ElementRuns& operator=(const ElementRuns&) = delete;

  uint64_t size() const { return size_; }
  size_t runCount() const { return dense_ ? size_ : runs_.size(); }
  bool dense() const { return dense_; }

  // Calls f(run, begin, end) for the runs covering [lo, hi), clipped to it, in order, until f
  // returns false; false if one did.
  template <typename F>
  bool scan(uint64_t lo, uint64_t hi, F f) const {
    if (lo >= hi) return true;
    if (dense_) {
      for (uint64_t k = lo; k < hi; ++k)
        if (!f(cells_[k].sym, cells_[k], k, k + 1)) return false;
      return true;
    }
    for (auto it = locate(lo); it != runs_.end() && it->first < hi; ++it) {
      uint64_t b = std::max(lo, it->first), e = std::min(hi, end(it));
      if (!f(it->second.sym.at(b - it->first), it->second, b, e)) return false;
    }
    return true;
  }

  // Splits the runs at lo and hi, calls f(run, begin, end) on each run inside (f may change it;
  // run.sym is then that of element `begin`) until f returns false, and merges what can be
  // merged. False if f did.
  template <typename F>
  bool update(uint64_t lo, uint64_t hi, F f) {
    if (lo >= hi) return true;
    if (dense_) {
      for (uint64_t k = lo; k < hi; ++k)
        if (!f(cells_[k], k, k + 1)) return false;
      return true;
    }
    auto first = split(lo), last = split(hi);
    bool ok = true;
    for (auto it = first; it != last && ok; ++it) ok = f(it->second, it->first, end(it));
    finger_ = mergeAround(first, last);
    hasFinger_ = true;
    if (runs_.size() > kDenseMin && runs_.size() * kDenseRatio > size_) becomeDense();
    return ok;
  }

  // Writes `n` symbols starting with `sym` (affine) at [at, at + n) and clears their writer.
  void write(uint64_t at, uint64_t n, ElementSym sym);

 private:
  // Past kDenseMin runs and one run per kDenseRatio elements the data has little shape left
  // (an all-to-all's blocks, in-flight marks on every other element): a map visit, a dozen
  // pointer hops, then costs more than the cells would (measured on the p = 1024 all-to-alls,
  // which run 3x slower as maps than as cells).
  static constexpr size_t kDenseMin = 32, kDenseRatio = 64;
  using Map = std::map<uint64_t, ElementRun>;
  uint64_t end(Map::const_iterator it) const {
    auto next = std::next(it);
    return next == runs_.end() ? size_ : next->first;
  }
  // The run holding element `at` (< size): a few steps from the finger (the run the last
  // update began at: the families walk their buffers block after block), else a search.
  Map::const_iterator locate(uint64_t at) const;
  // Makes a run start at `at` (< size; size: end()); returns it.
  Map::iterator split(uint64_t at);
  // Merges the runs from the one before `first` to `last` (inclusive) where they continue;
  // returns the first of them (which stays).
  Map::iterator mergeAround(Map::iterator first, Map::iterator last);
  bool continues(Map::const_iterator a, Map::const_iterator b) const;
  void becomeDense();

  uint64_t size_;
  Map runs_;
  Map::iterator finger_;  // a run of runs_ (moves with it), where hasFinger_
  bool hasFinger_ = false;
  bool dense_ = false;
  std::vector<ElementRun> cells_;  // dense: element k's own symbol and marks
};

}  // namespace chorus
