#pragma once
/// RpcObserver: what the server records per gRPC call, whatever the store stack is.
///
/// A server interceptor counts every call by service, method and status code
/// (`gorego_grpc_requests_total`), times it (`gorego_grpc_request_duration_seconds`),
/// writes the debug-level access log line, and, when tracing is on, opens the server span:
/// a child of the client's W3C `traceparent` when one came, else a new root. The span's
/// context is handed to the handlers in the call's metadata (reapi/rpc_context.hpp).
/// Method labels are limited to the methods of the services we serve; anything else
/// counts as grpc_service="unknown".

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <gorego/instrument/tracer.hpp>

namespace gorego {

class RpcObserver {
 public:
  /// `services`: full names of the gRPC services served ("google.bytestream.ByteStream").
  RpcObserver(const std::vector<std::string>& services, std::shared_ptr<Tracer> tracer);

  [[nodiscard]] std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  [[nodiscard]] Tracer* tracer() const { return tracer_.get(); }

  /// The interceptor factory to hand to grpc::ServerBuilder.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> factory();

  /// Index of a "/pkg.Service/Method" path among the served methods; -1 if unknown.
  [[nodiscard]] int method_index(std::string_view path) const;
  struct Method {
    std::string path;  ///< "/pkg.Service/Method"
    std::string service;
    std::string name;
  };
  [[nodiscard]] const Method& method(int i) const { return methods_[static_cast<std::size_t>(i)]; }

  /// Records a finished call (thread-safe).
  void record(int method, grpc::StatusCode code, double seconds);

 private:
  static constexpr std::size_t kCodes = 17;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Tracer> tracer_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
  std::vector<Method> methods_;  // index methods_.size() is "unknown"
  std::unordered_map<std::string_view, int> by_path_;
  std::unique_ptr<std::atomic<prometheus::Counter*>[]> counters_;
  std::unique_ptr<std::atomic<prometheus::Histogram*>[]> histograms_;
};

}  // namespace gorego
