// hangul_words.cpp — counting the corpus's Hangul words (see hangul_words.h for the definitions).
// Pass 1 counts words per thread in maps whose keys point into the text (no copies), merged at the end.
// The optional branching-entropy split is a second pass over the distinct words, weighted by their
// counts: that sees exactly the corpus's runs, far fewer of them than there are occurrences.
#include "hangul_words.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "utf8.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ko {

namespace {

using WordCounts = std::unordered_map<std::string_view, int64_t>;

// Adds every Hangul word of one document to *counts.
void countDocumentWords(const char* doc, size_t n, WordCounts* counts) {
  const auto* s = reinterpret_cast<const unsigned char*>(doc);
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    bool valid;
    int len = utf8Decode(s, n, i, &cp, &valid);
    if (!isHangulCodePoint(cp)) {
      i += size_t(len);
      continue;
    }
    const size_t runStart = i;
    while (i < n) {
      len = utf8Decode(s, n, i, &cp, &valid);
      if (!isHangulCodePoint(cp)) break;
      i += size_t(len);
    }
    const size_t wordStart = (runStart > 0 && s[runStart - 1] == ' ') ? runStart - 1 : runStart;
    (*counts)[std::string_view(doc + wordStart, i - wordStart)]++;
  }
}

// A run as code points, without the leading space.
std::vector<uint32_t> runCodePoints(const std::string& word) {
  std::vector<uint32_t> cps;
  const auto* s = reinterpret_cast<const unsigned char*>(word.data());
  size_t i = (!word.empty() && word[0] == ' ') ? 1 : 0;
  while (i < word.size()) {
    uint32_t cp;
    bool valid;
    i += size_t(utf8Decode(s, word.size(), i, &cp, &valid));
    cps.push_back(cp);
  }
  return cps;
}

std::string contextKey(const std::vector<uint32_t>& run, size_t j, int k) {
  std::string key;
  for (size_t p = (j > size_t(k) ? j - size_t(k) : 0); p < j; p++) utf8Append(key, run[p]);
  return key;
}

constexpr uint32_t kEndOfRun = 0;  // never a Hangul code point

// Splits every word at its branching-entropy boundaries; returns (part, count) pairs, merged.
std::unordered_map<std::string, int64_t> splitByBranchingEntropy(const std::vector<std::string>& words,
                                                                 const std::vector<int64_t>& counts,
                                                                 const HangulWordOptions& o) {
  std::vector<std::vector<uint32_t>> runs(words.size());
  for (size_t w = 0; w < words.size(); w++) runs[w] = runCodePoints(words[w]);

  // Context → next symbol → count, over every position 0..n of every run.
  std::unordered_map<std::string, std::unordered_map<uint32_t, int64_t>> next;
  for (size_t w = 0; w < runs.size(); w++) {
    const auto& r = runs[w];
    for (size_t j = 0; j <= r.size(); j++) next[contextKey(r, j, o.entropyContext)][j < r.size() ? r[j] : kEndOfRun] += counts[w];
  }
  std::unordered_map<std::string, double> entropy;
  entropy.reserve(next.size());
  for (const auto& [ctx, dist] : next) {
    // Sum in a fixed (sorted) order so the entropy does not depend on hash-map iteration order.
    std::vector<int64_t> c;
    c.reserve(dist.size());
    int64_t total = 0;
    for (const auto& kv : dist) c.push_back(kv.second), total += kv.second;
    std::sort(c.begin(), c.end());
    double h = 0;
    for (int64_t x : c) {
      const double p = double(x) / double(total);
      h -= p * std::log(p);
    }
    entropy[ctx] = h;
  }

  std::unordered_map<std::string, int64_t> parts;
  for (size_t w = 0; w < runs.size(); w++) {
    const auto& r = runs[w];
    std::string part = (words[w][0] == ' ') ? " " : "";
    double hPrev = entropy[contextKey(r, 0, o.entropyContext)];
    for (size_t i = 0; i < r.size(); i++) {
      if (i >= 1) {
        const double h = entropy[contextKey(r, i, o.entropyContext)];
        if (h > hPrev && h >= o.entropyThreshold) {
          parts[part] += counts[w];
          part.clear();
        }
        hPrev = h;
      }
      utf8Append(part, r[i]);
    }
    parts[part] += counts[w];
  }
  return parts;
}

}  // namespace

void countHangulWords(const char* text, int64_t textBytes, const int64_t* offsets, int64_t nDocs,
                      const HangulWordOptions& o, std::vector<std::string>* words, std::vector<int64_t>* counts) {
  if (nDocs < 0 || (nDocs > 0 && (!text || !offsets)) || !words || !counts)
    throw std::invalid_argument("countHangulWords: null pointer or negative document count");
  if (o.branchingEntropySplit && o.entropyContext < 1)
    throw std::invalid_argument("countHangulWords: entropyContext is " + std::to_string(o.entropyContext) +
                                ", must be >= 1");
  if (o.branchingEntropySplit && !std::isfinite(o.entropyThreshold))
    throw std::invalid_argument("countHangulWords: entropyThreshold must be a finite number");
  if (nDocs > 0 && offsets[0] < 0)
    throw std::invalid_argument("countHangulWords: offsets[0] = " + std::to_string(offsets[0]) + " is negative");
  for (int64_t i = 0; i < nDocs; i++)
    if (offsets[i] > offsets[i + 1] || offsets[i + 1] > textBytes)
      throw std::invalid_argument("countHangulWords: offsets[" + std::to_string(i + 1) + "] = " +
                                  std::to_string(offsets[i + 1]) + " is out of order or past the text (" +
                                  std::to_string(textBytes) + " bytes)");

  int nThreads = 1;
#ifdef _OPENMP
  nThreads = omp_get_max_threads();
#endif
  std::vector<WordCounts> local(size_t(std::max(1, nThreads)));
#pragma omp parallel num_threads(nThreads)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    WordCounts& mine = local[size_t(tid)];
#pragma omp for schedule(dynamic, 16)
    for (int64_t d = 0; d < nDocs; d++)
      countDocumentWords(text + offsets[d], size_t(offsets[d + 1] - offsets[d]), &mine);
  }
  // Integer sums: the merge order does not change the result.
  WordCounts merged = std::move(local[0]);
  for (size_t t = 1; t < local.size(); t++)
    for (const auto& kv : local[t]) merged[kv.first] += kv.second;

  std::vector<std::pair<std::string, int64_t>> out;
  if (o.branchingEntropySplit) {
    std::vector<std::string> w;
    std::vector<int64_t> c;
    w.reserve(merged.size());
    c.reserve(merged.size());
    for (const auto& kv : merged) w.emplace_back(kv.first), c.push_back(kv.second);
    for (auto& kv : splitByBranchingEntropy(w, c, o)) out.emplace_back(kv.first, kv.second);
  } else {
    out.reserve(merged.size());
    for (const auto& kv : merged) out.emplace_back(std::string(kv.first), kv.second);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  words->clear();
  counts->clear();
  words->reserve(out.size());
  counts->reserve(out.size());
  for (auto& kv : out) words->push_back(std::move(kv.first)), counts->push_back(kv.second);
}

}  // namespace ko
