// Owns findTcpSocket: one sock_diag (inet_diag) query for the TCP socket with an exact 4-tuple,
// answering its owner uid and inode (sock_diag(7)). Process attribution needs exactly these two
// facts for every intercepted connection; reading them from /proc/net/tcp{,6} instead means
// formatting and parsing every socket of the namespace (thousands of TIME_WAIT rows under load)
// per connection. The kernel answers in the sendto() call, so the query never blocks.
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "socket.h"

namespace tproxy {
namespace {

constexpr const char* kFn = "findTcpSocket";

void CopyAddress(const Endpoint& ep, __be32 out[4]) {
  if (ep.family == AF_INET) {
    out[0] = reinterpret_cast<const sockaddr_in*>(&ep.addr)->sin_addr.s_addr;
  } else {
    std::memcpy(out, &reinterpret_cast<const sockaddr_in6*>(&ep.addr)->sin6_addr, 16);
  }
}

Napi::Value FindTcpSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string local_ip = StringArg(info, 0, kFn, "localIp");
  const auto local_port = static_cast<uint16_t>(IntegerArg(info, 1, kFn, "localPort", 1, 65535));
  const std::string remote_ip = StringArg(info, 2, kFn, "remoteIp");
  const auto remote_port = static_cast<uint16_t>(IntegerArg(info, 3, kFn, "remotePort", 1, 65535));
  const Endpoint local = ParseEndpoint(info, kFn, local_ip, local_port);
  const Endpoint remote = ParseEndpoint(info, kFn, remote_ip, remote_port);
  if (local.family != remote.family) {
    throw ArgError(env, std::string(kFn) + ": localIp and remoteIp must be the same family, got " + local.text +
                            " and " + remote.text);
  }
  const std::string context = local.text + " -> " + remote.text;

  UniqueFd sock(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (sock.get() < 0) throw ErrnoError(env, errno, "socket", "NETLINK_SOCK_DIAG");

  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  // No NLM_F_DUMP: an exact lookup by the socket id (inet_diag_find_one_icsk), not a table walk.
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = static_cast<__u8>(local.family);
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0U;
  msg.req.id.idiag_sport = htons(local_port);
  msg.req.id.idiag_dport = htons(remote_port);
  CopyAddress(local, msg.req.id.idiag_src);
  CopyAddress(remote, msg.req.id.idiag_dst);
  msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(sock.get(), &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    throw ErrnoError(env, errno, "sendto", "sock_diag " + context);
  }
  alignas(nlmsghdr) char buf[8192];
  // The reply is queued before sendto() returns; MSG_DONTWAIT keeps a surprise from blocking.
  const ssize_t n = recv(sock.get(), buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0) throw ErrnoError(env, errno, "recv", "sock_diag " + context);

  auto len = static_cast<unsigned int>(n);
  for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      const int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
      if (err == 0) continue;
      if (err == ENOENT) return env.Null();  // no such socket (closed already)
      throw ErrnoError(env, err, "sock_diag", context);
    }
    if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY && h->nlmsg_len >= NLMSG_LENGTH(sizeof(inet_diag_msg))) {
      const auto* m = reinterpret_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      Napi::Object result = Napi::Object::New(env);
      result.Set("uid", Napi::Number::New(env, m->idiag_uid));
      result.Set("inode", Napi::Number::New(env, m->idiag_inode));
      result.Set("state", Napi::Number::New(env, m->idiag_state));
      return result;
    }
  }
  throw ErrnoError(env, EPROTO, "sock_diag", context + ": no answer in the kernel's reply");
}

}  // namespace

void RegisterSockdiag(Napi::Env env, Napi::Object exports) {
  exports.Set(kFn, Napi::Function::New(env, FindTcpSocket, kFn));
}

}  // namespace tproxy
