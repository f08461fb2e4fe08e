// ngram_binding.cpp — n-gram LMs for the perplexity filter (native/ngram_lm.h): NgramCounter (streaming
// counts → estimate() → NgramModel), ArpaReader (chunks → finish() → NgramModel) and NgramModel
// (writeArpa, scoreDocuments, scoreSentence). Counting, estimation, writing and batch scoring run off the
// main thread.
#include <napi.h>

#include <fstream>
#include <memory>
#include <mutex>

#include "async_task.h"
#include "buffers.h"
#include "lm_normalize.h"
#include "ngram_lm.h"
#include "prep_binding.h"

namespace kob {

namespace {

struct NgramClasses {
  Napi::FunctionReference model;
};

class NgramModelWrap : public Napi::ObjectWrap<NgramModelWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NgramModel",
                       {InstanceAccessor<&NgramModelWrap::order>("order"),
                        InstanceAccessor<&NgramModelWrap::counts>("counts"),
                        InstanceMethod<&NgramModelWrap::writeArpa>("writeArpa"),
                        InstanceMethod<&NgramModelWrap::scoreDocuments>("scoreDocuments"),
                        InstanceMethod<&NgramModelWrap::scoreSentence>("scoreSentence")});
  }
  NgramModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NgramModelWrap>(info) {
    if (!info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "NgramModel objects come from NgramCounter.estimate() or ArpaReader.finish()");
    model_ = *info[0].As<Napi::External<std::shared_ptr<const ko::NgramModel>>>().Data();
  }
  static Napi::Value wrap(Napi::Env env, std::shared_ptr<const ko::NgramModel> m) {
    auto* cls = env.GetInstanceData<NgramClasses>();
    std::shared_ptr<const ko::NgramModel> holder = std::move(m);
    auto ext = Napi::External<std::shared_ptr<const ko::NgramModel>>::New(env, &holder);
    return cls->model.New({ext});
  }

 private:
  Napi::Value order(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), model_->order()); }
  Napi::Value counts(const Napi::CallbackInfo& info) {
    auto a = Napi::Array::New(info.Env(), model_->order());
    for (int n = 1; n <= model_->order(); n++) a.Set(uint32_t(n - 1), double(model_->count(n)));
    return a;
  }
  Napi::Value writeArpa(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "writeArpa: path must be a string");
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    auto m = model_;
    return AsyncTask::run(
        env,
        [m, path] {
          const std::string tmp = path + ".partial";
          {
            std::ofstream os(tmp, std::ios::binary);
            if (!os) throw std::runtime_error(path + ": cannot open for writing");
            m->writeArpa(os);
            os.flush();
            if (!os) throw std::runtime_error(path + ": write failed (disk full?)");
          }
          if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error(path + ": cannot rename " + tmp);
        },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }
  Napi::Value scoreDocuments(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t nBytes = 0;
    const char* text = bytesOf(env, info[0], "scoreDocuments: text", &nBytes);
    int64_t nDocs = 0;
    const int64_t* offsets = offsetsOf(env, info[1], "scoreDocuments: offsets", nBytes, &nDocs);
    struct Out {
      std::vector<double> sum;
      std::vector<int64_t> tokens, oov;
    };
    auto out = std::make_shared<Out>();
    out->sum.resize(size_t(nDocs));
    out->tokens.resize(size_t(nDocs));
    out->oov.resize(size_t(nDocs));
    auto m = model_;
    return AsyncTask::run(
        env, [=] { m->scoreDocuments(text, offsets, nDocs, out->sum.data(), out->tokens.data(), out->oov.data()); },
        [out](Napi::Env env) -> Napi::Value {
          auto r = Napi::Object::New(env);
          r.Set("sumLog10", copyToTypedArray(env, out->sum));
          auto t = Napi::Float64Array::New(env, out->tokens.size());
          auto o = Napi::Float64Array::New(env, out->oov.size());
          for (size_t i = 0; i < out->tokens.size(); i++) t[i] = double(out->tokens[i]), o[i] = double(out->oov[i]);
          r.Set("nTokens", t);
          r.Set("oov", o);
          return r;
        },
        {info[0], info[1], Value()});
  }
  // One line of space-separated tokens, scored synchronously (for `lm query`).
  Napi::Value scoreSentence(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "scoreSentence: line must be a string");
    const std::string line = info[0].As<Napi::String>().Utf8Value();
    std::vector<std::string_view> words;
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) i++;
      size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t') j++;
      if (j > i) words.emplace_back(line.data() + i, j - i);
      i = j;
    }
    std::vector<float> per;
    int oov = 0;
    const double total = model_->scoreSentence(words, &per, &oov);
    auto r = Napi::Object::New(env);
    r.Set("total", total);
    auto a = Napi::Array::New(env, per.size());
    for (size_t k = 0; k < per.size(); k++) a.Set(uint32_t(k), double(per[k]));
    r.Set("perWord", a);
    r.Set("oov", oov);
    return r;
  }

  std::shared_ptr<const ko::NgramModel> model_;
};

class NgramCounterWrap : public Napi::ObjectWrap<NgramCounterWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NgramCounter",
                       {InstanceMethod<&NgramCounterWrap::addText>("addText"),
                        InstanceMethod<&NgramCounterWrap::estimate>("estimate"),
                        InstanceAccessor<&NgramCounterWrap::tokens>("tokens"),
                        InstanceAccessor<&NgramCounterWrap::sentences>("sentences")});
  }
  NgramCounterWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NgramCounterWrap>(info) {
    if (!info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "NgramCounter(order): order must be a number");
    const int order = info[0].As<Napi::Number>().Int32Value();
    if (order < 1 || order > ko::kNgramMaxOrder)
      throw Napi::RangeError::New(info.Env(), "NgramCounter: order " + std::to_string(order) + " is not in 1.." + std::to_string(ko::kNgramMaxOrder));
    counter_ = std::make_shared<ko::NgramCounter>(order);
  }

 private:
  // Calls are serialized by the caller awaiting each promise; the mutex makes overlapping calls safe anyway.
  Napi::Value addText(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t n = 0;
    const char* p = bytesOf(env, info[0], "addText: text", &n);
    auto c = counter_;
    auto mu = mu_;
    return AsyncTask::run(
        env, [c, mu, p, n] { std::lock_guard<std::mutex> lock(*mu); c->addText(p, n); },
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, {info[0], Value()});
  }
  Napi::Value estimate(const Napi::CallbackInfo& info) {
    auto c = counter_;
    auto mu = mu_;
    auto model = std::make_shared<std::shared_ptr<const ko::NgramModel>>();
    return AsyncTask::run(
        info.Env(),
        [c, mu, model] {
          std::lock_guard<std::mutex> lock(*mu);
          c->finish();
          *model = std::make_shared<const ko::NgramModel>(c->estimate());
        },
        [model](Napi::Env env) -> Napi::Value { return NgramModelWrap::wrap(env, *model); }, {Value()});
  }
  Napi::Value tokens(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(counter_->tokens())); }
  Napi::Value sentences(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(counter_->sentences())); }

  std::shared_ptr<ko::NgramCounter> counter_;
  std::shared_ptr<std::mutex> mu_ = std::make_shared<std::mutex>();
};

class ArpaReaderWrap : public Napi::ObjectWrap<ArpaReaderWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "ArpaReader",
                       {InstanceMethod<&ArpaReaderWrap::feed>("feed"), InstanceMethod<&ArpaReaderWrap::finish>("finish")});
  }
  ArpaReaderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ArpaReaderWrap>(info) {}

 private:
  Napi::Value feed(const Napi::CallbackInfo& info) {
    size_t n = 0;
    const char* p = bytesOf(info.Env(), info[0], "ArpaReader.feed: chunk", &n);
    try {
      reader_.feed(p, n);
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return info.Env().Undefined();
  }
  Napi::Value finish(const Napi::CallbackInfo& info) {
    try {
      return NgramModelWrap::wrap(info.Env(), std::make_shared<const ko::NgramModel>(reader_.finish()));
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
  }
  ko::ArpaReader reader_;
};

}  // namespace

// lmNormalize(text, offsets) → Promise<{text, offsets}>: lm_normalize.h on NFKC + lower-cased documents.
Napi::Value LmNormalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t nBytes = 0;
  const char* text = bytesOf(env, info[0], "lmNormalize: text", &nBytes);
  int64_t nDocs = 0;
  const int64_t* offsets = offsetsOf(env, info[1], "lmNormalize: offsets", nBytes, &nDocs);
  struct Out {
    std::string text;
    std::vector<int64_t> offsets;
  };
  auto out = std::make_shared<Out>();
  return AsyncTask::run(
      env, [=] { ko::lmNormalizeBatch(text, int64_t(nBytes), offsets, nDocs, &out->text, &out->offsets); },
      [out](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("text", Napi::Buffer<char>::Copy(env, out->text.data(), out->text.size()));
        o.Set("offsets", copyToTypedArray(env, out->offsets));
        return o;
      },
      {info[0], info[1]});
}

void registerNgram(Napi::Env env, Napi::Object exports) {
  exports.Set("lmNormalize", Napi::Function::New(env, LmNormalize));
  auto* cls = new NgramClasses();
  cls->model = Napi::Persistent(NgramModelWrap::define(env));
  env.SetInstanceData<NgramClasses>(cls);
  exports.Set("NgramModel", cls->model.Value());
  exports.Set("NgramCounter", NgramCounterWrap::define(env));
  exports.Set("ArpaReader", ArpaReaderWrap::define(env));
}

}  // namespace kob
