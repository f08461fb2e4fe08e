// test_text_rules.cpp — group `prep`: the Korean and English document rules (native/text_rules.h).
// Each rule is tested on hand-built documents exactly at, just inside and just outside its threshold,
// with the statistic checked against a value counted by hand here; then robustness (invalid UTF-8, empty
// docs, a 50 MB single line, bad offsets) and the batch API against the per-document API.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "rng.h"
#include "text_chars.h"
#include "text_rules.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using ko::RuleVerdict;

namespace {

std::string u8(uint32_t cp) {
  std::string s;
  ko::utf8Append(s, cp);
  return s;
}

// `len` Hangul syllables, distinct for distinct i < 100^len; the syllables (U+B6F0..U+C1C4, no final
// consonant) are never one of the sentence-final 다 요 죠 까.
std::string hangulWord(int i, int len) {
  std::string w;
  for (int k = 0; k < len; k++) {
    w += u8(0xAC00 + 28 * (100 + i % 100));
    i /= 100;
  }
  return w;
}

// `len` ASCII letters starting with 'q' (never a stop word), distinct for distinct i < 26^(len-1).
std::string qWord(int i, int len) {
  std::string w = "q";
  for (int k = 1; k < len; k++) {
    w += char('a' + i % 26);
    i /= 26;
  }
  return w;
}

std::string join(const std::vector<std::string>& words, const char* sep = " ") {
  std::string s;
  for (size_t i = 0; i < words.size(); i++) s += (i ? sep : "") + words[i];
  return s;
}

// n distinct two-syllable Hangul words, the last one ending the sentence with "다." (so n words in all).
std::vector<std::string> koWords(int n, int firstId = 0) {
  std::vector<std::string> w;
  for (int i = 0; i < n - 1; i++) w.push_back(hangulWord(firstId + i, 2));
  w.push_back(hangulWord(firstId + n - 1, 1) + "다.");
  return w;
}

// Unique 'q' words filling exactly `len` code points (words joined by single spaces); len >= 2.
std::string filler(int len, int firstId) {
  std::string s;
  int id = firstId;
  while (len - int(s.size()) > 12) {
    s += qWord(id++, 5) + " ";
  }
  s += qWord(id, len - int(s.size()));
  return s;
}

// A passing English document: 48 distinct 4-letter words and "the", "and" (50 words, one line).
std::vector<std::string> enWords(int nQ = 48, int qLen = 4) {
  std::vector<std::string> w;
  for (int i = 0; i < nQ; i++) w.push_back(qWord(i, qLen));
  w.push_back("the");
  w.push_back("and");
  return w;
}

// Every English rule switched off (permissive thresholds); tests switch on the one under test.
ko::EnglishRuleParams relaxedEnglish() {
  ko::EnglishRuleParams p;
  p.minWords = 0, p.maxWords = INT64_MAX, p.minMeanWordLen = 0, p.maxMeanWordLen = 1e300;
  p.maxSymbolWordRatio = 1e300, p.maxBulletLinesRatio = 1e300, p.maxEllipsisLinesRatio = 1e300;
  p.minAlphaWordsRatio = 0, p.minStopWords = 0;
  p.maxDupLineFrac = p.maxDupLineCharFrac = p.maxDupParaFrac = p.maxDupParaCharFrac = 1e300;
  for (double& x : p.maxTopNgramCharFrac) x = 1e300;
  for (double& x : p.maxDupNgramCharFrac) x = 1e300;
  return p;
}

RuleVerdict ko1(const std::string& doc, const ko::KoreanRuleParams& p = {}, std::string* out = nullptr,
                ko::KoreanDocStats* st = nullptr) {
  std::string tmp;
  return ko::applyKoreanRules(doc, p, out ? out : &tmp, st);
}
RuleVerdict en1(const std::string& doc, const ko::EnglishRuleParams& p = {}, std::string* out = nullptr) {
  std::string tmp;
  return ko::applyEnglishRules(doc, p, out ? out : &tmp);
}

std::string why(const RuleVerdict& v) {
  return std::string(ko::ruleReasonName(v.reason)) + " value=" + std::to_string(v.value);
}

bool validUtf8(const std::string& s) {
  std::string tmp;
  return ko::sanitizeUtf8(s, &tmp) == 0;
}

}  // namespace

// ---- Korean --------------------------------------------------------------------------------------

KO_TEST(prep, ko_sentence_end_line) {
  using ko::isTerminatedKoreanLine;
  KO_CHECK(isTerminatedKoreanLine("그는 학교에 갔다"));
  KO_CHECK(isTerminatedKoreanLine("정말 좋아요?"));
  KO_CHECK(isTerminatedKoreanLine("This is English."));
  KO_CHECK(isTerminatedKoreanLine("「그가 말했다.」"));
  KO_CHECK(isTerminatedKoreanLine("“좋습니다” "));
  KO_CHECK(isTerminatedKoreanLine("무엇인가요   \t"));
  KO_CHECK(isTerminatedKoreanLine("우리 같이 할까"));
  KO_CHECK(isTerminatedKoreanLine("그렇죠"));
  KO_CHECK(isTerminatedKoreanLine("끝…"));
  KO_CHECK(isTerminatedKoreanLine("끝。"));
  KO_CHECK(isTerminatedKoreanLine("정말！"));
  KO_CHECK(isTerminatedKoreanLine("(참고했다.) ”"));
  KO_CHECK(isTerminatedKoreanLine("『책이다』"));
  KO_CHECK(!isTerminatedKoreanLine("표 만들기"));
  KO_CHECK(!isTerminatedKoreanLine("1. 소개"));
  KO_CHECK(!isTerminatedKoreanLine("예시)"));
  KO_CHECK(!isTerminatedKoreanLine("제목:"));
  KO_CHECK(!isTerminatedKoreanLine("\"\")"));
  KO_CHECK(!isTerminatedKoreanLine(""));
  KO_CHECK(!isTerminatedKoreanLine("   "));
  KO_CHECK(!isTerminatedKoreanLine("다\xFF"));   // an invalid byte is U+FFFD, which ends nothing
  KO_CHECK(!isTerminatedKoreanLine("\xEB\x8B"));  // 다 cut short
  KO_CHECK(!isTerminatedKoreanLine("\x80\x80\x80\x80."  "\x80"));
  KO_CHECK(isTerminatedKoreanLine("\x80\x80\x80\x80."));
}

KO_TEST(prep, ko_sentence_end_filter) {
  std::string out;
  // Headings and list items go; blank runs between kept lines become one empty line; leading and
  // trailing blank lines go.
  int64_t dropped = ko::filterTerminatedLines(
      "\n\n표 만들기\n첫 문장이다.\n\n\n \n둘째 문장이요?\n목록\n「셋째다.」\n\n무엇\n\n", &out);
  KO_CHECK_MSG(out == "첫 문장이다.\n\n둘째 문장이요?\n「셋째다.」", out);
  KO_CHECK(dropped == 3);
  // A dropped line between two blank runs still leaves one paragraph break; CRLF lines are kept verbatim
  // (a whitespace-only line, "\r" here, is a blank line and comes out empty).
  dropped = ko::filterTerminatedLines("가다.\r\n\r\n제목\r\n\r\n나다.\r\n", &out);
  KO_CHECK_MSG(out == "가다.\r\n\n나다.\r", out);
  KO_CHECK(dropped == 1);
  dropped = ko::filterTerminatedLines("제목\n부제목", &out);
  KO_CHECK(out.empty() && dropped == 2);

  // The whole document: 12 words in two terminated sentences and a heading.
  const std::string s1 = join(koWords(6, 0)), s2 = join(koWords(6, 10));
  std::string doc = "표 만들기\n" + s1 + "\n\n" + s2 + "\n";
  ko::KoreanDocStats st;
  RuleVerdict v = ko1(doc, {}, &out, &st);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  KO_CHECK(out == s1 + "\n\n" + s2);
  KO_CHECK(v.linesDropped == 1 && st.words == 12);
  // Without the heading drop the heading's two words count.
  ko::KoreanRuleParams keepAll;
  keepAll.dropUnterminatedLines = false;
  v = ko1(doc, keepAll, &out, &st);
  KO_CHECK(v.reason == ko::kKept && out == doc && st.words == 14 && v.linesDropped == 0);
  // Only unterminated lines → no_terminated_sentences.
  v = ko1("표 만들기\n목록 보기\n", {}, &out);
  KO_CHECK(v.reason == ko::kEmpty && out.empty() && v.linesDropped == 2);
  KO_CHECK(std::string(ko::ruleReasonName(v.reason)) == "no_terminated_sentences");
}

KO_TEST(prep, ko_word_count) {
  ko::KoreanDocStats st;
  RuleVerdict v = ko1(join(koWords(10)), {}, nullptr, &st);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  KO_CHECK(st.words == 10);
  v = ko1(join(koWords(9)));
  KO_CHECK(v.reason == ko::kTooFewWords && v.value == 9);
  // Runs of mixed whitespace (tab, ideographic space, NBSP) separate words like one space.
  std::vector<std::string> w = koWords(10);
  std::string doc = w[0];
  const char* seps[] = {"\t", "\xE3\x80\x80", "\xC2\xA0", "  \t ", " "};
  for (int i = 1; i < 10; i++) doc += seps[i % 5] + w[i];
  v = ko1(doc, {}, nullptr, &st);
  KO_CHECK_MSG(v.reason == ko::kKept && st.words == 10, why(v));
  ko::KoreanRuleParams p;
  p.maxWords = 12;
  KO_CHECK(ko1(join(koWords(12)), p).reason == ko::kKept);
  v = ko1(join(koWords(13)), p);
  KO_CHECK(v.reason == ko::kTooManyWords && v.value == 13);
}


KO_TEST(prep, ko_mean_word_len_in_code_points) {
  // 9 two-syllable words + "다." (2 code points) → mean exactly 2.
  std::vector<std::string> w;
  for (int i = 0; i < 9; i++) w.push_back(hangulWord(i, 2));
  w.push_back("다.");
  ko::KoreanDocStats st;
  RuleVerdict v = ko1(join(w), {}, nullptr, &st);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  KO_CHECK(st.meanWordLen == 2.0 && st.wordChars == 20);
  w[3] = hangulWord(3, 1);  // 19 / 10 (would be 3+ per word if counted in bytes)
  v = ko1(join(w));
  KO_CHECK(v.reason == ko::kMeanWordLenLow);
  KO_CHECK_NEAR(v.value, 1.9, 1e-12);
  // 10 code points (30 bytes) per word: kept only because lengths are in code points.
  w.clear();
  for (int i = 0; i < 9; i++) w.push_back(hangulWord(i, 10));
  w.push_back(hangulWord(9, 8) + "다.");
  v = ko1(join(w), {}, nullptr, &st);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  KO_CHECK(st.meanWordLen == 10.0);
  w[0] = hangulWord(0, 11);  // 101 / 10
  v = ko1(join(w));
  KO_CHECK(v.reason == ko::kMeanWordLenHigh);
  KO_CHECK_NEAR(v.value, 10.1, 1e-12);
}

KO_TEST(prep, ko_letter_classes) {
  using ko::isHangul;
  using ko::isRuleLetter;
  const uint32_t letters[] = {'a', 'Z', 0xE9 /*é*/, 0x4E2D /*中*/, 0x30A2 /*ア*/, 0x0416 /*Ж*/, 0xFF21 /*Ａ*/,
                              0xAC00, 0xD7A3, 0x3131 /*ㄱ*/, 0x1100, 0xA960, 0xD7B0};
  for (uint32_t c : letters) KO_CHECK_MSG(isRuleLetter(c), std::to_string(c));
  const uint32_t nonLetters[] = {'1', '.', '#', ' ', '\n', 0x7F, 0x85, 0xA0, 0xB7, 0xD7, 0xF7, 0x2014 /*—*/,
                                 0x2026, 0x20AC /*€*/, 0x2103 /*℃*/, 0x2460 /*①*/, 0x2192 /*→*/, 0x25CF /*●*/,
                                 0x3000, 0x3001 /*、*/, 0x300D /*」*/, 0xFE0F, 0xFF01 /*！*/, 0xFF10 /*０*/,
                                 0xFFFD, 0x1F600 /*😀*/, 0xE0101};
  for (uint32_t c : nonLetters) KO_CHECK_MSG(!isRuleLetter(c), std::to_string(c));
  KO_CHECK(isHangul(0x314B) && isHangul(0xAC00) && isHangul(0x11FF) && isHangul(0xD7FF));
  KO_CHECK(!isHangul(0xABFF) && !isHangul(0xD7A4) && !isHangul(0x3190) && !isHangul('a') && !isHangul(0x4E2D));
}

KO_TEST(prep, ko_korean_ratio) {
  // 16 Hangul + 4 Latin letters = 0.8 exactly. Digits, punctuation, fullwidth digits, emoji, ①, ℃ and
  // U+FFFD (the \xFF) are not letters.
  const std::string base = "가나 다라 마바 사아 자차 카타 ";
  ko::KoreanDocStats st;
  RuleVerdict v = ko1(base + "파하 ab cd 12,345 (!) ２０ 😀① ℃ \xFF 거다.", {}, nullptr, &st);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  KO_CHECK(st.hangul == 16 && st.letters == 20 && st.koreanRatio == 0.8);
  KO_CHECK(v.invalidUtf8 == 1);
  // Compatibility jamo count as Hangul.
  v = ko1(base + "ㅋㅋ ab cd 거다.", {}, nullptr, &st);
  KO_CHECK_MSG(v.reason == ko::kKept && st.hangul == 16 && st.letters == 20, why(v));
  // 16 / 21 just below, 17 / 21 just above, 14 / 20 well below.
  v = ko1(base + "파하 abc cd 거다.", {}, nullptr, &st);
  KO_CHECK(v.reason == ko::kKoreanRatioLow && v.value == 16.0 / 21.0);
  v = ko1(base + "파하 가 ab cd 거다.");
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  v = ko1(base + "ef ab cd 12,345 (!) 거다.");
  KO_CHECK(v.reason == ko::kKoreanRatioLow && v.value == 0.7);
}

KO_TEST(prep, ko_top_5gram) {
  // a b c d e u1 u2 u3 | a b c d e u4 u5 u6 | a b c d e u7 u8 u9 : 24 words, 20 5-grams, "a b c d e"
  // three times and every other 5-gram once → 3/20 = 0.15 exactly.
  std::vector<std::string> g, w;
  for (int i = 0; i < 5; i++) g.push_back(hangulWord(i, 2));
  for (int r = 0; r < 3; r++) {
    w.insert(w.end(), g.begin(), g.end());
    for (int k = 0; k < 3; k++) w.push_back(hangulWord(10 + 3 * r + k, 2));
  }
  w.back() = hangulWord(99, 1) + "다.";
  ko::KoreanDocStats st;
  RuleVerdict v = ko1(join(w), {}, nullptr, &st);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  KO_CHECK(st.top5gramFrac == 0.15);
  w.erase(w.end() - 2);  // 23 words: 3 / 19
  v = ko1(join(w));
  KO_CHECK(v.reason == ko::kTop5gramHigh && v.value == 3.0 / 19.0);
  // All 5-grams distinct: no repetition, whatever the length (10 words = 6 5-grams, each 1/6 > 0.15).
  v = ko1(join(koWords(10)), {}, nullptr, &st);
  KO_CHECK(v.reason == ko::kKept && st.top5gramFrac == 0);
  // One word over and over.
  std::vector<std::string> same(20, "가나");
  same.back() = "가다.";
  v = ko1(join(same));
  KO_CHECK(v.reason == ko::kTop5gramHigh && v.value == 15.0 / 16.0);
}

// ---- English -------------------------------------------------------------------------------------

KO_TEST(prep, en_word_count) {
  ko::EnglishDocStats st = ko::computeEnglishStats(join(enWords()));
  KO_CHECK(st.words == 50 && st.nonSymbolWords == 50 && st.meanWordLen == (48 * 4 + 6) / 50.0);
  RuleVerdict v = en1(join(enWords()));
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  v = en1(join(enWords(47)));
  KO_CHECK(v.reason == ko::kTooFewWords && v.value == 49);
  // Symbol-only words ("-", "|", "...") are words for the ratios but not for the count.
  std::vector<std::string> w = enWords(47);
  w.insert(w.begin() + 3, {"-", "|", "..."});
  st = ko::computeEnglishStats(join(w));
  KO_CHECK(st.words == 52 && st.nonSymbolWords == 49);
  v = en1(join(w));
  KO_CHECK(v.reason == ko::kTooFewWords && v.value == 49);
  ko::EnglishRuleParams p;
  p.maxWords = 60;
  KO_CHECK(en1(join(enWords(58)), p).reason == ko::kKept);
  v = en1(join(enWords(59)), p);
  KO_CHECK(v.reason == ko::kTooManyWords && v.value == 61);
}

KO_TEST(prep, en_mean_word_len) {
  std::vector<std::string> w = enWords(48, 3);  // (48*3 + 3 + 3) / 50 = 3
  RuleVerdict v = en1(join(w));
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  KO_CHECK(ko::computeEnglishStats(join(w)).meanWordLen == 3.0);
  w[0] = qWord(0, 2);
  v = en1(join(w));
  KO_CHECK(v.reason == ko::kMeanWordLenLow && v.value == 149.0 / 50);
  w.clear();
  for (int i = 0; i < 46; i++) w.push_back(qWord(i, 10));
  w.push_back(qWord(46, 17));
  w.push_back(qWord(47, 17));
  w.push_back("the");
  w.push_back("and");  // (460 + 34 + 6) / 50 = 10
  v = en1(join(w));
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  w[0] = qWord(0, 11);
  v = en1(join(w));
  KO_CHECK(v.reason == ko::kMeanWordLenHigh && v.value == 501.0 / 50);
}

KO_TEST(prep, en_symbol_ratio) {
  std::vector<std::string> w = enWords();
  for (int i = 0; i < 5; i++) w[i] = "#" + w[i];  // 5 / 50 = 0.1
  RuleVerdict v = en1(join(w));
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  w[5] = "#" + w[5];
  v = en1(join(w));
  KO_CHECK(v.reason == ko::kHashRatioHigh && v.value == 0.12);

  w = enWords();
  w[0] += "...", w[1] += "......", w[2] += "\xE2\x80\xA6", w[3] += ".....";  // 1 + 2 + 1 + 1 = 5
  ko::EnglishDocStats st = ko::computeEnglishStats(join(w));
  KO_CHECK(st.ellipses == 5 && st.hashes == 0);
  v = en1(join(w));
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  w[4] += ". . .";  // not an ellipsis
  KO_CHECK(en1(join(w)).reason == ko::kKept);
  w[5] += "...";
  v = en1(join(w));
  KO_CHECK(v.reason == ko::kEllipsisRatioHigh && v.value == 6.0 / 52);
}

// 10 lines of 5 words (the 50 words of enWords()).
std::vector<std::string> enLines() {
  std::vector<std::string> w = enWords(), lines;
  for (int k = 0; k < 10; k++) lines.push_back(join(std::vector<std::string>(w.begin() + 5 * k, w.begin() + 5 * k + 5)));
  return lines;
}

KO_TEST(prep, en_bullet_lines) {
  std::vector<std::string> lines = enLines();
  const char* bullets[] = {"- ", "\xE2\x80\xA2 ", "* ", "   \xE2\x80\xA3 ", "\xE2\x97\xA6", "-", "\xE2\x80\xA2", "*", "- "};
  for (int k = 0; k < 9; k++) lines[k] = bullets[k] + lines[k];
  const std::string doc = join(lines, "\n\n");  // blank lines are not lines
  ko::EnglishDocStats st = ko::computeEnglishStats(doc);
  KO_CHECK(st.lines == 10 && st.bulletLines == 9);
  RuleVerdict v = en1(doc);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  lines[9] = "- " + lines[9];
  v = en1(join(lines, "\n"));
  KO_CHECK(v.reason == ko::kBulletLinesHigh && v.value == 1.0);
}

KO_TEST(prep, en_ellipsis_lines) {
  std::vector<std::string> lines = enLines();
  for (int k = 0; k < 3; k++) lines[k] += "...";
  lines[3] += "... and more";  // not at the end
  RuleVerdict v = en1(join(lines, "\n"));
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  KO_CHECK(ko::computeEnglishStats(join(lines, "\n")).ellipsisLines == 3);
  lines[4] += "\xE2\x80\xA6  \t";  // trailing space does not hide it
  v = en1(join(lines, "\n"));
  KO_CHECK(v.reason == ko::kEllipsisLinesHigh && v.value == 0.4);
}

KO_TEST(prep, en_alpha_words) {
  std::vector<std::string> w = enWords(38);  // 40 words with letters, numbers spread among them
  for (int i = 0; i < 10; i++) w.insert(w.begin() + 5 * i + 1, i % 2 ? "1234" : "５６,７");
  ko::EnglishDocStats st = ko::computeEnglishStats(join(w));
  KO_CHECK(st.alphaWords == 40 && st.words == 50 && st.nonSymbolWords == 50);
  RuleVerdict v = en1(join(w));
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  w[0] = "2024";
  v = en1(join(w));
  KO_CHECK(v.reason == ko::kAlphaWordsLow && v.value == 39.0 / 50);
  // Letters outside ASCII count; a digit next to a letter still makes an alphabetic word.
  w[0] = "caf\xC3\xA9", w[2] = "\xE4\xB8\xAD\xE6\x96\x87", w[3] = "x1";  // w[1] is a number
  KO_CHECK(ko::computeEnglishStats(join(w)).alphaWords == 40);
}

KO_TEST(prep, en_stop_words) {
  std::vector<std::string> w = enWords();
  KO_CHECK(ko::computeEnglishStats(join(w)).stopWords == 2);
  w[49] = qWord(99, 3);
  RuleVerdict v = en1(join(w));
  KO_CHECK(v.reason == ko::kTooFewStopWords && v.value == 1);
  w[48] = "The,", w[49] = "(AND)";
  v = en1(join(w));
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  w[48] = "there", w[49] = "bandwith";
  KO_CHECK(ko::computeEnglishStats(join(w)).stopWords == 0);
  w[0] = "to.", w[1] = "THAT!", w[2] = "with", w[3] = "have", w[4] = "of", w[5] = "be";
  KO_CHECK(ko::computeEnglishStats(join(w)).stopWords == 6);
}

KO_TEST(prep, en_dup_lines_and_paragraphs) {
  // Hand-counted: lines "aa bb","cc","aa bb","cc","zz"; paragraphs "aa bb\ncc" (8) twice and "zz"; 22 chars.
  ko::EnglishDocStats st = ko::computeEnglishStats("aa bb\ncc\n\naa bb\ncc\n\nzz");
  KO_CHECK(st.chars == 22 && st.lines == 5);
  KO_CHECK(st.dupLineFrac == 0.4 && st.dupLineCharFrac == 7.0 / 22);
  KO_CHECK(st.dupParaFrac == 1.0 / 3 && st.dupParaCharFrac == 8.0 / 22);

  // Fraction of duplicate lines: 3 of 10 passes, 4 fails.
  ko::EnglishRuleParams p = relaxedEnglish();
  p.maxDupLineFrac = ko::EnglishRuleParams().maxDupLineFrac;
  std::vector<std::string> lines = enLines();
  for (int k = 7; k < 10; k++) lines[k] = lines[0];
  RuleVerdict v = en1(join(lines, "\n\n\n"), p);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  lines[6] = lines[0];
  v = en1(join(lines, "\n"), p);
  KO_CHECK(v.reason == ko::kDupLineFrac && v.value == 0.4);

  // Characters in duplicate lines: 19 / 95 passes, 19 / 94 fails.
  p = relaxedEnglish();
  p.maxDupLineCharFrac = ko::EnglishRuleParams().maxDupLineCharFrac;
  const std::string d = "qaaa qbaa qcaa qdaa";
  KO_CHECK(filler(55, 1000).size() == 55);
  st = ko::computeEnglishStats(d + "\n" + d + "\n" + filler(55, 1000));
  KO_CHECK(st.dupLineCharFrac == 0.2);
  v = en1(d + "\n" + d + "\n" + filler(55, 1000), p);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  v = en1(d + "\n" + d + "\n" + filler(54, 1000), p);
  KO_CHECK(v.reason == ko::kDupLineCharFrac && v.value == 19.0 / 94);

  // Paragraphs (2 lines each): 3 of 10 duplicates passes, 4 fails.
  p = relaxedEnglish();
  p.maxDupParaFrac = ko::EnglishRuleParams().maxDupParaFrac;
  std::vector<std::string> paras;
  for (int k = 0; k < 10; k++) paras.push_back(qWord(2 * k, 5) + " x\n" + qWord(2 * k + 1, 5) + " y");
  for (int k = 7; k < 10; k++) paras[k] = paras[0];
  v = en1(join(paras, "\n\n"), p);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  paras[6] = paras[0];
  v = en1(join(paras, "\n \n"), p);  // a whitespace-only line separates paragraphs too
  KO_CHECK(v.reason == ko::kDupParaFrac && v.value == 0.4);

  // Characters in duplicate paragraphs: 19 / 95 passes, 19 / 94 fails.
  p = relaxedEnglish();
  p.maxDupParaCharFrac = ko::EnglishRuleParams().maxDupParaCharFrac;
  const std::string pd = "qaaa qbaa\nqcaa qdaa";
  v = en1(pd + "\n\n" + pd + "\n\n" + filler(53, 1000), p);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  v = en1(pd + "\n\n" + pd + "\n\n" + filler(52, 1000), p);
  KO_CHECK(v.reason == ko::kDupParaCharFrac && v.value == 19.0 / 94);
}

KO_TEST(prep, en_top_ngrams) {
  // Hand-counted on "ab cd ab cd ab cd ef" (20 chars): top 2-gram "ab cd" ×3 → 15; top 3-gram "ab cd ab"
  // ×2 (first of two with count 2) → 16; top 4-gram "ab cd ab cd" ×2 → 22; all 5-grams distinct.
  ko::EnglishDocStats st = ko::computeEnglishStats("ab cd ab cd ab cd ef");
  KO_CHECK(st.topNgramCharFrac[0] == 15.0 / 20 && st.topNgramCharFrac[1] == 16.0 / 20 &&
           st.topNgramCharFrac[2] == 22.0 / 20 && st.dupNgramCharFrac[0] == 0);
  // Ties go to the first seen: "xx yy" and "yy zz" both twice.
  st = ko::computeEnglishStats("xx yy zz xx yy zz");
  KO_CHECK(st.topNgramCharFrac[0] == 10.0 / 17);
  st = ko::computeEnglishStats("x yyyy zz x yyyy zz");  // "x yyyy" (6) before "yyyy zz" (7)
  KO_CHECK(st.topNgramCharFrac[0] == 12.0 / 19);

  // At each threshold: the n-gram G twice, with filler making the document exactly 100 (or 50) chars.
  struct Case {
    int n;
    std::string g;
    int total;
  } cases[] = {{2, "ab cd", 50}, {3, "abc de fg", 100}, {4, "ab c d e", 100}};
  for (const Case& c : cases) {
    ko::EnglishRuleParams p = relaxedEnglish();
    p.maxTopNgramCharFrac[c.n - 2] = ko::EnglishRuleParams().maxTopNgramCharFrac[c.n - 2];
    const int f = c.total - 2 * int(c.g.size()) - 2;
    std::string doc = c.g + " " + filler(f, 2000) + " " + c.g;
    st = ko::computeEnglishStats(doc);
    KO_CHECK(st.chars == c.total);
    KO_CHECK(st.topNgramCharFrac[c.n - 2] == p.maxTopNgramCharFrac[c.n - 2]);
    RuleVerdict v = en1(doc, p);
    KO_CHECK_MSG(v.reason == ko::kKept, why(v) + " n=" + std::to_string(c.n));
    doc = c.g + " " + filler(f - 1, 2000) + " " + c.g;
    v = en1(doc, p);
    KO_CHECK(v.reason == ko::kTop2gramCharFrac + c.n - 2);
    KO_CHECK(v.value == 2.0 * double(c.g.size()) / (c.total - 1));
  }
}

KO_TEST(prep, en_dup_ngrams) {
  // datatrove's find_all_duplicate, by hand on "a b c d e" ×3 (29 chars): n=5 finds the 2nd and 3rd copies
  // (10 chars); n=6..10 find one duplicate each starting at word 5 (n chars).
  ko::EnglishDocStats st = ko::computeEnglishStats("a b c d e a b c d e a b c d e");
  const double want[6] = {10, 6, 7, 8, 9, 10};
  for (int k = 0; k < 6; k++) KO_CHECK_MSG(st.dupNgramCharFrac[k] == want[k] / 29, std::to_string(k));

  // At the threshold: a 5-gram of 15 letters twice in 100 chars → 15 / 100 = 0.15.
  ko::EnglishRuleParams p = relaxedEnglish();
  p.maxDupNgramCharFrac[0] = ko::EnglishRuleParams().maxDupNgramCharFrac[0];
  const std::string g = "aaa bbb ccc ddd eee";
  std::string doc = g + " " + filler(60, 3000) + " " + g;
  st = ko::computeEnglishStats(doc);
  KO_CHECK(st.chars == 100 && st.dupNgramCharFrac[0] == 0.15 && st.dupNgramCharFrac[1] == 0);
  RuleVerdict v = en1(doc, p);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  v = en1(g + " " + filler(59, 3000) + " " + g, p);
  KO_CHECK(v.reason == ko::kDup5gramCharFrac && v.value == 15.0 / 99);
  // n = 10 at 0.10: 10 one-letter words twice in 100 chars.
  p = relaxedEnglish();
  p.maxDupNgramCharFrac[5] = ko::EnglishRuleParams().maxDupNgramCharFrac[5];
  const std::string g10 = "a b c d e f g h i j";
  v = en1(g10 + " " + filler(100 - 2 * 19 - 2, 4000) + " " + g10, p);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  v = en1(g10 + " " + filler(100 - 2 * 19 - 3, 4000) + " " + g10, p);
  KO_CHECK(v.reason == ko::kDup10gramCharFrac && v.value == 10.0 / 99);
}

// datatrove's GopherRepetitionFilter n-gram functions, transcribed with strings (ASCII text, so
// characters = bytes), against the hashed, level-by-level implementation on random repetitive text.
KO_TEST(prep, en_ngrams_match_datatrove_reference) {
  ko::Rng r(5);
  for (int trial = 0; trial < 400; trial++) {
    const int vocab = 1 + int(r.next() % 12), nWords = int(r.next() % 90);
    std::vector<std::string> lexicon;
    for (int i = 0; i < vocab; i++) lexicon.push_back(qWord(i, 1 + int(r.next() % 5)));
    std::vector<std::string> w;
    std::string doc;
    for (int i = 0; i < nWords; i++) {
      w.push_back(lexicon[r.next() % size_t(vocab)]);
      if (i) doc += r.next() % 6 ? " " : r.next() % 2 ? "\n" : "  \n\n ";
      doc += w.back();
    }
    const double chars = double(doc.size());
    const ko::EnglishDocStats st = ko::computeEnglishStats(doc);
    for (size_t n = 2; n <= 4; n++) {
      double want = 0;
      if (w.size() >= n) {  // find_top_duplicate: Counter.most_common(1), ties to the first inserted
        std::vector<std::string> order;
        std::vector<int> counts;
        for (size_t i = 0; i + n <= w.size(); i++) {
          std::string g = w[i];
          for (size_t k = 1; k < n; k++) g += " " + w[i + k];
          size_t at = std::find(order.begin(), order.end(), g) - order.begin();
          if (at == order.size()) order.push_back(g), counts.push_back(0);
          counts[at]++;
        }
        size_t best = 0;
        for (size_t k = 1; k < order.size(); k++)
          if (counts[k] > counts[best]) best = k;
        want = double(order[best].size() * size_t(counts[best])) / chars;
      }
      KO_CHECK_MSG(st.topNgramCharFrac[n - 2] == want, "top n=" + std::to_string(n) + " trial " + std::to_string(trial));
    }
    for (size_t n = 5; n <= 10; n++) {
      std::vector<std::string> seen;  // find_all_duplicate
      size_t repeated = 0;
      for (size_t idx = 0; idx + n <= w.size();) {
        std::string g;
        for (size_t k = 0; k < n; k++) g += w[idx + k];
        if (std::find(seen.begin(), seen.end(), g) != seen.end()) {
          repeated += g.size(), idx += n;
        } else {
          seen.push_back(g), idx++;
        }
      }
      const double want = nWords ? double(repeated) / chars : 0;
      KO_CHECK_MSG(st.dupNgramCharFrac[n - 5] == want, "dup n=" + std::to_string(n) + " trial " + std::to_string(trial));
    }
  }
}

KO_TEST(prep, en_order_and_not_edited) {
  // A kept English document comes out byte for byte (invalid bytes aside), never line-filtered.
  std::vector<std::string> lines = enLines();
  lines.insert(lines.begin() + 2, "Heading without a period");
  std::string doc = join(lines, "\n") + "\n";
  std::string out;
  RuleVerdict v = en1(doc, {}, &out);
  KO_CHECK(v.reason == ko::kKept && out == doc && v.linesDropped == 0);
  doc[7] = '\xFF';
  v = en1(doc, {}, &out);
  std::string expect = doc;
  expect.replace(7, 1, "\xEF\xBF\xBD");
  KO_CHECK(v.reason == ko::kKept && v.invalidUtf8 == 1 && out == expect);
  // Several rules fail: the first in the documented order decides.
  std::vector<std::string> w(60, "#x");
  v = en1(join(w));
  KO_CHECK(v.reason == ko::kMeanWordLenLow);  // also hash ratio, alpha-free stop words, repetition
}

KO_TEST(prep, reason_names) {
  std::vector<std::string> seen;
  for (int r = 0; r < ko::kNumRuleReasons; r++) {
    const std::string n = ko::ruleReasonName(r);
    KO_CHECK(n != "unknown" && !n.empty());
    for (char c : n) KO_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    for (const std::string& s : seen) KO_CHECK(s != n);
    seen.push_back(n);
  }
  KO_CHECK(std::string(ko::ruleReasonName(ko::kNumRuleReasons)) == "unknown");
  KO_CHECK(std::string(ko::ruleReasonName(-1)) == "unknown");
  KO_CHECK(std::string(ko::ruleReasonName(ko::kTooFewWords)) == "too_few_words");
  KO_CHECK(std::string(ko::ruleReasonName(ko::kKept)) == "kept");
}

// ---- robustness ----------------------------------------------------------------------------------

KO_TEST(prep, invalid_utf8) {
  std::vector<std::string> w = koWords(12), fixed = w;
  const char* bad[] = {"\xFF", "\x80", "\xEA\xB0", "\xC0\xAF", "\xED\xA0\x80"};  // 1 + 1 + 2 + 2 + 3 bad bytes
  const int badCount[] = {1, 1, 2, 2, 3};
  for (int k = 0; k < 5; k++) {
    w[k + 1] += bad[k];
    for (int j = 0; j < badCount[k]; j++) fixed[k + 1] += "\xEF\xBF\xBD";
  }
  std::string out;
  RuleVerdict v = ko1(join(w), {}, &out);
  KO_CHECK_MSG(v.reason == ko::kKept, why(v));
  KO_CHECK(v.invalidUtf8 == 9 && out == join(fixed) && validUtf8(out));
  // A sequence cut off at the very end: the last line then ends in U+FFFD and is not a sentence.
  v = ko1(join(koWords(12)) + "\xE3\x80", {}, &out);
  KO_CHECK(v.reason == ko::kEmpty && v.invalidUtf8 == 2 && v.linesDropped == 1 && out.empty());
  // Lone continuation bytes, 5- and 6-byte forms, code points above U+10FFFF, all in one doc.
  std::string junk = "\x80\xBF\xF8\x88\x80\x80\x80\xFC\x84\x80\x80\x80\x80\xF4\x90\x80\x80\xC1\x81";
  v = ko1(junk);
  KO_CHECK(v.reason == ko::kEmpty && v.invalidUtf8 == int(junk.size()));
  v = en1(junk, {}, &out);
  KO_CHECK(v.reason == ko::kTooFewWords && v.invalidUtf8 == int(junk.size()));
  std::string clean;
  KO_CHECK(ko::sanitizeUtf8(junk, &clean) == int64_t(junk.size()) && clean.size() == 3 * junk.size());

  // The batch decodes each document within its own bounds: "가" = EA B0 80 split across two documents
  // is 2 bad bytes at the end of one and 1 at the start of the next.
  const std::string text = "\xEA\xB0" "\x80";
  const int64_t offsets[] = {0, 2, 3};
  RuleVerdict vs[2];
  std::string outText;
  std::vector<int64_t> outOffsets;
  ko::applyRules(ko::RuleLang::Korean, {}, {}, text.data(), int64_t(text.size()), offsets, 2, vs, &outText, &outOffsets);
  KO_CHECK(vs[0].invalidUtf8 == 2 && vs[1].invalidUtf8 == 1);
}

KO_TEST(prep, random_bytes) {
  // Random byte soup biased towards UTF-8 lead/continuation bytes, spaces, newlines and terminators,
  // each document in a heap buffer of exactly its size (so a sanitizer build sees any read past the end).
  ko::Rng r(7);
  const unsigned char pool[] = {0x80, 0xBF, 0xC2, 0xE0, 0xEA, 0xED, 0xF0, 0xF4, 0xF8, 0xFF, 0xB0, 0xA0,
                                ' ', ' ', '\n', '\n', '.', '#', '-', 'a', 'b', 0xEB, 0x8B, 0xA4};
  ko::EnglishRuleParams relaxed = relaxedEnglish();
  ko::KoreanRuleParams kp;
  kp.minWords = 0, kp.minMeanWordLen = 0, kp.minKoreanRatio = 0;
  for (int d = 0; d < 3000; d++) {
    const size_t len = size_t(r.next() % 200);
    std::vector<char> buf(len);
    for (char& c : buf) c = char(r.next() % 3 ? pool[r.next() % sizeof(pool)] : (r.next() & 0xFF));
    const std::string_view doc(buf.data(), buf.size());
    std::string clean, out;
    const int64_t bad = ko::sanitizeUtf8(doc, &clean);
    KO_CHECK(validUtf8(clean));
    RuleVerdict v = ko::applyKoreanRules(doc, kp, &out);
    KO_CHECK(v.invalidUtf8 == bad && validUtf8(out));
    if (v.reason == ko::kKept) {
      std::string filtered;
      ko::filterTerminatedLines(clean, &filtered);
      KO_CHECK(out == filtered);
    }
    v = ko::applyEnglishRules(doc, relaxed, &out);
    KO_CHECK(v.reason == ko::kKept && v.invalidUtf8 == bad && out == clean);
    ko::isTerminatedKoreanLine(doc);
  }
}

KO_TEST(prep, empty_and_whitespace_docs) {
  const std::string docs[] = {"", " ", "\n\n\n", " \t\r\n\xE3\x80\x80\xC2\xA0\n"};
  ko::KoreanRuleParams noFilter;
  noFilter.dropUnterminatedLines = false;
  for (const std::string& d : docs) {
    std::string out = "junk";
    RuleVerdict v = ko1(d, {}, &out);
    KO_CHECK(v.reason == ko::kEmpty && out.empty() && v.linesDropped == 0 && v.invalidUtf8 == 0);
    KO_CHECK(ko1(d, noFilter).reason == ko::kEmpty);
    v = en1(d, {}, &out);
    KO_CHECK(v.reason == ko::kTooFewWords && v.value == 0 && out.empty());
    ko::EnglishDocStats st = ko::computeEnglishStats(d);  // every statistic on an empty text: no crash
    KO_CHECK(st.words == 0 && st.lines == 0 && st.dupLineFrac == 0);
  }
}

KO_TEST(prep, huge_single_line_doc) {
  // 50 MB on one line, memory linear in the size: a repeated sentence (the 5-gram rule catches it),
  // the same without a final terminator (the only line is dropped), and one giant word.
  const size_t target = size_t(50) << 20;
  const std::string sentence = "이것은 아주 긴 한 줄짜리 문서입니다. ";  // 6 words
  std::string doc;
  doc.reserve(target + 64);
  while (doc.size() < target) doc += sentence;
  const int64_t reps = int64_t(doc.size() / sentence.size());
  auto t0 = std::chrono::steady_clock::now();
  ko::KoreanDocStats st;
  RuleVerdict v = ko1(doc, {}, nullptr, &st);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  KO_CHECK_MSG(v.reason == ko::kTop5gramHigh, why(v));
  KO_CHECK(st.words == 6 * reps);
  KO_CHECK_NEAR(v.value, 1.0 / 6, 1e-6);  // six distinct 5-grams, each ~1/6 of them
  KO_CHECK_MSG(secs < 30, std::to_string(secs) + " s");
  v = ko1(doc + "제목");
  KO_CHECK(v.reason == ko::kEmpty && v.linesDropped == 1);
  std::string en;
  en.reserve(target + 64);
  while (en.size() < target) en += "the quick brown fox jumps over the lazy dog. ";
  v = en1(en);
  KO_CHECK(v.reason == ko::kTooManyWords && v.value > 1e6);
  std::string word(target, 'a');
  v = en1(word);
  KO_CHECK(v.reason == ko::kTooFewWords && v.value == 1);
  word += ".";
  v = ko1(word);
  KO_CHECK(v.reason == ko::kTooFewWords && v.value == 1);
}

KO_TEST(prep, bad_offsets_throw) {
  const std::string text = "abcdefgh";
  RuleVerdict vs[4];
  std::string out;
  std::vector<int64_t> outOff;
  auto message = [&](std::vector<int64_t> offs, int64_t n, int64_t textBytes) -> std::string {
    try {
      ko::applyRules(ko::RuleLang::English, {}, {}, text.data(), textBytes, offs.data(), n, vs, &out, &outOff);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  KO_CHECK(message({0, 5, 3}, 2, 8).find("offsets[2] = 3 < offsets[1] = 5") != std::string::npos);
  KO_CHECK(message({0, 9}, 1, 8).find("offsets[1] = 9 > text length 8") != std::string::npos);
  KO_CHECK(message({-1, 2}, 1, 8).find("offsets[0] = -1") != std::string::npos);
  KO_CHECK(message({0}, -1, 8).find("nDocs = -1") != std::string::npos);
  KO_CHECK(message({0, 8}, 1, 8).empty());
  bool threw = false;
  try {
    const int64_t offs[] = {0, 8};
    ko::applyRules(ko::RuleLang::English, {}, {}, text.data(), offs, 1, vs, nullptr, &outOff);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  KO_CHECK(threw);
  // No documents at all is fine.
  const int64_t zero[] = {0};
  ko::applyRules(ko::RuleLang::Korean, {}, {}, nullptr, 0, zero, 0, nullptr, &out, &outOff);
  KO_CHECK(out.empty() && outOff.size() == 1 && outOff[0] == 0);
}

// ---- batch ---------------------------------------------------------------------------------------

namespace {

// A mixed batch: kept and dropped documents of every kind, invalid bytes, empty documents; the text
// starts with 3 bytes that belong to no document.
void makeBatch(ko::RuleLang lang, int nDocs, uint64_t seed, std::string* text, std::vector<int64_t>* offsets) {
  ko::Rng r(seed);
  *text = "XYZ";
  offsets->assign(1, 3);
  for (int d = 0; d < nDocs; d++) {
    std::string doc;
    const int kind = int(r.next() % 8);
    const int lines = 1 + int(r.next() % 6);
    for (int l = 0; l < lines && kind != 0; l++) {
      std::vector<std::string> w;
      const int nw = 3 + int(r.next() % 40);
      for (int i = 0; i < nw; i++) {
        const int id = int(r.next() % (kind == 5 ? 3 : 5000));
        if (lang == ko::RuleLang::Korean)
          w.push_back(kind == 6 && i % 3 == 0 ? qWord(id, 4) : hangulWord(id, 1 + int(r.next() % 4)));
        else
          w.push_back(i % 7 == 3 ? "the" : i % 11 == 5 ? "and" : qWord(id, 2 + int(r.next() % 6)));
      }
      doc += join(w);
      if (kind != 2) doc += lang == ko::RuleLang::Korean ? "다." : ".";
      if (kind == 3) doc += "\xFF";
      if (kind == 4 && l == 0) doc = "- " + doc;
      doc += r.next() % 3 ? "\n" : "\n\n";
    }
    if (kind == 7) doc += "\xE3\x80";  // cut off at the end
    *text += doc;
    offsets->push_back(int64_t(text->size()));
  }
}

void checkBatchMatchesPerDoc(ko::RuleLang lang) {
  std::string text;
  std::vector<int64_t> offsets;
  makeBatch(lang, 700, lang == ko::RuleLang::Korean ? 1 : 2, &text, &offsets);
  const int64_t n = int64_t(offsets.size()) - 1;
  ko::KoreanRuleParams kp;
  ko::EnglishRuleParams ep;
  ep.minWords = 20;  // so that a good share of these short synthetic docs pass
  std::string wantText;
  std::vector<int64_t> wantOff{0};
  std::vector<RuleVerdict> want;
  int kept = 0;
  for (int64_t i = 0; i < n; i++) {
    const std::string doc = text.substr(size_t(offsets[i]), size_t(offsets[i + 1] - offsets[i]));
    std::string out;
    want.push_back(lang == ko::RuleLang::Korean ? ko::applyKoreanRules(doc, kp, &out) : ko::applyEnglishRules(doc, ep, &out));
    kept += want.back().reason == ko::kKept;
    wantText += out;
    wantOff.push_back(int64_t(wantText.size()));
  }
  KO_CHECK_MSG(kept > n / 10 && kept < n * 9 / 10, std::to_string(kept) + " kept of " + std::to_string(n));
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  const int threadCounts[] = {1, 2, 3};
#else
  const int threadCounts[] = {1};
#endif
  for (int t : threadCounts) {
#ifdef _OPENMP
    omp_set_num_threads(t);
#endif
    std::vector<RuleVerdict> got(static_cast<size_t>(n));
    std::string gotText = "stale";
    std::vector<int64_t> gotOff{42};
    ko::applyRules(lang, kp, ep, text.data(), int64_t(text.size()), offsets.data(), n, got.data(), &gotText, &gotOff);
    KO_CHECK_MSG(gotText == wantText, "threads=" + std::to_string(t));
    KO_CHECK(gotOff == wantOff);
    for (int64_t i = 0; i < n; i++) {
      const RuleVerdict &a = got[size_t(i)], &b = want[size_t(i)];
      KO_CHECK_MSG(a.reason == b.reason && a.value == b.value && a.invalidUtf8 == b.invalidUtf8 &&
                       a.linesDropped == b.linesDropped,
                   "doc " + std::to_string(i) + " threads=" + std::to_string(t));
    }
    KO_CHECK(validUtf8(gotText));
  }
#ifdef _OPENMP
  omp_set_num_threads(saved);
#endif
}

}  // namespace

KO_TEST(prep, batch_matches_per_doc_korean) { checkBatchMatchesPerDoc(ko::RuleLang::Korean); }
KO_TEST(prep, batch_matches_per_doc_english) { checkBatchMatchesPerDoc(ko::RuleLang::English); }

// The English scan's counts against a plain per-code-point transcription of their definitions, on
// random text mixing letters, digits, punctuation, dots, '#', spaces, newlines and non-ASCII.
KO_TEST(prep, en_scan_matches_reference) {
  ko::Rng r(9);
  const char* atoms[] = {"a", "Z", "q", "7", "0", ".", ".", "#", "-", ",", "(", " ", " ", "  ", "\n", "\n\n",
                         "\t", "\x01", "\x7F", "é", "中", "…", "—", "１", "😀", "\xE3\x80\x80", "\xC2\xA0", "The", "and"};
  for (int trial = 0; trial < 1500; trial++) {
    std::string doc;
    const int len = int(r.next() % 120);
    for (int k = 0; k < len; k++) doc += atoms[r.next() % (sizeof(atoms) / sizeof(atoms[0]))];
    // Reference: decode, split on Unicode whitespace.
    std::vector<uint32_t> cps;
    for (size_t i = 0; i < doc.size();) {
      uint32_t cp;
      bool valid;
      i += size_t(ko::utf8Decode(reinterpret_cast<const unsigned char*>(doc.data()), doc.size(), i, &cp, &valid));
      cps.push_back(cp);
    }
    int64_t words = 0, nonSym = 0, nonSymChars = 0, alpha = 0, hashes = 0, ellipses = 0, dotRun = 0;
    int64_t wlen = 0;
    bool letter = false, digit = false;
    auto endWord = [&] {
      if (!wlen) return;
      words++, alpha += letter;
      if (letter || digit) nonSym++, nonSymChars += wlen;
      wlen = 0, letter = digit = false;
    };
    for (uint32_t c : cps) {
      if (c == '.') {
        if (++dotRun % 3 == 0) ellipses++;
      } else {
        dotRun = 0;
      }
      hashes += c == '#', ellipses += c == 0x2026;
      if (ko::isUnicodeSpace(c)) {
        endWord();
        continue;
      }
      wlen++;
      letter = letter || ko::isRuleLetter(c);
      digit = digit || ko::isRuleDigit(c);
    }
    endWord();
    const ko::EnglishDocStats st = ko::computeEnglishStats(doc);
    KO_CHECK_MSG(st.chars == int64_t(cps.size()) && st.words == words && st.nonSymbolWords == nonSym &&
                     st.nonSymbolChars == nonSymChars && st.alphaWords == alpha && st.hashes == hashes &&
                     st.ellipses == ellipses,
                 "trial " + std::to_string(trial));
  }
}
