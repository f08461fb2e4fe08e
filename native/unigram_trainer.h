// unigram_trainer.h — learns a Unigram LM vocabulary from counted words, as SentencePiece's
// unigram_model_trainer does (Kudo 2018), for `ko-train tokenizer extend`.
//
// A word is a UTF-8 string (hangul_words.h gives Hangul runs, some with a leading space); a piece is a
// substring of whole characters (code points; an invalid UTF-8 byte counts as a one-byte character).
// A space may only be a piece's first character, and only where the word starts with it.
//
// Training:
//   1. Seed: every character of the corpus (always kept, never pruned, counted in vocabSize) and the
//      seedSize substrings of 2..maxPieceChars characters with the highest count × length (counts weighted
//      by the word counts; substrings seen fewer than 2 times are skipped; ties by bytes). Initial
//      logProb = log(score / Σ score), a character's score being its count (as SentencePiece).
//   2. EM, emIterations times: the E-step runs forward-backward over each word's lattice of pieces and
//      adds count(word) × P(piece occurrence | word) to the piece's expected count; the M-step sets
//      logProb = log(expected / Σ expected) — the plain maximum-likelihood normalization, not
//      SentencePiece's digamma (variational Bayes) variant. Like SentencePiece, the M-step then drops
//      multi-character pieces expected fewer than 0.5 times, but never below vocabSize pieces; a kept
//      piece's count is floored at 1e-6 so no logProb is −∞.
//   3. If more than vocabSize pieces remain, prune to max(vocabSize, shrinkFactor × size) (at least one
//      fewer): as SentencePiece, each multi-character piece's loss is the drop in corpus likelihood
//      when its Viterbi occurrences are re-segmented by its own best segmentation without it,
//        loss = f/V × (log(f/V) − Σ_alt log((f_alt + f) / (V + f × (|alt| − 1)))),
//      f = its Viterbi count, V = Σ Viterbi counts. Pieces never on a Viterbi path, or whose own best
//      segmentation is not themselves, rank below all others (SentencePiece removes them outright; here
//      they only go first, so the result still reaches vocabSize). Repeat from 2.
//   The result has exactly vocabSize pieces, or fewer when the seed has fewer; more only when the
//   corpus has more distinct characters than vocabSize (all characters are always kept).
//
// Determinism: the result does not depend on the thread count. Expected counts are summed in 2^-20
// fixed point (int64, so the sum is exact and order-free; an occurrence less likely than 2^-21 adds
// nothing — far below the 0.5 that keeps a piece), likelihoods per word then in word order, Viterbi
// counts in integers, and every sort has a total order.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ko {

struct UnigramParams {
  int vocabSize = 8000;
  int maxPieceChars = 8;      // code points; a leading space counts as one
  int64_t seedSize = 200000;  // initial multi-character candidates: the most frequent substrings
  double shrinkFactor = 0.75; // each pruning round keeps this fraction (0 < f < 1)
  int emIterations = 2;       // EM sub-iterations per pruning round
};

struct UnigramPiece {
  std::string piece;
  double logProb;
};

struct UnigramProgress {
  int round;             // pruning round, from 0
  int iteration;         // EM iteration within the round, from 0
  int64_t pieces;        // pieces in the model during this iteration
  double logLikelihood;  // Σ count(word) × log P(word) under the model before the M-step
};

// Trains on words[i] occurring counts[i] times (counts >= 0; empty words and zero counts are ignored).
// onProgress (may be empty) is called after every EM iteration on the calling thread; it may throw to
// stop training. Returns the pieces sorted by logProb descending, ties by bytes ascending. Throws
// std::invalid_argument for mismatched lengths, negative counts or parameters out of range.
std::vector<UnigramPiece> trainUnigram(const std::vector<std::string>& words, const std::vector<int64_t>& counts,
                                       const UnigramParams& p,
                                       const std::function<void(const UnigramProgress&)>& onProgress);

// The most probable segmentation of word under model (ties: the earlier-found path). A character that
// is in no piece becomes a one-character piece of its own (an unknown).
std::vector<std::string> unigramViterbi(const std::vector<UnigramPiece>& model, const std::string& word);

// ---- the steps, exposed for tests ----

// Forward-backward on one word: (*expected)[k] = expected number of occurrences of model[k] in the
// word's segmentations (count 1). Returns log Σ_segmentations P, or −∞ when the word has none.
double unigramWordExpectedCounts(const std::vector<UnigramPiece>& model, const std::string& word,
                                 std::vector<double>* expected);

// One EM iteration over the corpus without dropping pieces: E-step then M-step as above (same order,
// same pieces). *logLikelihood (if not null) gets the E-step's corpus log-likelihood.
std::vector<UnigramPiece> unigramEmIteration(const std::vector<UnigramPiece>& model,
                                             const std::vector<std::string>& words,
                                             const std::vector<int64_t>& counts, double* logLikelihood);

}  // namespace ko
