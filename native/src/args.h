// Owns argument checking for every exported function: each helper either returns a value in range
// or throws a TypeError naming the function, the argument and what it got. Checks types and ranges
// only; whether a syscall accepts the value is the kernel's call and surfaces as an ErrnoError.
#pragma once

#include <napi.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "errors.h"

namespace tproxy {

// "a string", "123.5", "undefined": what the caller passed, for TypeError messages.
inline std::string Describe(const Napi::Value& value) {
  switch (value.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_number: return value.ToString().Utf8Value();
    case napi_string: return "\"" + value.As<Napi::String>().Utf8Value() + "\"";
    case napi_boolean: return value.ToBoolean().Value() ? "true" : "false";
    case napi_bigint: return "a bigint";
    case napi_object: return "an object";
    case napi_function: return "a function";
    default: return "a " + std::string(value.IsSymbol() ? "symbol" : "value");
  }
}

// An integral JS number in [min, max]. Fractions, NaN, +-Infinity and bigints are refused rather
// than truncated: a truncated fd or mark would silently act on the wrong thing.
inline int64_t IntegerArg(const Napi::CallbackInfo& info, size_t index, const char* fn,
                          const char* name, int64_t min, int64_t max) {
  Napi::Value value = info[index];
  const std::string where = std::string(fn) + ": " + name;
  if (!value.IsNumber()) throw ArgError(info.Env(), where + " must be a number, got " + Describe(value));
  const double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < static_cast<double>(min) ||
      d > static_cast<double>(max)) {
    throw ArgError(info.Env(), where + " must be an integer in [" + std::to_string(min) + ", " +
                                   std::to_string(max) + "], got " + Describe(value));
  }
  return static_cast<int64_t>(d);
}

inline std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* fn,
                             const char* name) {
  Napi::Value value = info[index];
  if (!value.IsString()) {
    throw ArgError(info.Env(), std::string(fn) + ": " + name + " must be a string, got " + Describe(value));
  }
  return value.As<Napi::String>().Utf8Value();
}

inline int FdArg(const Napi::CallbackInfo& info, size_t index, const char* fn) {
  return static_cast<int>(IntegerArg(info, index, fn, "fd", 0, INT_MAX));
}

// SO_MARK is a u32 (socket(7)). min is 1 where a zero mark would defeat the caller's purpose.
inline uint32_t MarkArg(const Napi::CallbackInfo& info, size_t index, const char* fn, int64_t min) {
  return static_cast<uint32_t>(IntegerArg(info, index, fn, "mark", min, UINT32_MAX));
}

}  // namespace tproxy
