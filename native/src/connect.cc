// Owns connectMarked: an outbound TCP connect whose socket carries SO_MARK *before* connect(), so
// the SYN and everything after it match our firewall's bypass rule (socket(7) SO_MARK). The wait
// for completion runs on Node's own event loop (uv_poll for writability + uv_timer for the
// timeout), not on the libuv threadpool: a proxy makes one of these per intercepted connection,
// and parking a threadpool thread per slow upstream would starve fs/dns/crypto (4 threads by
// default). The promise resolves with the connected fd, which JS then owns; on every failure path
// the fd is closed here. Does not read or write the socket.
#include <node_api.h>
#include <sys/socket.h>
#include <uv.h>

#include <string>
#include <utility>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "socket.h"

namespace tproxy {
namespace {

constexpr const char* kFn = "connectMarked";

// One in-flight connect. Deletes itself once both libuv handles have finished closing. If the
// environment is torn down first (worker exit), the async cleanup hook closes the fd and the
// handles so the loop can close; the promise is then simply never settled (its realm is gone).
class PendingConnect {
 public:
  static void Watch(Napi::Env env, UniqueFd fd, std::string target, int64_t timeout_ms,
                    Napi::Promise::Deferred deferred) {
    uv_loop_t* loop = nullptr;
    NAPI_THROW_IF_FAILED_VOID(env, napi_get_uv_event_loop(env, &loop));
    auto* self = new PendingConnect(env, std::move(fd), std::move(target), std::move(deferred));
    const napi_status status =
        napi_add_async_cleanup_hook(env, OnEnvTeardown, self, &self->cleanup_hook_);
    if (status != napi_ok) {
      delete self;
      NAPI_THROW_IF_FAILED_VOID(env, status);
    }
    uv_timer_init(loop, &self->timer_);  // cannot fail (uv/unix/timer.c)
    self->timer_.data = self;
    self->open_handles_ = 1;
    const char* step = "uv_poll_init";
    int r = uv_poll_init_socket(loop, &self->poll_, self->fd_.get());
    if (r == 0) {
      self->poll_.data = self;
      self->open_handles_ = 2;
      step = "uv_poll_start";
      r = uv_poll_start(&self->poll_, UV_WRITABLE, OnWritable);
    }
    if (r == 0) {
      step = "uv_timer_start";
      r = uv_timer_start(&self->timer_, OnTimeout, static_cast<uint64_t>(timeout_ms), 0);
    }
    if (r != 0) self->Settle(-r, step);  // libuv errors are negated errnos on Unix
  }

 private:
  PendingConnect(Napi::Env env, UniqueFd fd, std::string target, Napi::Promise::Deferred deferred)
      : env_(env),
        fd_(std::move(fd)),
        target_(std::move(target)),
        deferred_(std::move(deferred)),
        async_context_(env, "tproxy:connectMarked") {}

  static void OnWritable(uv_poll_t* handle, int status, int /*events*/) {
    auto* self = static_cast<PendingConnect*>(handle->data);
    // connect(2): once writable, SO_ERROR holds the outcome. libuv reports POLLERR as a bare
    // UV_EBADF, so SO_ERROR is the only place the real reason (ECONNREFUSED...) can be read.
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(self->fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
      err = errno;
    } else if (err == 0 && status < 0) {
      err = -status;
    }
    self->Settle(err, "connect");
  }

  static void OnTimeout(uv_timer_t* handle) {
    static_cast<PendingConnect*>(handle->data)->Settle(ETIMEDOUT, "connect");
  }

  static void OnClosed(uv_handle_t* handle) {
    auto* self = static_cast<PendingConnect*>(handle->data);
    if (--self->open_handles_ > 0) return;
    napi_remove_async_cleanup_hook(self->cleanup_hook_);
    delete self;
  }

  static void OnEnvTeardown(napi_async_cleanup_hook_handle /*hook*/, void* arg) {
    auto* self = static_cast<PendingConnect*>(arg);
    if (self->settled_) return;  // already closing; OnClosed removes the hook
    self->settled_ = true;
    self->fd_.reset();
    self->CloseHandles();
  }

  void CloseHandles() {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), OnClosed);
    // Closing the poll handle takes the fd out of epoll synchronously (uv__poll_stop), so JS can
    // adopt the fd with uv_tcp_open as soon as the promise settles.
    if (open_handles_ == 2) uv_close(reinterpret_cast<uv_handle_t*>(&poll_), OnClosed);
  }

  // err == 0: connected, hand the fd to JS. Otherwise close it and reject. Runs once.
  void Settle(int err, const char* syscall) {
    if (settled_) return;
    settled_ = true;
    CloseHandles();
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    // A callback scope, as Node gives every libuv callback: promise reactions run when it closes.
    Napi::CallbackScope callback_scope(env, async_context_);
    try {
      if (err == 0) {
        deferred_.Resolve(Napi::Number::New(env, fd_.release()));
      } else {
        fd_.reset();
        deferred_.Reject(ErrnoError(env, err, syscall, target_).Value());
      }
    } catch (const Napi::Error& e) {
      // Nowhere to return to from a libuv callback: surface it as an uncaught exception.
      napi_fatal_exception(env, e.Value());
    }
  }

  napi_env env_;
  UniqueFd fd_;
  std::string target_;
  Napi::Promise::Deferred deferred_;
  Napi::AsyncContext async_context_;
  uv_poll_t poll_{};
  uv_timer_t timer_{};
  napi_async_cleanup_hook_handle cleanup_hook_ = nullptr;
  int open_handles_ = 0;
  bool settled_ = false;
};

Napi::Value ConnectMarked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string ip = StringArg(info, 0, kFn, "ip");
  const auto port = static_cast<uint16_t>(IntegerArg(info, 1, kFn, "port", 1, 65535));
  // A zero mark would make the connect indistinguishable from intercepted traffic.
  const uint32_t mark = MarkArg(info, 2, kFn, 1);
  const int64_t timeout_ms = IntegerArg(info, 3, kFn, "timeoutMs", 1, INT32_MAX);
  const Endpoint ep = ParseEndpoint(info, kFn, ip, port);

  // Bad arguments throw (above); everything the kernel refuses rejects the promise (below).
  auto deferred = Napi::Promise::Deferred::New(env);
  Napi::Promise promise = deferred.Promise();
  UniqueFd fd(socket(ep.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  if (fd.get() < 0) {
    deferred.Reject(ErrnoError(env, errno, "socket", ep.text).Value());
  } else if (setsockopt(fd.get(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
    deferred.Reject(ErrnoError(env, errno, "setsockopt", "SO_MARK " + ep.text).Value());
  } else if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) == 0) {
    deferred.Resolve(Napi::Number::New(env, fd.release()));
  } else if (errno != EINPROGRESS) {
    deferred.Reject(ErrnoError(env, errno, "connect", ep.text).Value());
  } else {
    PendingConnect::Watch(env, std::move(fd), ep.text, timeout_ms, std::move(deferred));
  }
  return promise;
}

}  // namespace

void RegisterConnect(Napi::Env env, Napi::Object exports) {
  exports.Set(kFn, Napi::Function::New(env, ConnectMarked, kFn));
}

}  // namespace tproxy
