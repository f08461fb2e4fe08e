// bench_registry.h — benchmark sections that register themselves, so a new section is one file:
//   KO_BENCH(prep, rules) { ... print a table ...; return true; }
// `ko_bench --prep [--quick]` runs every section of group "prep" in registration order.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace kobench {
struct Section {
  const char* group;
  const char* name;
  std::function<bool(bool quick)> fn;  // false = could not run (reason printed by the section)
};
inline std::vector<Section>& sections() {
  static std::vector<Section> s;
  return s;
}
struct RegisterSection {
  RegisterSection(const char* g, const char* n, std::function<bool(bool)> f) { sections().push_back({g, n, std::move(f)}); }
};
}  // namespace kobench

#define KO_BENCH_CAT2(a, b) a##b
#define KO_BENCH_CAT(a, b) KO_BENCH_CAT2(a, b)
#define KO_BENCH(group, name)                                                                           \
  static bool KO_BENCH_CAT(kobench_fn_, name)(bool quick);                                              \
  static kobench::RegisterSection KO_BENCH_CAT(kobench_reg_, name)(#group, #name, KO_BENCH_CAT(kobench_fn_, name)); \
  static bool KO_BENCH_CAT(kobench_fn_, name)(bool quick)
