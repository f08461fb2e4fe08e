// dedup_binding.cpp — minhash(text, offsets, options) → Promise<{sigs, exact}> on the CPU threads or the
// CUDA kernel (bit-identical), and nearDuplicates(sigs, numPerm, lsh, exact?) → Promise of the clusters
// (native/minhash.h, native/lsh_dedup.h, kernels/minhash_kernels.h).
#include <napi.h>

#include <memory>

#include "async_task.h"
#include "buffers.h"
#include "lsh_dedup.h"
#include "minhash.h"
#include "prep_binding.h"
#ifdef KO_CUDA
#include "cuda_api.h"
#include "minhash_kernels.h"
#endif

namespace kob {

namespace {

Napi::Value Minhash(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t nBytes = 0;
  const char* text = bytesOf(env, info[0], "minhash: text", &nBytes);
  int64_t nDocs = 0;
  const int64_t* offsets = offsetsOf(env, info[1], "minhash: offsets", nBytes, &nDocs);
  if (!info[2].IsObject()) throw Napi::TypeError::New(env, "minhash: options must be an object");
  auto o = info[2].As<Napi::Object>();
  ko::MinhashParams p;
  p.numPerm = intField(env, o, "numPerm", "minhash options");
  p.ngram = intField(env, o, "ngram", "minhash options");
  p.wordNgrams = o.Get("wordNgrams").ToBoolean().Value();
  const double seed = numberField(env, o, "seed", "minhash options");
  if (seed < 0 || seed != double(int64_t(seed))) throw Napi::RangeError::New(env, "minhash options.seed must be a non-negative integer");
  p.seed = uint64_t(seed);
  const int device = int(numberFieldOr(env, o, "device", -1, "minhash options"));
  try {
    ko::validateMinhashParams(p);
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(env, std::string("minhash: ") + e.what());
  }
#ifndef KO_CUDA
  if (device >= 0) throw Napi::Error::New(env, "minhash: this build has no CUDA support; use prep.dedup.device: cpu");
#endif
  struct Out {
    std::vector<uint32_t> sigs;
    std::vector<uint64_t> exact;
  };
  auto out = std::make_shared<Out>();
  out->sigs.resize(size_t(nDocs) * size_t(p.numPerm));
  out->exact.resize(size_t(nDocs));
  return AsyncTask::run(
      env,
      [=] {
        if (device < 0) {
          ko::minhashSignatures(text, offsets, nDocs, p, out->sigs.data(), out->exact.data());
          return;
        }
#ifdef KO_CUDA
        std::string err = ko::cuda::setCurrentDevice(device);
        if (err.empty()) err = ko::cuda::minhashSignaturesGpu(text, offsets, nDocs, p, out->sigs.data(), out->exact.data());
        if (!err.empty()) throw std::runtime_error("minhash on cuda:" + std::to_string(device) + ": " + err);
#endif
      },
      [out](Napi::Env env) -> Napi::Value {
        auto r = Napi::Object::New(env);
        r.Set("sigs", copyToTypedArray(env, out->sigs));
        r.Set("exact", copyToTypedArray(env, out->exact));
        return r;
      },
      {info[0], info[1]});
}

Napi::Value NearDuplicates(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "nearDuplicates: numPerm must be a number");
  const int numPerm = info[1].As<Napi::Number>().Int32Value();
  if (numPerm < 1 || numPerm > 1024) throw Napi::RangeError::New(env, "nearDuplicates: numPerm must be in 1..1024");
  size_t nSig = 0;
  const uint32_t* sigs = typedArrayData<uint32_t>(env, info[0], "nearDuplicates: sigs", -1, &nSig);
  if (nSig % size_t(numPerm) != 0)
    throw Napi::RangeError::New(env, "nearDuplicates: sigs has " + std::to_string(nSig) + " values, not a multiple of numPerm = " + std::to_string(numPerm));
  const int64_t nDocs = int64_t(nSig / size_t(numPerm));
  if (!info[2].IsObject()) throw Napi::TypeError::New(env, "nearDuplicates: lsh options must be an object");
  auto o = info[2].As<Napi::Object>();
  ko::LshParams lp;
  lp.bands = intField(env, o, "bands", "prep.dedup");
  lp.rows = intField(env, o, "rows", "prep.dedup");
  lp.threshold = numberField(env, o, "threshold", "prep.dedup");
  if (lp.bands < 1 || lp.rows < 1 || int64_t(lp.bands) * lp.rows > numPerm)
    throw Napi::RangeError::New(env, "prep.dedup: bands × rows must be between 1 and num_perm");
  const uint64_t* exact = nullptr;
  if (!info[3].IsNull() && !info[3].IsUndefined()) {
    if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array)
      throw Napi::TypeError::New(env, "nearDuplicates: exact must be a BigUint64Array or null");
    auto a = info[3].As<Napi::TypedArray>();
    if (int64_t(a.ElementLength()) != nDocs)
      throw Napi::RangeError::New(env, "nearDuplicates: exact has " + std::to_string(a.ElementLength()) + " hashes for " + std::to_string(nDocs) + " documents");
    exact = reinterpret_cast<const uint64_t*>(static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
  }
  auto res = std::make_shared<ko::DedupResult>();
  return AsyncTask::run(
      env, [=] { *res = ko::findNearDuplicates(sigs, nDocs, numPerm, lp, exact); },
      [res](Napi::Env env) -> Napi::Value {
        auto r = Napi::Object::New(env);
        auto rep = Napi::Float64Array::New(env, res->representative.size());
        for (size_t i = 0; i < res->representative.size(); i++) rep[i] = double(res->representative[i]);
        r.Set("representative", rep);
        auto cl = Napi::Array::New(env, res->clusters.size());
        for (size_t c = 0; c < res->clusters.size(); c++) {
          const auto& k = res->clusters[c];
          auto members = Napi::Array::New(env, k.members.size());
          auto jac = Napi::Array::New(env, k.members.size());
          for (size_t i = 0; i < k.members.size(); i++) {
            members.Set(uint32_t(i), double(k.members[i]));
            jac.Set(uint32_t(i), i < k.jaccard.size() ? k.jaccard[i] : 1.0);
          }
          auto obj = Napi::Object::New(env);
          obj.Set("members", members);
          obj.Set("jaccard", jac);
          cl.Set(uint32_t(c), obj);
        }
        r.Set("clusters", cl);
        r.Set("candidatePairs", double(res->candidatePairs));
        r.Set("confirmedPairs", double(res->confirmedPairs));
        return r;
      },
      {info[0], info[3]});
}

}  // namespace

void registerDedup(Napi::Env env, Napi::Object exports) {
  exports.Set("minhash", Napi::Function::New(env, Minhash));
  exports.Set("nearDuplicates", Napi::Function::New(env, NearDuplicates));
}

}  // namespace kob
