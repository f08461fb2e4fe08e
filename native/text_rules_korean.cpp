// text_rules_korean.cpp — the Korean rules (text_rules.h): sentence-end line filter, word count, mean
// word length, Korean ratio, top 5-gram repetition.
#include "text_chars.h"
#include "text_rules_internal.h"

namespace ko {
namespace text_detail {

namespace {

enum LineState { kBlank, kTerminated, kUnterminated };

// Walks the line backwards from its end, past whitespace and closing quotes/brackets, and looks at the
// last remaining code point. Safe on any bytes: a byte that does not end a well-formed sequence is one
// U+FFFD (which terminates nothing).
LineState koreanLineState(std::string_view line) {
  const auto* s = reinterpret_cast<const unsigned char*>(line.data());
  size_t end = line.size();
  bool nonSpace = false;
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && end - start < 4 && (s[start] & 0xC0) == 0x80) start--;
    uint32_t cp;
    bool valid;
    const int len = utf8Decode(s, line.size(), start, &cp, &valid);
    if (!valid || start + size_t(len) != end) cp = kReplacementChar, start = end - 1;
    end = start;
    if (isSpaceCp(cp)) continue;
    nonSpace = true;
    if (inSet(cp, kKoreanClosers)) continue;
    return inSet(cp, kKoreanTerminalPunct) || inSet(cp, kKoreanFinalSyllables) ? kTerminated : kUnterminated;
  }
  return nonSpace ? kUnterminated : kBlank;
}

// Appends the kept lines of `t` to *out (see text_rules.h for the layout); returns dropped lines.
int64_t filterLinesAppend(std::string_view t, std::string* out) {
  const size_t base = out->size();
  int64_t dropped = 0;
  bool blankPending = false;
  size_t pos = 0;
  for (;;) {
    size_t nl = t.find('\n', pos);
    if (nl == std::string_view::npos) nl = t.size();
    const std::string_view line = t.substr(pos, nl - pos);
    switch (koreanLineState(line)) {
      case kBlank:
        blankPending = out->size() > base;
        break;
      case kTerminated:
        if (out->size() > base) out->append(blankPending ? "\n\n" : "\n");
        out->append(line.data(), line.size());
        blankPending = false;
        break;
      case kUnterminated:
        dropped++;
        break;
    }
    if (nl == t.size()) break;
    pos = nl + 1;
  }
  return dropped;
}

}  // namespace

RuleVerdict koreanDoc(std::string_view doc, const KoreanRuleParams& p, std::string* appendTo, KoreanDocStats* st) {
  Scratch& S = scratch();
  RuleVerdict v;
  int64_t invalid;
  std::string_view t = cleanText(doc, &S.clean, &invalid);
  v.invalidUtf8 = saturate32(invalid);
  if (p.dropUnterminatedLines) {
    S.kept.clear();
    v.linesDropped = saturate32(filterLinesAppend(t, &S.kept));
    t = S.kept;
  }

  // One pass: words (with a hash each, for the 5-gram rule), their lengths, Hangul and letters.
  const auto* s = reinterpret_cast<const unsigned char*>(t.data());
  const size_t n = t.size();
  int64_t words = 0, wordChars = 0, hangul = 0, letters = 0, wlen = 0;
  uint64_t wh = kFnvBasis;
  S.hashes.clear();
  auto endWord = [&] {
    if (wlen == 0) return;
    words++, wordChars += wlen;
    S.hashes.push_back(mix64(wh ^ uint64_t(wlen)));
    wlen = 0, wh = kFnvBasis;
  };
  size_t i = 0;
  while (i < n) {
    uint32_t c = s[i];
    if (c < 0x80) {
      i++;
      if (isAsciiSpace(c)) {
        endWord();
        continue;
      }
      letters += isAsciiAlpha(c);
    } else {
      c = decodeValidUtf8(s, &i);
      if (c >= 0xAC00 && c <= 0xD7A3) {
        hangul++, letters++;
      } else if (isUnicodeSpace(c)) {
        endWord();
        continue;
      } else if (isHangul(c)) {
        hangul++, letters++;
      } else {
        letters += isRuleLetter(c);
      }
    }
    wlen++;
    wh = (wh ^ c) * kFnvPrime;
  }
  endWord();

  KoreanDocStats local;
  KoreanDocStats& k = st ? *st : local;
  k = KoreanDocStats();
  k.words = words, k.wordChars = wordChars, k.hangul = hangul, k.letters = letters;
  k.meanWordLen = words ? double(wordChars) / double(words) : 0;
  k.koreanRatio = letters ? double(hangul) / double(letters) : 0;

  auto fail = [&](int32_t reason, double value) {
    v.reason = reason, v.value = value;
    S.trim();
    return v;
  };
  if (words == 0) return fail(kEmpty, 0);  // empty, whitespace-only, or no line survived
  if (words < p.minWords) return fail(kTooFewWords, double(words));
  if (words > p.maxWords) return fail(kTooManyWords, double(words));
  if (k.meanWordLen < p.minMeanWordLen) return fail(kMeanWordLenLow, k.meanWordLen);
  if (k.meanWordLen > p.maxMeanWordLen) return fail(kMeanWordLenHigh, k.meanWordLen);
  if (k.koreanRatio < p.minKoreanRatio) return fail(kKoreanRatioLow, k.koreanRatio);

  const size_t W = S.hashes.size();
  if (W >= 5) {
    const uint64_t* h = S.hashes.data();
    const uint64_t b4 = kPolyBase * kPolyBase * kPolyBase * kPolyBase;
    S.map.reset(W - 4);
    uint64_t g = 0;
    uint32_t top = 0;
    for (size_t j = 0; j < W; j++) {
      if (j >= 5) g -= h[j - 5] * b4;
      g = g * kPolyBase + h[j];
      if (j >= 4) top = std::max(top, S.map.add(mix64(g), 0).count);
    }
    k.top5gramFrac = top >= 2 ? double(top) / double(W - 4) : 0;
    if (k.top5gramFrac > p.maxTop5gramFrac) return fail(kTop5gramHigh, k.top5gramFrac);
  }
  if (appendTo) appendTo->append(t.data(), t.size());
  S.trim();
  return v;
}

}  // namespace text_detail

using namespace text_detail;

bool isTerminatedKoreanLine(std::string_view line) { return koreanLineState(line) == kTerminated; }

int64_t filterTerminatedLines(std::string_view text, std::string* out) {
  out->clear();
  return filterLinesAppend(text, out);
}

RuleVerdict applyKoreanRules(std::string_view doc, const KoreanRuleParams& p, std::string* out, KoreanDocStats* stats) {
  if (out) out->clear();
  return koreanDoc(doc, p, out, stats);
}

}  // namespace ko
