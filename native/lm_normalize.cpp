// lm_normalize.cpp — see lm_normalize.h.
#include "lm_normalize.h"

#include <stdexcept>

#include "unicode_tables.h"
#include "utf8.h"

namespace ko {

namespace {

template <size_t N>
bool inTable(const CodepointRange (&t)[N], uint32_t cp) {
  return inRanges(t, int(N), cp);
}

enum class Kind { Other, Digit, PunctSymbol, Space, Newline };

Kind kindOf(uint32_t cp) {
  if (cp < 0x80) {  // ASCII without a table search
    if (cp == '\n') return Kind::Newline;
    if (cp >= '0' && cp <= '9') return Kind::Digit;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return Kind::Space;
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp < 0x20 || cp == 0x7F) return Kind::Other;
    return Kind::PunctSymbol;  // every other printable ASCII character is P or S
  }
  // Hangul syllables and CJK ideographs, most of a Korean corpus, are letters: skip the table searches.
  if ((cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0x4E00 && cp <= 0x9FFF)) return Kind::Other;
  if (inTable(kJsSpaceRanges, cp)) return Kind::Space;  // U+2028/2029 too: only '\n' ends a line
  if (inTable(kDecimalDigitRanges, cp)) return Kind::Digit;
  if (inTable(kPunctSymbolRanges, cp)) return Kind::PunctSymbol;
  return Kind::Other;
}

}  // namespace

void lmNormalizeAppend(std::string_view doc, std::string* out) {
  const auto* s = reinterpret_cast<const unsigned char*>(doc.data());
  const size_t n = doc.size();
  // Within a line: `pendingSpace` holds a space until a non-space follows (collapses runs and trims the
  // end); `lineHasText` says whether anything was written for this line (trims the start, drops empty
  // lines). A '\n' is written only before the first text of the next non-empty line.
  bool anyLine = false, lineHasText = false, pendingSpace = false;
  auto emit = [&](const char* bytes, size_t len) {
    if (!lineHasText) {
      if (anyLine) out->push_back('\n');
      anyLine = lineHasText = true;
    } else if (pendingSpace) {
      out->push_back(' ');
    }
    pendingSpace = false;
    out->append(bytes, len);
  };
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    bool valid;
    const size_t start = i;
    i += size_t(utf8Decode(s, n, i, &cp, &valid));
    auto emitCodepoint = [&] { valid ? emit(doc.data() + start, i - start) : emit("\xEF\xBF\xBD", 3); };
    switch (kindOf(cp)) {
      case Kind::Newline:
        lineHasText = pendingSpace = false;
        break;
      case Kind::Space:
        if (lineHasText) pendingSpace = true;
        break;
      case Kind::Digit:
        emit("0", 1);
        break;
      case Kind::PunctSymbol: {
        // " c ": the spaces merge with neighbouring white space like any other.
        if (lineHasText) pendingSpace = true;
        emitCodepoint();
        pendingSpace = true;
        break;
      }
      case Kind::Other:
        emitCodepoint();
        break;
    }
  }
}

void lmNormalizeBatch(const char* text, int64_t textBytes, const int64_t* offsets, int64_t nDocs,
                      std::string* outText, std::vector<int64_t>* outOffsets) {
  if (nDocs < 0 || (nDocs > 0 && (!text || !offsets)) || !outText || !outOffsets)
    throw std::invalid_argument("lmNormalizeBatch: null pointer or negative document count");
  for (int64_t i = 0; i < nDocs; i++)
    if (offsets[i] < 0 || offsets[i] > offsets[i + 1] || offsets[i + 1] > textBytes)
      throw std::invalid_argument("lmNormalizeBatch: offsets[" + std::to_string(i + 1) + "] = " +
                                  std::to_string(offsets[i + 1]) + " is out of order or past the text (" +
                                  std::to_string(textBytes) + " bytes)");
  std::vector<std::string> parts(static_cast<size_t>(nDocs));
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < nDocs; i++)
    lmNormalizeAppend(std::string_view(text + offsets[i], size_t(offsets[i + 1] - offsets[i])), &parts[size_t(i)]);
  outText->clear();
  outOffsets->assign(1, 0);
  size_t total = 0;
  for (const auto& p : parts) total += p.size();
  outText->reserve(total);
  for (const auto& p : parts) {
    outText->append(p);
    outOffsets->push_back(int64_t(outText->size()));
  }
}

}  // namespace ko
