// Test runner: `ko_tests [group]`. Exit 0 = pass, 1 = failure, 77 = everything selected was skipped.
#include <cstring>

#include "check.h"

int main(int argc, char** argv) {
  const char* group = argc > 1 ? argv[1] : nullptr;
  int passed = 0, failed = 0, skipped = 0;
  for (auto& c : kotest::registry()) {
    if (group && std::strcmp(group, c.group) != 0) continue;
    try {
      c.fn();
      passed++;
      std::printf("PASS %s.%s\n", c.group, c.name);
    } catch (const kotest::Skip& s) {
      skipped++;
      std::printf("SKIP %s.%s: %s\n", c.group, c.name, s.reason.c_str());
    } catch (const kotest::Failure& f) {
      failed++;
      std::printf("FAIL %s.%s: %s\n", c.group, c.name, f.message.c_str());
    } catch (const std::exception& e) {
      failed++;
      std::printf("FAIL %s.%s: exception: %s\n", c.group, c.name, e.what());
    }
  }
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  if (failed) return 1;
  if (passed == 0 && skipped > 0) return 77;
  return 0;
}
