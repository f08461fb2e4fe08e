// async_task.h — runs a C++ function on the libuv thread pool and resolves a promise with what a second
// function builds on the main thread. The JS objects whose memory the work reads are held by References
// until it is done; C++ exceptions reject the promise with their message.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <vector>

namespace kob {

class AsyncTask : public Napi::AsyncWorker {
 public:
  AsyncTask(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> finish,
            const std::vector<Napi::Value>& keepAlive)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        finish_(std::move(finish)) {
    for (const auto& v : keepAlive)
      if (v.IsObject()) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  // Queues the work and returns its promise.
  static Napi::Promise run(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> finish,
                           const std::vector<Napi::Value>& keepAlive = {}) {
    auto* t = new AsyncTask(env, std::move(work), std::move(finish), keepAlive);
    auto p = t->promise();
    t->Queue();
    return p;
  }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    try {
      deferred_.Resolve(finish_(Env()));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> finish_;
  std::vector<Napi::ObjectReference> refs_;
};

// A Node Buffer (or any Uint8Array) argument: its bytes and length.
inline const char* bytesOf(const Napi::Env& env, const Napi::Value& v, const std::string& what, size_t* n) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, what + " must be a Buffer or Uint8Array");
  auto a = v.As<Napi::TypedArray>();
  *n = a.ElementLength();
  auto* base = static_cast<const char*>(a.ArrayBuffer().Data());
  if (base == nullptr && *n > 0) throw Napi::TypeError::New(env, what + " has a detached buffer");
  return base + a.ByteOffset();
}

// A BigInt64Array of nDocs + 1 byte offsets into a text of `textBytes` bytes, checked: starts at 0,
// non-decreasing, ends within the text.
inline const int64_t* offsetsOf(const Napi::Env& env, const Napi::Value& v, const std::string& what, size_t textBytes,
                                int64_t* nDocs) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_bigint64_array)
    throw Napi::TypeError::New(env, what + " must be a BigInt64Array");
  auto a = v.As<Napi::TypedArray>();
  const size_t len = a.ElementLength();
  if (len < 1) throw Napi::RangeError::New(env, what + " is empty (needs nDocs + 1 entries)");
  auto* p = reinterpret_cast<const int64_t*>(static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
  if (reinterpret_cast<uintptr_t>(p) % 8 != 0) throw Napi::RangeError::New(env, what + " is not 8-byte aligned");
  if (p[0] != 0) throw Napi::RangeError::New(env, what + "[0] is " + std::to_string(p[0]) + ", expected 0");
  for (size_t i = 1; i < len; i++)
    if (p[i] < p[i - 1])
      throw Napi::RangeError::New(env, what + "[" + std::to_string(i) + "] = " + std::to_string(p[i]) + " < " + what +
                                           "[" + std::to_string(i - 1) + "] = " + std::to_string(p[i - 1]));
  if (uint64_t(p[len - 1]) > textBytes)
    throw Napi::RangeError::New(env, what + " ends at " + std::to_string(p[len - 1]) + ", past the text's " +
                                         std::to_string(textBytes) + " bytes");
  *nDocs = int64_t(len) - 1;
  return p;
}

template <typename T>
Napi::Value copyToTypedArray(Napi::Env env, const std::vector<T>& v);

template <>
inline Napi::Value copyToTypedArray<double>(Napi::Env env, const std::vector<double>& v) {
  auto a = Napi::Float64Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}
template <>
inline Napi::Value copyToTypedArray<int32_t>(Napi::Env env, const std::vector<int32_t>& v) {
  auto a = Napi::Int32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}
template <>
inline Napi::Value copyToTypedArray<uint32_t>(Napi::Env env, const std::vector<uint32_t>& v) {
  auto a = Napi::Uint32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}
template <>
inline Napi::Value copyToTypedArray<int64_t>(Napi::Env env, const std::vector<int64_t>& v) {
  auto a = Napi::BigInt64Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}
template <>
inline Napi::Value copyToTypedArray<uint64_t>(Napi::Env env, const std::vector<uint64_t>& v) {
  auto a = Napi::BigUint64Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

}  // namespace kob
