// text_rules_english.cpp — the English rules (text_rules.h): Gopher quality rules and Gopher repetition
// rules with datatrove's definitions. One scan of the text collects words (hash + length), lines and
// paragraphs; the repetition rules then work on those records only.
//
// Word n-gram repetition, fast: n-grams are counted level by level (n = 2, 3, ..., 10), and at level
// n+1 only positions j whose n-grams at j and j+1 both occur twice or more are hashed at all — an
// (n+1)-gram that repeats is made of two overlapping n-grams that repeat. In ordinary prose few bigrams
// repeat and almost no 4-grams do, so the nine datatrove passes over all words shrink to about two.
// The results are exactly datatrove's: a position left out has an n-gram that occurs once, which can
// neither be the most frequent one (unless all counts are 1: then datatrove's answer is position 0)
// nor be matched later in find_all_duplicate.
#include "text_chars.h"
#include "text_rules_internal.h"

namespace ko {
namespace text_detail {

namespace {

// Byte classes for the scan; kClsSlow marks bytes the inner loop must look at closely.
enum : uint8_t { kClsSpace = 1, kClsLetter = 2, kClsDigit = 4, kClsSlow = 8 };
struct AsciiClasses {
  uint8_t c[256];
  AsciiClasses() {
    for (uint32_t x = 0; x < 256; x++)
      c[x] = x >= 0x80 ? uint8_t(kClsSlow)
                       : uint8_t((isAsciiSpace(x) ? kClsSpace | kClsSlow : 0) | (isAsciiAlpha(x) ? kClsLetter : 0) |
                                 (x >= '0' && x <= '9' ? kClsDigit : 0) | (x == '.' || x == '#' ? kClsSlow : 0));
  }
};
const AsciiClasses kAscii;

// SWAR on 8 bytes (little-endian load: byte 0 is the lowest). slowBytes marks, exactly at the lowest
// marked byte, the first byte that is not plain ASCII: >= 0x80, a control or space (< 0x21), '.' or '#'.
// hasBetween(x, m, n): some byte b with m < b < n, for x whose bytes are all < 0x80 (exact, from
// "Bit Twiddling Hacks").
constexpr uint64_t k01 = 0x0101010101010101ull, k80 = 0x8080808080808080ull, k7F = 0x7F7F7F7F7F7F7F7Full;
inline uint64_t zeroBytes(uint64_t x) { return (x - k01) & ~x & k80; }
inline uint64_t slowBytes(uint64_t w) {
  return (w & k80) | ((w - k01 * 0x21) & ~w & k80) | zeroBytes(w ^ (k01 * '.')) | zeroBytes(w ^ (k01 * '#'));
}
inline uint64_t hasBetween(uint64_t x, uint64_t m, uint64_t n) {
  return ((k01 * (127 + n) - (x & k7F)) & ~x & ((x & k7F) + k01 * (127 - m))) & k80;
}

bool isAsciiPunct(unsigned char c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}

constexpr uint32_t pack(const char* w) {
  uint32_t v = 0;
  for (; *w; w++) v = (v << 8) | uint8_t(*w);
  return v;
}

// {the, be, to, of, and, that, have, with}, after stripping ASCII punctuation and lowercasing ASCII.
bool isStopWord(const unsigned char* a, const unsigned char* b) {
  while (a < b && isAsciiPunct(*a)) a++;
  while (b > a && isAsciiPunct(b[-1])) b--;
  const size_t len = size_t(b - a);
  if (len < 2 || len > 4) return false;
  uint32_t w = 0;
  for (size_t i = 0; i < len; i++) w = (w << 8) | (a[i] | ((a[i] >= 'A' && a[i] <= 'Z') ? 0x20u : 0u));
  switch (len) {
    case 2: return w == pack("be") || w == pack("to") || w == pack("of");
    case 3: return w == pack("the") || w == pack("and");
    default: return w == pack("that") || w == pack("have") || w == pack("with");
  }
}

// Hash of a word's bytes; `avail` bytes are readable from p (lets a short word load 8 bytes at once).
inline uint64_t hashWord(const unsigned char* p, size_t len, size_t avail) {
  if (!kLittleEndian) avail = 0;  // the masked 8-byte load below assumes little-endian
  if (len <= 8) {
    uint64_t w = 0;
    if (avail >= 8) {
      std::memcpy(&w, p, 8);
      if (len < 8) w &= (uint64_t(1) << (8 * len)) - 1;
    } else {
      for (size_t k = 0; k < len; k++) w |= uint64_t(p[k]) << (8 * k);
    }
    return mix64(w ^ (uint64_t(len) << 59) ^ 0x2545F4914F6CDD1Dull);
  }
  return hashBytes(reinterpret_cast<const char*>(p), len);
}

}  // namespace

// Evaluates the English rules in order. full = compute every statistic (no early exit); v.reason is
// still the first failing rule.
RuleVerdict englishDoc(std::string_view doc, const EnglishRuleParams& p, std::string* appendTo, EnglishDocStats* st,
                       bool full) {
  Scratch& S = scratch();
  RuleVerdict v;
  int64_t invalid;
  const std::string_view t = cleanText(doc, &S.clean, &invalid);
  v.invalidUtf8 = saturate32(invalid);

  EnglishDocStats local;
  EnglishDocStats& e = st ? *st : local;
  e = EnglishDocStats();

  // ---- one scan: words, lines, paragraphs, '#' and ellipses ----
  const auto* s = reinterpret_cast<const unsigned char*>(t.data());
  const size_t n = t.size();
  S.hashes.clear(), S.lens.clear(), S.lines.clear(), S.paras.clear();
  int64_t chars = 0, words = 0, nonSym = 0, nonSymChars = 0, alpha = 0, stop = 0, hashes = 0, ellipses = 0;
  int64_t lines = 0, bullets = 0, ellLines = 0;
  bool store = true;  // word/line records for the repetition rules; not needed once too_many_words is certain
  size_t lineStart = 0;
  int64_t lineStartChars = 0;
  bool lineNonBlank = false, lineBullet = false, lineEllipsis = false;
  uint64_t paraHash = 0;
  int64_t paraChars = 0, paraLines = 0;

  auto closePara = [&] {
    if (paraLines == 0) return;
    if (store) S.paras.push_back({mix64(paraHash ^ uint64_t(paraLines)), paraChars});
    paraLines = 0, paraHash = 0, paraChars = 0;
  };
  auto endLine = [&](size_t at) {  // the line is [lineStart, at); chars does not count the '\n' yet
    if (!lineNonBlank) {
      closePara();
    } else {
      const int64_t lineChars = chars - lineStartChars;
      lines++, bullets += lineBullet, ellLines += lineEllipsis;
      if (store) {
        const uint64_t lh = hashBytes(t.data() + lineStart, at - lineStart);
        S.lines.push_back({lh, lineChars});
        paraHash = paraHash * kPolyBase + lh;
        paraChars += lineChars + (paraLines > 0 ? 1 : 0);
        paraLines++;
      }
    }
    lineNonBlank = lineBullet = lineEllipsis = false;
  };

  size_t i = 0;
  while (i < n) {
    // Whitespace between words (and line ends).
    uint32_t c = s[i];
    if (c < 0x80) {
      if (c == '\n') {
        endLine(i);
        chars++, i++;
        lineStart = i, lineStartChars = chars;
        continue;
      }
      if (kAscii.c[c] & kClsSpace) {
        chars++, i++;
        continue;
      }
    } else {
      size_t j = i;
      if (isUnicodeSpace(decodeValidUtf8(s, &j))) {
        chars++, i = j;
        continue;
      }
    }
    // A word [ws, i).
    const size_t ws = i;
    if (!lineNonBlank) {
      size_t j = i;
      lineNonBlank = true, lineBullet = inSet(decodeValidUtf8(s, &j), kEnglishBullets);
    }
    // Plain ASCII bytes take one table lookup and one branch; spaces, '.', '#' and non-ASCII bytes
    // take the slow path. Runs of dots are taken whole ("..." counted per run, non-overlapping).
    uint32_t flags = 0;
    size_t extra = 0;  // continuation bytes: the word has (i - ws - extra) code points
    while (i < n) {
      if (kLittleEndian && i + 8 <= n) {  // 8 plain bytes at a time
        uint64_t w;
        std::memcpy(&w, s + i, 8);
        const uint64_t slow = slowBytes(w);
        const int plain = slow ? ctz64(slow) / 8 : 8;
        if (plain > 0) {
          const uint64_t x = plain == 8 ? w : w & ((uint64_t(1) << (8 * plain)) - 1);
          if (hasBetween(x | 0x2020202020202020ull, 'a' - 1, 'z' + 1)) flags |= kClsLetter;
          if (hasBetween(x, '0' - 1, '9' + 1)) flags |= kClsDigit;
          i += size_t(plain);
          continue;
        }
      }
      c = s[i];
      const uint32_t k = kAscii.c[c];
      if (!(k & kClsSlow)) {
        flags |= k, i++;
        continue;
      }
      if (k & kClsSpace) break;
      if (c == '.') {
        size_t j = i + 1;
        while (j < n && s[j] == '.') j++;
        ellipses += int64_t(j - i) / 3;
        i = j;
      } else if (c == '#') {
        hashes++, i++;
      } else {
        size_t j = i;
        c = decodeValidUtf8(s, &j);
        if (isUnicodeSpace(c)) break;
        extra += j - i - 1, i = j;
        flags |= isRuleLetter(c) ? kClsLetter : isRuleDigit(c) ? kClsDigit : 0;
        ellipses += c == 0x2026;
      }
    }
    const int64_t wlen = int64_t(i - ws - extra);
    chars += wlen;
    // The last word so far ends the line's text: does it end with "..." or "…"?
    lineEllipsis = (i - ws >= 3 && s[i - 1] == '.' && s[i - 2] == '.' && s[i - 3] == '.') ||
                   (i - ws >= 3 && s[i - 3] == 0xE2 && s[i - 2] == 0x80 && s[i - 1] == 0xA6);
    words++;
    if (flags & (kClsLetter | kClsDigit)) nonSym++, nonSymChars += wlen;
    alpha += (flags & kClsLetter) != 0;
    if (i - ws <= 12) stop += isStopWord(s + ws, s + i);
    if (!full && nonSym > p.maxWords) store = false;
    if (store) {
      S.hashes.push_back(hashWord(s + ws, i - ws, n - ws));
      S.lens.push_back(uint32_t(std::min<int64_t>(wlen, UINT32_MAX)));
    }
  }
  endLine(n);
  closePara();

  e.chars = chars, e.words = words, e.nonSymbolWords = nonSym, e.nonSymbolChars = nonSymChars;
  e.alphaWords = alpha, e.stopWords = stop, e.hashes = hashes, e.ellipses = ellipses;
  e.lines = lines, e.bulletLines = bullets, e.ellipsisLines = ellLines;
  e.meanWordLen = nonSym ? double(nonSymChars) / double(nonSym) : 0;

  bool done = false;  // a rule failed and we are not in full mode
  auto check = [&](bool bad, int32_t reason, double value) {
    if (bad && v.reason == kKept) v.reason = reason, v.value = value;
    if (bad && !full) done = true;
    return done;
  };
  auto frac = [](int64_t a, int64_t b) { return b > 0 ? double(a) / double(b) : 0.0; };
  auto finish = [&] {
    if (v.reason == kKept && appendTo) appendTo->append(t.data(), t.size());
    S.trim();
    return v;
  };

  if (check(nonSym < p.minWords, kTooFewWords, double(nonSym))) return finish();
  if (check(nonSym > p.maxWords, kTooManyWords, double(nonSym))) return finish();
  if (check(e.meanWordLen < p.minMeanWordLen, kMeanWordLenLow, e.meanWordLen)) return finish();
  if (check(e.meanWordLen > p.maxMeanWordLen, kMeanWordLenHigh, e.meanWordLen)) return finish();
  const double hashRatio = frac(hashes, words), ellRatio = frac(ellipses, words);
  if (check(hashRatio > p.maxSymbolWordRatio, kHashRatioHigh, hashRatio)) return finish();
  if (check(ellRatio > p.maxSymbolWordRatio, kEllipsisRatioHigh, ellRatio)) return finish();
  const double bulletRatio = frac(bullets, lines), ellLineRatio = frac(ellLines, lines);
  if (check(bulletRatio > p.maxBulletLinesRatio, kBulletLinesHigh, bulletRatio)) return finish();
  if (check(ellLineRatio > p.maxEllipsisLinesRatio, kEllipsisLinesHigh, ellLineRatio)) return finish();
  const double alphaRatio = frac(alpha, words);
  if (check(alphaRatio < p.minAlphaWordsRatio, kAlphaWordsLow, alphaRatio)) return finish();
  if (check(stop < p.minStopWords, kTooFewStopWords, double(stop))) return finish();

  // ---- duplicate lines and paragraphs ----
  auto dupSegments = [&](const std::vector<Segment>& segs, int64_t* dupCount, int64_t* dupChars) {
    S.map.reset(segs.size());
    *dupCount = *dupChars = 0;
    for (const Segment& g : segs)
      if (S.map.add(g.hash, 0).count > 1) ++*dupCount, *dupChars += g.chars;
  };
  int64_t dc, dch;
  dupSegments(S.lines, &dc, &dch);
  e.dupLineFrac = frac(dc, int64_t(S.lines.size()));
  e.dupLineCharFrac = frac(dch, chars);
  if (check(e.dupLineFrac > p.maxDupLineFrac, kDupLineFrac, e.dupLineFrac)) return finish();
  if (check(e.dupLineCharFrac > p.maxDupLineCharFrac, kDupLineCharFrac, e.dupLineCharFrac)) return finish();
  dupSegments(S.paras, &dc, &dch);
  e.dupParaFrac = frac(dc, int64_t(S.paras.size()));
  e.dupParaCharFrac = frac(dch, chars);
  if (check(e.dupParaFrac > p.maxDupParaFrac, kDupParaFrac, e.dupParaFrac)) return finish();
  if (check(e.dupParaCharFrac > p.maxDupParaCharFrac, kDupParaCharFrac, e.dupParaCharFrac)) return finish();

  // ---- word n-grams, level by level (see the top of the file) ----
  const size_t W = S.hashes.size();
  const uint64_t* h = S.hashes.data();
  S.prefix.resize(W + 1);
  S.prefix[0] = 0;
  for (size_t j = 0; j < W; j++) S.prefix[j + 1] = S.prefix[j] + S.lens[j];
  const int64_t* pre = S.prefix.data();
  // g[j]: hash of the current-level n-gram at j, used as the table key as is: the word hashes are
  // already mixed, so g's low bits (the table index) are uniform without another mix64.
  S.grams.assign(S.hashes.begin(), S.hashes.end());
  uint64_t* g = S.grams.data();
  S.rep.assign(W, 0);                                  // rep[j]: that n-gram occurs twice or more
  uint8_t* rep = S.rep.data();
  std::vector<uint32_t>& cands = S.cands;              // positions whose n-gram may repeat, ascending
  cands.clear();
  for (size_t j = 0; j + 1 < W; j++) cands.push_back(uint32_t(j));

  for (size_t nn = 2; nn <= 10 && W >= nn; nn++) {
    const size_t m = W - nn + 1;  // number of n-grams
    // Count the candidates' n-grams; everything else occurs once.
    S.map.reset(cands.size());
    uint32_t best = 0, bestFirst = 0;
    const uint64_t growths = S.map.growths();
    S.slotIdx.resize(cands.size());
    uint32_t* slotIdx = S.slotIdx.data();
    for (size_t k = 0; k < cands.size(); k++) {
      const uint32_t j = cands[k];
      g[j] = g[j] * kPolyBase + h[j + nn - 1];
      const GramCounter::Slot& sl = S.map.add(g[j], j);
      slotIdx[k] = uint32_t(S.map.indexOf(sl));
      if (sl.count > best || (sl.count == best && sl.first < bestFirst)) best = sl.count, bestFirst = sl.first;
    }
    size_t repeats = 0;
    if (S.map.growths() == growths) {  // slot positions still valid: read the final counts directly
      for (size_t k = 0; k < cands.size(); k++) repeats += (rep[cands[k]] = S.map.at(slotIdx[k]).count >= 2);
    } else {
      for (uint32_t j : cands) repeats += (rep[j] = S.map.count(g[j]) >= 2);
    }
    if (best < 2) best = 1, bestFirst = 0;  // all distinct: datatrove's most_common is the first n-gram

    if (nn <= 4) {
      const int64_t len = pre[bestFirst + nn] - pre[bestFirst] + int64_t(nn - 1);
      const double f = frac(int64_t(best) * len, chars);
      e.topNgramCharFrac[nn - 2] = f;
      if (check(f > p.maxTopNgramCharFrac[nn - 2], kTop2gramCharFrac + int32_t(nn - 2), f)) return finish();
    } else {
      // datatrove's find_all_duplicate, visiting only n-grams that occur more than once.
      int64_t repeated = 0;
      // Between repeating positions datatrove's index just steps by one, so walk those positions only:
      // `next` is where its index stands; a position it jumped over is skipped.
      if (repeats > 0) {
        S.map.reset(repeats);
        size_t next = 0;
        for (uint32_t j : cands) {
          if (!rep[j] || j < next) continue;
          if (S.map.add(g[j], 0).count > 1) {
            repeated += pre[j + nn] - pre[j];
            next = j + nn;
          } else {
            next = j + 1;
          }
        }
      }
      const double f = frac(repeated, chars);
      e.dupNgramCharFrac[nn - 5] = f;
      if (check(f > p.maxDupNgramCharFrac[nn - 5], kDup5gramCharFrac + int32_t(nn - 5), f)) return finish();
    }
    // Next level's candidates: both overlapping n-grams repeat. Then clear this level's marks.
    S.next.resize(cands.size());
    size_t kept = 0;
    for (uint32_t j : cands) {  // branch-free: whether a position survives is unpredictable
      S.next[kept] = j;
      kept += size_t(rep[j] & (j + 1 < m ? rep[j + 1] : 0));
    }
    S.next.resize(kept);
    for (uint32_t j : cands) rep[j] = 0;
    cands.swap(S.next);
    if (cands.empty()) {
      // Nothing repeats any more: the top n-gram is the first one, no duplicates for larger n.
      for (size_t k = nn + 1; k <= 4 && W >= k; k++) {
        const double f = frac(pre[k] - pre[0] + int64_t(k - 1), chars);
        e.topNgramCharFrac[k - 2] = f;
        if (check(f > p.maxTopNgramCharFrac[k - 2], kTop2gramCharFrac + int32_t(k - 2), f)) return finish();
      }
      break;
    }
  }
  return finish();
}

}  // namespace text_detail

using namespace text_detail;

RuleVerdict applyEnglishRules(std::string_view doc, const EnglishRuleParams& p, std::string* out, EnglishDocStats* stats) {
  if (out) out->clear();
  return englishDoc(doc, p, out, stats, false);
}

EnglishDocStats computeEnglishStats(std::string_view doc) {
  EnglishDocStats st;
  englishDoc(doc, EnglishRuleParams(), nullptr, &st, true);
  return st;
}

}  // namespace ko
