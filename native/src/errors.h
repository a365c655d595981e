// Owns the addon's two error shapes: errno failures become a JS Error whose `code` is the errno
// name ('EPERM', 'EADDRINUSE', ...), with the positive kernel `errno` (as in os.constants.errno) and
// the failing `syscall`; caller mistakes become a TypeError. Must not decide policy: callers pick
// the syscall name and the human context ("connect 198.18.0.4:443") that goes into the message.
#pragma once

#include <napi.h>

#include <cstring>
#include <string>

namespace tproxy {

// errno → "ECONNREFUSED". glibc >= 2.32 has strerrorname_np/strerrordesc_np, which are
// thread-safe and allocation-free (unlike strerror); other libcs get "E<number>" plus strerror.
inline std::string ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* name = strerrorname_np(err)) return name;
#endif
  return "E" + std::to_string(err);
}

inline std::string ErrnoDescription(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* desc = strerrordesc_np(err)) return desc;
  return "Unknown error " + std::to_string(err);
#else
  return std::strerror(err);
#endif
}

// Builds (does not throw) the Error, so it serves both `throw ErrnoError(...)` and
// `deferred.Reject(ErrnoError(...).Value())`. Message: "<syscall> <context>: <CODE> (<description>)".
inline Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall,
                              const std::string& context = "") {
  const std::string code = ErrnoName(err);
  std::string message = syscall;
  if (!context.empty()) message += " " + context;
  message += ": " + code + " (" + ErrnoDescription(err) + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

inline Napi::TypeError ArgError(Napi::Env env, const std::string& message) {
  return Napi::TypeError::New(env, message);
}

}  // namespace tproxy
