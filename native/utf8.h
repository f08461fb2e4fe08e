// utf8.h — decoding UTF-8 that may be invalid. Every byte sequence decodes to something: an invalid or
// truncated sequence, an overlong form, a surrogate or a value above U+10FFFF yields U+FFFD and consumes
// exactly one byte, so scanning always advances and never reads past the end (the WHATWG "maximal
// subpart" rule is not needed here; one replacement per bad byte keeps positions simple).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ko {

constexpr uint32_t kReplacementChar = 0xFFFD;

// Decodes the code point at s[i] (i < n), stores it in *cp and returns the number of bytes consumed (1..4).
// *valid is false when the bytes were not well-formed UTF-8 (then *cp = U+FFFD and 1 byte is consumed).
inline int utf8Decode(const unsigned char* s, size_t n, size_t i, uint32_t* cp, bool* valid) {
  const unsigned char c = s[i];
  *valid = true;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  int len;
  uint32_t v, min;
  if ((c & 0xE0) == 0xC0) {
    len = 2, v = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, v = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    *cp = kReplacementChar, *valid = false;
    return 1;
  }
  if (i + size_t(len) > n) {
    *cp = kReplacementChar, *valid = false;
    return 1;
  }
  for (int k = 1; k < len; k++) {
    const unsigned char d = s[i + k];
    if ((d & 0xC0) != 0x80) {
      *cp = kReplacementChar, *valid = false;
      return 1;
    }
    v = (v << 6) | (d & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
    *cp = kReplacementChar, *valid = false;
    return 1;
  }
  *cp = v;
  return len;
}

inline void utf8Append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

// Unicode White_Space code points (plus the C0 separators that text files use as spaces).
inline bool isUnicodeSpace(uint32_t c) {
  return c == 0x20 || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace ko
