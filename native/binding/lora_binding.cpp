// lora_binding.cpp — LoRA in the addon: Model.attachLora() and the free functions loraLayout, loraInit,
// loraMerge. Every buffer is JS-owned, so checkpoints write the adapter and its moments straight from memory.
#include <napi.h>

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "buffers.h"
#include "lora.h"
#include "model_wrap.h"

namespace kob {

namespace {

std::vector<std::string> parseTargets(const Napi::Env& env, const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, what + " must be an array of module names");
  auto arr = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value t = arr.Get(i);
    if (!t.IsString()) throw Napi::TypeError::New(env, what + "[" + std::to_string(i) + "] must be a string");
    out.push_back(t.As<Napi::String>().Utf8Value());
  }
  return out;
}

int parseRank(const Napi::Env& env, const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (d != double(int64_t(d)) || d < 1 || d > INT32_MAX)
    throw Napi::RangeError::New(env, what + " must be a positive integer, got " + std::to_string(d));
  return int(d);
}

float parseAlpha(const Napi::Env& env, const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw Napi::RangeError::New(env, what + " must be finite");
  return float(d);
}

// Two named float buffers must not share memory: a merge reading W0 from the weights it writes would compound.
using NamedSpan = std::pair<std::string, std::pair<const float*, size_t>>;
void checkDisjoint(const Napi::Env& env, const std::vector<NamedSpan>& b) {
  for (size_t i = 0; i < b.size(); i++)
    for (size_t j = i + 1; j < b.size(); j++) {
      const float *p = b[i].second.first, *q = b[j].second.first;
      if (p < q + b[j].second.second && q < p + b[i].second.second)
        throw Napi::Error::New(env, b[i].first + " and " + b[j].first + " must be separate buffers (they overlap)");
    }
}

// loraLayout(modelConfig, rank, targets) → {size, sites: [{name, weightOffset, out, in, aOffset, bOffset}]}
Napi::Value LoraLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ko::ModelConfig c = parseModelConfig(env, info[0]);
  const int rank = parseRank(env, info[1], "lora rank");
  const auto sites = ko::loraSites(c, parseTargets(env, info[2], "lora targets"), rank);
  auto arr = Napi::Array::New(env, sites.size());
  for (size_t i = 0; i < sites.size(); i++) {
    auto o = Napi::Object::New(env);
    o.Set("name", sites[i].name);
    o.Set("weightOffset", double(sites[i].weightOffset));
    o.Set("out", sites[i].out);
    o.Set("in", sites[i].in);
    o.Set("aOffset", double(sites[i].aOffset));
    o.Set("bOffset", double(sites[i].bOffset));
    arr.Set(uint32_t(i), o);
  }
  auto out = Napi::Object::New(env);
  out.Set("size", double(ko::loraAdapterSize(sites, rank)));
  out.Set("sites", arr);
  return out;
}

// loraInit(modelConfig, rank, targets, adapter: Float32Array, seed) — A uniform, B = 0 (lora.h).
Napi::Value LoraInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ko::ModelConfig c = parseModelConfig(env, info[0]);
  const int rank = parseRank(env, info[1], "lora rank");
  const auto sites = ko::loraSites(c, parseTargets(env, info[2], "lora targets"), rank);
  float* adapter = typedArrayData<float>(env, info[3], "adapter", int64_t(ko::loraAdapterSize(sites, rank)));
  if (!info[4].IsNumber()) throw Napi::TypeError::New(env, "loraInit seed must be a number");
  ko::loraInit(sites, rank, adapter, uint64_t(info[4].As<Napi::Number>().DoubleValue()));
  return env.Undefined();
}

// loraMerge(modelConfig, rank, alpha, targets, params, base, adapter) — params[site] = base[site] + alpha/rank·B·A.
Napi::Value LoraMerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ko::ModelConfig c = parseModelConfig(env, info[0]);
  const int rank = parseRank(env, info[1], "lora rank");
  const float alpha = parseAlpha(env, info[2], "lora alpha");
  const auto sites = ko::loraSites(c, parseTargets(env, info[3], "lora targets"), rank);
  const size_t n = ko::paramCount(c), na = ko::loraAdapterSize(sites, rank);
  float* params = typedArrayData<float>(env, info[4], "params", int64_t(n));
  const float* base = typedArrayData<float>(env, info[5], "base", int64_t(n));
  const float* adapter = typedArrayData<float>(env, info[6], "adapter", int64_t(na));
  checkDisjoint(env, {{"params", {params, n}}, {"base", {base, n}}, {"adapter", {adapter, na}}});
  ko::loraMerge(params, base, adapter, sites, rank, alpha / float(rank));
  return env.Undefined();
}

}  // namespace

void registerLora(Napi::Env env, Napi::Object exports) {
  exports.Set("loraLayout", Napi::Function::New(env, LoraLayout));
  exports.Set("loraInit", Napi::Function::New(env, LoraInit));
  exports.Set("loraMerge", Napi::Function::New(env, LoraMerge));
}

// attachLora({rank, alpha, targets, base, adapter, m, v}) — from now on trainStepTokens trains only the adapters.
// base holds W0 (numParams floats, a copy separate from the model's params); adapter, m and v hold
// loraLayout().size floats each. params is set to the merged weights at once, so what the model evaluates and
// what a checkpoint writes is always W0 + alpha/rank·B·A. The CPU step only: not after useDevice().
Napi::Value ModelWrap::AttachLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkIdle(env);
  if (onGpu()) throw Napi::Error::New(env, "attachLora: LoRA training runs on the CPU; call it before useDevice()");
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "attachLora expects an options object");
  auto o = info[0].As<Napi::Object>();
  auto lora = std::make_unique<ko::LoraState>();
  lora->rank = parseRank(env, o.Get("rank"), "attachLora.rank");
  lora->scale = parseAlpha(env, o.Get("alpha"), "attachLora.alpha") / float(lora->rank);
  lora->sites = ko::loraSites(model_->config(), parseTargets(env, o.Get("targets"), "attachLora.targets"), lora->rank);
  const size_t n = model_->numParams(), na = ko::loraAdapterSize(lora->sites, lora->rank);
  lora->base = typedArrayData<float>(env, o.Get("base"), "attachLora.base", int64_t(n));
  lora->adapter = typedArrayData<float>(env, o.Get("adapter"), "attachLora.adapter", int64_t(na));
  lora->m = typedArrayData<float>(env, o.Get("m"), "attachLora.m", int64_t(na));
  lora->v = typedArrayData<float>(env, o.Get("v"), "attachLora.v", int64_t(na));
  checkDisjoint(env, {{"params", {model_->params(), n}},
                      {"attachLora.base", {lora->base, n}},
                      {"attachLora.adapter", {lora->adapter, na}},
                      {"attachLora.m", {lora->m, na}},
                      {"attachLora.v", {lora->v, na}}});
  loraBaseRef_ = Napi::Persistent(o.Get("base").As<Napi::Float32Array>());
  loraAdapterRef_ = Napi::Persistent(o.Get("adapter").As<Napi::Float32Array>());
  loraMRef_ = Napi::Persistent(o.Get("m").As<Napi::Float32Array>());
  loraVRef_ = Napi::Persistent(o.Get("v").As<Napi::Float32Array>());
  lora->adapterGrads.assign(na, 0.f);
  ko::loraMerge(model_->params(), lora->base, lora->adapter, lora->sites, lora->rank, lora->scale);
  if (grads_.size() != n) grads_.assign(n, 0.f);  // the full weight gradient G, without attachOptimizer's moments
  lora_ = std::move(lora);
  return env.Undefined();
}

}  // namespace kob
