#include "collectives/rank_sets.h"

#include <algorithm>
#include <bit>

#include "base/error.h"

namespace chorus {
namespace {

constexpr size_t kCacheSize = 4096;  // recent unions kept (a power of two)

uint64_t mix(uint64_t h, uint64_t w) { return (h ^ w) * 1099511628211ull; }
// The high bits of the words reach the low bits that pick a slot (splitmix64's finalizer).
uint64_t finish(uint64_t h) {
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

}  // namespace

RankSets::RankSets(int p) : p_(p), bitWords_((static_cast<size_t>(p) + 63) / 64) {
  CHORUS_ASSERT(p >= 1 && p <= kMaxRanks);
  // A bitset costs bitWords_ words, a run one: past that many runs the bitset is smaller.
  maxRuns_ = std::max<size_t>(8, bitWords_);
  offset_ = {0};
  table_.assign(1024, 0);
  cache_.resize(kCacheSize);
  intern(nullptr, 0, false, 0);  // id 0: the empty set (an element nothing has written)
  for (int r = 0; r < p; ++r) internRuns({run(r, r + 1)});  // ids 1..p: the single ranks
  full_ = internRuns({run(0, p)});
}

uint32_t RankSets::unite(uint32_t a, uint32_t b) {
  if (a > b) std::swap(a, b);
  CacheEntry& c = cache_[(a * 0x9e3779b1u ^ b * 0x85ebca77u) & (kCacheSize - 1)];
  if (c.id != 0 && c.a == a && c.b == b) return c.id;
  uint32_t id = kOverlap;
  if (!bitset_[a] && !bitset_[b]) {
    merged_.clear();
    const uint64_t *x = words(a), *y = words(b);
    size_t i = 0, ie = wordCount(a), j = 0, je = wordCount(b);
    bool overlap = false;
    while (i < ie || j < je) {
      uint64_t s = (j >= je || (i < ie && lo(x[i]) < lo(y[j]))) ? x[i++] : y[j++];
      if (!merged_.empty() && lo(s) < hi(merged_.back())) {
        overlap = true;
        break;
      }
      if (!merged_.empty() && lo(s) == hi(merged_.back())) merged_.back() = run(lo(merged_.back()), hi(s));
      else merged_.push_back(s);
    }
    if (!overlap) id = internRuns(merged_);
  } else {
    bits_.assign(bitWords_, 0);
    if (orInto(a, &bits_) && orInto(b, &bits_)) id = internBits(bits_);
  }
  c = {a, b, id};
  return id;
}

bool RankSets::orInto(uint32_t id, std::vector<uint64_t>* bits) const {
  uint64_t* w = bits->data();
  const uint64_t* s = words(id);
  if (bitset_[id]) {
    for (size_t i = 0; i < bitWords_; ++i) {
      if (w[i] & s[i]) return false;
      w[i] |= s[i];
    }
    return true;
  }
  for (size_t i = 0; i < wordCount(id); ++i) {
    for (int r = lo(s[i]); r < hi(s[i]);) {  // a word at a time where the run covers it
      size_t k = static_cast<size_t>(r) / 64;
      int bit = r % 64, n = std::min(64 - bit, hi(s[i]) - r);
      uint64_t m = (n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1)) << bit;
      if (w[k] & m) return false;
      w[k] |= m;
      r += n;
    }
  }
  return true;
}

bool RankSets::contains(uint32_t id, int rank) const {
  const uint64_t* s = words(id);
  if (bitset_[id]) return rank >= 0 && rank < p_ && (s[rank / 64] >> (rank % 64) & 1);
  for (size_t i = 0; i < wordCount(id); ++i)
    if (rank >= lo(s[i]) && rank < hi(s[i])) return true;
  return false;
}

int RankSets::firstCommon(uint32_t a, uint32_t b) const {
  for (int r = 0; r < p_; ++r)
    if (contains(a, r) && contains(b, r)) return r;
  return -1;
}

std::vector<uint64_t> RankSets::runList(uint32_t id) const {
  if (!bitset_[id]) return {words(id), words(id) + wordCount(id)};
  std::vector<uint64_t> runs;
  for (int r = 0; r < p_;) {
    if (!contains(id, r)) {
      ++r;
      continue;
    }
    int h = r + 1;
    while (h < p_ && contains(id, h)) ++h;
    runs.push_back(run(r, h));
    r = h;
  }
  return runs;
}

size_t RankSets::runs(uint32_t id) const { return runList(id).size(); }

std::string RankSets::text(uint32_t id) const {
  std::string t = "{";
  std::vector<uint64_t> runs = runList(id);
  for (size_t i = 0; i < runs.size(); ++i) {
    if (i == 8) {
      t += ",...";
      break;
    }
    int l = lo(runs[i]), h = hi(runs[i]);
    if (i > 0) t += ',';
    t += std::to_string(l);
    if (h > l + 1) t += '-' + std::to_string(h - 1);
  }
  return t + "}";
}

uint32_t RankSets::internRuns(const std::vector<uint64_t>& runs) {
  int n = 0;
  for (uint64_t s : runs) n += hi(s) - lo(s);
  if (runs.size() <= maxRuns_) return intern(runs.data(), runs.size(), false, n);
  bits_.assign(bitWords_, 0);
  for (uint64_t s : runs)
    for (int r = lo(s); r < hi(s); ++r) bits_[r / 64] |= uint64_t{1} << (r % 64);
  return intern(bits_.data(), bits_.size(), true, n);
}

uint32_t RankSets::internBits(const std::vector<uint64_t>& bits) {
  // The canonical form: runs while there are few enough of them.
  std::vector<uint64_t>& runs = merged_;
  runs.clear();
  int n = 0;
  for (int r = 0; r < p_ && runs.size() <= maxRuns_;) {
    if (!(bits[r / 64] >> (r % 64) & 1)) {
      ++r;
      continue;
    }
    int h = r + 1;
    while (h < p_ && (bits[h / 64] >> (h % 64) & 1)) ++h;
    runs.push_back(run(r, h));
    n += h - r;
    r = h;
  }
  if (runs.size() <= maxRuns_) return intern(runs.data(), runs.size(), false, n);
  n = 0;
  for (uint64_t w : bits) n += std::popcount(w);
  return intern(bits.data(), bits.size(), true, n);
}

uint32_t RankSets::intern(const uint64_t* w, size_t n, bool bitset, int size) {
  uint64_t h = mix(1469598103934665603ull, bitset);
  for (size_t i = 0; i < n; ++i) h = mix(h, w[i]);
  h = finish(h);
  const size_t mask = table_.size() - 1;
  size_t slot = h & mask;
  for (; table_[slot] != 0; slot = (slot + 1) & mask) {
    uint32_t id = table_[slot] - 1;
    if (hash_[id] == h && bitset_[id] == bitset && wordCount(id) == n && std::equal(w, w + n, words(id))) return id;
  }
  uint32_t id = static_cast<uint32_t>(size_.size());
  CHORUS_ASSERT(id < kOverlap - 1);
  pool_.insert(pool_.end(), w, w + n);
  offset_.push_back(pool_.size());
  size_.push_back(size);
  bitset_.push_back(bitset);
  hash_.push_back(h);
  table_[slot] = id + 1;
  if (size_.size() * 2 > table_.size()) growTable();
  return id;
}

void RankSets::growTable() {
  table_.assign(table_.size() * 2, 0);
  const size_t mask = table_.size() - 1;
  for (uint32_t id = 0; id < size_.size(); ++id) {
    size_t slot = hash_[id] & mask;
    while (table_[slot] != 0) slot = (slot + 1) & mask;
    table_[slot] = id + 1;
  }
}

}  // namespace chorus
