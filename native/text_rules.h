// text_rules.h — the document rule filters of the data-prep pipeline (Thunder-LLM recipe): heuristic
// quality rules for Korean, and DeepMind Gopher's quality + repetition rules for English (thresholds as
// in datatrove's GopherQualityFilter / GopherRepetitionFilter). The Node binding calls applyRules() on a
// batch from a worker thread; the per-document functions are what it runs for each document.
//
// ---- Definitions (the README copies this block) ----------------------------------------------------
// Text. Input may be invalid UTF-8. Every byte that is not part of a well-formed sequence (truncated,
//   lone continuation, overlong, surrogate, > U+10FFFF) counts once in RuleVerdict::invalidUtf8 and is
//   replaced by U+FFFD (EF BF BD) before any rule runs, so output text is always valid UTF-8. U+FFFD is
//   never a letter.
// Whitespace = Unicode White_Space (utf8.h isUnicodeSpace). A word = a maximal run of non-whitespace code
//   points; lengths are in code points, never bytes.
// Hangul = U+AC00–D7A3 (syllables), U+1100–11FF (jamo), U+3130–318F (compatibility jamo),
//   U+A960–A97F (jamo extended-A), U+D7B0–D7FF (jamo extended-B).
// Letter = any code point that is NOT one of: whitespace; ASCII other than A–Z a–z (controls, digits,
//   punctuation, symbols); U+0080–00BF (C1 controls, Latin-1 punctuation and symbols); × U+00D7, ÷ U+00F7;
//   U+2000–27FF (General Punctuation, super/subscripts, currency, letterlike symbols and number forms
//   such as ℃ № Ⅻ, arrows, math, technical, enclosed alphanumerics such as ①, box drawing, geometric
//   shapes, misc symbols, dingbats); Supplemental Punctuation U+2E00–2E7F; CJK Symbols and Punctuation
//   U+3000–303F; variation selectors U+FE00–FE0F and U+E0100–E01EF, tags U+E0000–E007F; vertical forms
//   U+FE10–FE1F; CJK compatibility forms and small form variants U+FE30–FE6F; U+FEFF; fullwidth
//   punctuation and digits U+FF01–FF20, U+FF3B–FF40, U+FF5B–FF65; specials U+FFF0–FFFF (so U+FFFD);
//   emoji and pictographs U+1F000–1FAFF.
//   So Hangul, Latin letters (also accented), Han, kana, Cyrillic... are letters; digits, punctuation and
//   symbols are not. (native/text_chars.h isRuleLetter is this definition.)
// Digit (English rules only) = ASCII 0–9 or fullwidth ０–９.
//
// Korean rules, in this order (first failure decides the reason):
//  1. Sentence ends (edits the document; on when dropUnterminatedLines). Lines are split on '\n'. A line
//     is blank when it is all whitespace. A non-blank line is kept only if, after removing trailing
//     whitespace and any closing quotes/brackets (kKoreanClosers), it ends with terminal punctuation
//     (kKoreanTerminalPunct: . ! ? … 。 ！ ？ ．) or with a Hangul sentence-final syllable
//     (kKoreanFinalSyllables: 다 요 죠 까 — Korean web text often ends sentences without a period).
//     Kept lines are copied verbatim and joined with '\n'; wherever blank lines separated two kept lines
//     in the source, exactly one empty line is written (paragraph break); no leading or trailing blank
//     lines, no trailing newline. linesDropped counts dropped non-blank lines. Nothing left →
//     "no_terminated_sentences" (also the reason for empty and whitespace-only documents, with or
//     without this rule).
//  2. Word count in [minWords, maxWords].
//  3. Mean word length (code points) in [minMeanWordLen, maxMeanWordLen].
//  4. Korean ratio = Hangul code points / letters ≥ minKoreanRatio (no letters → ratio 0).
//  5. Repetition: over word 5-grams, (occurrences of the most frequent 5-gram) / (number of 5-grams)
//     ≤ maxTop5gramFrac. A 5-gram seen once is not a repetition: documents whose 5-grams are all
//     distinct (including those with fewer than 5 words) pass with value 0. 5-grams are compared by a
//     64-bit hash of their five words; a false match needs a 64-bit collision (≈ n²/2^65, negligible).
//  All comparisons are inclusive: a statistic exactly at a threshold passes.
//
// English rules (Gopher), in this order; the text is never edited (only U+FFFD replacement):
//  symbol word = a word with no letter and no digit ("-", "...", "|"); the others are "non-symbol".
//  1. too_few_words / too_many_words: non-symbol words in [minWords, maxWords].
//  2. mean_word_len_low / _high: mean length of non-symbol words in [minMeanWordLen, maxMeanWordLen].
//  3. hash_ratio_high: count('#') / words ≤ maxSymbolWordRatio (words = all words here and below).
//  4. ellipsis_ratio_high: (count of "..." non-overlapping + count of "…") / words ≤ maxSymbolWordRatio.
//     Lines below = non-blank lines split on '\n'.
//  5. bullet_lines_high: lines whose first non-space char is a bullet (kEnglishBullets) / lines ≤ 0.9.
//  6. ellipsis_lines_high: lines ending (before trailing space) with "..." or "…" / lines ≤ 0.3.
//  7. alpha_words_low: words containing a letter / words ≥ minAlphaWordsRatio.
//  8. too_few_stop_words: words that, with leading/trailing ASCII punctuation removed and ASCII
//     lowercased, are one of {the, be, to, of, and, that, have, with}: at least minStopWords.
//  Repetition (denominators in code points of the whole document; hashes as above):
//  9. dup_line_frac: lines that repeat an earlier line / lines ≤ 0.30.
// 10. dup_line_char_frac: code points of those repeated lines / document code points ≤ 0.20.
// 11. dup_para_frac, 12. dup_para_char_frac: the same for paragraphs (maximal runs of non-blank lines,
//     i.e. split on blank lines; a paragraph's length counts its inner '\n's) ≤ 0.30 / 0.20.
// 13–15. top_{2,3,4}gram_char_frac: length of the most frequent word n-gram (words joined by one space;
//     ties → the first seen) × its count / document code points ≤ 0.20, 0.18, 0.16.
// 16–21. dup_{5..10}gram_char_frac: scanning n-grams left to right, an n-gram already seen adds its length
//     (words concatenated without spaces) and skips n words, else it is remembered and the scan moves
//     one word; total / document code points ≤ 0.15, 0.14, 0.13, 0.12, 0.11, 0.10 (datatrove's
//     find_all_duplicate).
//  Deviations from datatrove, for simplicity: words are whitespace tokens (no NLTK tokenizer); lines
//  and paragraphs ignore blank lines; n-grams are compared as word sequences (datatrove's
//  find_all_duplicate compares the words glued together, so there "ab c" also matches "a bc").
//  Lines, paragraphs and n-grams are compared by 64-bit hashes (collisions negligible, as above).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ko {

enum class RuleLang : int { Korean = 0, English = 1 };

// Documented constants (UTF-8 code points) used by the Korean sentence-end rule and the bullet rule.
inline constexpr char32_t kKoreanTerminalPunct[] = {U'.', U'!', U'?', U'\u2026', U'\u3002', U'\uFF01', U'\uFF1F', U'\uFF0E'};
inline constexpr char32_t kKoreanFinalSyllables[] = {U'\uB2E4' /*다*/, U'\uC694' /*요*/, U'\uC8E0' /*죠*/, U'\uAE4C' /*까*/};
inline constexpr char32_t kKoreanClosers[] = {U'\u201D', U'\u2019', U'"', U'\'', U')', U']', U'}', U'\u300D' /*」*/,
                                              U'\u300F' /*』*/, U'\u300B' /*》*/, U'\u3009' /*〉*/};
inline constexpr char32_t kEnglishBullets[] = {U'\u2022' /*•*/, U'-', U'*', U'\u2023' /*‣*/, U'\u25E6' /*◦*/,
                                               U'\u2043' /*⁃*/, U'\u2219' /*∙*/, U'\u25CF' /*●*/, U'\u25CB' /*○*/,
                                               U'\u25AA' /*▪*/, U'\u25A0' /*■*/, U'\u25A1' /*□*/, U'\u25BA' /*►*/,
                                               U'\u27A2' /*➢*/, U'\u00B7' /*·*/};

struct KoreanRuleParams {
  bool dropUnterminatedLines = true;
  int64_t minWords = 10;
  int64_t maxWords = 10'000'000;
  double minMeanWordLen = 2;
  double maxMeanWordLen = 10;
  double minKoreanRatio = 0.8;
  double maxTop5gramFrac = 0.15;
};

// To switch a rule off, give it a permissive threshold (0 for a minimum, a huge value for a maximum).
struct EnglishRuleParams {
  int64_t minWords = 50;
  int64_t maxWords = 100'000;
  double minMeanWordLen = 3;
  double maxMeanWordLen = 10;
  double maxSymbolWordRatio = 0.1;
  double maxBulletLinesRatio = 0.9;
  double maxEllipsisLinesRatio = 0.3;
  double minAlphaWordsRatio = 0.8;
  int64_t minStopWords = 2;
  double maxDupLineFrac = 0.30;
  double maxDupLineCharFrac = 0.20;
  double maxDupParaFrac = 0.30;
  double maxDupParaCharFrac = 0.20;
  double maxTopNgramCharFrac[3] = {0.20, 0.18, 0.16};                    // n = 2, 3, 4
  double maxDupNgramCharFrac[6] = {0.15, 0.14, 0.13, 0.12, 0.11, 0.10};  // n = 5 .. 10
};

enum RuleReason : int32_t {
  kKept = 0,
  kEmpty,  // "no_terminated_sentences" (Korean): nothing left after the sentence-end rule
  kTooFewWords,
  kTooManyWords,
  kMeanWordLenLow,
  kMeanWordLenHigh,
  kKoreanRatioLow,
  kTop5gramHigh,
  kHashRatioHigh,
  kEllipsisRatioHigh,
  kBulletLinesHigh,
  kEllipsisLinesHigh,
  kAlphaWordsLow,
  kTooFewStopWords,
  kDupLineFrac,
  kDupLineCharFrac,
  kDupParaFrac,
  kDupParaCharFrac,
  kTop2gramCharFrac,
  kTop3gramCharFrac,
  kTop4gramCharFrac,
  kDup5gramCharFrac,
  kDup6gramCharFrac,
  kDup7gramCharFrac,
  kDup8gramCharFrac,
  kDup9gramCharFrac,
  kDup10gramCharFrac,
  kNumRuleReasons
};

// Stable snake_case name of a reason ("kept", "too_few_words", ...), used in reports; "unknown" if out of range.
const char* ruleReasonName(int32_t reason);

struct RuleVerdict {
  int32_t reason = kKept;  // kKept or the first failing rule
  double value = 0;        // the measured statistic of the failing rule (0 when kept)
  int32_t invalidUtf8 = 0; // bytes replaced by U+FFFD (saturates at INT32_MAX)
  int32_t linesDropped = 0;// Korean sentence-end rule: non-blank lines removed
};

// Statistics the rules measure, exposed for tests and reports. Counts are of the (cleaned, for Korean
// line-filtered) text the rules saw.
struct KoreanDocStats {
  int64_t words = 0, wordChars = 0, hangul = 0, letters = 0;
  double meanWordLen = 0, koreanRatio = 0, top5gramFrac = 0;
};
struct EnglishDocStats {
  int64_t chars = 0, words = 0, nonSymbolWords = 0, nonSymbolChars = 0, alphaWords = 0, stopWords = 0;
  int64_t hashes = 0, ellipses = 0, lines = 0, bulletLines = 0, ellipsisLines = 0;
  double meanWordLen = 0;
  double dupLineFrac = 0, dupLineCharFrac = 0, dupParaFrac = 0, dupParaCharFrac = 0;
  double topNgramCharFrac[3] = {0, 0, 0};  // n = 2, 3, 4
  double dupNgramCharFrac[6] = {0, 0, 0, 0, 0, 0};  // n = 5 .. 10
};

// Per document. `out` receives the text to keep (cleaned and, for Korean, line-filtered) or is cleared
// when the document is dropped. Thread-safe (scratch buffers are thread_local). When `stats` is given,
// the statistics computed so far are written there (rules after the first failure are not evaluated,
// except computeEnglishStats which evaluates everything).
RuleVerdict applyKoreanRules(std::string_view doc, const KoreanRuleParams& p, std::string* out,
                             KoreanDocStats* stats = nullptr);
RuleVerdict applyEnglishRules(std::string_view doc, const EnglishRuleParams& p, std::string* out,
                              EnglishDocStats* stats = nullptr);
// All English statistics of a document (no early exit), for tests and reports.
EnglishDocStats computeEnglishStats(std::string_view doc);

// The Korean sentence-end rule alone: is this line (no '\n') a terminated sentence? (Input must be
// valid UTF-8.) And the whole line filter: writes the kept text to *out, returns lines dropped.
bool isTerminatedKoreanLine(std::string_view line);
int64_t filterTerminatedLines(std::string_view text, std::string* out);

// Copies `doc` to *out replacing each invalid byte with U+FFFD; returns the number of invalid bytes.
int64_t sanitizeUtf8(std::string_view doc, std::string* out);

// Batch: document i is text[offsets[i], offsets[i+1]) (nDocs + 1 offsets, non-decreasing, within
// [0, textBytes]). Writes verdicts[0..nDocs), and the kept text of every document back to back in
// *outText with *outOffsets (nDocs + 1 entries from 0; a dropped document gets an empty range).
// Parallel over documents (OpenMP); the output does not depend on the thread count. Memory is linear
// in the largest document (about 8 bytes per word, plus 16–32 bytes per distinct Korean 5-gram) on top
// of the output; per-thread scratch buffers over 16 MiB are released after each document.
// Throws std::invalid_argument naming the problem (bad offsets, null pointers).
void applyRules(RuleLang lang, const KoreanRuleParams& ko, const EnglishRuleParams& en, const char* text,
                int64_t textBytes, const int64_t* offsets, int64_t nDocs, RuleVerdict* verdicts,
                std::string* outText, std::vector<int64_t>* outOffsets);
// The same, trusting offsets[nDocs] as the end of `text` (the caller owns at least that many bytes).
void applyRules(RuleLang lang, const KoreanRuleParams& ko, const EnglishRuleParams& en, const char* text,
                const int64_t* offsets, int64_t nDocs, RuleVerdict* verdicts, std::string* outText,
                std::vector<int64_t>* outOffsets);

}  // namespace ko
