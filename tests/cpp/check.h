// check.h — a minimal test registry for the C++ suites (no framework needed).
//   KO_TEST(group, name) { ... KO_CHECK(cond); KO_CHECK_NEAR(a, b, tol); KO_SKIP("why"); }
// `ko_tests GROUP` runs one group (ctest registers one entry per group); exit 77 = all skipped.
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace kotest {
struct Case {
  const char* group;
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}
struct Register {
  Register(const char* g, const char* n, std::function<void()> f) { registry().push_back({g, n, std::move(f)}); }
};
struct Failure {
  std::string message;
};
struct Skip {
  std::string reason;
};
// Relative error ||a - b|| / ||b|| in double.
template <typename A, typename B>
double relError(const A* a, const B* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num) / (std::sqrt(den) + 1e-300);
}
}  // namespace kotest

#define KO_CAT2(a, b) a##b
#define KO_CAT(a, b) KO_CAT2(a, b)
#define KO_TEST(group, name)                                                              \
  static void KO_CAT(kotest_fn_, name)();                                                 \
  static kotest::Register KO_CAT(kotest_reg_, name)(#group, #name, KO_CAT(kotest_fn_, name)); \
  static void KO_CAT(kotest_fn_, name)()

#define KO_CHECK(cond)                                                                              \
  do {                                                                                              \
    if (!(cond)) throw kotest::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #cond}; \
  } while (0)

#define KO_CHECK_MSG(cond, msg)                                                                                \
  do {                                                                                                         \
    if (!(cond))                                                                                               \
      throw kotest::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #cond " — " + (msg)}; \
  } while (0)

#define KO_CHECK_NEAR(a, b, tol)                                                                       \
  do {                                                                                                 \
    double ka_ = (a), kb_ = (b);                                                                       \
    if (!(std::fabs(ka_ - kb_) <= (tol)))                                                              \
      throw kotest::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #a " = " +   \
                            std::to_string(ka_) + " vs " #b " = " + std::to_string(kb_)};              \
  } while (0)

// Relative-error check: ||a-b||/||b|| <= tol, printing the measured value.
#define KO_CHECK_REL(a, b, n, tol)                                                                       \
  do {                                                                                                   \
    double kr_ = kotest::relError((a), (b), (n));                                                        \
    if (!(kr_ <= (tol)))                                                                                 \
      throw kotest::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": rel error of " #a \
                            " vs " #b " = " + std::to_string(kr_) + " > " + std::to_string(tol)};        \
  } while (0)

#define KO_SKIP(reason) throw kotest::Skip{reason}
