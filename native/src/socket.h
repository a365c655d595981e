// Owns the small socket plumbing shared by listener.cc and connect.cc: an fd that closes itself
// unless released (so every failure path closes it), and parsing an IP literal plus port into a
// sockaddr. Never resolves names: the caller hands us literals taken from the kernel or config.
#pragma once

#include <napi.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "args.h"

namespace tproxy {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  // Keeps errno intact so "syscall failed → reset() → read errno" orderings stay honest.
  void reset(int fd = -1) {
    if (fd_ >= 0) {
      const int saved = errno;
      close(fd_);
      errno = saved;
    }
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
  std::string text;  // "127.0.0.1:443" or "[::1]:443", for error messages
};

// inet_pton decides the family: a v4 dotted quad or a v6 literal, nothing else (no names, no
// "%scope" suffixes, no shorthand like "127.1"). Anything else is the caller's bug → TypeError.
inline Endpoint ParseEndpoint(const Napi::CallbackInfo& info, const char* fn, const std::string& ip,
                              uint16_t port) {
  Endpoint ep;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ep.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    ep.len = sizeof(sockaddr_in);
    ep.family = AF_INET;
    ep.text = ip + ":" + std::to_string(port);
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    ep.len = sizeof(sockaddr_in6);
    ep.family = AF_INET6;
    ep.text = "[" + ip + "]:" + std::to_string(port);
  } else {
    throw ArgError(info.Env(), std::string(fn) + ": ip must be an IPv4 or IPv6 literal, got \"" + ip + "\"");
  }
  return ep;
}

}  // namespace tproxy
