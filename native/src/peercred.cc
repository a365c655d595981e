// Owns getPeerCredentials: SO_PEERCRED on a connected Unix socket, i.e. the pid/uid/gid the kernel
// recorded when the peer called connect() (unix(7)). This is the identity the RPC server trusts,
// so anything that is not an AF_UNIX socket is refused instead of returning the kernel's
// placeholder credentials for it.
#include <sys/socket.h>
#include <sys/un.h>

#include <string>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace tproxy {
namespace {

constexpr const char* kFn = "getPeerCredentials";

Napi::Value GetPeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(info, 0, kFn);
  const std::string context = "fd " + std::to_string(fd);

  sockaddr_storage local{};
  socklen_t local_len = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) {
    throw ErrnoError(env, errno, "getsockname", context);
  }
  if (local.ss_family != AF_UNIX) {
    // For TCP sockets Linux answers SO_PEERCRED with pid 0 and uid/gid -1 rather than failing;
    // a caller that mapped that through its permission ladder would be misled.
    throw ArgError(env, std::string(kFn) + ": fd " + std::to_string(fd) +
                            " is not a Unix domain socket (family " + std::to_string(local.ss_family) + ")");
  }

  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    throw ErrnoError(env, errno, "getsockopt", "SO_PEERCRED " + context);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, cred.pid));
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  return result;
}

}  // namespace

void RegisterPeercred(Napi::Env env, Napi::Object exports) {
  exports.Set(kFn, Napi::Function::New(env, GetPeerCredentials, kFn));
}

}  // namespace tproxy
