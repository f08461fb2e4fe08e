// test_unigram.cpp — the Korean vocabulary learner of `tokenizer extend`: Hangul word counting
// (hangul_words.h) and the Unigram LM trainer (unigram_trainer.h). Forward-backward is checked against
// brute-force enumeration of all segmentations, one EM step against numbers worked out by hand.
#include <cmath>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "hangul_words.h"
#include "rng.h"
#include "unigram_trainer.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

struct Counted {
  std::vector<std::string> words;
  std::vector<int64_t> counts;
  int64_t of(const std::string& w) const {
    for (size_t i = 0; i < words.size(); i++)
      if (words[i] == w) return counts[i];
    return 0;
  }
};

Counted countDocs(const std::vector<std::string>& docs, const ko::HangulWordOptions& o = {}) {
  std::string text;
  std::vector<int64_t> offsets{0};
  for (const auto& d : docs) text += d, offsets.push_back(int64_t(text.size()));
  Counted c;
  ko::countHangulWords(text.data(), int64_t(text.size()), offsets.data(), int64_t(docs.size()), o, &c.words, &c.counts);
  return c;
}

double logProbOf(const std::vector<ko::UnigramPiece>& m, const std::string& piece) {
  for (const auto& p : m)
    if (p.piece == piece) return p.logProb;
  return NAN;
}

// Runs f with n OpenMP threads (a no-op without OpenMP), restoring the previous count.
template <typename F>
auto withThreads(int n, F f) {
#ifdef _OPENMP
  const int before = omp_get_max_threads();
  omp_set_num_threads(n);
  auto r = f();
  omp_set_num_threads(before);
  return r;
#else
  (void)n;
  return f();
#endif
}

// Every segmentation of word[from..] into model pieces (ASCII words: a byte is a character).
void enumerate(const std::vector<ko::UnigramPiece>& m, const std::string& w, size_t from, std::vector<int>* path,
               double logp, const std::function<void(const std::vector<int>&, double)>& visit) {
  if (from == w.size()) return visit(*path, logp);
  for (size_t k = 0; k < m.size(); k++)
    if (w.compare(from, m[k].piece.size(), m[k].piece) == 0) {
      path->push_back(int(k));
      enumerate(m, w, from + m[k].piece.size(), path, logp + m[k].logProb, visit);
      path->pop_back();
    }
}

}  // namespace

// ---- countHangulWords ----

KO_TEST(tokenizer, hangul_words_space_rule_and_scripts) {
  // "안녕" at the document start, after '(' and after Latin letters: bare. After one or two spaces: " 안녕".
  // Invalid bytes (0xFF, a truncated 3-byte sequence) end runs. Compatibility Jamo count as Hangul.
  const auto c = countDocs({"안녕 하세요  안녕\n(안녕)abc안녕 hello 세계\xff세계 ㅋㅋㅋ 가\xea\xb0나"});
  KO_CHECK(c.of("안녕") == 3);
  KO_CHECK(c.of(" 안녕") == 1);
  KO_CHECK(c.of(" 하세요") == 1);
  KO_CHECK(c.of(" 세계") == 1);
  KO_CHECK(c.of("세계") == 1);
  KO_CHECK(c.of(" ㅋㅋㅋ") == 1);
  KO_CHECK(c.of(" 가") == 1);
  KO_CHECK(c.of("나") == 1);
  KO_CHECK(c.words.size() == 8);
  // Sorted by count desc, then by bytes asc.
  KO_CHECK(c.words[0] == "안녕");
  for (size_t i = 1; i + 1 < c.words.size(); i++) KO_CHECK(c.counts[i] == 1 && c.words[i] < c.words[i + 1]);
}

KO_TEST(tokenizer, hangul_words_documents_independent) {
  // The space ending document 0 does not prefix document 1's first run; a document may start with " 가".
  const auto c = countDocs({"가 ", "나다", " 가", "", "English only"});
  KO_CHECK(c.of("가") == 1);
  KO_CHECK(c.of("나다") == 1);
  KO_CHECK(c.of(" 나다") == 0);
  KO_CHECK(c.of(" 가") == 1);
  KO_CHECK(c.words.size() == 3);
}

KO_TEST(tokenizer, hangul_words_branching_entropy_split) {
  // Four stems × four particles, each once. After a whole stem four particles follow equally often
  // (H = ln 4 = 1.39 nats) while inside a stem the next syllable is certain (H = 0): the entropy rises
  // at the stem end, so every word splits there. At j = 0 (empty context) H = ln 4 too, and H(1) = 0,
  // so nothing splits before the second syllable.
  std::string doc;
  for (const char* stem : {"사과", "바나나", "포도", "딸기"})
    for (const char* particle : {"는", "를", "가", "의"}) doc += std::string(" ") + stem + particle;
  const auto plain = countDocs({doc});
  KO_CHECK(plain.words.size() == 16 && plain.of(" 바나나는") == 1);

  ko::HangulWordOptions o;
  o.branchingEntropySplit = true;
  const auto split = countDocs({doc}, o);
  KO_CHECK(split.words.size() == 8);
  for (const char* w : {" 사과", " 바나나", " 포도", " 딸기", "는", "를", "가", "의"}) KO_CHECK_MSG(split.of(w) == 4, w);

  o.entropyThreshold = 1.5;  // above ln 4: no boundary is high enough
  KO_CHECK(countDocs({doc}, o).words.size() == 16);
  o.entropyThreshold = 1.0;
  // With one syllable of context, "나" is followed by 나 (4 times) or a particle (once each): H = ln 4,
  // a rise after "바" (H = 0), so 바나나는 splits as " 바나" + "나는"; the other stems as before.
  o.entropyContext = 1;
  const auto k1 = countDocs({doc}, o);
  KO_CHECK(k1.of(" 사과") == 4 && k1.of(" 바나") == 4 && k1.of("나는") == 1 && k1.of("는") == 3);
}

KO_TEST(tokenizer, hangul_words_bad_offsets_throw) {
  const std::string text = "가나다 라마";
  const int64_t offsets[] = {0, 6, 3};
  std::vector<std::string> w;
  std::vector<int64_t> c;
  bool threw = false;
  try {
    ko::countHangulWords(text.data(), int64_t(text.size()), offsets, 2, {}, &w, &c);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("offsets[2] = 3") != std::string::npos;
  }
  KO_CHECK(threw);
  const int64_t past[] = {0, 100};
  threw = false;
  try {
    ko::countHangulWords(text.data(), int64_t(text.size()), past, 1, {}, &w, &c);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("offsets[1] = 100") != std::string::npos;
  }
  KO_CHECK(threw);
}

// ---- the Unigram trainer ----

KO_TEST(tokenizer, unigram_em_step_by_hand) {
  // Model a, b, c: 0.2 each, ab: 0.4. Corpus "ab" ×10, "abc" ×5, "c" ×3.
  //   "ab":  [a b] 0.04, [ab] 0.4     → Z = 0.44,  P([ab]) = 10/11, P([a b]) = 1/11
  //   "abc": [a b c] 0.008, [ab c] 0.08 → Z = 0.088, same 10/11 and 1/11; c is certain
  //   "c":   [c] 0.2
  // Expected counts: a = b = 10/11 + 5/11 = 15/11; ab = 100/11 + 50/11 = 150/11; c = 5 + 3 = 8 = 88/11.
  // Σ = 268/11, so P(a) = P(b) = 15/268, P(ab) = 150/268, P(c) = 88/268.
  // Log-likelihood = 10 ln 0.44 + 5 ln 0.088 + 3 ln 0.2.
  const std::vector<ko::UnigramPiece> model{
      {"a", std::log(0.2)}, {"b", std::log(0.2)}, {"c", std::log(0.2)}, {"ab", std::log(0.4)}};
  double ll = 0;
  const auto next = ko::unigramEmIteration(model, {"ab", "abc", "c"}, {10, 5, 3}, &ll);
  KO_CHECK(next.size() == 4);
  KO_CHECK_NEAR(ll, 10 * std::log(0.44) + 5 * std::log(0.088) + 3 * std::log(0.2), 1e-9);
  KO_CHECK_NEAR(std::exp(logProbOf(next, "a")), 15.0 / 268, 1e-6);
  KO_CHECK_NEAR(std::exp(logProbOf(next, "b")), 15.0 / 268, 1e-6);
  KO_CHECK_NEAR(std::exp(logProbOf(next, "ab")), 150.0 / 268, 1e-6);
  KO_CHECK_NEAR(std::exp(logProbOf(next, "c")), 88.0 / 268, 1e-6);

  std::vector<double> e;
  KO_CHECK_NEAR(ko::unigramWordExpectedCounts(model, "abc", &e), std::log(0.088), 1e-12);
  KO_CHECK_NEAR(e[0], 1.0 / 11, 1e-12);   // a
  KO_CHECK_NEAR(e[2], 1.0, 1e-12);        // c
  KO_CHECK_NEAR(e[3], 10.0 / 11, 1e-12);  // ab
}

KO_TEST(tokenizer, unigram_forward_backward_matches_enumeration) {
  // Random models over {a, b, c} (all single characters plus random pieces of 2..4), random words:
  // the expected counts and log Z from forward-backward equal the sums over every segmentation.
  ko::Rng rng(7);
  for (int trial = 0; trial < 40; trial++) {
    std::vector<ko::UnigramPiece> model{{"a", 0}, {"b", 0}, {"c", 0}};
    std::map<std::string, bool> seen;
    for (int k = 0; k < 12; k++) {
      std::string s;
      const int len = 2 + int(rng.uniform() * 3);
      for (int i = 0; i < len; i++) s.push_back(char('a' + int(rng.uniform() * 3)));
      if (!seen[s]) seen[s] = true, model.push_back({s, 0});
    }
    for (auto& p : model) p.logProb = -0.2 - 3 * rng.uniform();
    std::string word;
    const int n = 1 + int(rng.uniform() * 9);
    for (int i = 0; i < n; i++) word.push_back(char('a' + int(rng.uniform() * 3)));

    double z = 0;
    std::vector<double> ref(model.size(), 0.0);
    std::vector<int> path;
    enumerate(model, word, 0, &path, 0, [&](const std::vector<int>& seg, double lp) {
      z += std::exp(lp);
      for (int id : seg) ref[size_t(id)] += std::exp(lp);
    });
    std::vector<double> got;
    const double logZ = ko::unigramWordExpectedCounts(model, word, &got);
    KO_CHECK_NEAR(logZ, std::log(z), 1e-10);
    for (size_t k = 0; k < model.size(); k++) KO_CHECK_NEAR(got[k], ref[k] / z, 1e-10);
  }
}

KO_TEST(tokenizer, unigram_learns_repeated_long_words) {
  // Two six-syllable words repeated: the 12 syllables, the space and the two whole words are the best 15
  // pieces (a whole word scores far above any split of it).
  ko::UnigramParams p;
  p.vocabSize = 15;
  int calls = 0;
  const auto m = ko::trainUnigram({"가나다라마바", " 사아자차카타"}, {100, 50}, p,
                                  [&](const ko::UnigramProgress& g) {
                                    if (calls++ == 0) KO_CHECK(g.round == 0 && g.iteration == 0 && g.pieces > 15);
                                    KO_CHECK(std::isfinite(g.logLikelihood) && g.logLikelihood < 0);
                                  });
  KO_CHECK(calls >= 2);
  KO_CHECK(m.size() == 15);
  KO_CHECK(m[0].piece == "가나다라마바");  // the more frequent word is the most probable piece
  KO_CHECK(!std::isnan(logProbOf(m, " 사아자차카타")));
  KO_CHECK(!std::isnan(logProbOf(m, " ")));  // every character is kept, the space too
  KO_CHECK(ko::unigramViterbi(m, "가나다라마바") == std::vector<std::string>{"가나다라마바"});
  KO_CHECK(ko::unigramViterbi(m, " 사아자차카타") == std::vector<std::string>{" 사아자차카타"});
  // Unknown characters come out alone.
  KO_CHECK((ko::unigramViterbi(m, "가나다라마바x") == std::vector<std::string>{"가나다라마바", "x"}));
  for (size_t i = 1; i < m.size(); i++) KO_CHECK(m[i - 1].logProb >= m[i].logProb);
}

KO_TEST(tokenizer, unigram_space_only_at_word_start) {
  ko::UnigramParams p;
  p.vocabSize = 1000;  // keep everything the seed holds
  const auto m = ko::trainUnigram({" 가나 다라", "가 나"}, {10, 10}, p, nullptr);
  for (const auto& x : m) {
    const size_t sp = x.piece.find(' ');
    KO_CHECK_MSG(sp == std::string::npos || (sp == 0 && x.piece.find(' ', 1) == std::string::npos), x.piece);
    KO_CHECK_MSG(x.piece.size() == 1 || x.piece[0] != ' ' || x.piece.compare(0, 4, " 가") == 0, x.piece);
  }
}

KO_TEST(tokenizer, unigram_same_result_any_thread_count) {
  // A synthetic corpus: words of 1..6 syllables from a small set, Zipf-like counts, some with spaces.
  ko::Rng rng(3);
  const std::vector<std::string> syl{"가", "나", "다", "라", "마", "바", "사", "아", "자", "는", "를", "의"};
  std::vector<std::string> words;
  std::vector<int64_t> counts;
  std::string text;
  for (int i = 0; i < 3000; i++) {
    std::string w = rng.uniform() < 0.5 ? " " : "";
    const int n = 1 + int(rng.uniform() * 6);
    for (int k = 0; k < n; k++) w += syl[size_t(rng.uniform() * rng.uniform() * double(syl.size()))];
    words.push_back(w);
    counts.push_back(1 + int64_t(1000.0 / (1 + i)));
    text += w + ".";
  }
  ko::UnigramParams p;
  p.vocabSize = 200;
  p.seedSize = 2000;
  auto train = [&] { return ko::trainUnigram(words, counts, p, nullptr); };
  const auto one = withThreads(1, train), two = withThreads(2, train), three = withThreads(3, train);
  KO_CHECK(one.size() == 200);
  bool same = one.size() == two.size() && one.size() == three.size();
  for (size_t i = 0; same && i < one.size(); i++)
    same = one[i].piece == two[i].piece && one[i].logProb == two[i].logProb && one[i].piece == three[i].piece &&
           one[i].logProb == three[i].logProb;
  KO_CHECK(same);

  std::vector<std::string> docs;
  for (size_t i = 0; i < text.size(); i += 997) docs.push_back(text.substr(i, 997));  // may cut a character
  ko::HangulWordOptions o;
  o.branchingEntropySplit = true;
  auto count = [&] { return countDocs(docs, o); };
  const auto c1 = withThreads(1, count), c2 = withThreads(2, count);
  KO_CHECK(c1.words == c2.words && c1.counts == c2.counts);
}

KO_TEST(tokenizer, unigram_bad_input_throws) {
  auto throwsWith = [](const std::function<void()>& f, const std::string& text) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what()).find(text) != std::string::npos;
    }
    return false;
  };
  ko::UnigramParams p;
  KO_CHECK(throwsWith([&] { ko::trainUnigram({"가"}, {1, 2}, p, nullptr); }, "1 words but 2 counts"));
  KO_CHECK(throwsWith([&] { ko::trainUnigram({"가"}, {-1}, p, nullptr); }, "counts[0] = -1"));
  p.vocabSize = 0;
  KO_CHECK(throwsWith([&] { ko::trainUnigram({"가"}, {1}, p, nullptr); }, "vocabSize"));
  p.vocabSize = 10;
  p.shrinkFactor = 1;
  KO_CHECK(throwsWith([&] { ko::trainUnigram({"가"}, {1}, p, nullptr); }, "shrinkFactor"));
  p.shrinkFactor = 0.75;
  KO_CHECK(ko::trainUnigram({"", "가"}, {5, 0}, p, nullptr).empty());  // nothing to learn from
}
