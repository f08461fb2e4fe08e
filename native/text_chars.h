// text_chars.h — the character classes and hashing the text rules use (text_rules.h documents the
// exact definitions). Inline because they sit in per-code-point loops.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

#include "utf8.h"

namespace ko {

inline bool isHangul(uint32_t c) {
  return (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0x1100 && c <= 0x11FF) || (c >= 0x3130 && c <= 0x318F) ||
         (c >= 0xA960 && c <= 0xA97F) || (c >= 0xD7B0 && c <= 0xD7FF);
}

inline bool isAsciiSpace(uint32_t c) { return c == 0x20 || (c >= 0x09 && c <= 0x0D); }
inline bool isSpaceCp(uint32_t c) { return c < 0x80 ? isAsciiSpace(c) : isUnicodeSpace(c); }
inline bool isAsciiAlpha(uint32_t c) { return uint32_t((c | 0x20) - 'a') < 26; }

// "Letter" for the Korean ratio and the English alphabetic-word test: everything except whitespace,
// controls, ASCII non-letters, and the punctuation/symbol/digit blocks listed in text_rules.h.
inline bool isRuleLetter(uint32_t c) {
  if (c < 0x80) return isAsciiAlpha(c);
  if (c < 0xC0) return false;                 // C1 controls, Latin-1 punctuation and symbols (incl. NBSP)
  if (c < 0x2000) return c != 0xD7 && c != 0xF7 && c != 0x1680;
  if (c < 0x2800) return false;               // General Punctuation .. Dingbats
  if (c < 0x3000) return !(c >= 0x2E00 && c <= 0x2E7F);  // Supplemental Punctuation
  if (c <= 0x303F) return false;              // CJK Symbols and Punctuation
  if (c < 0xFE00) return true;
  if (c <= 0xFE0F) return false;              // variation selectors
  if (c >= 0xFE10 && c <= 0xFE1F) return false;  // vertical forms
  if (c >= 0xFE30 && c <= 0xFE6F) return false;  // CJK compatibility forms, small form variants
  if (c == 0xFEFF) return false;              // zero-width no-break space (BOM)
  if (c >= 0xFF01 && c <= 0xFF20) return false;  // fullwidth punctuation and digits
  if (c >= 0xFF3B && c <= 0xFF40) return false;
  if (c >= 0xFF5B && c <= 0xFF65) return false;
  if (c >= 0xFFF0 && c <= 0xFFFF) return false;  // specials, U+FFFD
  if (c >= 0x1F000 && c <= 0x1FAFF) return false;  // emoji, pictographs, playing cards...
  if (c >= 0xE0000 && c <= 0xE01EF) return false;  // tags, variation selectors supplement
  return true;
}

inline bool isRuleDigit(uint32_t c) { return (c >= '0' && c <= '9') || (c >= 0xFF10 && c <= 0xFF19); }

// Decodes one code point of text known to be valid UTF-8 (after sanitizing): no checks, s[*i] < end.
inline uint32_t decodeValidUtf8(const unsigned char* s, size_t* i) {
  const uint32_t c = s[*i];
  if (c < 0x80) {
    *i += 1;
    return c;
  }
  if (c < 0xE0) {
    const uint32_t cp = ((c & 0x1F) << 6) | (s[*i + 1] & 0x3F);
    *i += 2;
    return cp;
  }
  if (c < 0xF0) {
    const uint32_t cp = ((c & 0x0F) << 12) | ((s[*i + 1] & 0x3F) << 6) | (s[*i + 2] & 0x3F);
    *i += 3;
    return cp;
  }
  const uint32_t cp =
      ((c & 0x07) << 18) | ((s[*i + 1] & 0x3F) << 12) | ((s[*i + 2] & 0x3F) << 6) | (s[*i + 3] & 0x3F);
  *i += 4;
  return cp;
}

// Byte-parallel (SWAR) tricks load 8 bytes into a uint64_t and need byte 0 to be the lowest.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
constexpr bool kLittleEndian = false;
#else
constexpr bool kLittleEndian = true;  // x86, ARM (and MSVC targets, which are all little-endian)
#endif

// Index of the lowest set bit; x != 0.
inline int ctz64(uint64_t x) {
#if defined(_MSC_VER) && !defined(__clang__)
  unsigned long i;
  _BitScanForward64(&i, x);
  return int(i);
#else
  return __builtin_ctzll(x);
#endif
}

// A 64-bit finalizer (splitmix64): spreads the bits of a hash accumulator so that a power-of-two
// table can use the low bits.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

// Hash of a byte span, 8 bytes at a time (lines and paragraphs are compared by this).
inline uint64_t hashBytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ mix64(w)) * 0x9FB21C651E98DF25ull;
  }
  uint64_t w = 0;
  for (size_t k = 0; i + k < n; k++) w |= uint64_t(uint8_t(p[i + k])) << (8 * k);
  return mix64(h ^ mix64(w + n));
}

}  // namespace ko
