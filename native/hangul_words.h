// hangul_words.h — the pre-tokenization that `ko-train tokenizer extend` learns Korean vocabulary from:
// the corpus's Hangul "words" and how often each occurs.
//
// A word is a maximal run of Hangul code points:
//   U+AC00–D7A3 (syllables), U+1100–11FF (Jamo), U+3130–318F (compatibility Jamo),
//   U+A960–A97F (Jamo Extended-A), U+D7B0–D7FF (Jamo Extended-B).
// When the byte directly before the run is an ASCII space (U+0020), the word is " " + run (one space,
// however many spaces precede). That mirrors the byte-level pre-tokenizers of GPT-2 and Llama 3, where
// "a 안녕" gives the pre-token " 안녕" and "a  안녕" gives " " and " 안녕": the learned pieces are then the
// ones the extended tokenizer will meet. Any other preceding character (a letter, '(', a newline, a tab,
// the document start) gives the bare run. Every non-Hangul code point ends a run; invalid UTF-8 bytes
// decode to U+FFFD (native/utf8.h, one byte each), so they end runs too and are never part of a word.
// Documents are independent: a run never crosses a document boundary, and the byte before a document's
// first byte is not looked at.
//
// Branching-entropy split (option, off by default): Korean words glue particles and endings onto stems
// ("사과는", "사과를"), so a run may be split where many different syllables can follow. For every run
// r[0..n) of the corpus (weighted by its count, leading space ignored) and every position j in 0..n, the
// context C(j) = r[max(0, j−k) .. j) (k = entropyContext code points; shorter at the run start, empty at
// j = 0) is followed by r[j], or by "end of run" at j = n. H(j) is the entropy, in nats, of that
// next-symbol distribution of context C(j) over the whole corpus. A run is split before position i
// (1 <= i <= n−1) when H(i) > H(i−1) and H(i) >= entropyThreshold: the branching entropy rises there and
// is high. Split-off parts never get the leading space (" 사과는" → " 사과" and "는"). With the default
// threshold of 1.0 nats a boundary needs at least about 3 equally likely continuations (ln 3 = 1.10); two
// (ln 2 = 0.69) are not enough.
//
// Output: words sorted by count descending, then by bytes ascending, so the result is the same whatever
// the thread count.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ko {

struct HangulWordOptions {
  bool branchingEntropySplit = false;
  int entropyContext = 2;         // k, in code points (>= 1)
  double entropyThreshold = 1.0;  // nats
};

// Is cp one of the Hangul ranges above?
inline bool isHangulCodePoint(uint32_t cp) {
  return (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0x3130 && cp <= 0x318F) ||
         (cp >= 0xA960 && cp <= 0xA97F) || (cp >= 0xD7B0 && cp <= 0xD7FF);
}

// Document i is text[offsets[i], offsets[i+1]). Parallel over documents (OpenMP, thread-local counts
// merged). Throws std::invalid_argument naming the offset when offsets are negative, decreasing or past
// textBytes, or when the options are out of range.
void countHangulWords(const char* text, int64_t textBytes, const int64_t* offsets, int64_t nDocs,
                      const HangulWordOptions& o, std::vector<std::string>* words, std::vector<int64_t>* counts);

}  // namespace ko
