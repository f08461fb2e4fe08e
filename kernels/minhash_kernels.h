// minhash_kernels.h — the CUDA twin of ko::minhashSignatures (native/minhash.h), library ko_cuda.
// Conventions as kernels.h: plain C++ (no CUDA types), device pointers as ordinary pointers, streams as
// void* (nullptr = legacy default stream), never throws: returns "" or an error string naming the call.
//
// Division of work: the CPU normalizes (ko::dedupCodepoints: UTF-8 decode, case folding, separators —
// branchy, table-driven work) and the GPU does the arithmetic: the shingle hashes and the numPerm
// permutation minimums, with the same hash functions (the KO_MH_HD functions of minhash.h are compiled
// for both), so signatures are bit-identical to the CPU's. Character n-grams only: word n-grams are
// CPU-only (the GPU functions return an error for them).
#pragma once
#include <cstdint>
#include <string>

#include "minhash.h"

namespace ko::cuda {

// Signatures of nDocs documents whose normalized code points are on the device:
//   doc d = dCodepoints[dOffsets[d] .. dOffsets[d+1]),  dOffsets[0] == 0, dOffsets[nDocs] == numCodepoints
//   (device arrays; the offsets must be non-decreasing — they are not checked on the device),
//   dSigs[d * numPerm + i] = the signature, doc-major, as ko::minhashSignatures (an empty document gets
//   all 0xFFFFFFFF). ngram 1..32, numPerm 1..1024, seed as MinhashParams::seed.
// Work split: the flat range of shingle start positions is cut into segments of 4096; one block of 128
// threads per segment, so long and short documents load the GPU evenly. A document inside one segment
// stores its signature; one spread over several segments is combined with atomicMin on uint32 (exact and
// order-independent, so still deterministic) after dSigs was filled with 0xFF by this call.
// Asynchronous on `stream`.
std::string minhashSignaturesCuda(const uint32_t* dCodepoints, const int64_t* dOffsets, int64_t nDocs,
                                  int64_t numCodepoints, int ngram, int numPerm, uint64_t seed, uint32_t* dSigs,
                                  void* stream);

// Host convenience with ko::minhashSignatures's contract (host arrays; exactHashes may be null):
// normalizes on the host (OpenMP), uploads, runs minhashSignaturesCuda on the current device, downloads.
// Works in sub-batches of at most ~256 MB of text so device memory stays bounded. Synchronous.
// Returns an error for word n-grams, bad arguments (the messages of std::invalid_argument) and CUDA errors.
std::string minhashSignaturesGpu(const char* text, const int64_t* offsets, int64_t nDocs, const MinhashParams& params,
                                 uint32_t* sigs, uint64_t* exactHashes);

}  // namespace ko::cuda
