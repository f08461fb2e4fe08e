// bench_corpus.cpp — the JSONL reader and helpers of bench_corpus.h: a small JSON string scanner, enough
// for the "text" field of the corpora in ../shared/data (no dependency on a JSON library in the bench).
#include "bench_corpus.h"

#include <cstdlib>
#include <fstream>

#include "utf8.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace kobench {

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
bool read4Hex(const char*& p, const char* end, uint32_t* v) {
  if (end - p < 4) return false;
  *v = 0;
  for (int i = 0; i < 4; i++) {
    const int h = hexValue(p[i]);
    if (h < 0) return false;
    *v = *v * 16 + uint32_t(h);
  }
  p += 4;
  return true;
}
// p at the opening quote; on success p is past the closing quote and *out (if non-null) holds the value.
bool parseString(const char*& p, const char* end, std::string* out) {
  if (p >= end || *p != '"') return false;
  for (p++; p < end;) {
    const char c = *p++;
    if (c == '"') return true;
    if (c != '\\') {
      if (out) out->push_back(c);
      continue;
    }
    if (p >= end) return false;
    const char e = *p++;
    char lit = 0;
    switch (e) {
      case 'n': lit = '\n'; break;
      case 't': lit = '\t'; break;
      case 'r': lit = '\r'; break;
      case 'b': lit = '\b'; break;
      case 'f': lit = '\f'; break;
      case '"': case '\\': case '/': lit = e; break;
      case 'u': {
        uint32_t cp;
        if (!read4Hex(p, end, &cp)) return false;
        if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
          const char* q = p + 2;
          uint32_t lo;
          if (read4Hex(q, end, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p = q;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = ko::kReplacementChar;  // lone surrogate
        if (out) ko::utf8Append(*out, cp);
        continue;
      }
      default: return false;
    }
    if (out) out->push_back(lit);
  }
  return false;
}
// Skips a non-string JSON value (number, literal, nested array/object) up to the ',' or '}' that ends it.
void skipValue(const char*& p, const char* end) {
  int depth = 0;
  while (p < end) {
    if (*p == '"') {
      if (!parseString(p, end, nullptr)) return;
      continue;
    }
    if (*p == '[' || *p == '{') depth++;
    if (*p == ']' || *p == '}') {
      if (depth == 0) return;
      depth--;
    }
    if (*p == ',' && depth == 0) return;
    p++;
  }
}
void skipSpace(const char*& p, const char* end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
}
}  // namespace

bool jsonlTextField(const std::string& line, std::string* text) {
  const char* p = line.data();
  const char* end = p + line.size();
  skipSpace(p, end);
  if (p >= end || *p++ != '{') return false;
  while (p < end) {
    skipSpace(p, end);
    std::string key;
    if (!parseString(p, end, &key)) return false;
    skipSpace(p, end);
    if (p >= end || *p++ != ':') return false;
    skipSpace(p, end);
    if (p < end && *p == '"') {
      std::string value;
      if (!parseString(p, end, &value)) return false;
      if (key == "text") {
        *text = std::move(value);
        return true;
      }
    } else {
      skipValue(p, end);
    }
    skipSpace(p, end);
    if (p < end && *p == ',') p++;
  }
  return false;
}

bool readJsonlTexts(const std::string& path, std::vector<std::string>* texts) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::string line, text;
  const size_t before = texts->size();
  while (std::getline(in, line))
    if (jsonlTextField(line, &text)) texts->push_back(text);
  return texts->size() > before;
}

std::string benchDataPath(const char* file) {
  const char* dir = std::getenv("KO_BENCH_DATA");
  return dir && *dir ? std::string(dir) + "/" + file : std::string();
}

void setBenchThreads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}

int benchMaxThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace kobench
