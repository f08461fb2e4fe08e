// minhash.cu — MinHash signatures on the GPU (twin: ko::minhashSignatures, native/minhash.cpp), bit-identical:
// same shingle hash and permutations (the KO_MH_HD functions of native/minhash.h, compiled here for the
// device). The host normalizes; see minhash_kernels.h for the contract.
//
// Kernel: the flat array of shingle start positions [0, numCodepoints) is cut into segments of kSegment;
// one block of 128 threads per segment walks the documents that have shingles starting in it. Per
// document and per tile of up to kTile positions:
//   1. each thread hashes positions i, i+128, ... of the tile into shared memory (reads of the code
//      points go through L1: neighbouring threads read overlapping windows);
//   2. each thread owns permutations t, t+128, ... (PPT = ceil(numPerm/128) of them, a compile-time
//      constant so a, b and the running minimum live in registers) and folds every hash of the tile
//      into them: per (shingle, permutation) one IMAD and one IMNMX, with the hashes read as uint4
//      broadcasts (all threads read the same address: no bank conflicts, one LDS.128 per 4 shingles).
// The work is integer-ALU bound (~2.1 instructions per shingle x permutation); equal-size segments keep
// every SM busy whatever the document lengths, and 128-thread blocks with 4.3 KB of shared memory allow
// 16 resident blocks per SM. A document inside one segment stores its minimums; one spread over several
// segments combines them with atomicMin (uint32 min is exact and commutative: the result does not
// depend on the order), after the launcher filled the signatures with 0xFF — which is also the
// signature of an empty document.
#include <cuda_runtime.h>

#include <algorithm>
#include <exception>
#include <string>
#include <vector>

#include "minhash_kernels.h"

namespace ko::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kTile = 1024;         // shingle hashes staged in shared memory per pass
constexpr int64_t kSegment = 4096;  // shingle start positions per block
constexpr int64_t kBatchBytes = int64_t(256) << 20;  // host convenience: text per sub-batch

std::string cudaErr(const char* what, cudaError_t e) {
  return std::string(what) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

template <int PPT>
__global__ void __launch_bounds__(kThreads)
    minhashKernel(const uint32_t* __restrict__ cps, const int64_t* __restrict__ offsets, int64_t nDocs,
                  int64_t numCps, int ngram, int numPerm, uint64_t seed, uint32_t* __restrict__ sigs) {
  __shared__ uint64_t keys[32];
  __shared__ __align__(16) uint32_t xs[kTile];
  const int64_t segBegin = int64_t(blockIdx.x) * kSegment;
  const int64_t segEnd = min(segBegin + kSegment, numCps);
  if (int(threadIdx.x) < ngram) keys[threadIdx.x] = minhashShingleKey(seed, int(threadIdx.x));
  uint32_t a[PPT], b[PPT];
#pragma unroll
  for (int j = 0; j < PPT; j++) {
    a[j] = 1, b[j] = 0;
    const int p = int(threadIdx.x) + j * kThreads;
    if (p < numPerm) minhashPermutation(seed, p, &a[j], &b[j]);
  }
  // The document holding segBegin: the largest d with offsets[d] <= segBegin (it is non-empty).
  int64_t lo = 0, hi = nDocs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (offsets[mid] <= segBegin)
      lo = mid;
    else
      hi = mid - 1;
  }
  __syncthreads();  // keys are ready

  // Every bound below is the same for all threads of the block, so the barriers are reached uniformly.
  for (int64_t d = lo; d < nDocs; d++) {
    const int64_t ds = offsets[d];
    if (ds >= segEnd) break;
    const int64_t len = offsets[d + 1] - ds;
    if (len <= 0) continue;
    const int m = len >= ngram ? ngram : int(len);  // a short document is one shingle of all of it
    const int64_t nSh = len - m + 1;
    const int64_t p0 = max(segBegin, ds), p1 = min(segEnd, ds + nSh);
    if (p0 >= p1) continue;  // only the document's tail (no shingle starts) lies in this segment
    uint32_t mn[PPT];
#pragma unroll
    for (int j = 0; j < PPT; j++) mn[j] = 0xFFFFFFFFu;
    for (int64_t t0 = p0; t0 < p1; t0 += kTile) {
      const int cnt = int(min(int64_t(kTile), p1 - t0));
      __syncthreads();  // the previous tile has been read by everyone
      for (int i = int(threadIdx.x); i < cnt; i += kThreads) {
        const uint32_t* c = cps + t0 + i;
        uint64_t h = 0;
        for (int k = 0; k < m; k++) h += uint64_t(__ldg(c + k)) * keys[k];
        xs[i] = minhashShingleFinish(h);
      }
      __syncthreads();
      int i = 0;
      for (; i + 4 <= cnt; i += 4) {
        const uint4 v = *reinterpret_cast<const uint4*>(xs + i);
#pragma unroll
        for (int j = 0; j < PPT; j++) {
          const uint32_t h0 = a[j] * v.x + b[j], h1 = a[j] * v.y + b[j];
          const uint32_t h2 = a[j] * v.z + b[j], h3 = a[j] * v.w + b[j];
          mn[j] = min(mn[j], min(min(h0, h1), min(h2, h3)));
        }
      }
      for (; i < cnt; i++) {
        const uint32_t x = xs[i];
#pragma unroll
        for (int j = 0; j < PPT; j++) mn[j] = min(mn[j], a[j] * x + b[j]);
      }
    }
    const bool whole = p0 == ds && p1 == ds + nSh;  // no other block touches this document
#pragma unroll
    for (int j = 0; j < PPT; j++) {
      const int p = int(threadIdx.x) + j * kThreads;
      if (p >= numPerm) continue;
      uint32_t* out = sigs + d * int64_t(numPerm) + p;
      if (whole)
        *out = mn[j];
      else
        atomicMin(out, mn[j]);
    }
  }
}

template <int PPT>
void launch(unsigned grid, cudaStream_t s, const uint32_t* cps, const int64_t* off, int64_t nDocs, int64_t numCps,
            int ngram, int numPerm, uint64_t seed, uint32_t* sigs) {
  minhashKernel<PPT><<<grid, kThreads, 0, s>>>(cps, off, nDocs, numCps, ngram, numPerm, seed, sigs);
}

// Device buffer that grows on demand and frees itself.
template <class T>
struct Grow {
  T* ptr = nullptr;
  size_t cap = 0;
  ~Grow() { cudaFree(ptr); }
  cudaError_t reserve(size_t n) {
    if (n <= cap) return cudaSuccess;
    cudaFree(ptr);
    ptr = nullptr, cap = 0;
    const cudaError_t e = cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(T));
    if (e == cudaSuccess) cap = n;
    return e;
  }
};

}  // namespace

std::string minhashSignaturesCuda(const uint32_t* dCodepoints, const int64_t* dOffsets, int64_t nDocs,
                                  int64_t numCodepoints, int ngram, int numPerm, uint64_t seed, uint32_t* dSigs,
                                  void* stream) {
  const char* fn = "minhashSignaturesCuda";
  if (nDocs < 0 || numCodepoints < 0)
    return std::string(fn) + ": nDocs = " + std::to_string(nDocs) + ", numCodepoints = " +
           std::to_string(numCodepoints) + " (need >= 0)";
  if (ngram < 1 || ngram > 32) return std::string(fn) + ": ngram = " + std::to_string(ngram) + " (allowed: 1..32)";
  if (numPerm < 1 || numPerm > 1024)
    return std::string(fn) + ": numPerm = " + std::to_string(numPerm) + " (allowed: 1..1024)";
  if (nDocs == 0) return "";
  if (!dOffsets || !dSigs || (numCodepoints > 0 && !dCodepoints)) return std::string(fn) + ": null device pointer";
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaError_t e = cudaMemsetAsync(dSigs, 0xFF, size_t(nDocs) * size_t(numPerm) * sizeof(uint32_t), s);
  if (e != cudaSuccess) return cudaErr("minhashSignaturesCuda: cudaMemsetAsync", e);
  if (numCodepoints == 0) return "";
  const int64_t blocks = (numCodepoints + kSegment - 1) / kSegment;
  if (blocks > int64_t(0x7FFFFFFF)) return std::string(fn) + ": too many code points in one call";
  const unsigned grid = unsigned(blocks);
  const int ppt = (numPerm + kThreads - 1) / kThreads;
  if (ppt <= 1)
    launch<1>(grid, s, dCodepoints, dOffsets, nDocs, numCodepoints, ngram, numPerm, seed, dSigs);
  else if (ppt <= 2)
    launch<2>(grid, s, dCodepoints, dOffsets, nDocs, numCodepoints, ngram, numPerm, seed, dSigs);
  else if (ppt <= 4)
    launch<4>(grid, s, dCodepoints, dOffsets, nDocs, numCodepoints, ngram, numPerm, seed, dSigs);
  else
    launch<8>(grid, s, dCodepoints, dOffsets, nDocs, numCodepoints, ngram, numPerm, seed, dSigs);
  e = cudaGetLastError();
  if (e != cudaSuccess) return cudaErr("minhashSignaturesCuda: launch", e);
  return "";
}

std::string minhashSignaturesGpu(const char* text, const int64_t* offsets, int64_t nDocs, const MinhashParams& params,
                                 uint32_t* sigs, uint64_t* exactHashes) {
  const std::string fn = "minhashSignaturesGpu: ";
  if (params.wordNgrams) return fn + "word n-grams are CPU-only (use ko::minhashSignatures)";
  try {
    validateMinhashParams(params);
    if (nDocs < 0) return fn + "nDocs = " + std::to_string(nDocs) + " < 0";
    if (nDocs == 0) return "";
    if (!offsets || !sigs) return fn + "null offsets or sigs";
    for (int64_t d = 0; d < nDocs; d++)  // (dedupCodepoints checks again, per sub-batch)
      if (offsets[d + 1] < offsets[d] || offsets[0] < 0) return fn + "bad offsets at doc " + std::to_string(d);
    Grow<uint32_t> dCps, dSigs;
    Grow<int64_t> dOff;
    std::vector<uint32_t> cps;
    std::vector<int64_t> cpOff;
    const size_t P = size_t(params.numPerm);
    for (int64_t d0 = 0; d0 < nDocs;) {
      int64_t d1 = d0 + 1;  // at least one document, then up to kBatchBytes of text
      while (d1 < nDocs && offsets[d1 + 1] - offsets[d0] <= kBatchBytes) d1++;
      const int64_t n = d1 - d0;
      dedupCodepoints(text, offsets + d0, n, &cps, &cpOff, exactHashes ? exactHashes + d0 : nullptr);
      cudaError_t e;
      if ((e = dCps.reserve(cps.size())) != cudaSuccess) return cudaErr("minhashSignaturesGpu: cudaMalloc", e);
      if ((e = dOff.reserve(size_t(n) + 1)) != cudaSuccess) return cudaErr("minhashSignaturesGpu: cudaMalloc", e);
      if ((e = dSigs.reserve(size_t(n) * P)) != cudaSuccess) return cudaErr("minhashSignaturesGpu: cudaMalloc", e);
      if (!cps.empty() &&
          (e = cudaMemcpy(dCps.ptr, cps.data(), cps.size() * sizeof(uint32_t), cudaMemcpyHostToDevice)) != cudaSuccess)
        return cudaErr("minhashSignaturesGpu: cudaMemcpy", e);
      if ((e = cudaMemcpy(dOff.ptr, cpOff.data(), cpOff.size() * sizeof(int64_t), cudaMemcpyHostToDevice)) !=
          cudaSuccess)
        return cudaErr("minhashSignaturesGpu: cudaMemcpy", e);
      const std::string err = minhashSignaturesCuda(dCps.ptr, dOff.ptr, n, int64_t(cps.size()), params.ngram,
                                                    params.numPerm, params.seed, dSigs.ptr, nullptr);
      if (!err.empty()) return err;
      if ((e = cudaMemcpy(sigs + size_t(d0) * P, dSigs.ptr, size_t(n) * P * sizeof(uint32_t),
                          cudaMemcpyDeviceToHost)) != cudaSuccess)
        return cudaErr("minhashSignaturesGpu: cudaMemcpy (kernel or copy failed)", e);
      d0 = d1;
    }
  } catch (const std::exception& ex) {
    return fn + ex.what();
  }
  return "";
}

}  // namespace ko::cuda
