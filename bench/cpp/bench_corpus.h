// bench_corpus.h — what the prep benchmarks share: documents packed back to back with offsets (the layout
// the native prep functions take), the "text" fields of a JSONL file ($KO_BENCH_DATA), thread control and
// best-of-N timing.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace kobench {

struct BenchDocs {
  std::string name;
  std::string text;
  std::vector<int64_t> offsets{0};
  void add(const std::string& doc) {
    text += doc;
    offsets.push_back(int64_t(text.size()));
  }
  int64_t size() const { return int64_t(offsets.size()) - 1; }
};

// The "text" string of one JSON object line (escapes decoded, lone surrogates → U+FFFD); false when the
// line is not an object or has no string "text".
bool jsonlTextField(const std::string& line, std::string* text);

// Every "text" of the file, in order; false when the file is missing or has none.
bool readJsonlTexts(const std::string& path, std::vector<std::string>* texts);

// $KO_BENCH_DATA/<file> when KO_BENCH_DATA is set, else "".
std::string benchDataPath(const char* file);

void setBenchThreads(int n);
int benchMaxThreads();

template <class F>
double bestSeconds(F fn, int reps) {
  double best = 1e300;
  for (int i = 0; i < reps; i++) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace kobench
