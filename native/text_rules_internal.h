// text_rules_internal.h — what the text_rules*.cpp files share: the n-gram counter, the per-thread
// scratch buffers, UTF-8 repair, and the per-document entry points the batch calls. Not a public API.
#pragma once
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "text_rules.h"

namespace ko {
namespace text_detail {

// Word n-gram hashes are polynomial in the (already mixed) word hashes: g(i, n) = sum h[i+k] B^(n-1-k),
// so g(i, n+1) = g(i, n) B + h[i+n] and a 5-gram window rolls in O(1). Table keys are mix64(g).
constexpr uint64_t kPolyBase = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kFnvBasis = 0xCBF29CE484222325ull, kFnvPrime = 0x100000001B3ull;

// Open-addressing counter keyed by 64-bit hashes (0 is "empty", so key 0 is stored as 1). Starts small
// and doubles, so memory follows the number of distinct keys; reset() clears only the part it will use,
// so one huge document does not make every later small one pay for clearing a huge table.
class GramCounter {
 public:
  struct Slot {
    uint64_t key;
    uint32_t count;
    uint32_t first;  // position of the first occurrence (ties in "most frequent" go to the first seen)
  };
  void reset(size_t expected) {
    size_t cap = 16;
    while (cap < 2 * expected && cap < (size_t(1) << 16)) cap <<= 1;
    use(cap);
  }
  Slot& add(uint64_t key, uint32_t pos) {
    if (key == 0) key = 1;
    if ((size_ + 1) * 4 > cap_ * 3) grow();
    size_t i = size_t(key) & mask_;
    for (;;) {
      Slot& s = slots_[i];
      if (s.key == key) {
        s.count++;
        return s;
      }
      if (s.key == 0) {
        s.key = key, s.count = 1, s.first = pos;
        size_++;
        return s;
      }
      i = (i + 1) & mask_;
    }
  }
  uint32_t count(uint64_t key) const {
    if (key == 0) key = 1;
    for (size_t i = size_t(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return slots_[i].count;
      if (slots_[i].key == 0) return 0;
    }
  }
  // Slot positions stay valid until the table grows; growths() tells whether it did.
  size_t indexOf(const Slot& s) const { return size_t(&s - slots_.data()); }
  const Slot& at(size_t i) const { return slots_[i]; }
  uint64_t growths() const { return growths_; }
  size_t capacityBytes() const { return slots_.capacity() * sizeof(Slot); }
  void release() { std::vector<Slot>().swap(slots_), cap_ = mask_ = size_ = 0; }

 private:
  void use(size_t cap) {
    if (slots_.size() < cap) slots_.resize(cap);
    std::memset(static_cast<void*>(slots_.data()), 0, cap * sizeof(Slot));
    cap_ = cap, mask_ = cap - 1, size_ = 0;
  }
  void grow() {
    growths_++;
    std::vector<Slot> old(slots_.begin(), slots_.begin() + cap_);
    use(cap_ * 2);
    for (const Slot& s : old) {
      if (s.key == 0) continue;
      size_t i = size_t(s.key) & mask_;
      while (slots_[i].key != 0) i = (i + 1) & mask_;
      slots_[i] = s;
      size_++;
    }
  }
  std::vector<Slot> slots_;
  size_t cap_ = 0, mask_ = 0, size_ = 0;
  uint64_t growths_ = 0;
};

struct Segment {  // a line or a paragraph: its hash and its length in code points
  uint64_t hash;
  int64_t chars;
};

// Per-thread buffers, reused from document to document so the hot loops allocate nothing once warm.
struct Scratch {
  std::string clean, kept;
  std::vector<uint64_t> hashes, grams;
  std::vector<uint32_t> lens, cands, next, slotIdx;
  std::vector<uint8_t> rep;
  std::vector<int64_t> prefix;
  std::vector<Segment> lines, paras;
  GramCounter map;
  void trim();  // after a very large document, give the memory back
};
Scratch& scratch();  // this thread's

template <size_t N>
inline bool inSet(uint32_t c, const char32_t (&set)[N]) {
  for (char32_t x : set)
    if (uint32_t(x) == c) return true;
  return false;
}

// `doc` itself when it is valid UTF-8, else a repaired copy in *buf (each bad byte → U+FFFD).
std::string_view cleanText(std::string_view doc, std::string* buf, int64_t* invalid);

inline int32_t saturate32(int64_t x) { return int32_t(std::min<int64_t>(x, INT32_MAX)); }

// The per-document rules; they append the kept text to *appendTo (if not null) and fill *st if given.
RuleVerdict koreanDoc(std::string_view doc, const KoreanRuleParams& p, std::string* appendTo, KoreanDocStats* st);
RuleVerdict englishDoc(std::string_view doc, const EnglishRuleParams& p, std::string* appendTo, EnglishDocStats* st,
                       bool full);

}  // namespace text_detail
}  // namespace ko
