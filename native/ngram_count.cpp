// ngram_count.cpp — the vocabulary, the scoring hash table, and NgramCounter: streaming tokenization and
// counting of order-N n-grams, as lmplz's CorpusCount does (each sentence padded with N-1 <s>).
#include <cstring>
#include <stdexcept>

#include "ngram_lm.h"

namespace ko {

namespace {

// 64-bit hash of a byte string: 8 bytes at a time, murmur3's finalizer at the end. Never 0 (0 marks an
// empty slot).
uint64_t hashBytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t(n) * 0xC2B2AE3D27D4EB4FULL);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h ^= v * 0x87C37B91114253D5ULL;
    h = ((h << 27) | (h >> 37)) * 0x4CF5AD432745937FULL;
    p += 8;
    n -= 8;
  }
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  h ^= v * 0x87C37B91114253D5ULL;
  h = ngramMix(h);
  return h ? h : 1;
}

// lmplz's token delimiters (corpus_count.cc: "\0\t\n\r "); '\n' ends the sentence.
inline bool isTokenSep(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\0'; }

}  // namespace

// ---- NgramVocab ---------------------------------------------------------------------------------

NgramVocab::NgramVocab() {
  offsets_.push_back(0);
  rehash(64);
  findOrInsert("<unk>");
  findOrInsert("<s>");
  findOrInsert("</s>");
}

void NgramVocab::rehash(size_t capacity) {
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(capacity, Slot{0, 0});
  const size_t mask = capacity - 1;
  for (const Slot& s : old) {
    if (!s.hash) continue;
    size_t i = s.hash & mask;
    while (slots_[i].hash) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

bool NgramVocab::lookup(std::string_view w, uint32_t* id) const {
  const uint64_t h = hashBytes(w.data(), w.size());
  const size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.hash == 0) return false;
    if (s.hash == h && word(s.id) == w) {
      *id = s.id;
      return true;
    }
  }
}

uint32_t NgramVocab::findOrInsert(std::string_view w) {
  const uint64_t h = hashBytes(w.data(), w.size());
  size_t mask = slots_.size() - 1;
  size_t i = h & mask;
  for (;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.hash == 0) break;
    if (s.hash == h && word(s.id) == w) return s.id;
  }
  if (offsets_.size() >= 0xFFFFFFF0u) throw std::runtime_error("n-gram vocabulary: more than 2^32 words");
  const uint32_t id = size();
  chars_.append(w.data(), w.size());
  offsets_.push_back(chars_.size());
  if ((size_t(id) + 1) * 2 > slots_.size()) {  // keep load <= 1/2
    rehash(slots_.size() * 2);
    mask = slots_.size() - 1;
    for (i = h & mask; slots_[i].hash; i = (i + 1) & mask) {
    }
  }
  slots_[i] = Slot{h, id};
  return id;
}

// ---- NgramTable ---------------------------------------------------------------------------------

void NgramTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap * 7 < n * 10) cap *= 2;  // load <= 0.7
  if (cap <= slots_.size()) return;
  std::vector<NgramEntry> old;
  old.swap(slots_);
  slots_.assign(cap, NgramEntry{0, 0.0f, 0.0f});
  mask_ = cap - 1;
  for (const NgramEntry& e : old) {
    if (!e.key) continue;
    size_t i = e.key & mask_;
    while (slots_[i].key) i = (i + 1) & mask_;
    slots_[i] = e;
  }
}

NgramEntry* NgramTable::insert(uint64_t key, bool* existed) {
  if (slots_.empty() || (size_ + 1) * 10 > slots_.size() * 7) reserve(size_ + 1 > 16 ? (size_ + 1) * 2 : 16);
  size_t i = key & mask_;
  for (; slots_[i].key; i = (i + 1) & mask_) {
    if (slots_[i].key == key) {
      *existed = true;
      return &slots_[i];
    }
  }
  *existed = false;
  slots_[i].key = key;
  size_++;
  return &slots_[i];
}

// ---- NgramCounter -------------------------------------------------------------------------------

NgramCounter::NgramCounter(int order, bool countEmptyLines) : order_(order), countEmpty_(countEmptyLines) {
  if (order < 1 || order > kNgramMaxOrder)
    throw std::invalid_argument("NgramCounter: order " + std::to_string(order) + " is not in 1..6");
  rehash(1024);
}

size_t NgramCounter::memoryBytes() const {
  return grams_.capacity() * 4 + counts_.capacity() * 8 + slots_.capacity() * 8;
}

uint64_t NgramCounter::hashGram(const uint32_t* g) const {
  uint64_t h = 0x243F6A8885A308D3ULL;
  for (int i = 0; i < order_; i++) h = (h ^ g[i]) * 0x9E3779B97F4A7C15ULL ^ (h >> 29);
  return ngramMix(h);
}

void NgramCounter::rehash(size_t capacity) {
  slots_.assign(capacity, 0);
  mask_ = capacity - 1;
  for (size_t k = 0; k < counts_.size(); k++) {
    const uint64_t h = hashGram(&grams_[k * order_]);
    size_t i = h & mask_;
    while (slots_[i]) i = (i + 1) & mask_;
    slots_[i] = (h >> 32) << 32 | (k + 1);
  }
}

// window_ holds the current order-N n-gram; count it.
void NgramCounter::countWindow() {
  const uint64_t h = hashGram(window_);
  const uint64_t tag = (h >> 32) << 32;
  size_t i = h & mask_;
  for (; slots_[i]; i = (i + 1) & mask_) {
    const uint64_t s = slots_[i];
    if ((s & 0xFFFFFFFF00000000ULL) != tag) continue;
    const size_t k = size_t(s & 0xFFFFFFFFULL) - 1;
    if (std::memcmp(&grams_[k * order_], window_, sizeof(uint32_t) * order_) == 0) {
      counts_[k]++;
      return;
    }
  }
  const size_t k = counts_.size();
  if (k + 1 >= 0xFFFFFFFFULL) throw std::runtime_error("NgramCounter: more than 2^32 distinct n-grams");
  grams_.insert(grams_.end(), window_, window_ + order_);
  counts_.push_back(1);
  slots_[i] = tag | (k + 1);
  if ((k + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
}

void NgramCounter::token(const char* p, size_t n) {
  const uint32_t id = vocab_.findOrInsert(std::string_view(p, n));
  if (id <= kNgramEos) return;  // <unk>, <s>, </s> in the text are whitespace (lmplz --skip_symbols)
  if (!inSentence_) {
    for (int i = 0; i < order_ - 1; i++) window_[i] = kNgramBos;
    inSentence_ = true;
  }
  window_[order_ - 1] = id;
  countWindow();
  std::memmove(window_, window_ + 1, sizeof(uint32_t) * (order_ - 1));
  tokens_++;
}

void NgramCounter::endLine() {
  if (!inSentence_) {
    if (!(countEmpty_ && lineHasBytes_)) {
      lineHasBytes_ = false;
      return;
    }
    for (int i = 0; i < order_ - 1; i++) window_[i] = kNgramBos;
  }
  window_[order_ - 1] = kNgramEos;
  countWindow();
  sentences_++;
  inSentence_ = false;
  lineHasBytes_ = false;
}

void NgramCounter::addText(const char* data, size_t n) {
  if (finished_) throw std::logic_error("NgramCounter::addText after finish()");
  size_t i = 0;
  while (i < n) {
    const char c = data[i];
    if (c == '\n' || isTokenSep(c)) {
      if (!partial_.empty()) {
        token(partial_.data(), partial_.size());
        partial_.clear();
      }
      if (c == '\n') {
        lineHasBytes_ = true;  // an empty line still counts as a line (countEmptyLines)
        endLine();
      } else {
        lineHasBytes_ = true;
      }
      i++;
      continue;
    }
    lineHasBytes_ = true;
    size_t j = i + 1;
    while (j < n && data[j] != '\n' && !isTokenSep(data[j])) j++;
    if (j == n) {  // the token may go on in the next chunk
      partial_.append(data + i, n - i);
      break;
    }
    if (!partial_.empty()) {
      partial_.append(data + i, j - i);
      token(partial_.data(), partial_.size());
      partial_.clear();
    } else {
      token(data + i, j - i);
    }
    i = j;
  }
}

void NgramCounter::finish() {
  if (finished_) return;
  if (!partial_.empty()) {
    token(partial_.data(), partial_.size());
    partial_.clear();
  }
  // The last line has no '\n' (lmplz reads it all the same); a final '\n' adds no empty line.
  if (inSentence_ || lineHasBytes_) endLine();
  finished_ = true;
}

}  // namespace ko
