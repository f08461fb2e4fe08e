// ngram_arpa.cpp — ARPA text: the writer (lmplz's layout and float printing, lm/common/print.cc) and an
// incremental, strict reader that names the line of every error.
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>

#include "ngram_lm.h"

namespace ko {

namespace {

// A float as KenLM prints it: double-conversion's ToShortestSingle with the converter of
// util/float_to_string.cc (NO_FLAGS, "inf", "NaN", 'e', decimal_in_shortest_low -6, high 21): the
// shortest digits that read back to the same float, plain decimal when the decimal exponent is in
// [-6, 21), else "d.ddde-7"; "-0" for negative zero.
size_t formatFloat(float v, char* out) {
  char* o = out;
  if (std::isnan(v)) {
    std::memcpy(o, "NaN", 3);
    return 3;
  }
  if (std::signbit(v)) *o++ = '-';
  const float a = std::fabs(v);
  if (std::isinf(a)) {
    std::memcpy(o, "inf", 3);
    return size_t(o - out) + 3;
  }
  if (a == 0.0f) {
    *o++ = '0';
    return size_t(o - out);
  }
  char buf[48];
  const auto r = std::to_chars(buf, buf + sizeof buf, a, std::chars_format::scientific);  // d.ddde±XX
  char digits[16];
  int k = 0;
  const char* p = buf;
  for (; p < r.ptr && *p != 'e'; p++)
    if (*p != '.') digits[k++] = *p;
  int e = 0;
  std::from_chars(p + 1 + (p[1] == '+'), r.ptr, e);
  if (e >= -6 && e < 21) {
    const int point = e + 1;  // digits before the decimal point
    if (point <= 0) {
      *o++ = '0';
      *o++ = '.';
      for (int i = 0; i < -point; i++) *o++ = '0';
      for (int i = 0; i < k; i++) *o++ = digits[i];
    } else if (point >= k) {
      for (int i = 0; i < k; i++) *o++ = digits[i];
      for (int i = k; i < point; i++) *o++ = '0';
    } else {
      for (int i = 0; i < point; i++) *o++ = digits[i];
      *o++ = '.';
      for (int i = point; i < k; i++) *o++ = digits[i];
    }
  } else {
    *o++ = digits[0];
    if (k > 1) {
      *o++ = '.';
      for (int i = 1; i < k; i++) *o++ = digits[i];
    }
    *o++ = 'e';
    if (e < 0) {
      *o++ = '-';
      e = -e;
    }
    o = std::to_chars(o, o + 8, e).ptr;
  }
  return size_t(o - out);
}

inline bool isBlank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (isBlank(s.front()) || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (isBlank(s.back()) || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// At most 60 bytes of s, quoted, for error messages.
std::string quote(std::string_view s) {
  if (s.size() > 60) return "\"" + std::string(s.substr(0, 60)) + "...\"";
  return "\"" + std::string(s) + "\"";
}

bool parseFloat(std::string_view s, float* v) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
  if (r.ptr != s.data() + s.size()) return false;
  if (r.ec == std::errc::result_out_of_range) {  // as KenLM's StringToFloat: underflow to 0, overflow to inf
    *v = static_cast<float>(std::strtod(std::string(s).c_str(), nullptr));
    return true;
  }
  return r.ec == std::errc() && !std::isnan(*v);
}

bool parseCount(std::string_view s, uint64_t* v) {
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Splits s on runs of spaces/tabs (sep = both) or of spaces only.
int splitWords(std::string_view s, std::string_view* out, int maxOut, bool tabsToo) {
  int n = 0;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || (tabsToo && s[i] == '\t'))) i++;
    if (i == s.size()) break;
    size_t j = i;
    while (j < s.size() && !(s[j] == ' ' || (tabsToo && s[j] == '\t'))) j++;
    if (n < maxOut) out[n] = s.substr(i, j - i);
    n++;
    i = j;
  }
  return n;
}

}  // namespace

// ---- writer -------------------------------------------------------------------------------------

void NgramModel::writeArpa(std::ostream& os) const {
  std::string buf;
  buf.reserve(1 << 20);
  auto flush = [&]() {
    os.write(buf.data(), std::streamsize(buf.size()));
    buf.clear();
  };
  char num[48];
  buf += "\\data\\\n";
  for (int n = 1; n <= order_; n++) buf += "ngram " + std::to_string(n) + "=" + std::to_string(count(n)) + "\n";
  buf += "\n";
  for (int n = 1; n <= order_; n++) {
    buf += "\\" + std::to_string(n) + "-grams:\n";
    for (size_t i = 0; i < count(n); i++) {
      buf.append(num, formatFloat(prob(n, i), num));
      const uint32_t* g = ngram(n, i);
      for (int k = 0; k < n; k++) {
        buf += k ? ' ' : '\t';
        buf += vocab_.word(g[k]);
      }
      if (n < order_) {
        buf += '\t';
        buf.append(num, formatFloat(backoff(n, i), num));
      }
      buf += '\n';
      if (buf.size() > (1 << 20)) flush();
    }
    buf += "\n";
  }
  buf += "\\end\\\n";
  flush();
}

// ---- reader -------------------------------------------------------------------------------------

ArpaReader::ArpaReader() {}

void ArpaReader::fail(const std::string& what) const {
  throw std::runtime_error("ARPA line " + std::to_string(lineNo_) + ": " + what);
}

void ArpaReader::feed(const char* data, size_t n) {
  size_t i = 0;
  while (i < n) {
    const char* nl = static_cast<const char*>(std::memchr(data + i, '\n', n - i));
    if (!nl) {
      pending_.append(data + i, n - i);
      return;
    }
    const size_t j = size_t(nl - data);
    if (!pending_.empty()) {
      pending_.append(data + i, j - i);
      line(pending_);
      pending_.clear();
    } else {
      line(std::string_view(data + i, j - i));
    }
    i = j + 1;
  }
}

void ArpaReader::line(std::string_view l) {
  lineNo_++;
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  const std::string_view t = trim(l);
  switch (st_) {
    case St::Preamble:
      if (t.empty() || t[0] == '#') return;  // KenLM allows comments before \data\ (as '#' lines)
      if (t != "\\data\\") fail("expected \\data\\ at the start of an ARPA file, got " + quote(t));
      st_ = St::Counts;
      return;
    case St::Counts: {
      if (t.empty() || t[0] == '\\') {
        if (declared_.empty()) fail("no \"ngram N=count\" line after \\data\\");
        st_ = St::Header;
        cur_ = 1;
        m_.resize(int(declared_.size()));
        for (size_t n = 0; n < declared_.size(); n++) {
          const size_t r = size_t(std::min<uint64_t>(declared_[n], 1u << 20));  // the header is not trusted
          m_.ids_[n].reserve(r * (n + 1));
          m_.prob_[n].reserve(r);
          if (n + 1 < declared_.size()) m_.backoff_[n].reserve(r);
          if (n) m_.tables_[n].reserve(r);
        }
        if (t.empty()) return;
        lineNo_--;
        line(l);  // the section header, without a blank line before it
        return;
      }
      if (t.substr(0, 6) != "ngram ") fail("expected \"ngram N=count\", got " + quote(t));
      const std::string_view rest = trim(t.substr(6));
      const size_t eq = rest.find('=');
      uint64_t n = 0, c = 0;
      if (eq == std::string_view::npos || !parseCount(trim(rest.substr(0, eq)), &n) ||
          !parseCount(trim(rest.substr(eq + 1)), &c))
        fail("expected \"ngram N=count\", got " + quote(t));
      if (n != declared_.size() + 1)
        fail("ngram counts must be given for orders 1, 2, 3, ... in turn; got order " + std::to_string(n));
      if (n > uint64_t(kNgramMaxOrder)) fail("order " + std::to_string(n) + " is above the supported maximum 6");
      declared_.push_back(c);
      return;
    }
    case St::Header: {
      if (t.empty()) return;
      if (cur_ > int(declared_.size())) {
        if (t != "\\end\\") fail("expected \\end\\ after the last section, got " + quote(t));
        st_ = St::Done;
        return;
      }
      const std::string want = "\\" + std::to_string(cur_) + "-grams:";
      if (t != want) fail("expected " + want + ", got " + quote(t));
      st_ = St::Entries;
      got_ = 0;
      return;
    }
    case St::Entries:
      if (t.empty()) {
        endSection();
        return;
      }
      if (t[0] == '\\') {
        endSection();
        lineNo_--;
        line(l);
        return;
      }
      entry(l);
      return;
    case St::Done:
      return;  // anything after \end\ is ignored
  }
}

void ArpaReader::endSection() {
  const uint64_t want = declared_[cur_ - 1];
  if (got_ != want)
    fail("expected " + std::to_string(want) + " " + std::to_string(cur_) + "-grams (as \\data\\ says), got " +
         std::to_string(got_));
  if (cur_ == 1) {
    if (seen_.size() <= kNgramBos || !seen_[kNgramBos]) fail("the 1-grams lack <s>");
    if (seen_.size() <= kNgramEos || !seen_[kNgramEos]) fail("the 1-grams lack </s>");
  }
  cur_++;
  st_ = St::Header;
}

void ArpaReader::entry(std::string_view l) {
  const int n = cur_;
  const int order = int(declared_.size());
  if (got_ == declared_[n - 1])
    fail("more " + std::to_string(n) + "-grams than the " + std::to_string(declared_[n - 1]) + " declared in \\data\\");
  // lmplz and SRILM write "prob<TAB>w1 w2 w3<TAB>backoff"; without tabs, fields are split on spaces.
  std::string_view probS, boS, words[kNgramMaxOrder];
  bool hasBo = false;
  int nw;
  const size_t tab = l.find('\t');
  if (tab != std::string_view::npos) {
    probS = trim(l.substr(0, tab));
    std::string_view rest = l.substr(tab + 1);
    const size_t tab2 = rest.find('\t');
    if (tab2 != std::string_view::npos) {
      boS = trim(rest.substr(tab2 + 1));
      if (boS.find('\t') != std::string_view::npos) fail("more than three tab-separated fields");
      hasBo = !boS.empty();
      rest = rest.substr(0, tab2);
    }
    nw = splitWords(rest, words, kNgramMaxOrder, false);
  } else {
    std::string_view f[kNgramMaxOrder + 2];
    const int nf = splitWords(l, f, kNgramMaxOrder + 2, true);
    probS = f[0];
    nw = nf - 1;
    if (nf == n + 2) {
      hasBo = true;
      boS = f[n + 1];
      nw = n;
    }
    for (int k = 0; k < n && k + 1 < nf && k < kNgramMaxOrder; k++) words[k] = f[k + 1];
  }
  if (nw != n)
    fail("expected " + std::to_string(n) + " word" + (n > 1 ? "s" : "") + " in a " + std::to_string(n) + "-gram, got " +
         std::to_string(nw));
  float prob, bo = 0.0f;
  if (!parseFloat(probS, &prob)) fail("bad log probability " + quote(probS));
  if (prob > 0.0f) fail("positive log probability " + quote(probS));
  if (hasBo && !parseFloat(boS, &bo)) fail("bad backoff " + quote(boS));
  if (n == order && bo != 0.0f) fail("non-zero backoff on an n-gram of the highest order");

  if (n == 1) {
    const uint32_t id = m_.vocab_.findOrInsert(words[0]);
    if (seen_.size() <= id) seen_.resize(size_t(id) + 1, 0);
    if (seen_[id]) fail("duplicate 1-gram " + quote(words[0]));
    seen_[id] = 1;
    m_.setUnigram(id, prob, bo);
    m_.ids_[0].push_back(id);
  } else {
    uint32_t ids[kNgramMaxOrder];
    for (int k = 0; k < n; k++) {
      if (!m_.vocab_.lookup(words[k], &ids[k]) || ids[k] >= seen_.size() || !seen_[ids[k]])
        fail("the word " + quote(words[k]) + " of this " + std::to_string(n) + "-gram is not a 1-gram");
    }
    auto text = [&](int from, int count) {
      std::string s;
      for (int k = from; k < from + count; k++) s += (k > from ? " " : "") + std::string(words[k]);
      return s;
    };
    if (n >= 3 && !m_.tables_[n - 2].find(ngramKey(ids, n - 1)))
      fail("the context " + quote(text(0, n - 1)) + " of this " + std::to_string(n) + "-gram is not a " +
           std::to_string(n - 1) + "-gram");
    bool existed;
    NgramEntry* e = m_.tables_[n - 1].insert(ngramKey(ids, n), &existed);
    if (existed) fail("duplicate " + std::to_string(n) + "-gram " + quote(text(0, n)));
    e->prob = prob;
    e->backoff = bo;
    m_.ids_[n - 1].insert(m_.ids_[n - 1].end(), ids, ids + n);
  }
  m_.prob_[n - 1].push_back(prob);
  if (n < order) m_.backoff_[n - 1].push_back(bo);
  got_++;
}

namespace {
// KenLM's loader fills a hole (a b c present, b c absent) with a blank b c whose probability is the
// backed-off one and whose backoff is 0, so the shortest-first lookup still reaches a b c.
void ensurePresent(NgramModel& m, std::vector<NgramTable>& tables, const uint32_t* g, int k) {
  if (k < 2 || tables[k - 1].find(ngramKey(g, k))) return;
  ensurePresent(m, tables, g + 1, k - 1);
  const float p = m.logProb(g, k);
  bool existed;
  NgramEntry* e = tables[k - 1].insert(ngramKey(g, k), &existed);
  e->prob = p;
  e->backoff = 0.0f;
}
}  // namespace

NgramModel ArpaReader::finish() {
  if (!pending_.empty()) {
    std::string last;
    last.swap(pending_);
    line(last);
  }
  if (st_ == St::Preamble) fail("the input ended without a \\data\\ header");
  if (st_ != St::Done) fail("the input ended before \\end\\");
  m_.uniProb_.resize(m_.vocab_.size(), -100.0f);
  m_.uniBackoff_.resize(m_.vocab_.size(), 0.0f);
  for (int n = 3; n <= m_.order_; n++)
    for (size_t i = 0; i < m_.count(n); i++) ensurePresent(m_, m_.tables_, m_.ngram(n, i) + 1, n - 1);
  st_ = St::Preamble;
  return std::move(m_);
}

}  // namespace ko
