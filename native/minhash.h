// minhash.h — MinHash signatures for near-duplicate detection, and the exact-duplicate hash.
// The LSH banding and clustering that consume the signatures are in lsh_dedup.h; the CUDA twin of
// minhashSignatures is in kernels/minhash.cu (kernels/minhash_kernels.h), bit-identical to this one.
//
// Pipeline per document:  UTF-8 text ─normalize─▶ code points ─shingle─▶ 32-bit shingle hashes
//                         ─numPerm permutations, min over shingles─▶ signature (numPerm x uint32)
//                         normalized text (UTF-8) ─XXH64─▶ exact hash
//
// 1. Normalization (normalizeForDedup), in the spirit of datatrove's simplify_text. Decode UTF-8
//    (each invalid byte becomes U+FFFD, which is kept), then per code point:
//      * lowercase: ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic; fullwidth ASCII (U+FF01..FF5E)
//        is first mapped to ASCII (so "ＡＢＣ" == "abc");
//      * separators — become one space: Unicode white space, control characters, ASCII punctuation
//        and symbols, Latin-1 punctuation/symbols (U+00A1..00BF except ª µ º ² ³ ¹ ¼ ½ ¾, and × ÷),
//        General Punctuation (U+2010..205E), currency, arrows/math/technical/box/shapes/dingbats
//        (U+2190..2BFF), Supplemental Punctuation, CJK Symbols and Punctuation (「」『』、。〈〉…),
//        CJK compatibility and small forms, halfwidth CJK punctuation, fullwidth symbols, and the
//        emoji/pictograph planes U+1F000..1FAFF. Like datatrove, punctuation separates ("a,b" ==
//        "a b"), so spacing around punctuation does not matter;
//      * removed without separating: invisible format characters (soft hyphen, zero-width space and
//        joiners, bidi marks, word joiner, BOM, variation selectors, tag characters), so "hy\u00ADphen"
//        stays one word and "🔎︎" does not leave a stray selector;
//      * everything else is kept as is: Hangul (syllables, jamo, compatibility jamo), CJK ideographs,
//        other letters, combining marks, digits (unlike datatrove's norm_numbers, digits are not
//        folded: two tables that differ only in their numbers are different documents).
//    Separator runs collapse to one space; leading and trailing separators are dropped.
//
// 2. Exact hash: exactDedupHash(normalized) = XXH64(normalized UTF-8 bytes, seed 0), the standard
//    xxHash64 (bit-compatible with libxxhash; tested against its vectors). Texts that differ only by
//    case, punctuation or white space get the same exact hash.
//
// 3. Shingles. Character mode (default): the n-grams of consecutive code points of the normalized
//    text (spaces included), ngram = n. Word mode (wordNgrams, CPU only): n-grams of the
//    space-separated words, each word first hashed to 64 bits (FNV-1a over its code points, then
//    mix64). A document with fewer than n code points (words) has one shingle: all of it. An empty
//    normalized text has no shingle: its signature is all 0xFFFFFFFF (isEmptySignature) and
//    lsh_dedup never clusters it.
//    Shingle hash of tokens t_0..t_{m-1} (m = n, or fewer for a short document):
//        x = high 32 bits of mix64( sum_k t_k * K_k  mod 2^64 ),   K_k = minhashShingleKey(seed, k)
//    with independent random odd 64-bit keys K_k (not powers of one base, which the Thue-Morse
//    strings defeat) and mix64 = the splitmix64 finalizer. Distinct shingles collide before the mix
//    with probability ~2^-64 and after it at 32 bits (~2^-32 per pair): harmless for estimation.
//
// 4. Permutations. h_i(x) = (a_i * x + b_i) mod 2^32, a_i odd, a_i and b_i from splitmix64 of
//    (seed, i) (minhashPermutation); sig[i] = min over the document's shingles of h_i(x). Each h_i is
//    a bijection of uint32, and the x are already well-mixed hashes, so every sig[i] is the hash of a
//    uniformly random shingle of the set; the tests check that the fraction of equal positions
//    estimates the Jaccard similarity without bias and with the binomial variance J(1-J)/k of
//    independent permutations. Cost: one 32-bit multiply-add and one min per (shingle, permutation),
//    8 lanes per AVX2 instruction (the hot loop is compiled for AVX2 and a baseline x86-64 clone and
//    picked at load time, so prebuilt binaries built without -march=native still use AVX2); on the
//    GPU one IMAD + one IMNMX.
//
// Why these defaults (numPerm 128, 5-character shingles, and in lsh_dedup.h 16 bands x 8 rows,
// threshold 0.8). NeMo Curator's fuzzy dedup uses 24-character shingles, 260 hashes = 20 bands x 13
// rows and Jaccard 0.8; datatrove's MinhashConfig word 5-grams, 14 buckets x 8 hashes (112); BigCode
// / text-dedup 256 permutations at 0.7-0.85. Korean is written in syllable blocks with ~3 syllables
// per word and rich agglutination, so word n-grams are brittle (particles change the word) and 5
// syllables (~15 UTF-8 bytes, about two words) play the role of NeMo's ~24 English characters. (For
// English-only corpora a longer ngram, e.g. 12-24, lowers the background similarity between
// unrelated pages.) 128 permutations cost half of NeMo's 260 and give a standard error
// sqrt(J(1-J)/128) = 0.035 at J = 0.8, enough to confirm candidates against the 0.8 threshold.
// 16 bands x 8 rows use all 128 values; P(candidate | J) = 1 - (1 - J^8)^16 is 0.061 at J = 0.5,
// 0.613 at 0.7, 0.947 at 0.8, 0.99988 at 0.9: the S-curve's midpoint (1/16)^(1/8) = 0.71 sits below
// the threshold so recall at and above 0.8 is high, and the full 128-value estimate then rejects the
// false candidates (at J = 0.5 an estimate >= 0.8 is ~7 standard errors away).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#if defined(__CUDACC__)
#define KO_MH_HD __host__ __device__ __forceinline__
#else
#define KO_MH_HD inline
#endif

namespace ko {

struct MinhashParams {
  int numPerm = 128;        // signature length, 1..1024
  int ngram = 5;            // shingle length in code points (or words), 1..32
  bool wordNgrams = false;  // word n-grams instead of character n-grams (CPU only)
  uint64_t seed = 1;        // selects the shingle keys and the permutations
};

// Throws std::invalid_argument naming the bad field.
void validateMinhashParams(const MinhashParams& p);

// ---- normalization and exact hash --------------------------------------------------------------

std::string normalizeForDedup(std::string_view text);
// The same normalization as code points, appended to *out (normalizeForDedup = their UTF-8).
void normalizeCodepoints(std::string_view text, std::vector<uint32_t>* out);
// XXH64(normalized, seed 0).
uint64_t exactDedupHash(std::string_view normalized);

// Batch normalization for the GPU path: doc d is text[offsets[d] .. offsets[d+1]). On return
// *codepoints holds the normalized code points of all documents back to back and *cpOffsets
// (nDocs + 1 entries, starting at 0) delimits them; exactHashes[d] (if non-null) = exactDedupHash of
// doc d's normalized text. OpenMP-parallel over contiguous document ranges; deterministic.
void dedupCodepoints(const char* text, const int64_t* offsets, int64_t nDocs, std::vector<uint32_t>* codepoints,
                     std::vector<int64_t>* cpOffsets, uint64_t* exactHashes);

// ---- signatures ---------------------------------------------------------------------------------

// sigs[d * numPerm + i] (doc-major) = signature of doc d = text[offsets[d] .. offsets[d+1]);
// exactHashes[d] = exactDedupHash(normalizeForDedup(doc d)) when exactHashes is non-null.
// Normalizes in streaming chunks (memory per thread is O(numPerm + 4096), whatever the document
// length). OpenMP-parallel over documents (dynamic schedule); results do not depend on the thread
// count. Throws std::invalid_argument for bad params, nDocs < 0, null pointers, offsets[0] < 0 or
// decreasing offsets.
void minhashSignatures(const char* text, const int64_t* offsets, int64_t nDocs, const MinhashParams& params,
                       uint32_t* sigs, uint64_t* exactHashes);

// True when every value is 0xFFFFFFFF: the signature of an empty normalized text.
bool isEmptySignature(const uint32_t* sig, int numPerm);

// Exact Jaccard similarity |A ∩ B| / |A ∪ B| of the shingle sets (the shingles themselves, not their
// hashes) of two texts, normalized and shingled as minhashSignatures does. 0 when both are empty.
// Quadratic-free but allocation-heavy: for tests.
double exactJaccard(std::string_view a, std::string_view b, const MinhashParams& params);

// ---- the hash functions, shared with the CUDA kernel (host and device) ----------------------------

// splitmix64's finalizer (Stafford's mix 13): a bijection of uint64 with full avalanche.
KO_MH_HD uint64_t minhashMix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Key K_k of the shingle hash (k < ngram <= 32; lsh_dedup reuses it for band keys): odd, random,
// independent per k and per seed.
KO_MH_HD uint64_t minhashShingleKey(uint64_t seed, int k) {
  return minhashMix64(minhashMix64(seed ^ 0x53484E474C45ull) + 0x9E3779B97F4A7C15ull * uint64_t(k + 1)) | 1ull;
}
// Permutation i: h_i(x) = a * x + b (mod 2^32), a odd.
KO_MH_HD void minhashPermutation(uint64_t seed, int i, uint32_t* a, uint32_t* b) {
  const uint64_t r = minhashMix64(minhashMix64(seed) + 0x9E3779B97F4A7C15ull * uint64_t(i + 1));
  *a = uint32_t(r) | 1u;
  *b = uint32_t(r >> 32);
}
// The 32-bit hash of a shingle from its pre-hash sum_k t_k * K_k (mod 2^64).
KO_MH_HD uint32_t minhashShingleFinish(uint64_t preHash) { return uint32_t(minhashMix64(preHash) >> 32); }

}  // namespace ko
