// Owns createTransparentListener: a listening TCP socket with IP_TRANSPARENT (IPV6_TRANSPARENT for
// v6), so nft/iptables TPROXY can hand it connections addressed to foreign IPs. Returns the fd for
// `net.createServer().listen({ fd })`; JS owns it from then on. Does not accept or read anything.
#include "exports.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <string>

#include "errors.h"
#include "socket.h"

namespace tproxy {
namespace {

constexpr const char* kFn = "createTransparentListener";
// Node's own default for server.listen() (lib/net.js); the kernel clamps to net.core.somaxconn.
constexpr int64_t kDefaultBacklog = 511;

void SetIntOption(Napi::Env env, const UniqueFd& fd, int level, int option, int value,
                  const char* option_name, const Endpoint& ep) {
  if (setsockopt(fd.get(), level, option, &value, sizeof value) != 0) {
    throw ErrnoError(env, errno, "setsockopt", std::string(option_name) + " " + ep.text);
  }
}

Napi::Value CreateTransparentListener(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string ip = StringArg(info, 0, kFn, "ip");
  // Port 0 is allowed: the kernel picks one and server.address() reports it.
  const auto port = static_cast<uint16_t>(IntegerArg(info, 1, kFn, "port", 0, 65535));
  const int backlog = info[2].IsUndefined()
                          ? static_cast<int>(kDefaultBacklog)
                          : static_cast<int>(IntegerArg(info, 2, kFn, "backlog", 1, INT32_MAX));
  const Endpoint ep = ParseEndpoint(info, kFn, ip, port);

  // NONBLOCK because libuv expects it of adopted fds; CLOEXEC so children never inherit it.
  UniqueFd fd(socket(ep.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  if (fd.get() < 0) throw ErrnoError(env, errno, "socket", ep.text);

  SetIntOption(env, fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", ep);
  if (ep.family == AF_INET) {
    // ip(7): needs CAP_NET_ADMIN (or CAP_NET_RAW); without it this is EPERM.
    SetIntOption(env, fd, IPPROTO_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT", ep);
  } else {
    // V6ONLY so a v6 listener never swallows v4-mapped traffic meant for its v4 twin on the same
    // port (ipv6(7); the default follows net.ipv6.bindv6only, which we do not trust).
    SetIntOption(env, fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY", ep);
    SetIntOption(env, fd, IPPROTO_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT", ep);
  }
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) != 0) {
    throw ErrnoError(env, errno, "bind", ep.text);
  }
  if (listen(fd.get(), backlog) != 0) throw ErrnoError(env, errno, "listen", ep.text);
  return Napi::Number::New(env, fd.release());
}

}  // namespace

void RegisterListener(Napi::Env env, Napi::Object exports) {
  exports.Set("createTransparentListener", Napi::Function::New(env, CreateTransparentListener, kFn));
}

}  // namespace tproxy
