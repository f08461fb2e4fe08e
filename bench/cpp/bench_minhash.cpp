// bench_minhash.cpp — `ko_bench --prep [--quick]`, section minhash: MinHash signatures (128 permutations,
// 5-character shingles) on the CPU with one thread and with all threads, Korean-like and English-like text,
// counted as input UTF-8 MB/s; the LSH step (findNearDuplicates) per 1M documents on synthetic signatures;
// and, when built with CUDA and a GPU is present, the kernel alone (code points already on the device,
// counted as input UTF-8 GB/s) and end to end (host normalization + transfers + kernel).
// Input: $KO_BENCH_DATA/libreoffice-help-{ko,en}.jsonl when KO_BENCH_DATA names a directory that has them
// (the "text" fields, read with the small JSON string scanner below), else ~30 MB of synthetic text each.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench_registry.h"
#include "lsh_dedup.h"
#include "minhash.h"
#include "rng.h"
#include "utf8.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef KO_CUDA
#include <cuda_runtime.h>

#include "cuda_api.h"
#include "minhash_kernels.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;

struct Docs {
  std::string name;
  std::string text;
  std::vector<int64_t> offsets{0};
  void add(const std::string& d) {
    text += d;
    offsets.push_back(int64_t(text.size()));
  }
  int64_t size() const { return int64_t(offsets.size()) - 1; }
};

// ---- a minimal JSON Lines reader: the "text" string of each top-level object ----------------------

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
bool read4Hex(const char*& p, const char* end, uint32_t* v) {
  if (end - p < 4) return false;
  *v = 0;
  for (int i = 0; i < 4; i++) {
    const int h = hexValue(p[i]);
    if (h < 0) return false;
    *v = *v * 16 + uint32_t(h);
  }
  p += 4;
  return true;
}
// p at the opening quote; on success p is past the closing quote and *out (if non-null) holds the value.
bool parseString(const char*& p, const char* end, std::string* out) {
  if (p >= end || *p != '"') return false;
  for (p++; p < end;) {
    const char c = *p++;
    if (c == '"') return true;
    if (c != '\\') {
      if (out) out->push_back(c);
      continue;
    }
    if (p >= end) return false;
    const char e = *p++;
    char lit = 0;
    switch (e) {
      case 'n': lit = '\n'; break;
      case 't': lit = '\t'; break;
      case 'r': lit = '\r'; break;
      case 'b': lit = '\b'; break;
      case 'f': lit = '\f'; break;
      case '"': case '\\': case '/': lit = e; break;
      case 'u': {
        uint32_t cp;
        if (!read4Hex(p, end, &cp)) return false;
        if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
          const char* q = p + 2;
          uint32_t lo;
          if (read4Hex(q, end, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p = q;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = ko::kReplacementChar;  // lone surrogate
        if (out) ko::utf8Append(*out, cp);
        continue;
      }
      default: return false;
    }
    if (out) out->push_back(lit);
  }
  return false;
}
// Skips a non-string JSON value (number, literal, nested array/object) up to the ',' or '}' that ends it.
void skipValue(const char*& p, const char* end) {
  int depth = 0;
  while (p < end) {
    if (*p == '"') {
      if (!parseString(p, end, nullptr)) return;
      continue;
    }
    if (*p == '[' || *p == '{') depth++;
    if (*p == ']' || *p == '}') {
      if (depth == 0) return;
      depth--;
    }
    if (*p == ',' && depth == 0) return;
    p++;
  }
}
void skipSpace(const char*& p, const char* end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
}
bool textField(const std::string& line, std::string* text) {
  const char* p = line.data();
  const char* end = p + line.size();
  skipSpace(p, end);
  if (p >= end || *p++ != '{') return false;
  while (p < end) {
    skipSpace(p, end);
    std::string key;
    if (!parseString(p, end, &key)) return false;
    skipSpace(p, end);
    if (p >= end || *p++ != ':') return false;
    skipSpace(p, end);
    if (p < end && *p == '"') {
      std::string value;
      if (!parseString(p, end, &value)) return false;
      if (key == "text") {
        *text = std::move(value);
        return true;
      }
    } else {
      skipValue(p, end);
    }
    skipSpace(p, end);
    if (p < end && *p == ',') p++;
  }
  return false;
}
bool readJsonl(const std::string& path, Docs& docs) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line, text;
  while (std::getline(in, line))
    if (textField(line, &text)) docs.add(text);
  return docs.size() > 0;
}

// ---- synthetic text ------------------------------------------------------------------------------

// Documents of 200-6000 code points from a 5000-word vocabulary with a skewed (Zipf-like) frequency.
Docs synthesize(bool korean, size_t bytes, uint64_t seed) {
  ko::Rng r(seed);
  std::vector<std::string> vocab(5000);
  for (auto& w : vocab) {
    const int len = korean ? 1 + int(r.next() % 4) : 2 + int(r.next() % 9);
    for (int i = 0; i < len; i++) {
      if (korean)
        ko::utf8Append(w, 0xAC00 + uint32_t(r.next() % 2350));  // the common syllables sit low-ish
      else
        w.push_back(char('a' + r.next() % 26));
    }
  }
  Docs d;
  d.name = korean ? "synthetic ko" : "synthetic en";
  while (d.text.size() < bytes) {
    const size_t target = 200 + r.next() % 5800;
    std::string doc;
    size_t cps = 0;
    while (cps < target) {
      const double u = r.uniform();
      const std::string& w = vocab[size_t(u * u * u * double(vocab.size()))];
      doc += w;
      cps += korean ? w.size() / 3 : w.size();
      const uint64_t p = r.next() % 16;
      doc += p == 0 ? ". " : p == 1 ? ", " : p == 2 ? "\n" : " ";
      cps += 1;
    }
    d.add(doc);
  }
  return d;
}

void setThreads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}
int maxThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

template <class F>
double bestSeconds(F fn, int reps) {
  double best = 1e300;
  for (int i = 0; i < reps; i++) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// Random signatures of nDocs documents: 10% are copies of an earlier document with ~8% of the values
// changed (estimated J ~ 0.92), 2% exact copies; the rest unrelated.
std::vector<uint32_t> syntheticSignatures(int64_t nDocs, int numPerm, uint64_t seed) {
  std::vector<uint32_t> s(size_t(nDocs) * size_t(numPerm));
  ko::Rng r(seed);
  for (int64_t d = 0; d < nDocs; d++) {
    uint32_t* sig = s.data() + size_t(d) * size_t(numPerm);
    const uint64_t u = r.next() % 100;
    if (d > 0 && u < 12) {
      const uint32_t* src = s.data() + size_t(r.next() % uint64_t(d)) * size_t(numPerm);
      for (int i = 0; i < numPerm; i++) sig[i] = (u < 10 && r.next() % 100 < 8) ? uint32_t(r.next()) : src[i];
    } else {
      for (int i = 0; i < numPerm; i++) sig[i] = uint32_t(r.next());
    }
  }
  return s;
}

}  // namespace

KO_BENCH(prep, minhash) {
  const ko::MinhashParams mp;  // 128 permutations, 5-character shingles
  std::vector<Docs> corpora;
  const char* dir = std::getenv("KO_BENCH_DATA");
  for (const char* lang : {"ko", "en"}) {
    Docs d;
    if (dir && readJsonl(std::string(dir) + "/libreoffice-help-" + lang + ".jsonl", d)) {
      d.name = std::string("libreoffice-help-") + lang;
    } else {
      d = synthesize(lang[0] == 'k', quick ? (8u << 20) : (30u << 20), lang[0] == 'k' ? 1 : 2);
    }
    corpora.push_back(std::move(d));
  }
  const int threads = maxThreads();
  std::printf("\n== prep: MinHash signatures (CPU; %d permutations, %d-character shingles) ==\n", mp.numPerm, mp.ngram);
  std::printf("%-22s %8s %9s %10s %12s %13s %14s\n", "corpus", "docs", "MB", "Mshingles", "1 thread MB/s",
              "normalize MB/s", std::string(std::to_string(threads) + " threads MB/s").c_str());
  std::vector<std::vector<uint32_t>> cpuSigs;
  for (const Docs& d : corpora) {
    const double mb = double(d.text.size()) / 1e6;
    std::vector<uint32_t> sigs(size_t(d.size()) * size_t(mp.numPerm));
    std::vector<uint64_t> exact(size_t(d.size()));
    std::vector<uint32_t> cps;
    std::vector<int64_t> cpOff;
    const int reps = quick ? 1 : 3;
    setThreads(1);
    auto sign = [&] {
      ko::minhashSignatures(d.text.data(), d.offsets.data(), d.size(), mp, sigs.data(), exact.data());
    };
    const double t1 = bestSeconds(sign, reps);
    const double tn = bestSeconds(
        [&] { ko::dedupCodepoints(d.text.data(), d.offsets.data(), d.size(), &cps, &cpOff, nullptr); }, reps);
    setThreads(threads);
    const double tp = bestSeconds(sign, reps);
    int64_t shingles = 0;
    for (int64_t i = 0; i < d.size(); i++) {
      const int64_t len = cpOff[size_t(i) + 1] - cpOff[size_t(i)];
      shingles += len == 0 ? 0 : std::max<int64_t>(1, len - mp.ngram + 1);
    }
    std::printf("%-22s %8lld %9.1f %10.1f %12.1f %13.1f %14.1f\n", d.name.c_str(), (long long)d.size(), mb,
                double(shingles) / 1e6, mb / t1, mb / tn, mb / tp);
    cpuSigs.push_back(std::move(sigs));
  }

  // ---- LSH step ----
  const int64_t nDocs = quick ? 200000 : 1000000;
  const auto sigs = syntheticSignatures(nDocs, mp.numPerm, 7);
  const ko::LshParams lp;
  ko::DedupResult res;
  const double tl = bestSeconds([&] { res = ko::findNearDuplicates(sigs.data(), nDocs, mp.numPerm, lp, nullptr); }, 1);
  std::printf("\n== prep: LSH (%d bands x %d rows, threshold %.2f; synthetic signatures, %d threads) ==\n", lp.bands,
              lp.rows, lp.threshold, threads);
  std::printf("%-10s %10s %14s %14s %10s %16s\n", "docs", "seconds", "candidates", "confirmed", "clusters",
              "s per 1M docs");
  std::printf("%-10lld %10.3f %14lld %14lld %10zu %16.3f\n", (long long)nDocs, tl, (long long)res.candidatePairs,
              (long long)res.confirmedPairs, res.clusters.size(), tl * 1e6 / double(nDocs));

  // ---- CUDA ----
#ifdef KO_CUDA
  std::string err;
  const auto devices = ko::cuda::listDevices(&err);
  std::printf("\n== prep: MinHash signatures (CUDA) ==\n");
  if (devices.empty()) {
    std::printf("  no GPU: %s\n", err.c_str());
    return true;
  }
  std::printf("  device: %s (%d SMs)\n", devices[0].name.c_str(), devices[0].multiprocessors);
  std::printf("%-22s %10s %14s %16s %12s %s\n", "corpus", "MB", "kernel GB/s", "Gshingle-perm/s", "e2e GB/s",
              "== CPU");
  for (size_t c = 0; c < corpora.size(); c++) {
    const Docs& d = corpora[c];
    // The kernel alone on the corpus repeated to >= 256 MB (>= 64 MB quick), code points on the device.
    std::vector<uint32_t> cps, rep;
    std::vector<int64_t> cpOff, repOff{0};
    ko::dedupCodepoints(d.text.data(), d.offsets.data(), d.size(), &cps, &cpOff, nullptr);
    const size_t want = quick ? (64u << 20) : (256u << 20);
    const size_t copies = std::max<size_t>(1, want / std::max<size_t>(1, d.text.size()));
    for (size_t k = 0; k < copies; k++) {
      rep.insert(rep.end(), cps.begin(), cps.end());
      for (int64_t i = 0; i < d.size(); i++) repOff.push_back(repOff.back() + cpOff[size_t(i) + 1] - cpOff[size_t(i)]);
    }
    const int64_t nRep = int64_t(repOff.size()) - 1;
    int64_t shingles = 0;
    for (int64_t i = 0; i < nRep; i++) {
      const int64_t len = repOff[size_t(i) + 1] - repOff[size_t(i)];
      shingles += len == 0 ? 0 : std::max<int64_t>(1, len - mp.ngram + 1);
    }
    uint32_t *dCps = nullptr, *dSigs = nullptr;
    int64_t* dOff = nullptr;
    bool ok = cudaMalloc(&dCps, rep.size() * 4 + 4) == cudaSuccess &&
              cudaMalloc(&dOff, repOff.size() * 8) == cudaSuccess &&
              cudaMalloc(&dSigs, size_t(nRep) * size_t(mp.numPerm) * 4) == cudaSuccess &&
              cudaMemcpy(dCps, rep.data(), rep.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
              cudaMemcpy(dOff, repOff.data(), repOff.size() * 8, cudaMemcpyHostToDevice) == cudaSuccess;
    double kernelMs = 0;
    if (ok) {
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      kernelMs = 1e300;
      for (int i = 0; i < (quick ? 3 : 6) && ok; i++) {
        cudaEventRecord(e0, nullptr);
        err = ko::cuda::minhashSignaturesCuda(dCps, dOff, nRep, int64_t(rep.size()), mp.ngram, mp.numPerm, mp.seed,
                                              dSigs, nullptr);
        cudaEventRecord(e1, nullptr);
        ok = err.empty() && cudaEventSynchronize(e1) == cudaSuccess;
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i > 0) kernelMs = std::min(kernelMs, double(ms));  // the first run is warm-up
      }
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
    }
    cudaFree(dCps);
    cudaFree(dOff);
    cudaFree(dSigs);
    if (!ok) {
      std::printf("  %s: CUDA failed: %s\n", d.name.c_str(),
                  err.empty() ? cudaGetErrorString(cudaGetLastError()) : err.c_str());
      return false;
    }
    const double repBytes = double(d.text.size()) * double(copies);
    // End to end on the original corpus, and the bit-identity check against the CPU signatures.
    std::vector<uint32_t> gsig(size_t(d.size()) * size_t(mp.numPerm));
    std::vector<uint64_t> gex(size_t(d.size()));
    std::string e2eErr;
    const double te = bestSeconds(
        [&] {
          e2eErr = ko::cuda::minhashSignaturesGpu(d.text.data(), d.offsets.data(), d.size(), mp, gsig.data(),
                                                  gex.data());
        },
        quick ? 2 : 3);
    if (!e2eErr.empty()) {
      std::printf("  %s: %s\n", d.name.c_str(), e2eErr.c_str());
      return false;
    }
    std::printf("%-22s %10.1f %14.2f %16.1f %12.2f %s\n", d.name.c_str(), repBytes / 1e6, repBytes / (kernelMs * 1e6),
                double(shingles) * mp.numPerm / (kernelMs * 1e6), double(d.text.size()) / (te * 1e9),
                gsig == cpuSigs[c] ? "bit-identical" : "MISMATCH");
    if (gsig != cpuSigs[c]) return false;
  }
#else
  std::printf("\n== prep: MinHash signatures (CUDA) ==\n  not built with CUDA (KO_CUDA off): no GPU section\n");
#endif
  return true;
}
