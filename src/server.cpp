#include "server.hpp"

#include <absl/synchronization/mutex.h>

#include "server_impl.hpp"

namespace gorego {

Result<std::shared_ptr<Tracer>> make_tracer(const Config& c) {
  const TelemetrySettings& t = c.telemetry;
  if (t.tracing_endpoint.empty()) return std::shared_ptr<Tracer>();
  telemetry::ServiceInfo service{.service_name = t.service_name,
                                 .service_version = GOREGO_VERSION,
                                 .attributes = t.resource_attributes};
  std::unique_ptr<SpanExporter> exporter;
  if (t.tracing_endpoint == "stdout") {
    exporter = std::make_unique<telemetry::JsonLinesExporter>(service);
  } else {
    auto otlp =
        telemetry::OtlpExporter::connect({.endpoint = t.tracing_endpoint, .service = service});
    if (!otlp) return otlp.error();
    exporter = std::move(*otlp);
  }
  return std::make_shared<Tracer>(Tracer::Options{.sample_rate = t.sample_rate},
                                  std::move(exporter));
}

std::vector<std::string> served_services() {
  return {"build.bazel.remote.execution.v2.Capabilities", "build.bazel.remote.execution.v2.ContentAddressableStorage",
          "build.bazel.remote.execution.v2.ActionCache", "google.bytestream.ByteStream", "grpc.health.v1.Health",
          "build.bazel.remote.execution.v2.Execution", "google.longrunning.Operations", "gorego.worker.v1.Workers"};
}

Result<std::unique_ptr<Server>> start_server(const Config& c) {
  // Debian's Abseil tracks lock ordering on every absl::Mutex acquisition (gRPC's locks):
  // a debugging aid that costs a few percent of CPU per RPC. Turn it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  switch (c.storage.eviction) {
    case Eviction::kAtime: return start_server_with<AppStore<AtimeJanitor>>(c);
    case Eviction::kLru: return start_server_with<AppStore<Lru>>(c);
    case Eviction::kSampledLru: return start_server_with<AppStore<SampledLru>>(c);
  }
  return error(Code::kInvalidArgument, "eviction {} is not one of: sampled-lru, lru, atime",
               static_cast<int>(c.storage.eviction));
}

// The config's names of the policies are the policies' own.
static_assert(enum_name(Eviction::kAtime) == AtimeJanitor::kName);
static_assert(enum_name(Eviction::kLru) == Lru::kName);
static_assert(enum_name(Eviction::kSampledLru) == SampledLru::kName);

}  // namespace gorego
