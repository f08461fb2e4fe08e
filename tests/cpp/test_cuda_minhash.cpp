// test_cuda_minhash.cpp — group `cuda`: MinHash signatures on the GPU (kernels/minhash.cu) against the CPU
// twin ko::minhashSignatures, bit for bit, on random Korean / English / mixed documents including empty,
// separator-only, shorter-than-ngram, invalid UTF-8, many tiny and very long (multi-segment) documents,
// for several (numPerm, ngram, seed) — through the device launcher (output poisoned with 0x5A bytes, not
// 0xFF, since 0xFFFFFFFF is the empty signature; guard bytes after the end checked) and through the host
// convenience function (host output poisoned too). Skips without a GPU.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "check.h"

#ifdef KO_CUDA
#include "cuda_test_util.h"
#include "minhash.h"
#include "minhash_kernels.h"
#include "utf8.h"

namespace {

std::string randomDoc(ko::Rng& r, size_t cps, int kind) {  // kind 0 Korean, 1 English, 2 mixed
  std::string s;
  for (size_t i = 0; i < cps; i++) {
    const uint64_t u = r.next() % 100;
    if (u < 12) {
      s += u < 2 ? ", " : u < 3 ? ".\n" : " ";
    } else if (kind == 0 || (kind == 2 && u < 50)) {
      ko::utf8Append(s, 0xAC00 + uint32_t(r.next() % 11172));
    } else {
      s.push_back(char((u % 5 == 0 ? 'A' : 'a') + r.next() % 26));
    }
  }
  return s;
}

}  // namespace
#endif

KO_TEST(cuda, cuda_minhash_matches_cpu) {
#ifndef KO_CUDA
  KO_SKIP("no CUDA device: this build has no CUDA support (KO_CUDA is off)");
#else
  kocuda::deviceOrSkip();
  ko::Rng r(31337);
  std::vector<std::string> docs = {"", "   ", "!!! ...", "a", "ab", "abcd", "abcde", "한국어", "Hello, World!",
                                   std::string("\xff\xfe bad \xc3 utf8 \xe2\x82", 17)};
  for (int i = 0; i < 3000; i++) docs.push_back(randomDoc(r, r.next() % 40, int(r.next() % 3)));  // tiny
  for (int i = 0; i < 300; i++) docs.push_back(randomDoc(r, 100 + r.next() % 6000, int(r.next() % 3)));
  docs.push_back("");
  docs.push_back(randomDoc(r, 3u << 20, 2));  // ~770 segments of 4096 shingles
  docs.push_back(randomDoc(r, 4096 + 4, 0));  // exactly one segment's worth of shingles
  docs.push_back("");
  std::string text;
  std::vector<int64_t> offsets{0};
  for (const auto& d : docs) text += d, offsets.push_back(int64_t(text.size()));
  const int64_t n = int64_t(docs.size());

  std::vector<uint32_t> cps;
  std::vector<int64_t> cpOff;
  ko::dedupCodepoints(text.data(), offsets.data(), n, &cps, &cpOff, nullptr);
  kocuda::DeviceBuffer<uint32_t> dCps(cps);
  kocuda::DeviceBuffer<int64_t> dOff(cpOff);

  for (const ko::MinhashParams p : {ko::MinhashParams{}, ko::MinhashParams{256, 5, false, 2},
                                    ko::MinhashParams{100, 3, false, 7}, ko::MinhashParams{1024, 24, false, 3},
                                    ko::MinhashParams{64, 1, false, 4}, ko::MinhashParams{33, 32, false, 5},
                                    ko::MinhashParams{500, 13, false, 6}}) {
    const size_t P = size_t(p.numPerm);
    std::vector<uint32_t> cpu(size_t(n) * P);
    std::vector<uint64_t> cpuExact(static_cast<size_t>(n));
    ko::minhashSignatures(text.data(), offsets.data(), n, p, cpu.data(), cpuExact.data());

    kocuda::DeviceBuffer<uint32_t> dSigs(size_t(n) * P);  // poisoned; the launcher must write every value
    KO_CUDA_CHECK(cudaMemset(dSigs.ptr, 0x5A, size_t(n) * P * sizeof(uint32_t)));
    const std::string err = ko::cuda::minhashSignaturesCuda(dCps.ptr, dOff.ptr, n, int64_t(cps.size()), p.ngram,
                                                            p.numPerm, p.seed, dSigs.ptr, nullptr);
    KO_CHECK_MSG(err.empty(), err);
    const auto gpu = dSigs.download();
    KO_CHECK(dSigs.guardIntact());
    size_t mismatches = 0, first = gpu.size();
    for (size_t i = 0; i < gpu.size(); i++)
      if (gpu[i] != cpu[i]) mismatches++, first = std::min(first, i);
    KO_CHECK_MSG(mismatches == 0, std::to_string(mismatches) + " values differ, first at doc " +
                                      std::to_string(first / P) + " perm " + std::to_string(first % P) +
                                      " (numPerm " + std::to_string(p.numPerm) + ", ngram " +
                                      std::to_string(p.ngram) + ")");

    std::vector<uint32_t> host(size_t(n) * P, 0x12345678u);
    std::vector<uint64_t> hostExact(size_t(n), 0);
    const std::string err2 =
        ko::cuda::minhashSignaturesGpu(text.data(), offsets.data(), n, p, host.data(), hostExact.data());
    KO_CHECK_MSG(err2.empty(), err2);
    KO_CHECK(host == cpu);
    KO_CHECK(hostExact == cpuExact);
    std::printf("  numPerm %4d ngram %2d: %lld docs, %zu code points: GPU == CPU bit for bit\n", p.numPerm, p.ngram,
                (long long)n, cps.size());
  }

  // Errors come back as strings.
  ko::MinhashParams words;
  words.wordNgrams = true;
  std::vector<uint32_t> out(size_t(n) * 128);
  KO_CHECK(!ko::cuda::minhashSignaturesGpu(text.data(), offsets.data(), n, words, out.data(), nullptr).empty());
  const int64_t nCps = int64_t(cps.size());
  KO_CHECK(!ko::cuda::minhashSignaturesCuda(dCps.ptr, dOff.ptr, n, nCps, 0, 128, 1, out.data(), nullptr).empty());
  KO_CHECK(!ko::cuda::minhashSignaturesCuda(dCps.ptr, dOff.ptr, n, nCps, 5, 2000, 1, out.data(), nullptr).empty());
  KO_CHECK(ko::cuda::minhashSignaturesCuda(nullptr, nullptr, 0, 0, 5, 128, 1, nullptr, nullptr).empty());
#endif
}

KO_TEST(cuda, cuda_minhash_validation) {
  // Host-side argument checks return errors before any CUDA call, so this runs without a GPU.
#ifndef KO_CUDA
  KO_SKIP("no CUDA device: this build has no CUDA support (KO_CUDA is off)");
#else
  uint32_t dummy[4] = {0, 0, 0, 0};
  const int64_t off[2] = {0, 2};
  auto mentions = [](const std::string& err, const char* word) { return err.find(word) != std::string::npos; };
  KO_CHECK(mentions(ko::cuda::minhashSignaturesCuda(dummy, off, 1, 2, 0, 128, 1, dummy, nullptr), "ngram"));
  KO_CHECK(mentions(ko::cuda::minhashSignaturesCuda(dummy, off, 1, 2, 5, 0, 1, dummy, nullptr), "numPerm"));
  KO_CHECK(mentions(ko::cuda::minhashSignaturesCuda(dummy, off, -1, 2, 5, 128, 1, dummy, nullptr), "nDocs"));
  KO_CHECK(ko::cuda::minhashSignaturesCuda(nullptr, nullptr, 0, 0, 5, 128, 1, nullptr, nullptr).empty());
  ko::MinhashParams words;
  words.wordNgrams = true;
  KO_CHECK(ko::cuda::minhashSignaturesGpu("ab", off, 1, words, dummy, nullptr).find("CPU-only") != std::string::npos);
  ko::MinhashParams bad;
  bad.ngram = 40;
  KO_CHECK(ko::cuda::minhashSignaturesGpu("ab", off, 1, bad, dummy, nullptr).find("ngram") != std::string::npos);
  const int64_t decreasing[3] = {0, 2, 1};
  KO_CHECK(ko::cuda::minhashSignaturesGpu("ab", decreasing, 2, ko::MinhashParams{}, dummy, nullptr).find("offsets") !=
           std::string::npos);
#endif
}
