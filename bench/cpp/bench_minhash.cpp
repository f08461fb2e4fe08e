// bench_minhash.cpp — `ko_bench --prep [--quick]`, section minhash: MinHash signatures (128 permutations,
// 5-character shingles) on the CPU with one thread and with all threads, Korean-like and English-like text,
// counted as input UTF-8 MB/s; the LSH step (findNearDuplicates) per 1M documents on synthetic signatures;
// and, when built with CUDA and a GPU is present, the kernel alone (code points already on the device,
// counted as input UTF-8 GB/s) and end to end (host normalization + transfers + kernel).
// Input: $KO_BENCH_DATA/libreoffice-help-{ko,en}.jsonl when KO_BENCH_DATA names a directory that has them
// (the "text" fields), else ~30 MB of synthetic text each.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench_corpus.h"
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

using Docs = kobench::BenchDocs;
using kobench::bestSeconds;

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
  for (const char* lang : {"ko", "en"}) {
    Docs d;
    const std::string name = std::string("libreoffice-help-") + lang;
    std::vector<std::string> texts;
    if (kobench::readJsonlTexts(kobench::benchDataPath((name + ".jsonl").c_str()), &texts)) {
      d.name = name;
      for (const std::string& t : texts) d.add(t);
    } else {
      d = synthesize(lang[0] == 'k', quick ? (8u << 20) : (30u << 20), lang[0] == 'k' ? 1 : 2);
    }
    corpora.push_back(std::move(d));
  }
  const int threads = kobench::benchMaxThreads();
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
    kobench::setBenchThreads(1);
    auto sign = [&] {
      ko::minhashSignatures(d.text.data(), d.offsets.data(), d.size(), mp, sigs.data(), exact.data());
    };
    const double t1 = bestSeconds(sign, reps);
    const double tn = bestSeconds(
        [&] { ko::dedupCodepoints(d.text.data(), d.offsets.data(), d.size(), &cps, &cpOff, nullptr); }, reps);
    kobench::setBenchThreads(threads);
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
