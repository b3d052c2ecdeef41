// Sets of ranks for the symbolic verifier (collectives/verifier.h), hash-consed: a set is a
// small id, equal sets have equal ids, so an element of a buffer holds only the id of the ranks
// whose contributions it sums.
//
// Representation: a set is stored as its sorted runs of consecutive ranks [lo, hi) while it has
// at most maxRuns() of them, else as a bitset of p bits. The sets the algorithms build are a few
// runs each (ring arcs, subtrees, hypercube faces, a host's ranks), so they cost a word or two;
// a scattered set costs p/8 bytes at most, never more than its runs would. The form is a
// function of the set (runs up to the bound), so equal sets meet in one entry whatever built
// them. Ranks are 0 to 65535.
//
// Memory: the sets ever built stay (an element may hold any of them until the end); unions are
// computed each time, with a small direct-mapped cache of recent ones (runs of elements share
// their sets), so the union table does not grow with the number of pairs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace chorus {

class RankSets {
 public:
  static constexpr int kMaxRanks = 65536;
  static constexpr uint32_t kOverlap = ~0u;  // unite(): the sets share a rank

  // Ids: 0 the empty set, 1..p the single ranks, then full() and whatever unite() builds.
  explicit RankSets(int p);

  uint32_t single(int rank) const { return static_cast<uint32_t>(rank) + 1; }
  uint32_t full() const { return full_; }
  int size(uint32_t id) const { return size_[id]; }
  bool isSingle(uint32_t id) const { return id >= 1 && id <= static_cast<uint32_t>(p_); }
  // The union of two disjoint sets, or kOverlap.
  uint32_t unite(uint32_t a, uint32_t b);
  bool contains(uint32_t id, int rank) const;
  // The lowest rank in both sets, or -1.
  int firstCommon(uint32_t a, uint32_t b) const;
  // "{0-3,5}" (long sets shortened after 8 runs).
  std::string text(uint32_t id) const;

  // The representation (for tests): how many runs the set has, whether it is stored as a
  // bitset, and past how many runs a set is.
  size_t runs(uint32_t id) const;
  bool isBitset(uint32_t id) const { return bitset_[id] != 0; }
  size_t maxRuns() const { return maxRuns_; }

 private:
  static uint64_t run(int lo, int hi) { return static_cast<uint32_t>(lo) | static_cast<uint64_t>(hi) << 32; }
  static int lo(uint64_t s) { return static_cast<int>(s & 0xffffffffu); }
  static int hi(uint64_t s) { return static_cast<int>(s >> 32); }
  const uint64_t* words(uint32_t id) const { return pool_.data() + offset_[id]; }
  size_t wordCount(uint32_t id) const { return offset_[id + 1] - offset_[id]; }
  std::vector<uint64_t> runList(uint32_t id) const;  // as runs, whatever the form

  // Interns a set given as runs or as a bitset, in its canonical form (runs up to maxRuns_).
  uint32_t internRuns(const std::vector<uint64_t>& runs);
  uint32_t internBits(const std::vector<uint64_t>& bits);
  uint32_t intern(const uint64_t* w, size_t n, bool bitset, int size);
  // ORs set id into *bits (p bits); false if they share a rank.
  bool orInto(uint32_t id, std::vector<uint64_t>* bits) const;
  void growTable();

  int p_;
  size_t maxRuns_, bitWords_;
  uint32_t full_ = 0;
  std::vector<uint64_t> pool_;    // every set's words: runs (lo | hi << 32) or bitset words
  std::vector<size_t> offset_;    // set id's words are pool_[offset_[id], offset_[id + 1])
  std::vector<int> size_;
  std::vector<uint8_t> bitset_;
  std::vector<uint32_t> table_;   // open addressing: 1 + id, 0 empty
  std::vector<uint64_t> hash_;    // hash of each set, by id
  struct CacheEntry {
    uint32_t a = 0, b = 0, id = 0;
  };
  std::vector<CacheEntry> cache_;  // recent unions, direct-mapped
  std::vector<uint64_t> merged_, bits_;
};

}  // namespace chorus
