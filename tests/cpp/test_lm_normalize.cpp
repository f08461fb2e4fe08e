// test_lm_normalize.cpp — the native half of the LM normalization (lm_normalize.h) on hand-written cases;
// the node test compares it with the JavaScript reference over whole corpora.
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "lm_normalize.h"

namespace {

std::string norm(const std::string& s) {
  std::string out;
  ko::lmNormalizeAppend(s, &out);
  return out;
}

}  // namespace

KO_TEST(prep, lm_normalize_digits_punctuation_space) {
  // Digits of any script become 0; punctuation and symbols are split off; space runs collapse.
  KO_CHECK(norm("version 7.3, 2024년") == "version 0 . 0 , 0000년");
  KO_CHECK(norm("\xd9\xa3\xe0\xa5\xaa") == "00");                    // Arabic-Indic 3, Devanagari 4
  KO_CHECK(norm("a\xe3\x80\x82\xe3\x80\x8c" "b\xe3\x80\x8d") == "a 。 「 b 」");  // CJK punctuation
  KO_CHECK(norm("x+y=z") == "x + y = z");                              // symbols (Sm) too
  KO_CHECK(norm("hi \xf0\x9f\x98\x80!") == "hi \xf0\x9f\x98\x80 !");   // an astral symbol (So)
  KO_CHECK(norm("  a \t\xc2\xa0 b  ") == "a b");                       // NBSP is white space
  KO_CHECK(norm("\xef\xbb\xbf" "a") == "a");                           // BOM is JavaScript white space
  KO_CHECK(norm("a\xc2\x85" "b") == "a\xc2\x85" "b");                  // NEL is not (JavaScript's \s)
}

KO_TEST(prep, lm_normalize_lines) {
  // Lines split on '\n' only; \r and U+2028 are spaces; empty lines go; no leading/trailing newline.
  KO_CHECK(norm("\n\n first \r\n\n  \nsecond\xe2\x80\xa8line\n\n") == "first\nsecond line");
  KO_CHECK(norm("...\n!!") == ". . .\n! !");
  KO_CHECK(norm("") == "");
  KO_CHECK(norm(" \n \t\n") == "");
  // Invalid UTF-8 bytes become U+FFFD, a symbol: split off like one.
  KO_CHECK(norm("a\xff" "b") == "a \xef\xbf\xbd b");
}

KO_TEST(prep, lm_normalize_batch_offsets) {
  const std::string text = "A1\n\nb";
  std::vector<int64_t> off = {0, 2, 2, 5};
  std::string out;
  std::vector<int64_t> outOff;
  ko::lmNormalizeBatch(text.data(), int64_t(text.size()), off.data(), 3, &out, &outOff);
  KO_CHECK(out == "A0b");
  KO_CHECK((outOff == std::vector<int64_t>{0, 2, 2, 3}));
  off = {0, 6, 5, 5};
  bool threw = false;
  try {
    ko::lmNormalizeBatch(text.data(), int64_t(text.size()), off.data(), 3, &out, &outOff);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("offsets[1] = 6") != std::string::npos;
  }
  KO_CHECK(threw);
}
