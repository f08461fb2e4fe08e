// minhash.cpp — normalization, exact hash (XXH64) and MinHash signatures on the CPU. Definitions and
// the choice of defaults are documented in minhash.h.
//
// Speed (AMD EPYC, one core, English ~75 MB/s, Korean ~100 MB/s of UTF-8 input): per document the text is
// normalized in chunks of 4096 code points into a reused buffer (~300 MB/s), the chunk's shingle hashes are
// summed one key at a time over all positions so those loops vectorize for any ngram, and the hot loop
// (half the time) keeps a tile of 32 permutations (a, b and the running minimums) in vector registers while
// the chunk's hashes stream past, so it does no loads or stores besides the broadcast of x. The hot loops
// are compiled twice (AVX2 and baseline x86-64) and picked at load time.
#include "minhash.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>
#include <unordered_set>

#include "utf8.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__ELF__) && (defined(__GNUC__) || defined(__clang__))
#define KO_MH_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define KO_MH_CLONES
#endif

namespace ko {

namespace {

// ---- normalization ------------------------------------------------------------------------------

constexpr uint32_t kSep = 0xFFFFFFFFu;     // a separator: becomes (part of) one space
constexpr uint32_t kRemove = 0xFFFFFFFEu;  // an invisible format character: dropped, does not separate

constexpr std::array<uint32_t, 128> makeAsciiFold() {
  std::array<uint32_t, 128> t{};
  for (uint32_t c = 0; c < 128; c++) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
      t[c] = c;
    else if (c >= 'A' && c <= 'Z')
      t[c] = c + 32;
    else
      t[c] = kSep;  // white space, controls, punctuation, symbols
  }
  return t;
}
constexpr std::array<uint32_t, 128> kAsciiFold = makeAsciiFold();

uint32_t foldLatinExtA(uint32_t c) {  // U+0100..017F: upper/lower case come in adjacent pairs
  if (c == 0x130) return 'i';         // İ
  if (c <= 0x137) return (c & 1) ? c : c + 1;
  if (c == 0x138) return c;
  if (c <= 0x148) return (c & 1) ? c + 1 : c;
  if (c == 0x149) return c;
  if (c <= 0x177) return (c & 1) ? c : c + 1;
  if (c == 0x178) return 0xFF;
  if (c <= 0x17E) return (c & 1) ? c + 1 : c;
  return c;
}

// The normalized form of one non-ASCII code point: itself, its lowercase, kSep or kRemove.
uint32_t foldCodepoint(uint32_t c) {
  if (c >= 0xAC00 && c <= 0xD7A3) return c;  // Hangul syllables: the common case here
  if (isUnicodeSpace(c)) return kSep;
  if (c < 0xA0) return kSep;  // C1 controls
  if (c <= 0xBF) {            // Latin-1 punctuation and symbols, except letters and digits
    if (c == 0xAD) return kRemove;  // soft hyphen
    if (c == 0xAA || c == 0xB5 || c == 0xBA || c == 0xB2 || c == 0xB3 || c == 0xB9 || c >= 0xBC) return c;
    return kSep;
  }
  if (c <= 0xFF) {
    if (c == 0xD7 || c == 0xF7) return kSep;  // × ÷
    return c <= 0xDE ? c + 0x20 : c;
  }
  if (c < 0x180) return foldLatinExtA(c);
  if (c < 0x370) return c;  // Latin Extended-B, IPA, modifiers, combining marks
  if (c < 0x400) {          // Greek
    if (c == 0x37E || c == 0x387) return kSep;  // Greek question mark, ano teleia
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 0x20;
    return c;
  }
  if (c < 0x530) {  // Cyrillic
    if (c < 0x410) return c + 0x50;
    if (c < 0x430) return c + 0x20;
    return c;
  }
  if (c < 0x2000) return c == 0x180E ? kRemove : c;  // (Hangul Jamo U+1100..11FF kept)
  if (c < 0x2070) {                                   // General Punctuation (its spaces were handled above)
    if ((c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) || c >= 0x2060) return kRemove;
    return kSep;
  }
  if (c < 0x20A0) return c;     // super- and subscripts
  if (c < 0x20D0) return kSep;  // currency
  if (c < 0x2190) return c;     // combining marks for symbols, letterlike symbols, number forms
  if (c < 0x2C00) return kSep;  // arrows, math, technical, box drawing, shapes, dingbats, enclosed alnum
  if (c < 0x2E00) return c;
  if (c < 0x2E80) return kSep;  // Supplemental Punctuation
  if (c < 0x3000) return c;
  if (c < 0x3040) {  // CJK Symbols and Punctuation: keep 々〆〇, Hangzhou numerals, tone marks, kana repeats
    if ((c >= 0x3005 && c <= 0x3007) || (c >= 0x3021 && c <= 0x302F) || (c >= 0x3031 && c <= 0x303C)) return c;
    return kSep;
  }
  if (c < 0xFE00) return c;  // kana, compatibility jamo, CJK ideographs, Hangul syllables (above), ...
  if (c < 0xFE10) return kRemove;  // variation selectors
  if (c < 0xFE20) return kSep;     // vertical forms
  if (c < 0xFE30) return c;        // combining half marks
  if (c < 0xFE70) return kSep;     // CJK compatibility forms, small form variants
  if (c == 0xFEFF) return kRemove;  // BOM / zero-width no-break space
  if (c >= 0xFF01 && c <= 0xFF5E) return kAsciiFold[c - 0xFEE0];  // fullwidth ASCII
  if (c >= 0xFF5F && c <= 0xFF65) return kSep;                    // halfwidth CJK punctuation
  if (c >= 0xFFE0 && c <= 0xFFEE) return kSep;                    // fullwidth symbols
  if (c >= 0xFFF9 && c <= 0xFFFC) return kSep;                    // interlinear annotation, object replacement
  if (c >= 0x1F000 && c < 0x1FB00) return kSep;                   // emoji, pictographs, playing cards, ...
  if (c >= 0xE0000 && c < 0xE0080) return kRemove;                // tag characters
  return c;                                                       // U+FFFD (invalid UTF-8) is kept
}

struct NormState {
  bool pendingSpace = false;  // a separator was seen after some output
  bool any = false;           // something was output
};

// Normalizes s[pos..n) into out[0 .. room) and returns the new input position; *written = code points
// written. Stops at the end of the input or when fewer than 2 slots are left (one input byte can emit a
// pending space and a character). Every code point written consumes at least one input byte (a space
// stands for the separator bytes before it), so room >= n - pos + 1 always reaches the end. Resumable:
// call again with the same state to continue.
size_t normalizeSome(const unsigned char* s, size_t n, size_t pos, NormState& st, uint32_t* out, size_t room,
                     size_t* written) {
  uint32_t* o = out;
  uint32_t* const last = out + room - 1;
  bool pending = st.pendingSpace, any = st.any;
  while (pos < n && o < last) {
    uint32_t c;
    if (s[pos] < 0x80) {
      c = kAsciiFold[s[pos++]];
    } else {
      uint32_t cp;
      bool valid;
      pos += size_t(utf8Decode(s, n, pos, &cp, &valid));
      c = foldCodepoint(cp);
      if (c == kRemove) continue;
    }
    if (c == kSep) {
      pending = any;
      continue;
    }
    if (pending) *o++ = ' ';
    pending = false;
    *o++ = c;
    any = true;
  }
  st.pendingSpace = pending, st.any = any;
  *written = size_t(o - out);
  return pos;
}

// Appends the normalized code points of the whole of s[0..n) to out.
void normalizeAppend(const unsigned char* s, size_t n, std::vector<uint32_t>& out) {
  const size_t before = out.size();
  out.resize(before + n + 1);
  NormState st;
  size_t written = 0;
  normalizeSome(s, n, 0, st, out.data() + before, n + 1, &written);
  out.resize(before + written);
}

// UTF-8 of cps[0..n) into out (room for 4n bytes); returns the byte count.
size_t encodeUtf8(const uint32_t* cps, size_t n, unsigned char* out) {
  unsigned char* o = out;
  for (size_t i = 0; i < n; i++) {
    const uint32_t c = cps[i];
    if (c < 0x80) {
      *o++ = (unsigned char)c;
    } else if (c < 0x800) {
      *o++ = (unsigned char)(0xC0 | (c >> 6)), *o++ = (unsigned char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      *o++ = (unsigned char)(0xE0 | (c >> 12)), *o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
      *o++ = (unsigned char)(0x80 | (c & 0x3F));
    } else {
      *o++ = (unsigned char)(0xF0 | (c >> 18)), *o++ = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
      *o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3F)), *o++ = (unsigned char)(0x80 | (c & 0x3F));
    }
  }
  return size_t(o - out);
}

// ---- XXH64 (xxHash, Yann Collet; streaming form) ---------------------------------------------------

constexpr uint64_t kP1 = 11400714785074694791ull, kP2 = 14029467366897019727ull, kP3 = 1609587929392839161ull,
                   kP4 = 9650029242287828579ull, kP5 = 2870177450012600261ull;
inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;  // little-endian hosts (x86-64, aarch64)
}
inline uint32_t read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t xxRound(uint64_t acc, uint64_t in) { return rotl64(acc + in * kP2, 31) * kP1; }
inline uint64_t xxMerge(uint64_t h, uint64_t v) { return (h ^ xxRound(0, v)) * kP1 + kP4; }

class Xxh64 {
 public:
  void update(const void* data, size_t len) {
    if (len == 0) return;  // (data may be null then)
    const unsigned char* p = static_cast<const unsigned char*>(data);
    total_ += len;
    if (bufLen_ + len < 32) {
      std::memcpy(buf_ + bufLen_, p, len);
      bufLen_ += len;
      return;
    }
    if (bufLen_ > 0) {
      const size_t fill = 32 - bufLen_;
      std::memcpy(buf_ + bufLen_, p, fill);
      stripe(buf_);
      p += fill, len -= fill, bufLen_ = 0;
    }
    for (; len >= 32; p += 32, len -= 32) stripe(p);
    std::memcpy(buf_, p, len);
    bufLen_ = len;
  }
  uint64_t digest() const {
    uint64_t h;
    if (total_ >= 32) {
      h = rotl64(v_[0], 1) + rotl64(v_[1], 7) + rotl64(v_[2], 12) + rotl64(v_[3], 18);
      for (uint64_t v : v_) h = xxMerge(h, v);
    } else {
      h = kP5;  // seed 0
    }
    h += total_;
    const unsigned char* p = buf_;
    size_t len = bufLen_;
    for (; len >= 8; p += 8, len -= 8) h = rotl64(h ^ xxRound(0, read64(p)), 27) * kP1 + kP4;
    if (len >= 4) h = rotl64(h ^ (uint64_t(read32(p)) * kP1), 23) * kP2 + kP3, p += 4, len -= 4;
    for (; len > 0; p++, len--) h = rotl64(h ^ (uint64_t(*p) * kP5), 11) * kP1;
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    return h ^ (h >> 32);
  }

 private:
  void stripe(const unsigned char* p) {
    for (int i = 0; i < 4; i++) v_[i] = xxRound(v_[i], read64(p + 8 * i));
  }
  uint64_t v_[4] = {kP1 + kP2, kP2, 0, 0 - kP1};  // seed 0
  unsigned char buf_[32];
  size_t bufLen_ = 0;
  uint64_t total_ = 0;
};

void hashUtf8(Xxh64& h, const uint32_t* cps, size_t n, std::vector<unsigned char>& scratch) {
  if (scratch.size() < 4 * n) scratch.resize(4 * n);
  h.update(scratch.data(), encodeUtf8(cps, n, scratch.data()));
}

// ---- signatures ----------------------------------------------------------------------------------

constexpr int kPermTile = 32;     // permutations held in registers by the hot loop (4 AVX2 vectors)
constexpr size_t kChunk = 4096;   // code points normalized, and shingles hashed, per pass
constexpr uint64_t kFnvOffset = 14695981039346656037ull, kFnvPrime = 1099511628211ull;

struct PermTable {
  int numPerm = 0, padded = 0;  // padded to a multiple of kPermTile (the extra lanes are computed, unused)
  std::vector<uint32_t> a, b;
  uint64_t keys[32];
  explicit PermTable(const MinhashParams& p) : numPerm(p.numPerm) {
    padded = (numPerm + kPermTile - 1) / kPermTile * kPermTile;
    a.assign(size_t(padded), 1u);
    b.assign(size_t(padded), 0u);
    for (int i = 0; i < numPerm; i++) minhashPermutation(p.seed, i, &a[size_t(i)], &b[size_t(i)]);
    for (int k = 0; k < 32; k++) keys[k] = minhashShingleKey(p.seed, k);
  }
};

// xs[i] = hash of the shingle t[i .. i+m), for i < count; acc is scratch of count values. Summed one key
// at a time over all positions (rather than one position at a time) so the loops vectorize for any m.
template <class Tok>
KO_MH_CLONES void hashShingles(const Tok* t, size_t count, int m, const uint64_t* keys, uint64_t* acc,
                               uint32_t* xs) {
  for (size_t i = 0; i < count; i++) acc[i] = uint64_t(t[i]) * keys[0];
  for (int k = 1; k < m; k++) {
    const uint64_t key = keys[k];
    const Tok* tk = t + k;
    for (size_t i = 0; i < count; i++) acc[i] += uint64_t(tk[i]) * key;
  }
  for (size_t i = 0; i < count; i++) xs[i] = minhashShingleFinish(acc[i]);
}

// mins[j] = min(mins[j], min over i of a[j] * xs[i] + b[j]) for j < padded (a multiple of kPermTile).
KO_MH_CLONES void foldMins(const uint32_t* xs, size_t n, const uint32_t* a, const uint32_t* b, uint32_t* mins,
                           int padded) {
  for (int p = 0; p < padded; p += kPermTile) {
    uint32_t ta[kPermTile], tb[kPermTile], m[kPermTile];
    for (int j = 0; j < kPermTile; j++) ta[j] = a[p + j], tb[j] = b[p + j], m[j] = mins[p + j];
    for (size_t i = 0; i < n; i++) {
      const uint32_t x = xs[i];
      for (int j = 0; j < kPermTile; j++) {
        const uint32_t h = ta[j] * x + tb[j];
        m[j] = h < m[j] ? h : m[j];
      }
    }
    for (int j = 0; j < kPermTile; j++) mins[p + j] = m[j];
  }
}

struct Scratch {
  std::vector<uint32_t> cps;        // normalized code points of the chunk, after the ngram-1 carried over
  std::vector<uint64_t> words;      // word mode: hashes of complete words not yet consumed
  std::vector<uint64_t> acc;        // shingle pre-hashes of the chunk
  std::vector<uint32_t> xs;         // shingle hashes of the chunk
  std::vector<uint32_t> mins;       // running minimum per (padded) permutation
  std::vector<unsigned char> utf8;  // exact hash: UTF-8 of the chunk
};

// Hashes every complete shingle of tokens[0 .. have) into the running minimums, moves the last ngram-1
// tokens (all a later shingle needs) to the front and returns how many are left there.
template <class Tok>
size_t consumeShingles(Tok* tokens, size_t have, int ngram, const PermTable& t, Scratch& sc) {
  const size_t n = size_t(ngram);
  if (have < n) return have;
  const size_t count = have - n + 1;
  if (sc.xs.size() < count) sc.xs.resize(count), sc.acc.resize(count);
  hashShingles(tokens, count, ngram, t.keys, sc.acc.data(), sc.xs.data());
  foldMins(sc.xs.data(), count, t.a.data(), t.b.data(), sc.mins.data(), t.padded);
  std::memmove(tokens, tokens + count, (n - 1) * sizeof(Tok));
  return n - 1;
}

// The one shingle of a document shorter than ngram tokens: all `have` of them.
template <class Tok>
void shortDocShingle(const Tok* tokens, size_t have, const PermTable& t, Scratch& sc) {
  uint64_t acc;
  uint32_t x;
  hashShingles(tokens, 1, int(have), t.keys, &acc, &x);
  foldMins(&x, 1, t.a.data(), t.b.data(), sc.mins.data(), t.padded);
}

void signDoc(const unsigned char* s, size_t len, const MinhashParams& p, const PermTable& t, Scratch& sc,
             uint32_t* sig, uint64_t* exact) {
  sc.mins.assign(size_t(t.padded), 0xFFFFFFFFu);
  if (sc.cps.size() < kChunk + 33) sc.cps.resize(kChunk + 33);  // carry (<= 31) + chunk + 1 spare slot
  sc.words.clear();
  NormState st;
  Xxh64 xh;
  size_t pos = 0, tokens = 0, have = 0;
  uint64_t word = kFnvOffset;
  bool inWord = false;
  for (;;) {
    size_t fresh = 0;
    pos = normalizeSome(s, len, pos, st, sc.cps.data() + have, kChunk + 1, &fresh);
    const bool end = pos >= len;
    const uint32_t* chunk = sc.cps.data() + have;
    if (exact) hashUtf8(xh, chunk, fresh, sc.utf8);
    if (!p.wordNgrams) {
      tokens += fresh;
      have = consumeShingles(sc.cps.data(), have + fresh, p.ngram, t, sc);
    } else {
      for (size_t i = 0; i < fresh; i++) {
        if (chunk[i] == ' ') {  // normalized text: single spaces between non-empty words
          sc.words.push_back(minhashMix64(word));
          word = kFnvOffset, inWord = false, tokens++;
        } else {
          word = (word ^ chunk[i]) * kFnvPrime, inWord = true;
        }
      }
      if (end && inWord) sc.words.push_back(minhashMix64(word)), tokens++;
      sc.words.resize(consumeShingles(sc.words.data(), sc.words.size(), p.ngram, t, sc));
    }
    if (end) break;
  }
  if (tokens > 0 && tokens < size_t(p.ngram)) {
    if (p.wordNgrams)
      shortDocShingle(sc.words.data(), sc.words.size(), t, sc);
    else
      shortDocShingle(sc.cps.data(), have, t, sc);
  }
  std::memcpy(sig, sc.mins.data(), size_t(p.numPerm) * sizeof(uint32_t));
  if (exact) *exact = xh.digest();
}

void validateDocs(const char* text, const int64_t* offsets, int64_t nDocs, const char* fn) {
  const std::string f(fn);
  if (nDocs < 0) throw std::invalid_argument(f + ": nDocs = " + std::to_string(nDocs) + " < 0");
  if (nDocs == 0) return;
  if (!offsets) throw std::invalid_argument(f + ": offsets is null");
  if (offsets[0] < 0) throw std::invalid_argument(f + ": offsets[0] = " + std::to_string(offsets[0]) + " < 0");
  for (int64_t d = 0; d < nDocs; d++)
    if (offsets[d + 1] < offsets[d])
      throw std::invalid_argument(f + ": offsets decrease at doc " + std::to_string(d) + " (" +
                                  std::to_string(offsets[d]) + " > " + std::to_string(offsets[d + 1]) + ")");
  if (!text && offsets[nDocs] > offsets[0]) throw std::invalid_argument(f + ": text is null");
}

// The shingles of a normalized text as strings of code points (word shingles: words joined by ' ').
std::unordered_set<std::u32string> shingleSet(std::string_view text, const MinhashParams& p) {
  std::vector<uint32_t> cps;
  normalizeCodepoints(text, &cps);
  std::vector<std::u32string> toks;
  if (p.wordNgrams) {
    std::u32string w;
    for (uint32_t c : cps) {
      if (c == ' ') {
        toks.push_back(w);
        w.clear();
      } else {
        w.push_back(char32_t(c));
      }
    }
    if (!w.empty()) toks.push_back(w);
  } else {
    for (uint32_t c : cps) toks.push_back(std::u32string(1, char32_t(c)));
  }
  std::unordered_set<std::u32string> set;
  if (toks.empty()) return set;
  const size_t n = std::min(toks.size(), size_t(p.ngram));
  for (size_t i = 0; i + n <= toks.size(); i++) {
    std::u32string sh;
    for (size_t k = 0; k < n; k++) {
      if (p.wordNgrams && k > 0) sh.push_back(U' ');
      sh += toks[i + k];
    }
    set.insert(std::move(sh));
  }
  return set;
}

int maxThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace

void validateMinhashParams(const MinhashParams& p) {
  if (p.numPerm < 1 || p.numPerm > 1024)
    throw std::invalid_argument("MinhashParams.numPerm = " + std::to_string(p.numPerm) + " (allowed: 1..1024)");
  if (p.ngram < 1 || p.ngram > 32)
    throw std::invalid_argument("MinhashParams.ngram = " + std::to_string(p.ngram) + " (allowed: 1..32)");
}

void normalizeCodepoints(std::string_view text, std::vector<uint32_t>* out) {
  normalizeAppend(reinterpret_cast<const unsigned char*>(text.data()), text.size(), *out);
}

std::string normalizeForDedup(std::string_view text) {
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  normalizeCodepoints(text, &cps);
  std::string out;
  out.reserve(text.size());
  for (uint32_t c : cps) utf8Append(out, c);
  return out;
}

uint64_t exactDedupHash(std::string_view normalized) {
  Xxh64 h;
  h.update(normalized.data(), normalized.size());
  return h.digest();
}

bool isEmptySignature(const uint32_t* sig, int numPerm) {
  for (int i = 0; i < numPerm; i++)
    if (sig[i] != 0xFFFFFFFFu) return false;
  return true;
}

void dedupCodepoints(const char* text, const int64_t* offsets, int64_t nDocs, std::vector<uint32_t>* codepoints,
                     std::vector<int64_t>* cpOffsets, uint64_t* exactHashes) {
  validateDocs(text, offsets, nDocs, "dedupCodepoints");
  if (!codepoints || !cpOffsets) throw std::invalid_argument("dedupCodepoints: null output vector");
  cpOffsets->assign(size_t(nDocs) + 1, 0);
  codepoints->clear();
  if (nDocs == 0) return;
  // Contiguous document ranges of about equal byte counts, one per thread: one normalization pass into
  // per-part buffers, then a parallel copy into place.
  const int parts = int(std::max<int64_t>(1, std::min<int64_t>(maxThreads(), nDocs)));
  const int64_t base = offsets[0], total = offsets[nDocs] - base;
  std::vector<int64_t> first(size_t(parts) + 1);
  for (int t = 0; t <= parts; t++)
    first[size_t(t)] = t == parts ? nDocs
                                  : std::lower_bound(offsets, offsets + nDocs, base + total * t / parts) - offsets;
  // One part writes straight into *codepoints (keeping its capacity across calls). Each part reserves its
  // byte count up front (an upper bound of its code points), so its buffer is allocated once.
  std::vector<std::vector<uint32_t>> local(parts > 1 ? first.size() - 1 : 0);
  std::vector<size_t> start(first.size(), 0);
#pragma omp parallel for schedule(static, 1)
  for (int t = 0; t < parts; t++) {
    std::vector<uint32_t>& out = parts > 1 ? local[size_t(t)] : *codepoints;
    out.reserve(size_t(offsets[first[size_t(t) + 1]] - offsets[first[size_t(t)]]) + 1);
    std::vector<unsigned char> scratch;
    for (int64_t d = first[size_t(t)]; d < first[size_t(t) + 1]; d++) {
      const size_t before = out.size();
      normalizeAppend(reinterpret_cast<const unsigned char*>(text + offsets[d]), size_t(offsets[d + 1] - offsets[d]),
                      out);
      (*cpOffsets)[size_t(d) + 1] = int64_t(out.size());  // local end; made global below
      if (exactHashes) {
        Xxh64 h;
        hashUtf8(h, out.data() + before, out.size() - before, scratch);
        exactHashes[d] = h.digest();
      }
    }
  }
  if (parts == 1) return;
  for (int t = 0; t < parts; t++) start[size_t(t) + 1] = start[size_t(t)] + local[size_t(t)].size();
  codepoints->resize(start[size_t(parts)]);
#pragma omp parallel for schedule(static, 1)
  for (int t = 0; t < parts; t++) {
    std::copy(local[size_t(t)].begin(), local[size_t(t)].end(), codepoints->begin() + std::ptrdiff_t(start[size_t(t)]));
    for (int64_t d = first[size_t(t)]; d < first[size_t(t) + 1]; d++)
      (*cpOffsets)[size_t(d) + 1] += int64_t(start[size_t(t)]);
  }
}

void minhashSignatures(const char* text, const int64_t* offsets, int64_t nDocs, const MinhashParams& params,
                       uint32_t* sigs, uint64_t* exactHashes) {
  validateMinhashParams(params);
  validateDocs(text, offsets, nDocs, "minhashSignatures");
  if (nDocs > 0 && !sigs) throw std::invalid_argument("minhashSignatures: sigs is null");
  const PermTable table(params);
#pragma omp parallel
  {
    Scratch sc;
#pragma omp for schedule(dynamic, 4)
    for (int64_t d = 0; d < nDocs; d++)
      signDoc(reinterpret_cast<const unsigned char*>(text + offsets[d]), size_t(offsets[d + 1] - offsets[d]), params,
              table, sc, sigs + d * params.numPerm, exactHashes ? exactHashes + d : nullptr);
  }
}

double exactJaccard(std::string_view a, std::string_view b, const MinhashParams& params) {
  validateMinhashParams(params);
  const auto sa = shingleSet(a, params), sb = shingleSet(b, params);
  if (sa.empty() && sb.empty()) return 0.0;
  size_t inter = 0;
  for (const auto& s : sa) inter += sb.count(s);
  return double(inter) / double(sa.size() + sb.size() - inter);
}

}  // namespace ko
