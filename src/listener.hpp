#pragma once
/// Listener: gorego's gRPC port. It owns the address, the server credentials, the
/// interceptors (admission: authentication, rights and call limits; the RPC observer's
/// metrics, spans and access log) and the message limits, and serves whatever services the
/// assembly adds, so TLS and authentication apply once to every service on the port.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <gorego/core/status.hpp>

namespace gorego {

class Listener {
 public:
  struct Options {
    std::string address;                                     ///< HOST:PORT (port 0: a free one)
    std::shared_ptr<grpc::ServerCredentials> credentials;    ///< null: plaintext
    int max_message_bytes = 5 << 20;
    /// Metadata (headers) larger than this is refused by gRPC before any handler runs.
    int max_metadata_bytes = 16 << 10;
    /// A connection without calls for this long is closed; 0: never.
    std::chrono::milliseconds idle_timeout{0};
    /// A connection older than this is asked to go away (GOAWAY: the client opens a new
    /// one), and its calls still running `max_connection_age_grace` later are cancelled;
    /// 0: connections live as long as their clients want.
    std::chrono::milliseconds max_connection_age{0};
    std::chrono::milliseconds max_connection_age_grace{0};
    /// The server pings a connection silent for this long and closes it when the ping is
    /// not answered within 20 s (a client that vanished without closing); 0: no pings.
    std::chrono::milliseconds keepalive{0};
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  };

  explicit Listener(Options o);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  /// Serves `s` once started; call before start(). The service must outlive the listener.
  void add(grpc::Service* s);
  /// Binds and starts serving; grpc.health.v1 answers NOT_SERVING until set_serving(true).
  /// UNAVAILABLE naming the address when it cannot be bound.
  Status start();

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] bool listening() const { return server_ != nullptr; }
  /// What grpc.health.v1 answers (for every service name).
  void set_serving(bool serving);
  /// Refuses new calls, lets calls in flight run until `deadline` and cancels them then;
  /// returns once every call has ended.
  void shutdown(std::chrono::system_clock::time_point deadline);

 private:
  Options opt_;
  std::vector<grpc::Service*> services_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace gorego
