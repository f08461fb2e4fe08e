// buffers.h — validation of every buffer handed to the addon: type, length, alignment. A bad buffer is a
// JS TypeError/RangeError naming the argument, never a read of bad memory.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

namespace kob {

template <typename T>
struct TypedArrayKind;
template <>
struct TypedArrayKind<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct TypedArrayKind<uint32_t> {
  static constexpr napi_typedarray_type type = napi_uint32_array;
  static constexpr const char* name = "Uint32Array";
};
template <>
struct TypedArrayKind<uint8_t> {
  static constexpr napi_typedarray_type type = napi_uint8_array;
  static constexpr const char* name = "Uint8Array";
};
template <>
struct TypedArrayKind<int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};
template <>
struct TypedArrayKind<double> {
  static constexpr napi_typedarray_type type = napi_float64_array;
  static constexpr const char* name = "Float64Array";
};

// Returns the data pointer of a typed array of element type T; expectedLength < 0 = any length.
template <typename T>
T* typedArrayData(const Napi::Env& env, const Napi::Value& v, const std::string& what, int64_t expectedLength,
                  size_t* lengthOut = nullptr) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TypedArrayKind<T>::type)
    throw Napi::TypeError::New(env, what + " must be a " + TypedArrayKind<T>::name);
  auto arr = v.As<Napi::TypedArray>();
  const size_t len = arr.ElementLength();
  if (expectedLength >= 0 && len != size_t(expectedLength))
    throw Napi::RangeError::New(env, what + " has length " + std::to_string(len) + ", expected " +
                                         std::to_string(expectedLength));
  auto* base = static_cast<uint8_t*>(arr.ArrayBuffer().Data());
  if (base == nullptr && len > 0) throw Napi::TypeError::New(env, what + " has a detached buffer");
  uint8_t* p = base + arr.ByteOffset();
  if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0)
    throw Napi::RangeError::New(env, what + " is not " + std::to_string(alignof(T)) + "-byte aligned");
  if (lengthOut) *lengthOut = len;
  return reinterpret_cast<T*>(p);
}

inline double numberField(const Napi::Env& env, const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(env, where + "." + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline double numberFieldOr(const Napi::Env& env, const Napi::Object& o, const char* key, double fallback,
                            const std::string& where) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  return numberField(env, o, key, where);
}

inline int intField(const Napi::Env& env, const Napi::Object& o, const char* key, const std::string& where) {
  double d = numberField(env, o, key, where);
  if (d != double(int64_t(d)) || d < INT32_MIN || d > INT32_MAX)
    throw Napi::TypeError::New(env, where + "." + key + " must be an integer, got " + std::to_string(d));
  return int(d);
}

}  // namespace kob
