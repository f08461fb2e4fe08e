// lm_normalize.h — the n-gram LM's view of a document (perplexity filter, `ko-train lm`), as CCNet
// normalizes before KenLM. The caller has already applied Unicode NFKC and lower-casing (JavaScript's
// String.prototype.normalize / toLowerCase, fast and ICU-backed); this does the rest, which in
// JavaScript regexes ran at ~30 MB/s:
//   * every decimal digit (General_Category Nd) becomes '0';
//   * every punctuation or symbol code point (General_Category P* or S*) becomes " c " (split from words);
//   * per line (split on '\n'): runs of white space (JavaScript's \s) become one space, the line is
//     trimmed, and empty lines are dropped; lines are joined with '\n'.
// The classes come from native/unicode_tables.h, generated from Node's regex engine, so the result is
// byte-identical to src/lm.ts lmNormalize (the reference the tests compare against). Invalid UTF-8
// bytes become U+FFFD, which is a symbol (So) and so gets spaces around it.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ko {

// Appends the normalized text of one document to *out.
void lmNormalizeAppend(std::string_view nfkcLower, std::string* out);

// Batch: document i is text[offsets[i], offsets[i+1]); the normalized documents go back to back into
// *outText with nDocs + 1 offsets in *outOffsets. Parallel over documents (OpenMP); throws
// std::invalid_argument for bad offsets.
void lmNormalizeBatch(const char* text, int64_t textBytes, const int64_t* offsets, int64_t nDocs,
                      std::string* outText, std::vector<int64_t>* outOffsets);

}  // namespace ko
