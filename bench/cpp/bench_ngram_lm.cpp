// bench_ngram_lm.cpp — `ko_bench --prep`: the KenLM-compatible n-gram LM (native/ngram_*.cpp). Trains a
// 5-gram on $KO_BENCH_DATA/libreoffice-help-ko.jsonl (the "text" fields, one sentence a line, tokens split
// on whitespace) or, without it, on a synthetic Zipf corpus; prints counting + estimation time, n-grams
// per order, ARPA size and write/read time, and document scoring throughput on one thread and on all.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_corpus.h"
#include "bench_registry.h"
#include "ngram_lm.h"
#include "rng.h"

namespace {

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<std::string> loadDocs(bool quick, std::string* source) {
  std::vector<std::string> docs;
  if (kobench::readJsonlTexts(kobench::benchDataPath("libreoffice-help-ko.jsonl"), &docs)) {
    {
      *source = "libreoffice-help-ko.jsonl";
      if (quick && docs.size() > 500) docs.resize(500);
      return docs;
    }
  }
  // Synthetic: Zipf-like words over a 30k vocabulary, with some repeated phrases so that higher orders
  // have counts above 1.
  *source = "synthetic Zipf corpus";
  ko::Rng r(42);
  const int nDocs = quick ? 300 : 3000;
  for (int d = 0; d < nDocs; d++) {
    std::string doc;
    const int lines = 1 + int(r.uniform() * 20);
    for (int l = 0; l < lines; l++) {
      const int len = 3 + int(r.uniform() * 15);
      for (int k = 0; k < len; k++) {
        const double u = r.uniform();
        const int w = r.uniform() < 0.3 ? (k * 7 + l) % 50 : int(30000 * u * u * u);
        if (k) doc += ' ';
        doc += "w" + std::to_string(w);
      }
      doc += '\n';
    }
    docs.push_back(doc);
  }
  return docs;
}

}  // namespace

KO_BENCH(prep, ngram_lm) {
  std::string source;
  const std::vector<std::string> docs = loadDocs(quick, &source);
  std::string text;
  std::vector<int64_t> offsets = {0};
  for (const auto& d : docs) {
    text += d;
    if (text.empty() || text.back() != '\n') text += '\n';
    offsets.push_back(int64_t(text.size()));
  }
  const int N = 5;
  std::printf("\n== n-gram LM (KenLM-compatible %d-gram, modified Kneser-Ney) on %s: %zu docs, %.1f MB ==\n", N,
              source.c_str(), docs.size(), text.size() / 1e6);

  auto t0 = Clock::now();
  ko::NgramCounter counter(N);
  for (size_t i = 0; i < text.size(); i += 1 << 20) counter.addText(text.data() + i, std::min<size_t>(1 << 20, text.size() - i));
  counter.finish();
  const double tCount = secondsSince(t0);
  t0 = Clock::now();
  const ko::NgramModel model = counter.estimate();
  const double tEst = secondsSince(t0);
  std::printf("tokens %lld, sentences %lld, vocab %u, distinct %d-grams counted %zu\n", (long long)counter.tokens(),
              (long long)counter.sentences(), counter.vocabSize(), N, counter.distinctNgrams());
  std::printf("count %.3f s (%.1f M tokens/s), estimate %.3f s, total %.3f s\n", tCount,
              counter.tokens() / tCount / 1e6, tEst, tCount + tEst);
  std::printf("%-8s %12s %10s %10s\n", "order", "n-grams", "fallback", "D1/D2/D3+");
  for (int n = 1; n <= N; n++) {
    const float* d = model.discounts(n);
    std::printf("%-8d %12llu %10s %4.2f/%4.2f/%4.2f\n", n, (unsigned long long)model.count(n),
                model.usedFallback(n) ? "yes" : "no", d[1], d[2], d[3]);
  }

  t0 = Clock::now();
  std::ostringstream os;
  model.writeArpa(os);
  const std::string arpa = os.str();
  const double tWrite = secondsSince(t0);
  t0 = Clock::now();
  ko::ArpaReader reader;
  for (size_t i = 0; i < arpa.size(); i += 1 << 16) reader.feed(arpa.data() + i, std::min<size_t>(1 << 16, arpa.size() - i));
  const ko::NgramModel loaded = reader.finish();
  const double tRead = secondsSince(t0);
  std::printf("ARPA %.2f MB: write %.3f s, read %.3f s; model memory %.1f MB\n", arpa.size() / 1e6, tWrite, tRead,
              loaded.memoryBytes() / 1e6);

  const int64_t nDocs = int64_t(docs.size());
  std::vector<double> sum(nDocs);
  std::vector<int64_t> tok(nDocs), oov(nDocs);
  auto scoreAll = [&]() {
    double best = 1e300;
    for (int rep = 0; rep < 3; rep++) {
      auto t = Clock::now();
      loaded.scoreDocuments(text.data(), offsets.data(), nDocs, sum.data(), tok.data(), oov.data());
      best = std::min(best, secondsSince(t));
    }
    return best;
  };
  const int threads = kobench::benchMaxThreads();
  kobench::setBenchThreads(1);
  const double t1 = scoreAll();
  kobench::setBenchThreads(threads);
  const double tAll = scoreAll();
  int64_t scored = 0;
  double total = 0;
  for (int64_t d = 0; d < nDocs; d++) {
    scored += tok[d];
    total += sum[d];
  }
  std::printf("scoring %lld tokens (in-domain ppl %.1f): 1 thread %.3f s = %.2f M tokens/s; %d threads %.3f s = %.2f M tokens/s\n",
              (long long)scored, ko::NgramModel::perplexity(total, scored), t1, scored / t1 / 1e6, threads, tAll,
              scored / tAll / 1e6);
  return true;
}
