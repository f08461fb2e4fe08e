// test_cuda_elementwise.cpp — group `cuda`: the elementwise / normalization kernels of kernels.h
// (embedding, RMSNorm, RoPE, SwiGLU, add, casts) against their CPU twins in native/, on random BF16
// inputs with odd sizes, strided layouts inside wider buffers, misaligned pointers (scalar paths) and
// poisoned outputs. Plus, in group `ops`, the host-side segment builder of embeddingBackward
// (kernels/embedding_segments.h), which needs no GPU.
//
// Tolerances: a BF16 output is one rounding of an FP32 value computed from the same formula as the twin,
// so it is expected to equal bf16(twin) bit for bit except where the FP32 values differ in the last bits
// (FP32 vs double sums in RMSNorm, CUDA expf vs the twin's exp polynomial in SwiGLU, FMA contraction of
// the twin compiled with -march=native) and happen to straddle a BF16 rounding boundary: we require
// >= 99% bit-identical and ||gpu - twin|| / ||twin|| <= 4e-3 (one BF16 rounding is <= 2^-9 per element).
// FP32 accumulations (dw, dtable) must match the twin to 1e-5 relative. add and the casts are exact.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../../kernels/embedding_segments.h"
#include "check.h"

// ---- group ops: embeddingSegments (host only) -----------------------------------------------------

KO_TEST(ops, ops_embedding_segments_stable_sort) {
  const int vocab = 10;
  const std::vector<uint32_t> ids = {3, 7, 3, 0, 9, 7, 7, 3, 12 /* out of range */, 0, 5};
  const int n = int(ids.size());
  std::vector<int32_t> order, segStart, segToken;
  ko::cuda::embeddingSegments(ids.data(), n, vocab, order, segStart, segToken);
  const std::vector<int32_t> wantOrder = {3, 9, 0, 2, 7, 10, 1, 5, 6, 4};
  const std::vector<int32_t> wantStart = {0, 2, 5, 6, 9, 10};
  const std::vector<int32_t> wantToken = {0, 3, 5, 7, 9};
  KO_CHECK(order == wantOrder);
  KO_CHECK(segStart == wantStart);
  KO_CHECK(segToken == wantToken);

  // Larger random case: the invariants.
  std::vector<uint32_t> big(5000);
  uint64_t st = 12345;
  for (auto& id : big) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    id = uint32_t((st >> 33) % 300);
  }
  ko::cuda::embeddingSegments(big.data(), int(big.size()), 300, order, segStart, segToken);
  KO_CHECK(order.size() == big.size());
  KO_CHECK(segStart.size() == segToken.size() + 1);
  KO_CHECK(segStart.front() == 0 && segStart.back() == int32_t(big.size()));
  std::vector<int> seen(big.size(), 0);
  for (size_t s = 0; s < segToken.size(); s++) {
    if (s > 0) KO_CHECK(segToken[s] > segToken[s - 1]);
    KO_CHECK(segStart[s + 1] > segStart[s]);
    for (int32_t j = segStart[s]; j < segStart[s + 1]; j++) {
      KO_CHECK(big[size_t(order[size_t(j)])] == uint32_t(segToken[s]));
      if (j > segStart[s]) KO_CHECK(order[size_t(j)] > order[size_t(j) - 1]);  // stable
      seen[size_t(order[size_t(j)])]++;
    }
  }
  for (int c : seen) KO_CHECK(c == 1);

  // Empty input.
  ko::cuda::embeddingSegments(big.data(), 0, 300, order, segStart, segToken);
  KO_CHECK(order.empty() && segToken.empty() && segStart.size() == 1 && segStart[0] == 0);
}

#ifdef KO_CUDA
#include "cuda_test_util.h"
#include "kernels.h"
#include "ops.h"

namespace {

using kocuda::DeviceBuffer;
using U16 = std::vector<uint16_t>;
using F32 = std::vector<float>;

U16 randomBf16(size_t n, uint64_t seed, float amp = 1.f) { return kocuda::toBf16(kocuda::randomFloats(n, seed, amp)); }

// How a BF16 GPU result compares with the twin's FP32 result.
struct Bf16Compare {
  double rel = 0;        // ||decode(gpu) - ref|| / ||ref||
  double identical = 0;  // fraction with gpu == bf16(ref) exactly
  size_t n = 0;
};
Bf16Compare compareBf16(const U16& gpu, const F32& ref) {
  Bf16Compare c;
  c.n = ref.size();
  double num = 0, den = 0;
  size_t same = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    const double d = double(ko::floatFromBf16(gpu[i])) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
    same += gpu[i] == ko::bf16FromFloat(ref[i]);
  }
  c.rel = std::sqrt(num) / (std::sqrt(den) + 1e-300);
  c.identical = ref.empty() ? 1.0 : double(same) / double(ref.size());
  return c;
}
void checkBf16(const U16& gpu, const F32& ref, const std::string& what) {
  const Bf16Compare c = compareBf16(gpu, ref);
  std::printf("  %-44s rel %.3g, bit-identical %.4f%% of %zu\n", what.c_str(), c.rel, 100.0 * c.identical, c.n);
  KO_CHECK_MSG(c.rel <= 4e-3, what + ": rel error " + std::to_string(c.rel));
  KO_CHECK_MSG(c.identical >= 0.99, what + ": only " + std::to_string(100.0 * c.identical) + "% bit-identical");
}
void checkLaunch(const std::string& err) { KO_CHECK_MSG(err.empty(), err); }
size_t countBitIdentical(const F32& a, const F32& b) {
  size_t same = 0;
  for (size_t i = 0; i < a.size(); i++) same += ko::floatBits(a[i]) == ko::floatBits(b[i]);
  return same;
}

// ---- embedding -----------------------------------------------------------------------------------

void embeddingForwardCase(int vocab, int n, int dim, size_t tableOffset, uint64_t seed) {
  const U16 table = randomBf16(size_t(vocab) * dim + tableOffset, seed);
  std::vector<uint32_t> ids(static_cast<size_t>(n));
  ko::Rng r(seed + 1);
  for (auto& id : ids) id = uint32_t(r.next() % uint64_t(vocab));
  DeviceBuffer<uint16_t> dTable(table), dOut(size_t(n) * dim);
  DeviceBuffer<uint32_t> dIds(ids);
  checkLaunch(ko::cuda::embeddingForward(dOut.ptr, dIds.ptr, dTable.ptr + tableOffset, n, dim, nullptr));
  const U16 out = dOut.download();
  KO_CHECK(dOut.guardIntact());
  for (int i = 0; i < n; i++)
    KO_CHECK_MSG(std::memcmp(out.data() + size_t(i) * dim, table.data() + tableOffset + size_t(ids[i]) * dim,
                             sizeof(uint16_t) * dim) == 0,
                 "embeddingForward row " + std::to_string(i) + " (dim " + std::to_string(dim) + ")");
}

void embeddingBackwardCase(int vocab, int n, int dim, size_t doutOffset, uint64_t seed) {
  std::vector<uint32_t> ids(static_cast<size_t>(n));
  ko::Rng r(seed);
  for (auto& id : ids) id = uint32_t(r.next() % uint64_t(vocab));
  ids[1] = ids[0];  // a repeat for sure
  const U16 dout = randomBf16(size_t(n) * dim + doutOffset, seed + 1);
  const F32 dtable0 = kocuda::randomFloats(size_t(vocab) * dim, seed + 2);  // non-zero: checks +=
  std::vector<int32_t> order, segStart, segToken;
  ko::cuda::embeddingSegments(ids.data(), n, vocab, order, segStart, segToken);
  const int nSeg = int(segToken.size());
  KO_CHECK(nSeg < n);  // repeated tokens

  F32 ref = dtable0;
  const F32 doutF = kocuda::fromBf16(U16(dout.begin() + long(doutOffset), dout.end()));
  ko::embeddingBackward(ref.data(), ids.data(), doutF.data(), n, dim);

  DeviceBuffer<uint16_t> dDout(dout);
  DeviceBuffer<int32_t> dOrder(order), dStart(segStart), dToken(segToken);
  F32 runs[2];
  for (int run = 0; run < 2; run++) {
    DeviceBuffer<float> dTable(dtable0);
    checkLaunch(ko::cuda::embeddingBackward(dTable.ptr, dDout.ptr + doutOffset, dOrder.ptr, dStart.ptr, dToken.ptr,
                                            nSeg, dim, nullptr));
    runs[run] = dTable.download();
    KO_CHECK(dTable.guardIntact());
  }
  const double rel = kotest::relError(runs[0].data(), ref.data(), ref.size());
  const size_t same = countBitIdentical(runs[0], ref);
  std::printf("  embeddingBackward vocab %d n %d dim %d off %zu: rel %.3g, bit-identical %zu/%zu\n", vocab, n, dim,
              doutOffset, rel, same, ref.size());
  KO_CHECK(rel <= 1e-5);
  // Same additions in the same order as the twin: expected to be exact.
  KO_CHECK(double(same) >= 0.99 * double(ref.size()));
  KO_CHECK(countBitIdentical(runs[0], runs[1]) == runs[0].size());  // deterministic
}

}  // namespace

KO_TEST(cuda, cuda_elem_embedding_forward) {
  kocuda::deviceOrSkip();
  embeddingForwardCase(101, 37, 200, 0, 1);  // 16-byte path
  embeddingForwardCase(101, 37, 203, 0, 2);  // scalar path (odd dim)
  embeddingForwardCase(101, 37, 200, 1, 3);  // scalar path (misaligned table)
  embeddingForwardCase(1000, 513, 1024, 0, 4);
}

KO_TEST(cuda, cuda_elem_embedding_backward) {
  kocuda::deviceOrSkip();
  embeddingBackwardCase(13, 37, 200, 0, 10);
  embeddingBackwardCase(13, 37, 203, 0, 11);
  embeddingBackwardCase(13, 37, 200, 3, 12);   // misaligned dout: scalar path
  embeddingBackwardCase(50, 4096, 1024, 0, 13);  // long segments (~80 rows per token)
}

// ---- RMSNorm -------------------------------------------------------------------------------------

namespace {

struct NormCase {
  int rows, heads, dim, xStride, yStride;
  size_t offset;  // elements added to the x / y / dx / dy pointers (1 = misaligned)
};

void rmsnormCase(const NormCase& c, uint64_t seed) {
  const int groups = c.rows * c.heads, dim = c.dim;
  const float eps = 1e-6f;
  const std::string tag = "rows " + std::to_string(c.rows) + " heads " + std::to_string(c.heads) + " dim " +
                          std::to_string(dim) + " strides " + std::to_string(c.xStride) + "/" +
                          std::to_string(c.yStride) + (c.offset ? " misaligned" : "");
  const size_t xSize = size_t(c.rows) * c.xStride + c.offset, ySize = size_t(c.rows) * c.yStride + c.offset;
  const U16 x = randomBf16(xSize, seed, 2.f);
  const U16 dy = randomBf16(ySize, seed + 1, 1.f);
  F32 w = kocuda::randomFloats(size_t(dim), seed + 2, 0.5f);
  for (auto& v : w) v += 1.f;
  auto xAt = [&](int g, int d) { return c.offset + size_t(g / c.heads) * c.xStride + size_t(g % c.heads) * dim + d; };
  auto yAt = [&](int g, int d) { return c.offset + size_t(g / c.heads) * c.yStride + size_t(g % c.heads) * dim + d; };

  // The twin on the groups gathered into contiguous rows.
  F32 xc(size_t(groups) * dim), dyc(size_t(groups) * dim);
  for (int g = 0; g < groups; g++)
    for (int d = 0; d < dim; d++) {
      xc[size_t(g) * dim + d] = ko::floatFromBf16(x[xAt(g, d)]);
      dyc[size_t(g) * dim + d] = ko::floatFromBf16(dy[yAt(g, d)]);
    }
  F32 yRef(xc.size()), rstdRef(static_cast<size_t>(groups)), dxRef(xc.size());
  ko::rmsnormForward(yRef.data(), rstdRef.data(), xc.data(), w.data(), groups, dim, eps);
  const F32 dw0 = kocuda::randomFloats(size_t(dim), seed + 3, 4.f);
  F32 dwRef = dw0;
  ko::rmsnormBackward(dxRef.data(), dwRef.data(), dyc.data(), xc.data(), w.data(), rstdRef.data(), groups, dim);

  DeviceBuffer<uint16_t> dX(x), dDy(dy), dY(ySize), dDx(xSize);
  DeviceBuffer<float> dW(w), dRstd(static_cast<size_t>(groups)), dRstdIn(rstdRef);
  const size_t scratchFloats = ko::cuda::rmsnormBackwardScratchFloats(groups, dim);
  KO_CHECK(scratchFloats >= size_t(dim));
  DeviceBuffer<float> dScratch(scratchFloats);

  // Forward.
  checkLaunch(ko::cuda::rmsnormForward(dY.ptr + c.offset, dRstd.ptr, dX.ptr + c.offset, dW.ptr, c.rows, c.heads, dim,
                                       c.xStride, c.yStride, eps, nullptr));
  const U16 y = dY.download();
  const F32 rstd = dRstd.download();
  KO_CHECK(dY.guardIntact() && dRstd.guardIntact());
  U16 yg(xc.size());
  std::vector<char> isGroupY(ySize, 0);
  for (int g = 0; g < groups; g++)
    for (int d = 0; d < dim; d++) {
      yg[size_t(g) * dim + d] = y[yAt(g, d)];
      isGroupY[yAt(g, d)] = 1;
    }
  for (size_t i = 0; i < ySize; i++)
    if (!isGroupY[i]) KO_CHECK_MSG(y[i] == 0xFFFF, "rmsnormForward wrote outside the groups at " + std::to_string(i));
  checkBf16(yg, yRef, "rmsnorm fwd y " + tag);
  const double rstdRel = kotest::relError(rstd.data(), rstdRef.data(), rstd.size());
  KO_CHECK_MSG(rstdRel <= 1e-6, "rstd rel error " + std::to_string(rstdRel));

  // Backward (from the twin's rstd, so both sides see the same inputs), twice: deterministic.
  U16 dxRuns[2];
  F32 dwRuns[2];
  for (int run = 0; run < 2; run++) {
    DeviceBuffer<float> dDw(dw0);
    dDx.poison();
    dScratch.poison();
    checkLaunch(ko::cuda::rmsnormBackward(dDx.ptr + c.offset, dDw.ptr, dDy.ptr + c.offset, dX.ptr + c.offset, dW.ptr,
                                          dRstdIn.ptr, c.rows, c.heads, dim, c.xStride, c.yStride, dScratch.ptr,
                                          nullptr));
    dxRuns[run] = dDx.download();
    dwRuns[run] = dDw.download();
    KO_CHECK(dDx.guardIntact() && dDw.guardIntact() && dScratch.guardIntact());
  }
  KO_CHECK(dxRuns[0] == dxRuns[1]);
  KO_CHECK(countBitIdentical(dwRuns[0], dwRuns[1]) == dwRuns[0].size());
  U16 dxg(xc.size());
  std::vector<char> isGroupX(xSize, 0);
  for (int g = 0; g < groups; g++)
    for (int d = 0; d < dim; d++) {
      dxg[size_t(g) * dim + d] = dxRuns[0][xAt(g, d)];
      isGroupX[xAt(g, d)] = 1;
    }
  for (size_t i = 0; i < xSize; i++)
    if (!isGroupX[i])
      KO_CHECK_MSG(dxRuns[0][i] == 0xFFFF, "rmsnormBackward wrote outside the groups at " + std::to_string(i));
  checkBf16(dxg, dxRef, "rmsnorm bwd dx " + tag);
  const double dwRel = kotest::relError(dwRuns[0].data(), dwRef.data(), dwRef.size());
  F32 incGpu(static_cast<size_t>(dim)), incRef(static_cast<size_t>(dim));
  for (int d = 0; d < dim; d++) {
    incGpu[size_t(d)] = dwRuns[0][size_t(d)] - dw0[size_t(d)];
    incRef[size_t(d)] = dwRef[size_t(d)] - dw0[size_t(d)];
  }
  const double incRel = kotest::relError(incGpu.data(), incRef.data(), incRef.size());
  std::printf("  %-44s dw rel %.3g (increment rel %.3g)\n", ("rmsnorm bwd dw " + tag).c_str(), dwRel, incRel);
  KO_CHECK_MSG(dwRel <= 1e-5, "dw rel error " + std::to_string(dwRel));
  KO_CHECK_MSG(incRel <= 1e-5, "dw increment rel error " + std::to_string(incRel));
}

}  // namespace

KO_TEST(cuda, cuda_elem_rmsnorm) {
  kocuda::deviceOrSkip();
  const NormCase cases[] = {
      {37, 1, 200, 200, 200, 0},      // warp teams of 32, 16-byte path
      {37, 1, 1024, 1024, 1024, 0},   // warp teams, every register slot used
      {37, 1, 203, 203, 203, 0},      // odd dim: scalar path
      {37, 3, 128, 640, 392, 0},      // q-norm inside a wider (qkv-like) buffer, teams of 16
      {37, 4, 64, 272, 256, 0},       // teams of 8
      {11, 2, 100, 211, 205, 0},      // odd strides: scalar path
      {37, 1, 256, 256, 256, 1},      // misaligned pointers: scalar path
      {13, 1, 2048, 2056, 2048, 0},   // block teams, 16-byte path
      {7, 1, 1500, 1500, 1504, 0},    // block teams, scalar path
      {5, 1, 8192, 8192, 8192, 0},    // largest dim of the backward pass
      {2048, 16, 128, 2048, 2048, 0}, // many groups: several groups per team, 1024 partial blocks
      {3001, 1, 64, 64, 64, 0},
  };
  uint64_t seed = 100;
  for (const NormCase& c : cases) rmsnormCase(c, seed += 10);
}

// ---- RoPE ----------------------------------------------------------------------------------------

namespace {

void ropeCase(int B, int T, int H, int D, int rowStride, int posOffset, bool inverse, size_t offset, uint64_t seed) {
  const std::string tag = "B " + std::to_string(B) + " T " + std::to_string(T) + " H " + std::to_string(H) + " D " +
                          std::to_string(D) + " stride " + std::to_string(rowStride) + " pos " +
                          std::to_string(posOffset) + (inverse ? " inverse" : "") + (offset ? " misaligned" : "");
  const size_t size = size_t(B) * T * rowStride + offset;
  const U16 x = randomBf16(size, seed, 2.f);
  F32 invFreq(static_cast<size_t>(D / 2));
  for (int i = 0; i < D / 2; i++) invFreq[size_t(i)] = float(1.0 / std::pow(1e6, 2.0 * i / D));
  F32 ref = kocuda::fromBf16(x);
  ko::ropeApply(ref.data() + offset, B, T, H, D, rowStride, invFreq.data(), posOffset, inverse);

  DeviceBuffer<uint16_t> dX(x);
  DeviceBuffer<float> dFreq(invFreq);
  checkLaunch(ko::cuda::ropeApply(dX.ptr + offset, B, T, H, D, rowStride, dFreq.ptr, posOffset, inverse, nullptr));
  const U16 out = dX.download();
  KO_CHECK(dX.guardIntact());
  // Elements outside the heads (the rest of each row) must be untouched; compare the heads with the twin.
  U16 got;
  F32 want;
  for (size_t i = 0; i < size; i++) {
    const bool inHead = i >= offset && size_t((i - offset) % size_t(rowStride)) < size_t(H) * D;
    if (inHead) {
      got.push_back(out[i]);
      want.push_back(ref[i]);
    } else {
      KO_CHECK_MSG(out[i] == x[i], "ropeApply changed an element outside the heads at " + std::to_string(i));
    }
  }
  checkBf16(got, want, "rope " + tag);
}

}  // namespace

KO_TEST(cuda, cuda_elem_rope) {
  kocuda::deviceOrSkip();
  // q inside a fused qkv row (3 q heads, 2 kv heads of 128), 16-byte path.
  ropeCase(2, 19, 3, 128, 3 * 128 + 2 * 2 * 128, 5, false, 0, 1);
  ropeCase(2, 19, 3, 128, 3 * 128 + 2 * 2 * 128, 5, true, 0, 2);
  ropeCase(9, 3, 2, 64, 136, 0, false, 0, 3);        // 3 batch blocks; position 0 is the identity
  ropeCase(6, 7, 2, 70, 151, 30000, false, 0, 4);    // D/2 odd, odd stride: scalar path; large angles
  ropeCase(6, 7, 2, 70, 151, 30000, true, 0, 5);
  ropeCase(2, 5, 4, 128, 512, 17, false, 1, 6);      // misaligned: scalar path
  ropeCase(1, 300, 16, 128, 2048, 1000, false, 0, 7);
}

// ---- SwiGLU --------------------------------------------------------------------------------------

namespace {

void swigluCase(int rows, int F, size_t offset, uint64_t seed) {
  const std::string tag = "rows " + std::to_string(rows) + " F " + std::to_string(F) + (offset ? " misaligned" : "");
  const size_t n2 = size_t(rows) * 2 * F, n1 = size_t(rows) * F;
  U16 gateUp = randomBf16(n2 + offset, seed, 4.f);
  // A few large gates exercise the clamped exp (both tails).
  const float extremes[] = {100.f, -100.f, 60.f, -60.f, 90.f, -90.f};
  for (int k = 0; k < 6; k++) gateUp[offset + size_t(k) * 2 * F + size_t(k)] = ko::bf16FromFloat(extremes[k]);
  const U16 dh = randomBf16(n1 + offset, seed + 1, 1.f);
  const F32 gu = kocuda::fromBf16(U16(gateUp.begin() + long(offset), gateUp.end()));
  const F32 dhf = kocuda::fromBf16(U16(dh.begin() + long(offset), dh.end()));
  F32 hRef(n1), dRef(n2);
  ko::swigluForward(hRef.data(), gu.data(), rows, F);
  ko::swigluBackward(dRef.data(), dhf.data(), gu.data(), rows, F);

  DeviceBuffer<uint16_t> dGu(gateUp), dDh(dh), dH(n1 + offset), dD(n2 + offset);
  checkLaunch(ko::cuda::swigluForward(dH.ptr + offset, dGu.ptr + offset, rows, F, nullptr));
  checkLaunch(ko::cuda::swigluBackward(dD.ptr + offset, dDh.ptr + offset, dGu.ptr + offset, rows, F, nullptr));
  const U16 h = dH.download(), d = dD.download();
  KO_CHECK(dH.guardIntact() && dD.guardIntact());
  for (size_t i = 0; i < offset; i++) KO_CHECK(h[i] == 0xFFFF && d[i] == 0xFFFF);
  checkBf16(U16(h.begin() + long(offset), h.end()), hRef, "swiglu fwd " + tag);
  checkBf16(U16(d.begin() + long(offset), d.end()), dRef, "swiglu bwd " + tag);
}

}  // namespace

KO_TEST(cuda, cuda_elem_swiglu) {
  kocuda::deviceOrSkip();
  swigluCase(37, 200, 0, 1);    // 16-byte path
  swigluCase(37, 203, 0, 2);    // odd F: scalar path
  swigluCase(37, 200, 1, 3);    // misaligned: scalar path
  swigluCase(512, 3072, 0, 4);
}

// ---- add, casts, copy ----------------------------------------------------------------------------

KO_TEST(cuda, cuda_elem_add_bf16) {
  kocuda::deviceOrSkip();
  const size_t n = 1000003;
  for (size_t offset : {size_t(0), size_t(1)}) {
    const U16 a = randomBf16(n + offset, 1 + offset, 4.f), b = randomBf16(n + offset, 2 + offset, 4.f);
    U16 want(n);
    for (size_t i = 0; i < n; i++)
      want[i] = ko::bf16FromFloat(ko::floatFromBf16(a[offset + i]) + ko::floatFromBf16(b[offset + i]));
    DeviceBuffer<uint16_t> dA(a), dB(b), dY(n + offset);
    checkLaunch(ko::cuda::addBf16(dY.ptr + offset, dA.ptr + offset, dB.ptr + offset, n, nullptr));
    const U16 y = dY.download();
    KO_CHECK(dY.guardIntact());
    KO_CHECK(U16(y.begin() + long(offset), y.end()) == want);
    // In place: y aliases a.
    checkLaunch(ko::cuda::addBf16(dA.ptr + offset, dA.ptr + offset, dB.ptr + offset, n, nullptr));
    const U16 y2 = dA.download();
    KO_CHECK(U16(y2.begin() + long(offset), y2.end()) == want);
  }
  // Tiny sizes (tail only).
  for (size_t m : {size_t(1), size_t(7), size_t(9)}) {
    const U16 a = randomBf16(m, 10 + m), b = randomBf16(m, 20 + m);
    DeviceBuffer<uint16_t> dA(a), dB(b), dY(m);
    checkLaunch(ko::cuda::addBf16(dY.ptr, dA.ptr, dB.ptr, m, nullptr));
    const U16 y = dY.download();
    KO_CHECK(dY.guardIntact());
    for (size_t i = 0; i < m; i++)
      KO_CHECK(y[i] == ko::bf16FromFloat(ko::floatFromBf16(a[i]) + ko::floatFromBf16(b[i])));
  }
}

KO_TEST(cuda, cuda_elem_cast_float_to_bf16) {
  kocuda::deviceOrSkip();
  // Random bit patterns (every class of float) plus the special cases.
  const uint32_t specials[] = {
      0x3F808000u, 0x3F818000u, 0xBF808000u, 0xBF818000u,  // exact ties: to even (down), to even (up)
      0x3F808001u, 0x3F807FFFu,                              // just above / below a tie
      0x7F7FFFFFu, 0x7F7F8000u, 0x7F7F7FFFu, 0xFF7FFFFFu,    // near FLT_MAX: to inf / tie to inf / stays finite
      0x7F800000u, 0xFF800000u, 0x00000000u, 0x80000000u,    // +-inf, +-0
      0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0xFFFFFFFFu, 0x7FA00000u,  // NaNs
      0x00000001u, 0x00008000u, 0x00018000u, 0x80008000u, 0x007FFFFFu, 0x00800000u,             // subnormals
  };
  const size_t nRandom = (size_t(1) << 20) + 5;
  std::vector<float> in;
  ko::Rng r(7);
  for (size_t i = 0; i < nRandom; i++) in.push_back(ko::bitsFloat(uint32_t(r.next() >> 32)));
  for (uint32_t s : specials) in.push_back(ko::bitsFloat(s));
  const size_t n = in.size();
  for (size_t offset : {size_t(0), size_t(1)}) {
    std::vector<float> padded(offset, 0.f);
    padded.insert(padded.end(), in.begin(), in.end());
    DeviceBuffer<float> dIn(padded);
    DeviceBuffer<uint16_t> dOut(n + offset);
    checkLaunch(ko::cuda::castFloatToBf16(dOut.ptr + offset, dIn.ptr + offset, n, nullptr));
    const U16 out = dOut.download();
    KO_CHECK(dOut.guardIntact());
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
      const uint16_t want = ko::bf16FromFloat(in[i]);
      if (out[offset + i] != want && bad++ < 5)
        std::printf("  castFloatToBf16 0x%08X -> 0x%04X, want 0x%04X\n", ko::floatBits(in[i]), out[offset + i], want);
    }
    KO_CHECK_MSG(bad == 0, std::to_string(bad) + " mismatches (offset " + std::to_string(offset) + ")");
  }
}

KO_TEST(cuda, cuda_elem_cast_bf16_to_float) {
  kocuda::deviceOrSkip();
  U16 in(65536 + 11);
  for (size_t i = 0; i < in.size(); i++) in[i] = uint16_t(i * 40503u);  // all 65536 codes (odd multiplier)
  for (size_t offset : {size_t(0), size_t(1)}) {
    U16 padded(offset, 0);
    padded.insert(padded.end(), in.begin(), in.end());
    const size_t n = in.size();
    DeviceBuffer<uint16_t> dIn(padded);
    DeviceBuffer<float> dOut(n + offset);
    checkLaunch(ko::cuda::castBf16ToFloat(dOut.ptr + offset, dIn.ptr + offset, n, nullptr));
    const F32 out = dOut.download();
    KO_CHECK(dOut.guardIntact());
    for (size_t i = 0; i < n; i++) KO_CHECK(ko::floatBits(out[offset + i]) == uint32_t(in[i]) << 16);
  }
}

KO_TEST(cuda, cuda_elem_copy_bytes) {
  kocuda::deviceOrSkip();
  const U16 a = randomBf16(4099, 5);
  DeviceBuffer<uint16_t> dA(a), dB(a.size());
  checkLaunch(ko::cuda::copyBytes(dB.ptr, dA.ptr, a.size() * sizeof(uint16_t), nullptr));
  KO_CHECK(dB.download() == a);
  KO_CHECK(dB.guardIntact());
}

// ---- argument validation (host only: runs without a GPU) -----------------------------------------

KO_TEST(cuda, cuda_elem_validation) {
  using namespace ko::cuda;
  auto bad = [](const std::string& err, const char* name) {
    KO_CHECK_MSG(!err.empty(), std::string(name) + ": expected an error");
    KO_CHECK_MSG(err.find(name) != std::string::npos, "error does not name the kernel: " + err);
  };
  // Non-null dummies: validation must fail before any of them is dereferenced or touched.
  bf16* p = reinterpret_cast<bf16*>(uintptr_t(0x1000));
  float* f = reinterpret_cast<float*>(uintptr_t(0x1000));
  const uint32_t* ids = reinterpret_cast<const uint32_t*>(uintptr_t(0x1000));
  const int32_t* i32 = reinterpret_cast<const int32_t*>(uintptr_t(0x1000));

  bad(embeddingForward(nullptr, ids, p, 4, 8, nullptr), "embeddingForward");
  bad(embeddingForward(p, ids, p, -1, 8, nullptr), "embeddingForward");
  bad(embeddingForward(p, ids, p, 4, 0, nullptr), "embeddingForward");
  KO_CHECK(embeddingForward(nullptr, nullptr, nullptr, 0, 8, nullptr).empty());  // n == 0: nothing to do
  bad(embeddingBackward(f, p, i32, i32, nullptr, 3, 8, nullptr), "embeddingBackward");
  bad(embeddingBackward(f, p, i32, i32, i32, -1, 8, nullptr), "embeddingBackward");
  bad(embeddingBackward(f, p, i32, i32, i32, 3, 0, nullptr), "embeddingBackward");
  KO_CHECK(embeddingBackward(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 8, nullptr).empty());

  bad(rmsnormForward(p, f, p, f, 4, 0, 64, 64, 64, 1e-6f, nullptr), "rmsnormForward");
  bad(rmsnormForward(p, f, p, f, 4, 1, 0, 64, 64, 1e-6f, nullptr), "rmsnormForward");
  bad(rmsnormForward(p, f, p, f, -1, 1, 64, 64, 64, 1e-6f, nullptr), "rmsnormForward");
  bad(rmsnormForward(p, f, p, f, 4, 2, 64, 127, 128, 1e-6f, nullptr), "rmsnormForward");  // xStride < heads*dim
  bad(rmsnormForward(p, f, p, f, 4, 2, 64, 128, 100, 1e-6f, nullptr), "rmsnormForward");  // yStride < heads*dim
  bad(rmsnormForward(p, f, p, f, 4, 1, 64, 64, 64, std::nanf(""), nullptr), "rmsnormForward");
  bad(rmsnormForward(nullptr, f, p, f, 4, 1, 64, 64, 64, 1e-6f, nullptr), "rmsnormForward");
  bad(rmsnormForward(p, f, p, nullptr, 4, 1, 64, 64, 64, 1e-6f, nullptr), "rmsnormForward");
  KO_CHECK(rmsnormForward(nullptr, nullptr, nullptr, nullptr, 0, 1, 64, 64, 64, 1e-6f, nullptr).empty());
  bad(rmsnormBackward(p, f, p, p, f, f, 4, 1, 64, 64, 64, nullptr, nullptr), "rmsnormBackward");  // no scratch
  bad(rmsnormBackward(p, f, p, p, f, f, 4, 1, 8193, 8193, 8193, f, nullptr), "rmsnormBackward");  // dim too large
  bad(rmsnormBackward(p, f, p, p, f, f, 4, 1, 64, 63, 64, f, nullptr), "rmsnormBackward");
  bad(rmsnormBackward(p, f, p, p, f, f, 4, 0, 64, 64, 64, f, nullptr), "rmsnormBackward");
  KO_CHECK(rmsnormBackwardScratchFloats(0, 64) == 0);
  KO_CHECK(rmsnormBackwardScratchFloats(37, 200) >= 200);
  KO_CHECK(rmsnormBackwardScratchFloats(37, 200) % 200 == 0);
  KO_CHECK(rmsnormBackwardScratchFloats(16384, 1024) <= size_t(1024) * 1024);

  bad(ropeApply(p, 2, 3, 4, 63, 4 * 63, f, 0, false, nullptr), "ropeApply");  // odd D
  bad(ropeApply(p, 2, 3, 4, 64, 255, f, 0, false, nullptr), "ropeApply");     // rowStride < H*D
  bad(ropeApply(p, 2, 3, 0, 64, 256, f, 0, false, nullptr), "ropeApply");
  bad(ropeApply(p, -1, 3, 4, 64, 256, f, 0, false, nullptr), "ropeApply");
  bad(ropeApply(p, 2, 3, 4, 64, 256, nullptr, 0, false, nullptr), "ropeApply");
  bad(ropeApply(p, 2, 3, 4, 64, 256, f, -1, false, nullptr), "ropeApply");
  KO_CHECK(ropeApply(nullptr, 0, 3, 4, 64, 256, nullptr, 0, false, nullptr).empty());

  bad(swigluForward(p, p, 4, 0, nullptr), "swigluForward");
  bad(swigluForward(p, p, -4, 8, nullptr), "swigluForward");
  bad(swigluForward(nullptr, p, 4, 8, nullptr), "swigluForward");
  bad(swigluBackward(p, p, nullptr, 4, 8, nullptr), "swigluBackward");
  bad(swigluBackward(p, p, p, 4, -8, nullptr), "swigluBackward");
  KO_CHECK(swigluForward(nullptr, nullptr, 0, 8, nullptr).empty());

  bad(addBf16(p, nullptr, p, 10, nullptr), "addBf16");
  bad(castFloatToBf16(nullptr, f, 10, nullptr), "castFloatToBf16");
  bad(castBf16ToFloat(f, nullptr, 10, nullptr), "castBf16ToFloat");
  bad(copyBytes(nullptr, p, 10, nullptr), "copyBytes");
  KO_CHECK(addBf16(nullptr, nullptr, nullptr, 0, nullptr).empty());
  KO_CHECK(castFloatToBf16(nullptr, nullptr, 0, nullptr).empty());
  KO_CHECK(castBf16ToFloat(nullptr, nullptr, 0, nullptr).empty());
  KO_CHECK(copyBytes(nullptr, nullptr, 0, nullptr).empty());
}

#endif  // KO_CUDA
