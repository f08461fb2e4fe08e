// bench_text_rules.cpp — throughput of the document rule filters (native/text_rules.h), `ko_bench --prep`.
// Input: with KO_BENCH_DATA=DIR holding libreoffice-help-{ko,en}.jsonl, the "text" fields of those
// files (repeated up to the target size; the rules are per document, so repeats cost the same as fresh
// text); otherwise synthetic Korean and English documents made from fixed syllable and word lists.
// Prints single-thread MB/s (wall clock, and per CPU-second, which stays honest on a machine shared with
// other jobs) and all-threads MB/s, best of a few runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_corpus.h"
#include "bench_registry.h"
#include "rng.h"
#include "text_rules.h"
#include "utf8.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using Corpus = kobench::BenchDocs;

// The corpus's documents repeated until it holds targetBytes.
bool loadJsonl(const std::string& path, size_t targetBytes, Corpus* c) {
  std::vector<std::string> docs;
  if (!kobench::readJsonlTexts(path, &docs)) return false;
  while (c->text.size() < targetBytes)
    for (const std::string& d : docs) c->add(d);
  return true;
}

// Synthetic Korean: words of 1–4 syllables from a list of common ones, sentences of 4–16 words ending
// in 다. / 요. / 까? / 니다., some headings and a little English, paragraphs of 1–8 lines.
void synthKorean(size_t targetBytes, Corpus* c) {
  static const char* const syl[] = {"가", "나", "다", "라", "마", "바", "사", "아", "자", "하", "고", "는", "을", "를",
                                    "이", "에", "의", "로", "서", "한", "국", "어", "데", "이터", "학", "습", "모",
                                    "델", "문", "장", "처", "리", "기", "계", "번", "역", "연", "구", "결", "과",
                                    "정", "보", "시", "스", "템", "개", "발", "사용", "방", "법", "수", "있", "없",
                                    "것", "들", "우", "리", "회", "사", "일", "년", "월", "도", "지", "역", "생"};
  static const char* const endings[] = {"다.", "요.", "까?", "니다.", "다!", "죠."};
  static const char* const latin[] = {"AI", "GPU", "data", "model", "LLM", "API"};
  ko::Rng r(11);
  const size_t nSyl = sizeof(syl) / sizeof(syl[0]);
  std::string doc;
  while (c->text.size() < targetBytes) {
    doc.clear();
    const int lines = 1 + int(r.next() % 8);
    for (int l = 0; l < lines; l++) {
      const bool heading = r.next() % 6 == 0;
      const int words = heading ? 2 + int(r.next() % 3) : 4 + int(r.next() % 13);
      for (int w = 0; w < words; w++) {
        if (w) doc += ' ';
        if (r.next() % 25 == 0) {
          doc += latin[r.next() % 6];
          continue;
        }
        const int n = 1 + int(r.next() % 4);
        for (int k = 0; k < n; k++) doc += syl[r.next() % nSyl];
      }
      if (!heading) doc += endings[r.next() % 6];
      doc += r.next() % 4 ? "\n" : "\n\n";
    }
    c->add(doc);
  }
}

// Synthetic English: sentences from a list of common words (stop words included), 1–10 lines.
void synthEnglish(size_t targetBytes, Corpus* c) {
  static const char* const words[] = {
      "the", "of", "and", "to", "in", "is", "that", "with", "for", "as", "was", "on", "are", "be", "by",
      "this", "have", "from", "or", "an", "which", "model", "data", "training", "language", "text", "Korean",
      "English", "corpus", "token", "filter", "quality", "document", "sentence", "word", "line", "paragraph",
      "repetition", "fraction", "character", "result", "method", "paper", "experiment", "evaluation", "score",
      "benchmark", "performance", "efficient", "large", "small", "new", "first", "however", "because",
      "different", "important", "example", "number", "system", "process", "information", "research", "study",
      "approach", "analysis", "value", "table", "figure", "section", "shows", "using", "based", "between",
      "during", "without", "within", "through", "under", "after", "before", "each", "other", "such", "these"};
  const size_t nWords = sizeof(words) / sizeof(words[0]);
  ko::Rng r(12);
  std::string doc;
  while (c->text.size() < targetBytes) {
    doc.clear();
    const int lines = 1 + int(r.next() % 10);
    for (int l = 0; l < lines; l++) {
      const int sentences = 1 + int(r.next() % 5);
      for (int s = 0; s < sentences; s++) {
        const int n = 5 + int(r.next() % 20);
        for (int w = 0; w < n; w++) {
          if (w || s) doc += ' ';
          doc += words[r.next() % nWords];
        }
        doc += r.next() % 10 ? "." : "?";
      }
      doc += r.next() % 3 ? "\n" : "\n\n";
    }
    c->add(doc);
  }
}

struct Timing {
  double wall, cpu;  // seconds; cpu = process CPU time, which a busy shared machine does not inflate
};

Timing runOnce(ko::RuleLang lang, const Corpus& c, int64_t* kept) {
  std::vector<ko::RuleVerdict> v(static_cast<size_t>(c.size()));
  std::string out;
  std::vector<int64_t> outOff;
  const std::clock_t c0 = std::clock();
  const auto t0 = std::chrono::steady_clock::now();
  ko::applyRules(lang, ko::KoreanRuleParams(), ko::EnglishRuleParams(), c.text.data(), int64_t(c.text.size()),
                 c.offsets.data(), c.size(), v.data(), &out, &outOff);
  const Timing t{std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 double(std::clock() - c0) / CLOCKS_PER_SEC};
  *kept = 0;
  for (const auto& x : v) *kept += x.reason == ko::kKept;
  return t;
}

}  // namespace

KO_BENCH(prep, rules) {
  const size_t target = size_t(quick ? 8 : 48) << 20;
  const int reps = quick ? 1 : 3;
  const int maxThreads = kobench::benchMaxThreads();
  const char* dir = std::getenv("KO_BENCH_DATA");
  Corpus corpora[2];
  const char* source = "synthetic";
  if (loadJsonl(kobench::benchDataPath("libreoffice-help-ko.jsonl"), target, &corpora[0]) &&
      loadJsonl(kobench::benchDataPath("libreoffice-help-en.jsonl"), target, &corpora[1])) {
    source = "libreoffice-help (KO_BENCH_DATA)";
  } else {
    if (dir) std::printf("KO_BENCH_DATA=%s: corpus files missing or empty, using synthetic text\n", dir);
    corpora[0] = Corpus(), corpora[1] = Corpus();
    synthKorean(target, &corpora[0]);
    synthEnglish(target, &corpora[1]);
  }
  std::printf("\n== prep: rule filters (text_rules; Korean Thunder-LLM rules, English Gopher rules) ==\n");
  std::printf("input: %s, best of %d\n", source, reps);
  std::printf("%-8s %9s %8s %7s | %14s %14s | %14s %8s\n", "lang", "input MB", "docs", "kept", "1 thread MB/s",
              "MB per CPU-s", "all thr. MB/s", "threads");
  const ko::RuleLang langs[2] = {ko::RuleLang::Korean, ko::RuleLang::English};
  for (int l = 0; l < 2; l++) {
    const Corpus& c = corpora[l];
    const double mb = double(c.text.size()) / 1e6;
    int64_t kept = 0;
    double wall1 = 1e300, cpu1 = 1e300, walln = 1e300;
    kobench::setBenchThreads(1);
    runOnce(langs[l], c, &kept);  // warm the scratch buffers
    for (int r = 0; r < reps; r++) {
      const Timing t = runOnce(langs[l], c, &kept);
      wall1 = std::min(wall1, t.wall), cpu1 = std::min(cpu1, t.cpu);
    }
    kobench::setBenchThreads(maxThreads);
    for (int r = 0; r < reps; r++) walln = std::min(walln, runOnce(langs[l], c, &kept).wall);
    std::printf("%-8s %9.1f %8lld %6.1f%% | %14.1f %14.1f | %14.1f %8d\n", l == 0 ? "korean" : "english", mb,
                (long long)c.size(), 100.0 * double(kept) / double(std::max<int64_t>(c.size(), 1)), mb / wall1,
                mb / std::max(cpu1, 1e-9), mb / walln, maxThreads);
  }
  return true;
}
