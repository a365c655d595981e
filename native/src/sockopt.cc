// Owns SO_MARK on an existing socket fd: setSocketMark / getSocketMark. The mark is what our
// firewall rules match to let the proxy's own upstream traffic bypass interception (socket(7)).
// Takes fds that JS owns; never closes them.
#include <sys/socket.h>

#include <string>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace tproxy {
namespace {

Napi::Value SetSocketMark(const Napi::CallbackInfo& info) {
  const int fd = FdArg(info, 0, "setSocketMark");
  // 0 is allowed here: it clears a mark. Needs CAP_NET_ADMIN (or CAP_NET_RAW on Linux >= 5.17).
  const uint32_t mark = MarkArg(info, 1, "setSocketMark", 0);
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
    throw ErrnoError(info.Env(), errno, "setsockopt", "SO_MARK fd " + std::to_string(fd));
  }
  return info.Env().Undefined();
}

Napi::Value GetSocketMark(const Napi::CallbackInfo& info) {
  const int fd = FdArg(info, 0, "getSocketMark");
  uint32_t mark = 0;
  socklen_t len = sizeof mark;
  if (getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &len) != 0) {
    throw ErrnoError(info.Env(), errno, "getsockopt", "SO_MARK fd " + std::to_string(fd));
  }
  return Napi::Number::New(info.Env(), mark);
}

}  // namespace

void RegisterSockopt(Napi::Env env, Napi::Object exports) {
  exports.Set("setSocketMark", Napi::Function::New(env, SetSocketMark, "setSocketMark"));
  exports.Set("getSocketMark", Napi::Function::New(env, GetSocketMark, "getSocketMark"));
}

}  // namespace tproxy
