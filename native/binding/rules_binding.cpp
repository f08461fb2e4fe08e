// rules_binding.cpp — ruleReasonNames() and applyRules(lang, params, text, offsets) → Promise of the
// verdicts and the edited text (native/text_rules.h). Param keys are the config's (prep.rules.ko/en).
#include <napi.h>

#include "async_task.h"
#include "buffers.h"
#include "prep_binding.h"
#include "text_rules.h"

namespace kob {

namespace {

double paramOr(const Napi::Env& env, const Napi::Object& o, const char* key, double fallback, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  if (!v.IsNumber()) throw Napi::TypeError::New(env, where + "." + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

ko::KoreanRuleParams koreanParams(const Napi::Env& env, const Napi::Object& o) {
  ko::KoreanRuleParams p;
  const std::string w = "prep.rules.ko";
  p.minWords = int64_t(paramOr(env, o, "min_words", double(p.minWords), w));
  p.maxWords = int64_t(paramOr(env, o, "max_words", double(p.maxWords), w));
  p.minMeanWordLen = paramOr(env, o, "min_mean_word_len", p.minMeanWordLen, w);
  p.maxMeanWordLen = paramOr(env, o, "max_mean_word_len", p.maxMeanWordLen, w);
  p.minKoreanRatio = paramOr(env, o, "min_korean_ratio", p.minKoreanRatio, w);
  p.maxTop5gramFrac = paramOr(env, o, "max_top_5gram_frac", p.maxTop5gramFrac, w);
  p.dropUnterminatedLines = paramOr(env, o, "drop_unterminated_lines", p.dropUnterminatedLines ? 1 : 0, w) != 0;
  return p;
}

ko::EnglishRuleParams englishParams(const Napi::Env& env, const Napi::Object& o) {
  ko::EnglishRuleParams p;
  const std::string w = "prep.rules.en";
  p.minWords = int64_t(paramOr(env, o, "min_words", double(p.minWords), w));
  p.maxWords = int64_t(paramOr(env, o, "max_words", double(p.maxWords), w));
  p.minMeanWordLen = paramOr(env, o, "min_mean_word_len", p.minMeanWordLen, w);
  p.maxMeanWordLen = paramOr(env, o, "max_mean_word_len", p.maxMeanWordLen, w);
  p.maxSymbolWordRatio = paramOr(env, o, "max_symbol_word_ratio", p.maxSymbolWordRatio, w);
  p.maxBulletLinesRatio = paramOr(env, o, "max_bullet_lines_ratio", p.maxBulletLinesRatio, w);
  p.maxEllipsisLinesRatio = paramOr(env, o, "max_ellipsis_lines_ratio", p.maxEllipsisLinesRatio, w);
  p.minAlphaWordsRatio = paramOr(env, o, "min_alpha_words_ratio", p.minAlphaWordsRatio, w);
  p.minStopWords = int64_t(paramOr(env, o, "min_stop_words", double(p.minStopWords), w));
  p.maxDupLineFrac = paramOr(env, o, "max_dup_line_frac", p.maxDupLineFrac, w);
  p.maxDupLineCharFrac = paramOr(env, o, "max_dup_line_char_frac", p.maxDupLineCharFrac, w);
  p.maxDupParaFrac = paramOr(env, o, "max_dup_para_frac", p.maxDupParaFrac, w);
  p.maxDupParaCharFrac = paramOr(env, o, "max_dup_para_char_frac", p.maxDupParaCharFrac, w);
  // Arrays: top_{2,3,4}gram and dup_{5..10}gram thresholds, in that order.
  auto list = [&](const char* key, double* dst, uint32_t n) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return;
    if (!v.IsArray() || v.As<Napi::Array>().Length() != n)
      throw Napi::TypeError::New(env, w + "." + key + " must be an array of " + std::to_string(n) + " numbers");
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < n; i++) {
      Napi::Value x = a.Get(i);
      if (!x.IsNumber()) throw Napi::TypeError::New(env, w + "." + key + "[" + std::to_string(i) + "] must be a number");
      dst[i] = x.As<Napi::Number>().DoubleValue();
    }
  };
  list("max_top_ngram_char_frac", p.maxTopNgramCharFrac, 3);
  list("max_dup_ngram_char_frac", p.maxDupNgramCharFrac, 6);
  return p;
}

Napi::Value RuleReasonNames(const Napi::CallbackInfo& info) {
  auto out = Napi::Array::New(info.Env(), ko::kNumRuleReasons);
  for (int32_t i = 0; i < ko::kNumRuleReasons; i++) out.Set(uint32_t(i), ko::ruleReasonName(i));
  return out;
}

Napi::Value ApplyRules(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string lang = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (lang != "ko" && lang != "en") throw Napi::TypeError::New(env, "applyRules: lang must be 'ko' or 'en', got '" + lang + "'");
  if (!info[1].IsObject()) throw Napi::TypeError::New(env, "applyRules: params must be an object");
  auto params = info[1].As<Napi::Object>();
  ko::KoreanRuleParams kp;
  ko::EnglishRuleParams ep;
  if (lang == "ko") kp = koreanParams(env, params);
  else ep = englishParams(env, params);
  size_t nBytes = 0;
  const char* text = bytesOf(env, info[2], "applyRules: text", &nBytes);
  int64_t nDocs = 0;
  const int64_t* offsets = offsetsOf(env, info[3], "applyRules: offsets", nBytes, &nDocs);
  struct Out {
    std::vector<ko::RuleVerdict> verdicts;
    std::string text;
    std::vector<int64_t> offsets;
  };
  auto out = std::make_shared<Out>();
  out->verdicts.resize(size_t(nDocs));
  const ko::RuleLang rl = lang == "ko" ? ko::RuleLang::Korean : ko::RuleLang::English;
  return AsyncTask::run(
      env,
      [=] { ko::applyRules(rl, kp, ep, text, int64_t(nBytes), offsets, nDocs, out->verdicts.data(), &out->text, &out->offsets); },
      [out](Napi::Env env) -> Napi::Value {
        const size_t n = out->verdicts.size();
        auto reason = Napi::Int32Array::New(env, n);
        auto value = Napi::Float64Array::New(env, n);
        auto lines = Napi::Int32Array::New(env, n);
        auto invalid = Napi::Int32Array::New(env, n);
        for (size_t i = 0; i < n; i++) {
          reason[i] = out->verdicts[i].reason;
          value[i] = out->verdicts[i].value;
          lines[i] = out->verdicts[i].linesDropped;
          invalid[i] = out->verdicts[i].invalidUtf8;
        }
        auto o = Napi::Object::New(env);
        o.Set("reason", reason);
        o.Set("value", value);
        o.Set("linesDropped", lines);
        o.Set("invalidUtf8", invalid);
        o.Set("text", Napi::Buffer<char>::Copy(env, out->text.data(), out->text.size()));
        o.Set("offsets", copyToTypedArray(env, out->offsets));
        return o;
      },
      {info[2], info[3]});
}

}  // namespace

void registerRules(Napi::Env env, Napi::Object exports) {
  exports.Set("ruleReasonNames", Napi::Function::New(env, RuleReasonNames));
  exports.Set("applyRules", Napi::Function::New(env, ApplyRules));
}

}  // namespace kob
