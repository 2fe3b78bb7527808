// NetlinkSocket: the only piece of symroute that makes system calls on netlink sockets.
//
// It owns one AF_NETLINK/NETLINK_ROUTE socket and hands raw datagrams to JavaScript; all
// message parsing lives in TypeScript (src/netlink/). Reads are driven by a libuv poll
// handle so they never block the event loop, and receive() drains the socket synchronously
// so the caller can handle everything already queued in one pass.

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <stddef.h>
#include <linux/netlink.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

// Kernel dump parts are at most ~32 KiB; a notification is far smaller. A datagram larger
// than this would arrive truncated, which receive() reports rather than hides: each
// recvmsg() is offered at least this much room.
constexpr size_t kMaxDatagramBytes = 256 * 1024;
// What one receive() call can hold: datagrams are read back to back into one buffer, handed
// over as one Buffer, so that a burst of 36-byte ACKs costs one copy and two JavaScript
// objects per call, not a Buffer, a number and an array slot per datagram.
constexpr size_t kBatchBytes = 1024 * 1024;
constexpr size_t kMaxReadBytes = 16 * 1024 * 1024;

Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err) {
  Napi::Error error = Napi::Error::New(env, what + ": " + strerror(err));
  error.Set("errno", Napi::Number::New(env, err));
  return error;
}

class NetlinkSocket : public Napi::ObjectWrap<NetlinkSocket> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NetlinkSocket",
                       {
                           InstanceAccessor<&NetlinkSocket::PortId>("portId"),
                           InstanceMethod<&NetlinkSocket::Send>("send"),
                           InstanceMethod<&NetlinkSocket::Receive>("receive"),
                           InstanceMethod<&NetlinkSocket::StartReading>("startReading"),
                           InstanceMethod<&NetlinkSocket::StopReading>("stopReading"),
                           InstanceMethod<&NetlinkSocket::Close>("close"),
                       });
  }

  // new NetlinkSocket({ groups?: number[], receiveBufferBytes?: number })
  explicit NetlinkSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetlinkSocket>(info) {
    Napi::Env env = info.Env();
    Napi::Object options = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>()
                                                                    : Napi::Object::New(env);
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd_ < 0) {
      ErrnoError(env, "socket(AF_NETLINK, NETLINK_ROUTE)", errno).ThrowAsJavaScriptException();
      return;
    }
    int one = 1;
    // Extended ack gives error strings; strict checking makes the kernel reject malformed
    // requests and honour dump filters; capped acks keep error replies small.
    const struct {
      int option;
      const char* name;
    } flags[] = {{NETLINK_EXT_ACK, "NETLINK_EXT_ACK"},
                 {NETLINK_GET_STRICT_CHK, "NETLINK_GET_STRICT_CHK"},
                 {NETLINK_CAP_ACK, "NETLINK_CAP_ACK"}};
    for (const auto& flag : flags) {
      if (setsockopt(fd_, SOL_NETLINK, flag.option, &one, sizeof(one)) < 0) {
        Fail(env, std::string("setsockopt(") + flag.name + ")", errno);
        return;
      }
    }
    if (options.Has("receiveBufferBytes")) {
      int bytes = options.Get("receiveBufferBytes").As<Napi::Number>().Int32Value();
      // FORCE lifts the rmem_max cap but needs CAP_NET_ADMIN; plain SO_RCVBUF is the fallback.
      if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0 &&
          setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) < 0) {
        Fail(env, "setsockopt(SO_RCVBUF)", errno);
        return;
      }
    }
    struct sockaddr_nl local = {};
    local.nl_family = AF_NETLINK;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) < 0) {
      Fail(env, "bind(AF_NETLINK)", errno);
        return;
    }
    socklen_t length = sizeof(local);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &length) < 0) {
      Fail(env, "getsockname(AF_NETLINK)", errno);
        return;
    }
    port_id_ = local.nl_pid;
    if (options.Has("groups")) {
      Napi::Array groups = options.Get("groups").As<Napi::Array>();
      for (uint32_t i = 0; i < groups.Length(); i++) {
        int group = groups.Get(i).As<Napi::Number>().Int32Value();
        if (setsockopt(fd_, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0) {
          Fail(env, "setsockopt(NETLINK_ADD_MEMBERSHIP " + std::to_string(group) + ")", errno);
        return;
        }
      }
    }
    buffer_.resize(kBatchBytes);
  }

  ~NetlinkSocket() override { CloseNow(); }

 private:
  void Fail(Napi::Env env, const std::string& what, int err) {
    ErrnoError(env, what, err).ThrowAsJavaScriptException();
    CloseNow();
  }

  Napi::Value PortId(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_id_); }

  // send(messages: Buffer[]): every message goes to the kernel in one sendmsg() (an iovec
  // per message), so a batch of requests costs one system call.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) return ThrowClosed(env);
    if (info.Length() < 1 || !info[0].IsArray()) {
      Napi::TypeError::New(env, "send() expects an array of Buffers").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array messages = info[0].As<Napi::Array>();
    std::vector<iovec> iov(messages.Length());
    for (uint32_t i = 0; i < messages.Length(); i++) {
      Napi::Value message = messages.Get(i);
      if (!message.IsBuffer()) {
        Napi::TypeError::New(env, "send() expects an array of Buffers").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      Napi::Buffer<uint8_t> bytes = message.As<Napi::Buffer<uint8_t>>();
      iov[i].iov_base = bytes.Data();
      iov[i].iov_len = bytes.Length();
    }
    struct sockaddr_nl kernel = {};
    kernel.nl_family = AF_NETLINK;
    struct msghdr header = {};
    header.msg_name = &kernel;
    header.msg_namelen = sizeof(kernel);
    header.msg_iov = iov.data();
    header.msg_iovlen = iov.size();
    ssize_t sent;
    do {
      sent = sendmsg(fd_, &header, 0);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
      ErrnoError(env, "sendmsg(AF_NETLINK)", errno).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Number::New(env, static_cast<double>(sent));
  }

  // receive(maxBytes?: number): { bytes: Buffer, datagrams: Uint32Array, overrun: boolean,
  // truncated: boolean, more: boolean }
  // Reads datagrams back to back into one buffer until the socket is empty, maxBytes (at most
  // kMaxReadBytes) were read, or the buffer has no room left for one more of the largest
  // datagram: `more` says it stopped before the socket was empty, so more may be queued.
  // `bytes` holds them all; `datagrams` two numbers for each, in order: its length and its
  // sender's port id (0: the kernel). Under a sustained flood the event loop must get a turn
  // (the poll handle is level-triggered and fires again), and a caller streaming a large dump
  // reads it a slice at a time, so that no more than a slice of it is ever held (the kernel
  // makes the next part of a dump only as the last one is read). ENOBUFS means the kernel
  // dropped messages for us (receive buffer overrun): it is reported, and reading goes on.
  Napi::Value Receive(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) return ThrowClosed(env);
    size_t max_bytes = kMaxReadBytes;
    if (info.Length() > 0 && info[0].IsNumber()) {
      double requested = info[0].As<Napi::Number>().DoubleValue();
      if (requested >= 1 && requested < static_cast<double>(kMaxReadBytes)) max_bytes = static_cast<size_t>(requested);
    }
    bool overrun = false;
    bool truncated = false;
    bool empty = false;
    size_t used = 0;
    meta_.clear();
    while (used < max_bytes && buffer_.size() - used >= kMaxDatagramBytes) {
      struct sockaddr_nl sender = {};
      struct iovec iov = {buffer_.data() + used, buffer_.size() - used};
      struct msghdr header = {};
      header.msg_name = &sender;
      header.msg_namelen = sizeof(sender);
      header.msg_iov = &iov;
      header.msg_iovlen = 1;
      ssize_t received = recvmsg(fd_, &header, MSG_DONTWAIT);
      if (received < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          empty = true;
          break;
        }
        if (errno == ENOBUFS) {
          overrun = true;
          continue;
        }
        ErrnoError(env, "recvmsg(AF_NETLINK)", errno).ThrowAsJavaScriptException();
        return env.Undefined();
      }
      if (header.msg_flags & MSG_TRUNC) truncated = true;
      used += static_cast<size_t>(received);
      meta_.push_back(static_cast<uint32_t>(received));
      meta_.push_back(sender.nl_pid);
    }
    Napi::Uint32Array datagrams = Napi::Uint32Array::New(env, meta_.size());
    if (!meta_.empty()) memcpy(datagrams.Data(), meta_.data(), meta_.size() * sizeof(uint32_t));
    Napi::Object result = Napi::Object::New(env);
    result.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, buffer_.data(), used));
    result.Set("datagrams", datagrams);
    result.Set("overrun", Napi::Boolean::New(env, overrun));
    result.Set("truncated", Napi::Boolean::New(env, truncated));
    result.Set("more", Napi::Boolean::New(env, !empty));
    return result;
  }

  // startReading(onReadable: () => void): calls onReadable whenever the socket has data or
  // an error pending; the callback is expected to call receive().
  Napi::Value StartReading(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) return ThrowClosed(env);
    if (info.Length() < 1 || !info[0].IsFunction()) {
      Napi::TypeError::New(env, "startReading() expects a function").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (poll_ != nullptr) {
      Napi::Error::New(env, "startReading() called twice").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    on_readable_ = Napi::Persistent(info[0].As<Napi::Function>());
    async_context_ = std::make_unique<Napi::AsyncContext>(env, "symroute.netlink");
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    poll_->data = this;
    int status = uv_poll_init_socket(loop, poll_, fd_);
    if (status != 0) {
      delete poll_;  // never initialised, so libuv does not know it
      poll_ = nullptr;
      Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(status)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    status = uv_poll_start(poll_, UV_READABLE, OnPoll);
    if (status != 0) {
      CloseHandle(poll_);
      poll_ = nullptr;
      Napi::Error::New(env, std::string("uv_poll_start: ") + uv_strerror(status)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Ref();  // the socket must outlive its poll handle even if JavaScript drops it
    return env.Undefined();
  }

  static void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
    NetlinkSocket* self = static_cast<NetlinkSocket*>(handle->data);
    if (status < 0) {
      // libuv stops the handle on POLLERR, which is how ENOBUFS shows up: re-arm, and let
      // the callback's receive() collect the error.
      uv_poll_start(handle, UV_READABLE, OnPoll);
    }
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    self->on_readable_.MakeCallback(env.Global(), {}, *self->async_context_);
    if (env.IsExceptionPending()) {
      Napi::Error error = env.GetAndClearPendingException();
      napi_fatal_exception(env, error.Value());
    }
  }

  Napi::Value StopReading(const Napi::CallbackInfo& info) {
    StopPolling();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseNow();
    return info.Env().Undefined();
  }

  void StopPolling() {
    if (poll_ == nullptr) return;
    uv_poll_stop(poll_);
    CloseHandle(poll_);
    poll_ = nullptr;
    on_readable_.Reset();
    async_context_.reset();
    Unref();
  }

  // An initialised handle belongs to the loop until uv_close() says it is done with it.
  static void CloseHandle(uv_poll_t* handle) {
    uv_close(reinterpret_cast<uv_handle_t*>(handle),
             [](uv_handle_t* closed) { delete reinterpret_cast<uv_poll_t*>(closed); });
  }

  void CloseNow() {
    StopPolling();
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  Napi::Value ThrowClosed(Napi::Env env) {
    Napi::Error::New(env, "netlink socket is closed").ThrowAsJavaScriptException();
    return env.Undefined();
  }

  int fd_ = -1;
  uint32_t port_id_ = 0;
  std::vector<uint8_t> buffer_;
  std::vector<uint32_t> meta_;  // receive(): length and sender of each datagram read
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference on_readable_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
};

// sendUnixDatagram(path: string, message: Buffer): one datagram to an AF_UNIX socket, as
// sd_notify() does for $NOTIFY_SOCKET. Node.js has no AF_UNIX datagram sockets of its own.
// A leading '@' names an abstract socket.
Napi::Value SendUnixDatagram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBuffer()) {
    Napi::TypeError::New(env, "sendUnixDatagram(path: string, message: Buffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Buffer<uint8_t> message = info[1].As<Napi::Buffer<uint8_t>>();
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    Napi::Error::New(env, "unix socket path is empty or too long: " + path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  memcpy(address.sun_path, path.data(), path.size());
  if (path[0] == '@') address.sun_path[0] = '\0';
  socklen_t length = offsetof(struct sockaddr_un, sun_path) + path.size();
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ErrnoError(env, "socket(AF_UNIX)", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ssize_t sent;
  do {
    sent = sendto(fd, message.Data(), message.Length(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&address), length);
  } while (sent < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (sent < 0) {
    ErrnoError(env, "sendto(" + path + ")", err).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// lockExclusive(fd: number): takes flock(LOCK_EX | LOCK_NB) on an open file. true: this
// process holds it now (until the descriptor is closed or the process ends, kill -9
// included); false: another process holds it (EWOULDBLOCK). The one-daemon-per-namespace
// guard; Node.js has no flock.
Napi::Value LockExclusive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "lockExclusive(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int result;
  do {
    result = flock(fd, LOCK_EX | LOCK_NB);
  } while (result < 0 && errno == EINTR);
  if (result == 0) return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  ErrnoError(env, "flock", errno).ThrowAsJavaScriptException();
  return env.Undefined();
}

// peerCredentials(fd: number): { pid, uid, gid } of the process at the other end of a
// connected AF_UNIX stream socket, as the kernel recorded them when it connected
// (SO_PEERCRED): the daemon tells root and its own user from the rest, and a client makes
// sure it talks to root or the service's user. Node.js does not expose it.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "peerCredentials(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred credentials = {};
  socklen_t length = sizeof(credentials);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0) {
    ErrnoError(env, "getsockopt(SO_PEERCRED)", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, credentials.pid));
  result.Set("uid", Napi::Number::New(env, credentials.uid));
  result.Set("gid", Napi::Number::New(env, credentials.gid));
  return result;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NetlinkSocket", NetlinkSocket::Define(env));
  exports.Set("sendUnixDatagram", Napi::Function::New(env, SendUnixDatagram));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials));
  exports.Set("lockExclusive", Napi::Function::New(env, LockExclusive));
  return exports;
}

}  // namespace

NODE_API_MODULE(symroute_native, Init)
