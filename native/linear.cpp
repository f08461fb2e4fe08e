// linear.cpp — y = x · w^T with the Hugging Face weight layout w[out, in]; everything goes through gemm.
#include "ops.h"

namespace ko {

void linearForward(float* y, const float* x, const float* w, int M, int K, int N) {
  // y[M,N] = x[M,K] · w[N,K]^T
  gemm(false, true, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
}

void linearBackward(float* dx, float* dw, const float* dy, const float* x, const float* w, int M, int K, int N) {
  // dx[M,K] = dy[M,N] · w[N,K]   (overwritten)
  if (dx) gemm(false, false, M, K, N, 1.0f, dy, N, w, K, 0.0f, dx, K);
  // dw[N,K] += dy[M,N]^T · x[M,K]
  if (dw) gemm(true, false, N, K, M, 1.0f, dy, N, x, K, 1.0f, dw, K);
}

}  // namespace ko
