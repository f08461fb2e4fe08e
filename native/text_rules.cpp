// text_rules.cpp — what the Korean and English rules share (UTF-8 repair, scratch buffers, reason
// names) and the batch API: fixed chunks of documents in parallel, outputs concatenated in order.
// The rules themselves are in text_rules_korean.cpp and text_rules_english.cpp; definitions in text_rules.h.
#include <exception>
#include <stdexcept>

#include "text_rules_internal.h"
#include "utf8.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ko {
namespace text_detail {

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

void Scratch::trim() {
  constexpr size_t kKeep = size_t(16) << 20;  // per buffer; typical documents need far less
  if (clean.capacity() > kKeep) std::string().swap(clean);
  if (kept.capacity() > kKeep) std::string().swap(kept);
  if (hashes.capacity() * 8 > kKeep) std::vector<uint64_t>().swap(hashes);
  if (grams.capacity() * 8 > kKeep) std::vector<uint64_t>().swap(grams);
  if (lens.capacity() * 4 > kKeep) std::vector<uint32_t>().swap(lens);
  if (cands.capacity() * 4 > kKeep) std::vector<uint32_t>().swap(cands);
  if (next.capacity() * 4 > kKeep) std::vector<uint32_t>().swap(next);
  if (slotIdx.capacity() * 4 > kKeep) std::vector<uint32_t>().swap(slotIdx);
  if (rep.capacity() > kKeep) std::vector<uint8_t>().swap(rep);
  if (prefix.capacity() * 8 > kKeep) std::vector<int64_t>().swap(prefix);
  if (lines.capacity() * sizeof(Segment) > kKeep) std::vector<Segment>().swap(lines);
  if (paras.capacity() * sizeof(Segment) > kKeep) std::vector<Segment>().swap(paras);
  if (map.capacityBytes() > kKeep) map.release();
}

namespace {
// Byte index of the first ill-formed byte, or n when the text is valid UTF-8.
size_t firstInvalidUtf8(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    // Fast path for the 3-byte forms that need no range check beyond "two continuation bytes"
    // (E1–EC, EE–EF: all of Hangul, CJK and most BMP text); the rest goes through utf8Decode.
    if (((c >= 0xE1 && c <= 0xEC) || (c >= 0xEE && c <= 0xEF)) && i + 2 < n && (s[i + 1] & 0xC0) == 0x80 &&
        (s[i + 2] & 0xC0) == 0x80) {
      i += 3;
      continue;
    }
    uint32_t cp;
    bool valid;
    const int len = utf8Decode(s, n, i, &cp, &valid);
    if (!valid) return i;
    i += size_t(len);
  }
  return n;
}

}  // namespace

// `doc` itself when it is valid UTF-8, else a repaired copy in *buf (each bad byte → U+FFFD).
std::string_view cleanText(std::string_view doc, std::string* buf, int64_t* invalid) {
  const auto* s = reinterpret_cast<const unsigned char*>(doc.data());
  const size_t n = doc.size();
  size_t i = firstInvalidUtf8(s, n);
  *invalid = 0;
  if (i == n) return doc;
  buf->clear();
  buf->reserve(n + n / 8 + 16);
  buf->append(doc.data(), i);
  int64_t bad = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      size_t j = i + 1;
      while (j < n && s[j] < 0x80) j++;
      buf->append(doc.data() + i, j - i);
      i = j;
      continue;
    }
    uint32_t cp;
    bool valid;
    const int len = utf8Decode(s, n, i, &cp, &valid);
    if (valid) {
      buf->append(doc.data() + i, size_t(len));
    } else {
      buf->append("\xEF\xBF\xBD", 3);
      bad++;
    }
    i += size_t(len);
  }
  *invalid = bad;
  return std::string_view(*buf);
}

}  // namespace text_detail

using namespace text_detail;

// ---- public ------------------------------------------------------------------------------------------

const char* ruleReasonName(int32_t reason) {
  static const char* const kNames[kNumRuleReasons] = {
      "kept",
      "no_terminated_sentences",
      "too_few_words",
      "too_many_words",
      "mean_word_len_low",
      "mean_word_len_high",
      "korean_ratio_low",
      "top_5gram_high",
      "hash_ratio_high",
      "ellipsis_ratio_high",
      "bullet_lines_high",
      "ellipsis_lines_high",
      "alpha_words_low",
      "too_few_stop_words",
      "dup_line_frac",
      "dup_line_char_frac",
      "dup_para_frac",
      "dup_para_char_frac",
      "top_2gram_char_frac",
      "top_3gram_char_frac",
      "top_4gram_char_frac",
      "dup_5gram_char_frac",
      "dup_6gram_char_frac",
      "dup_7gram_char_frac",
      "dup_8gram_char_frac",
      "dup_9gram_char_frac",
      "dup_10gram_char_frac",
  };
  return reason >= 0 && reason < kNumRuleReasons ? kNames[reason] : "unknown";
}

int64_t sanitizeUtf8(std::string_view doc, std::string* out) {
  int64_t invalid;
  std::string buf;
  const std::string_view v = cleanText(doc, &buf, &invalid);
  if (v.data() == buf.data()) {
    out->swap(buf);
  } else {
    out->assign(v.data(), v.size());
  }
  return invalid;
}

void applyRules(RuleLang lang, const KoreanRuleParams& ko, const EnglishRuleParams& en, const char* text,
                int64_t textBytes, const int64_t* offsets, int64_t nDocs, RuleVerdict* verdicts,
                std::string* outText, std::vector<int64_t>* outOffsets) {
  using std::to_string;
  if (lang != RuleLang::Korean && lang != RuleLang::English)
    throw std::invalid_argument("applyRules: unknown language " + to_string(int(lang)));
  if (nDocs < 0) throw std::invalid_argument("applyRules: nDocs = " + to_string(nDocs) + " < 0");
  if (!offsets) throw std::invalid_argument("applyRules: offsets is null");
  if (!outText || !outOffsets) throw std::invalid_argument("applyRules: output pointers are null");
  if (nDocs > 0 && !verdicts) throw std::invalid_argument("applyRules: verdicts is null");
  if (textBytes < 0) throw std::invalid_argument("applyRules: textBytes = " + to_string(textBytes) + " < 0");
  if (offsets[0] < 0) throw std::invalid_argument("applyRules: offsets[0] = " + to_string(offsets[0]) + " < 0");
  for (int64_t i = 1; i <= nDocs; i++)
    if (offsets[i] < offsets[i - 1])
      throw std::invalid_argument("applyRules: offsets[" + to_string(i) + "] = " + to_string(offsets[i]) +
                                  " < offsets[" + to_string(i - 1) + "] = " + to_string(offsets[i - 1]));
  if (offsets[nDocs] > textBytes)
    throw std::invalid_argument("applyRules: offsets[" + to_string(nDocs) + "] = " + to_string(offsets[nDocs]) +
                                " > text length " + to_string(textBytes));
  if (!text && offsets[nDocs] > offsets[0]) throw std::invalid_argument("applyRules: text is null");

  // Fixed chunks (≤ 64 documents or ≥ 1 MiB), each with its own output string, concatenated in order
  // afterwards: the output is the same for any thread count and scheduling.
  std::vector<int64_t> chunkStart{0};
  for (int64_t i = 0; i < nDocs;) {
    const int64_t first = i;
    while (i < nDocs && i - first < 64 && offsets[i] - offsets[first] < (int64_t(1) << 20)) i++;
    chunkStart.push_back(i);
  }
  const int64_t nChunks = int64_t(chunkStart.size()) - 1;
  std::vector<std::string> chunkOut(size_t(std::max<int64_t>(nChunks, 0)));
  std::vector<int64_t> docLen(static_cast<size_t>(nDocs));
  std::exception_ptr error;

#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < nChunks; c++) {
    try {
      std::string& out = chunkOut[size_t(c)];
      out.reserve(size_t(offsets[chunkStart[c + 1]] - offsets[chunkStart[c]]));  // output ≤ input, barring U+FFFD
      for (int64_t i = chunkStart[c]; i < chunkStart[c + 1]; i++) {
        const std::string_view doc(text + offsets[i], size_t(offsets[i + 1] - offsets[i]));
        const size_t before = out.size();
        verdicts[i] = lang == RuleLang::Korean ? koreanDoc(doc, ko, &out, nullptr)
                                               : englishDoc(doc, en, &out, nullptr, false);
        docLen[size_t(i)] = int64_t(out.size() - before);
      }
    } catch (...) {
#pragma omp critical(ko_text_rules_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);

  size_t total = 0;
  for (const std::string& s : chunkOut) total += s.size();
  outText->clear();
  outText->reserve(total);
  for (std::string& s : chunkOut) {
    outText->append(s);
    std::string().swap(s);
  }
  outOffsets->assign(size_t(nDocs) + 1, 0);
  for (int64_t i = 0; i < nDocs; i++) (*outOffsets)[size_t(i) + 1] = (*outOffsets)[size_t(i)] + docLen[size_t(i)];
}

void applyRules(RuleLang lang, const KoreanRuleParams& ko, const EnglishRuleParams& en, const char* text,
                const int64_t* offsets, int64_t nDocs, RuleVerdict* verdicts, std::string* outText,
                std::vector<int64_t>* outOffsets) {
  if (!offsets) throw std::invalid_argument("applyRules: offsets is null");
  const int64_t end = nDocs > 0 ? offsets[nDocs] : offsets[0];
  applyRules(lang, ko, en, text, std::max<int64_t>(end, 0), offsets, nDocs, verdicts, outText, outOffsets);
}

}  // namespace ko
