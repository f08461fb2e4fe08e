// tokenizer_binding.cpp — learning Korean vocabulary for `ko-train tokenizer extend`:
//   countHangulWords(text: Buffer, offsets: BigInt64Array,
//                    opts?: {branchingEntropySplit?: boolean, entropyContext?: number, entropyThreshold?: number})
//     → Promise<{words: string[], counts: Float64Array}>                      (native/hangul_words.h)
//   trainUnigram(words: string[], counts: Float64Array,
//                opts?: {vocabSize?, maxPieceChars?, seedSize?, shrinkFactor?, emIterations?},
//                onProgress?: (p: {round, iteration, pieces, logLikelihood}) => void)
//     → Promise<{pieces: string[], logProbs: Float64Array}>                   (native/unigram_trainer.h)
// Both run off the main thread. Training reports progress through a thread-safe function and waits for
// each report to be delivered, so every onProgress call happens (on the main thread) before the promise
// settles; if onProgress throws, training stops and the promise rejects with its message.
#include "tokenizer_binding.h"

#include <cmath>
#include <cstdio>
#include <future>
#include <memory>
#include <stdexcept>

#include "async_task.h"
#include "hangul_words.h"
#include "unigram_trainer.h"

namespace kob {

namespace {

// A number as JavaScript would print it (no trailing zeros): 1, 0.5, 2147483647.
std::string numberText(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", x);
  return buf;
}

// opts[key] if present: a number (integer when `integer`), at least `min`; else `fallback`.
double numberOption(const Napi::Env& env, const Napi::Object& opts, const char* key, double fallback, bool integer,
                    double min, double max, const std::string& where) {
  Napi::Value v = opts.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(env, where + ": opts." + key + " must be a number");
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(x) || (integer && x != std::floor(x)) || x < min || x > max)
    throw Napi::TypeError::New(env, where + ": opts." + key + " must be " + (integer ? "an integer" : "a number") +
                                        " in [" + numberText(min) + ", " + numberText(max) + "], got " +
                                        v.ToString().Utf8Value());
  return x;
}

Napi::Object optionsObject(const Napi::Env& env, const Napi::Value& v, const std::string& where) {
  if (v.IsUndefined() || v.IsNull()) return Napi::Object::New(env);
  if (!v.IsObject() || v.IsArray() || v.IsFunction()) throw Napi::TypeError::New(env, where + ": opts must be an object");
  return v.As<Napi::Object>();
}

Napi::Value CountHangulWords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string where = "countHangulWords";
  size_t nBytes = 0;
  const char* text = bytesOf(env, info[0], where + ": text", &nBytes);
  int64_t nDocs = 0;
  const int64_t* offsets = offsetsOf(env, info[1], where + ": offsets", nBytes, &nDocs);
  const Napi::Object opts = optionsObject(env, info[2], where);
  ko::HangulWordOptions o;
  Napi::Value split = opts.Get("branchingEntropySplit");
  if (!split.IsUndefined()) {
    if (!split.IsBoolean()) throw Napi::TypeError::New(env, where + ": opts.branchingEntropySplit must be a boolean");
    o.branchingEntropySplit = split.As<Napi::Boolean>().Value();
  }
  o.entropyContext = int(numberOption(env, opts, "entropyContext", o.entropyContext, true, 1, 64, where));
  o.entropyThreshold = numberOption(env, opts, "entropyThreshold", o.entropyThreshold, false, 0, 1e9, where);

  struct Out {
    std::vector<std::string> words;
    std::vector<int64_t> counts;
  };
  auto out = std::make_shared<Out>();
  return AsyncTask::run(
      env, [=] { ko::countHangulWords(text, int64_t(nBytes), offsets, nDocs, o, &out->words, &out->counts); },
      [out](Napi::Env env) -> Napi::Value {
        auto words = Napi::Array::New(env, out->words.size());
        for (size_t i = 0; i < out->words.size(); i++) words.Set(uint32_t(i), Napi::String::New(env, out->words[i]));
        auto counts = Napi::Float64Array::New(env, out->counts.size());
        for (size_t i = 0; i < out->counts.size(); i++) counts[i] = double(out->counts[i]);
        auto r = Napi::Object::New(env);
        r.Set("words", words);
        r.Set("counts", counts);
        return r;
      },
      {info[0], info[1]});
}

// One progress report on its way to the main thread; `delivered` carries onProgress's error, if any.
struct ProgressCall {
  ko::UnigramProgress progress;
  std::promise<std::string> delivered;
};

// Runs on the main thread — or with a null env when the thread-safe function is torn down (then only
// unblocks the worker).
void callProgress(Napi::Env env, Napi::Function fn, std::nullptr_t*, ProgressCall* call) {
  std::string error;
  if (static_cast<napi_env>(env) != nullptr && static_cast<napi_value>(fn) != nullptr) {
    try {
      auto p = Napi::Object::New(env);
      p.Set("round", call->progress.round);
      p.Set("iteration", call->progress.iteration);
      p.Set("pieces", double(call->progress.pieces));
      p.Set("logLikelihood", call->progress.logLikelihood);
      fn.Call({p});
    } catch (const Napi::Error& e) {
      error = e.Message();
      if (error.empty()) error = "onProgress threw";
    }
  }
  call->delivered.set_value(error);
  delete call;
}

using ProgressFunction = Napi::TypedThreadSafeFunction<std::nullptr_t, ProgressCall, callProgress>;

Napi::Value TrainUnigram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string where = "trainUnigram";
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, where + ": words must be an array of strings");
  auto wordsJs = info[0].As<Napi::Array>();
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw Napi::TypeError::New(env, where + ": counts must be a Float64Array");
  auto countsJs = info[1].As<Napi::Float64Array>();
  if (countsJs.ElementLength() != wordsJs.Length())
    throw Napi::TypeError::New(env, where + ": words has " + std::to_string(wordsJs.Length()) + " entries but counts has " +
                                        std::to_string(countsJs.ElementLength()));
  auto words = std::make_shared<std::vector<std::string>>(wordsJs.Length());
  auto counts = std::make_shared<std::vector<int64_t>>(wordsJs.Length());
  for (uint32_t i = 0; i < wordsJs.Length(); i++) {
    Napi::Value w = wordsJs.Get(i);
    if (!w.IsString()) throw Napi::TypeError::New(env, where + ": words[" + std::to_string(i) + "] must be a string");
    (*words)[i] = w.As<Napi::String>().Utf8Value();
    const double c = countsJs[i];
    if (!(c >= 0 && c <= 9007199254740992.0 && c == std::floor(c)))
      throw Napi::TypeError::New(env, where + ": counts[" + std::to_string(i) + "] = " + numberText(c) +
                                          " must be a non-negative integer");
    (*counts)[i] = int64_t(c);
  }
  const Napi::Object opts = optionsObject(env, info[2], where);
  ko::UnigramParams p;
  p.vocabSize = int(numberOption(env, opts, "vocabSize", p.vocabSize, true, 1, 2147483647.0, where));
  p.maxPieceChars = int(numberOption(env, opts, "maxPieceChars", p.maxPieceChars, true, 1, 1024, where));
  p.seedSize = int64_t(numberOption(env, opts, "seedSize", double(p.seedSize), true, 0, 9007199254740992.0, where));
  p.shrinkFactor = numberOption(env, opts, "shrinkFactor", p.shrinkFactor, false, 0, 1, where);
  if (p.shrinkFactor <= 0 || p.shrinkFactor >= 1)
    throw Napi::TypeError::New(env, where + ": opts.shrinkFactor must be strictly between 0 and 1");
  p.emIterations = int(numberOption(env, opts, "emIterations", p.emIterations, true, 1, 1000, where));

  std::shared_ptr<ProgressFunction> tsfn;
  if (!info[3].IsUndefined() && !info[3].IsNull()) {
    if (!info[3].IsFunction()) throw Napi::TypeError::New(env, where + ": onProgress must be a function");
    tsfn = std::make_shared<ProgressFunction>(
        ProgressFunction::New(env, info[3].As<Napi::Function>(), "trainUnigram progress", 0, 1));
  }

  auto result = std::make_shared<std::vector<ko::UnigramPiece>>();
  return AsyncTask::run(
      env,
      [words, counts, p, tsfn, result] {
        // Released however training ends, so the thread-safe function never keeps the event loop alive.
        struct Release {
          std::shared_ptr<ProgressFunction> f;
          ~Release() {
            if (f) f->Release();
          }
        } release{tsfn};
        std::function<void(const ko::UnigramProgress&)> report;
        if (tsfn)
          report = [&tsfn](const ko::UnigramProgress& g) {
            auto* call = new ProgressCall{g, {}};
            std::future<std::string> delivered = call->delivered.get_future();
            if (tsfn->BlockingCall(call) != napi_ok) {  // closing: nobody is listening any more
              delete call;
              return;
            }
            const std::string error = delivered.get();
            if (!error.empty()) throw std::runtime_error("trainUnigram: onProgress threw: " + error);
          };
        *result = ko::trainUnigram(*words, *counts, p, report);
      },
      [result](Napi::Env env) -> Napi::Value {
        auto pieces = Napi::Array::New(env, result->size());
        auto logProbs = Napi::Float64Array::New(env, result->size());
        for (size_t i = 0; i < result->size(); i++) {
          pieces.Set(uint32_t(i), Napi::String::New(env, (*result)[i].piece));
          logProbs[i] = (*result)[i].logProb;
        }
        auto r = Napi::Object::New(env);
        r.Set("pieces", pieces);
        r.Set("logProbs", logProbs);
        return r;
      });
}

}  // namespace

void registerTokenizer(Napi::Env env, Napi::Object exports) {
  exports.Set("countHangulWords", Napi::Function::New(env, CountHangulWords));
  exports.Set("trainUnigram", Napi::Function::New(env, TrainUnigram));
}

}  // namespace kob
