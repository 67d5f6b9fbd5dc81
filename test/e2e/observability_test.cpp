// Observability of a real gorego process: /metrics deltas after known RPCs, promtool on
// the live output, the health endpoints through their documented states, profiles, and
// spans (with W3C trace context, across a proxy and its upstream) at an OTLP receiver.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "grpc/health/v1/health.grpc.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"

#include <gorego/core/trace_context.hpp>

#include "harness.hpp"

namespace gorego::e2e {
namespace {

namespace otlp = opentelemetry::proto::collector::trace::v1;
namespace otrace = opentelemetry::proto::trace::v1;

std::string hex(const std::string& bytes) {
  std::string out;
  TraceContext::append_hex(out, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  return out;
}

/// An OTLP/gRPC trace receiver on a free port that keeps every span it gets.
class OtlpReceiver final : public otlp::TraceService::Service {
 public:
  struct Span {
    std::string service;
    otrace::Span span;
    std::map<std::string, std::string> resource;  ///< the string attributes of its resource
  };

  OtlpReceiver() {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(this);
    server_ = b.BuildAndStart();
    REQUIRE(server_);
  }
  ~OtlpReceiver() override { server_->Shutdown(std::chrono::system_clock::now()); }

  grpc::Status Export(grpc::ServerContext*, const otlp::ExportTraceServiceRequest* req,
                      otlp::ExportTraceServiceResponse*) override {
    std::lock_guard lock(mu_);
    for (const auto& rs : req->resource_spans()) {
      std::string service;
      std::map<std::string, std::string> resource;
      for (const auto& kv : rs.resource().attributes()) {
        if (kv.key() == "service.name") service = kv.value().string_value();
        resource[kv.key()] = kv.value().string_value();
      }
      for (const auto& ss : rs.scope_spans()) {
        for (const auto& s : ss.spans()) spans_.push_back({service, s, resource});
      }
    }
    return grpc::Status::OK;
  }

  [[nodiscard]] int port() const { return port_; }
  /// Spans of one trace (32 hex digits).
  std::vector<Span> trace(const std::string& trace_id) {
    std::lock_guard lock(mu_);
    std::vector<Span> out;
    for (const auto& s : spans_) {
      if (hex(s.span.trace_id()) == trace_id) out.push_back(s);
    }
    return out;
  }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mu_;
  std::vector<Span> spans_;
};

const OtlpReceiver::Span* find_span(const std::vector<OtlpReceiver::Span>& spans, const std::string& service,
                                    const std::string& name) {
  for (const auto& s : spans) {
    if (s.service == service && s.span.name() == name) return &s;
  }
  return nullptr;
}

std::string attribute(const otrace::Span& s, const std::string& key) {
  for (const auto& kv : s.attributes()) {
    if (kv.key() != key) continue;
    if (kv.value().has_string_value()) return kv.value().string_value();
    if (kv.value().has_bool_value()) return kv.value().bool_value() ? "true" : "false";
    if (kv.value().has_int_value()) return std::to_string(kv.value().int_value());
  }
  return "";
}

re::Digest digest_of(const std::string& data) { return reapi::to_proto(Sha256::digest_of(data)); }

grpc::health::v1::HealthCheckResponse::ServingStatus grpc_health(Server& s) {
  auto stub = grpc::health::v1::Health::NewStub(s.channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  if (!stub->Check(&ctx, req, &resp).ok()) return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  return resp.status();
}

/// Runs a shell command; its exit status, with its output in `out`.
int run(const std::string& cmd, std::string* out) {
  std::array<char, 4096> buf{};
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  for (std::size_t n; (n = std::fread(buf.data(), 1, buf.size(), p)) > 0;) out->append(buf.data(), n);
  const int st = ::pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace

TEST_CASE("metrics: exact deltas after a known sequence of RPCs, valid for promtool", "[process][observability]") {
  TempDir dir;
  Server s(dir, {"--execution", "true"});  // so that the execution families exist too
  REQUIRE(eventually([&] { return http_get(s.admin_port, "/health/ready").status == 200; }));
  const auto before = parse_metrics(http_get(s.admin_port, "/metrics").body);

  const std::string a = make_blob(1, 1000);
  const std::string b = make_blob(2, 3000);
  const std::string big = make_blob(3, 300'000);
  const std::string absent = make_blob(4, 10);
  CHECK(s.find_missing({digest_of(a), digest_of(b), digest_of(absent)}).size() == 3);
  REQUIRE(s.batch_upload(a).ok());
  REQUIRE(s.batch_upload(b).ok());
  {
    re::BatchReadBlobsRequest req;
    for (const auto* x : {&a, &b, &absent}) *req.add_digests() = digest_of(*x);
    re::BatchReadBlobsResponse resp;
    grpc::ClientContext ctx;
    REQUIRE(s.cas->BatchReadBlobs(&ctx, req, &resp).ok());
  }
  REQUIRE(s.upload(big));
  std::string got;
  REQUIRE(s.read(digest_of(big), got).ok());
  REQUIRE(got == big);
  re::ActionResult result;
  result.set_exit_code(0);
  const re::Digest action = digest_of("an action");
  {
    re::GetActionResultRequest req;
    *req.mutable_action_digest() = action;
    re::ActionResult out;
    grpc::ClientContext ctx;
    CHECK(s.ac->GetActionResult(&ctx, req, &out).error_code() == grpc::StatusCode::NOT_FOUND);
    re::UpdateActionResultRequest up;
    *up.mutable_action_digest() = action;
    *up.mutable_action_result() = result;
    grpc::ClientContext ctx2;
    REQUIRE(s.ac->UpdateActionResult(&ctx2, up, &out).ok());
    grpc::ClientContext ctx3;
    REQUIRE(s.ac->GetActionResult(&ctx3, req, &out).ok());
  }

  const std::string text = http_get(s.admin_port, "/metrics").body;
  const auto after = parse_metrics(text);
  auto delta = [&](const std::string& series) {
    INFO(series);
    const auto it = after.find(series);
    REQUIRE(it != after.end());
    const auto was = before.find(series);
    return it->second - (was == before.end() ? 0.0 : was->second);
  };
  const std::string cas = "build.bazel.remote.execution.v2.ContentAddressableStorage";
  CHECK(delta(R"(gorego_cache_requests_total{method="find_missing",status="ok",tier="local"})") == 1);
  CHECK(delta(R"(gorego_find_missing_digests_total{result="missing"})") == 3);
  CHECK(delta(R"(gorego_find_missing_digests_total{result="present"})") == 0);
  CHECK(delta(R"(gorego_cache_requests_total{method="put_batch",status="ok",tier="local"})") == 2);
  CHECK(delta(R"(gorego_cache_requests_total{method="get",status="hit",tier="local"})") == 2);
  CHECK(delta(R"(gorego_cache_requests_total{method="get",status="miss",tier="none"})") == 1);
  CHECK(delta(R"(gorego_cache_requests_total{method="commit",status="ok",tier="local"})") == 1);
  CHECK(delta(R"(gorego_cache_requests_total{method="open_read",status="hit",tier="local"})") == 1);
  CHECK(delta(R"(gorego_cache_requests_total{method="get_action",status="miss",tier="none"})") == 1);
  CHECK(delta(R"(gorego_cache_requests_total{method="get_action",status="hit",tier="local"})") == 1);
  CHECK(delta(R"(gorego_cache_requests_total{method="put_action",status="ok",tier="local"})") == 1);
  CHECK(delta(R"(gorego_blob_size_bytes_sum{method="put_batch"})") == 4000);
  CHECK(delta(R"(gorego_blob_size_bytes_count{method="put_batch"})") == 2);
  CHECK(delta(R"(gorego_blob_size_bytes_sum{method="commit"})") == 300'000);
  CHECK(delta(R"(gorego_blob_size_bytes_sum{method="open_read"})") == 300'000);
  CHECK(delta(R"(gorego_cache_latency_seconds_count{method="get",tier="local"})") == 2);
  CHECK(delta(R"(gorego_grpc_requests_total{grpc_code="OK",grpc_method="BatchReadBlobs",grpc_service=")" + cas + "\"}") == 1);
  CHECK(delta(R"(gorego_grpc_requests_total{grpc_code="OK",grpc_method="BatchUpdateBlobs",grpc_service=")" + cas + "\"}") == 2);
  CHECK(delta(R"(gorego_grpc_requests_total{grpc_code="NOT_FOUND",grpc_method="GetActionResult",grpc_service="build.bazel.remote.execution.v2.ActionCache"})") == 1);
  CHECK(delta(R"(gorego_grpc_requests_total{grpc_code="OK",grpc_method="Write",grpc_service="google.bytestream.ByteStream"})") == 1);
  CHECK(delta(R"(gorego_grpc_request_duration_seconds_count{grpc_method="FindMissingBlobs",grpc_service=")" + cas + "\"}") == 1);
  CHECK(after.at("gorego_index_blobs") == 4);  // a, b, big and the action result
  CHECK(after.at("gorego_index_memory_bytes") > 0);
  // One ActionResult written, none replaced: the log holds exactly its record (a 72-byte header
  // and the serialized result).
  CHECK(after.at(R"(gorego_action_log_bytes{kind="live"})") == static_cast<double>(72 + result.ByteSizeLong()));
  CHECK(after.at(R"(gorego_action_log_bytes{kind="file"})") == after.at(R"(gorego_action_log_bytes{kind="live"})"));
  CHECK(after.at("gorego_action_log_compactions_total") == 0);
  CHECK(after.at("gorego_memory_cache_bytes") == 1000 + 3000 + 2 * 160);  // a and b; big is over 64 KiB
  // The BatchReadBlobs asked for `absent` too, so it was not answered from memory alone: the
  // two hits are its reads of a and b, not the abandoned in-memory attempt as well.
  CHECK(delta(R"(gorego_memory_cache_lookups_total{result="hit"})") == 2);
  CHECK(after.at("gorego_disk_usage_bytes") == 4096 * 3 + 303104);  // 4 KiB blocks
  CHECK(after.at("gorego_ready") == 1);
  CHECK(after.at("process_resident_memory_bytes") > 0);
  CHECK(after.at("process_open_fds") > 0);

  // promtool lints the live exposition (names, types, help, units).
  const auto file = dir.path() / "metrics.txt";
  std::ofstream(file) << text;
  std::string out;
  const int rc = run("promtool check metrics < " + file.string(), &out);
  INFO(out);
  CHECK(rc == 0);

  // Every gorego_* metric the dashboard and the alert rules use exists in the live output.
  std::set<std::string> families;
  for (std::istringstream in(text); std::getline(in, out);) {
    if (out.starts_with("# TYPE ")) families.insert(out.substr(7, out.find(' ', 7) - 7));
  }
  for (const char* asset : {"deploy/grafana/gorego-dashboard.json", "deploy/prometheus/alerts.yml"}) {
    const std::string content = slurp(std::filesystem::path(GOREGO_SOURCE_DIR) / asset);
    REQUIRE_FALSE(content.empty());
    const std::regex name(R"((gorego|process)_[a-z_]+)");
    for (auto it = std::sregex_iterator(content.begin(), content.end(), name); it != std::sregex_iterator(); ++it) {
      std::string m = it->str();
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (m.ends_with(suffix) && !families.contains(m)) m.resize(m.size() - std::strlen(suffix));
      }
      INFO(asset << " uses " << m);
      CHECK(families.contains(m));
    }
  }
}

TEST_CASE("health: live, startup and ready follow the store, and shutdown", "[process][observability]") {
  TempDir dir;
  std::ofstream(dir.path() / "pprof.yaml") << "telemetry:\n  pprof: true\n";  // profiles are off by default
  Server s(dir, {"--io-threads", "2", "--config", (dir.path() / "pprof.yaml").string()});
  REQUIRE(eventually([&] { return http_get(s.admin_port, "/health/ready").status == 200; }));
  CHECK(http_get(s.admin_port, "/health/live").status == 200);
  CHECK(http_get(s.admin_port, "/health/startup").status == 200);
  CHECK(http_get(s.admin_port, "/health/ready").body.find("\"status\":\"ready\"") != std::string::npos);
  CHECK(grpc_health(s) == grpc::health::v1::HealthCheckResponse::SERVING);
  CHECK(http_get(s.admin_port, "/nothing-here").status == 404);

  // The store's directory disappears (a volume unmounted): not ready, and gRPC health agrees.
  const auto moved = dir.path() / "moved-away";
  std::filesystem::rename(s.data, moved);
  REQUIRE(eventually([&] { return http_get(s.admin_port, "/health/ready").status == 503; }));
  const HttpResponse down = http_get(s.admin_port, "/health/ready");
  CHECK(down.body.find("\"status\":\"not_ready\"") != std::string::npos);
  CHECK(down.body.find("cannot create") != std::string::npos);
  CHECK(http_get(s.admin_port, "/health/live").status == 200);
  CHECK(eventually([&] { return grpc_health(s) == grpc::health::v1::HealthCheckResponse::NOT_SERVING; }));
  std::filesystem::rename(moved, s.data);
  REQUIRE(eventually([&] { return http_get(s.admin_port, "/health/ready").status == 200; }));
  CHECK(eventually([&] { return grpc_health(s) == grpc::health::v1::HealthCheckResponse::SERVING; }));

  // Profiles: a CPU profile of one second and a heap sample, both non-empty.
  const HttpResponse cpu = http_get(s.admin_port, "/debug/pprof/profile?seconds=1");
  CHECK(cpu.status == 200);
  CHECK(cpu.body.size() > 100);
  const HttpResponse heap = http_get(s.admin_port, "/debug/pprof/heap");
  CHECK(heap.status == 200);
  CHECK(heap.body.starts_with("heap profile:"));
  CHECK(http_get(s.admin_port, "/debug/pprof/profile?seconds=0").status == 400);
  // Without telemetry.pprof, the profiles are not served.
  Server off(dir, {}, "off");
  const HttpResponse none = http_get(off.admin_port, "/debug/pprof/heap");
  CHECK(none.status == 404);
  CHECK(none.body.find("telemetry.pprof") != std::string::npos);

}

TEST_CASE("health: ready turns 503 as soon as shutdown begins, live stays 200", "[process][observability]") {
  TempDir dir;
  Server up(dir, {}, "up");
  Server proxy(dir, {"--upstream", up.url()}, "proxy");
  REQUIRE(eventually([&] { return http_get(proxy.admin_port, "/health/ready").body.find("\"ready\"") != std::string::npos; }));
  // A call held in flight by an upstream that accepts connections but never answers keeps
  // the proxy in its shutdown grace period while we look at it.
  up.proc->signal(SIGSTOP);
  std::thread caller([&] {
    re::FindMissingBlobsRequest req;
    *req.add_blob_digests() = digest_of("held");
    re::FindMissingBlobsResponse resp;
    grpc::ClientContext ctx;
    (void)proxy.cas->FindMissingBlobs(&ctx, req, &resp);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  proxy.proc->signal(SIGTERM);
  const bool refused = eventually([&] { return http_get(proxy.admin_port, "/health/ready").status == 503; }, 5);
  const HttpResponse during = http_get(proxy.admin_port, "/health/ready");
  const int live = http_get(proxy.admin_port, "/health/live").status;
  up.proc->signal(SIGKILL);  // the held call fails over to the local answer
  caller.join();
  CHECK(refused);
  CHECK(during.body.find("\"status\":\"shutting_down\"") != std::string::npos);
  CHECK(live == 200);
  CHECK(proxy.proc->wait() == 0);
  CHECK(http_get(proxy.admin_port, "/health/live").status == 0);  // gone with the process
}

TEST_CASE("health: a proxy whose upstream goes down is degraded, not unready", "[process][observability]") {
  TempDir dir;
  auto up = std::make_unique<Server>(dir, std::vector<std::string>{}, "up");
  Server proxy(dir, {"--upstream", up->url()}, "proxy");
  REQUIRE(eventually([&] { return http_get(proxy.admin_port, "/health/ready").body.find("\"ready\"") != std::string::npos; }));
  const auto m = parse_metrics(http_get(proxy.admin_port, "/metrics").body);
  CHECK(m.at("gorego_upstream_up") == 1);
  // Mode through: an upload is acknowledged once the upstream has it, so the upstream is
  // the tier that accepted it.
  REQUIRE(proxy.batch_upload(make_blob(21, 100)).ok());
  CHECK(parse_metrics(http_get(proxy.admin_port, "/metrics").body)
            .at(R"(gorego_cache_requests_total{method="put",status="ok",tier="remote"})") == 1);
  up.reset();  // SIGKILL
  REQUIRE(eventually([&] { return http_get(proxy.admin_port, "/health/ready").body.find("degraded") != std::string::npos; }));
  const HttpResponse r = http_get(proxy.admin_port, "/health/ready");
  CHECK(r.status == 200);
  CHECK(r.body.find("unreachable") != std::string::npos);
  CHECK(parse_metrics(http_get(proxy.admin_port, "/metrics").body).at("gorego_upstream_up") == 0);
  CHECK(grpc_health(proxy) == grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_CASE("tracing: spans reach an OTLP receiver with the client's trace and cross to the upstream",
          "[process][observability]") {
  TempDir dir;
  OtlpReceiver receiver;
  const std::string endpoint = fmt::format("127.0.0.1:{}", receiver.port());
  Server up(dir, {"--tracing-endpoint", endpoint}, "up");
  const std::string config = (dir.path() / "proxy.yaml").string();
  std::ofstream(config) << "telemetry:\n  resource_attributes:\n    deployment.environment: e2e\n";
  Server proxy(dir, {"--upstream", up.url(), "--tracing-endpoint", endpoint, "--config", config},
               "proxy");

  // A blob only the upstream has, read through the proxy inside the client's trace.
  const std::string blob = make_blob(9, 5000);
  REQUIRE(up.batch_upload(blob).ok());
  const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string client_span = "00f067aa0ba902b7";
  re::BatchReadBlobsRequest req;
  *req.add_digests() = digest_of(blob);
  re::BatchReadBlobsResponse resp;
  grpc::ClientContext ctx;
  ctx.AddMetadata("traceparent", "00-" + trace_id + "-" + client_span + "-01");
  ctx.AddMetadata("tracestate", "vendor=value");
  REQUIRE(proxy.cas->BatchReadBlobs(&ctx, req, &resp).ok());
  REQUIRE(resp.responses(0).data() == blob);

  const std::string read_span = "build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs";
  std::vector<OtlpReceiver::Span> spans;
  REQUIRE(eventually([&] {
    spans = receiver.trace(trace_id);
    return find_span(spans, "gorego", "proxy.Get.RemoteFetch") != nullptr &&
           std::count_if(spans.begin(), spans.end(), [&](const auto& s) { return s.span.name() == read_span; }) == 2;
  }));
  // In the proxy: server span (child of the client's span) > proxy.Get > local.Read, RemoteFetch.
  const otrace::Span* server = nullptr;
  const otrace::Span* upstream_server = nullptr;
  for (const auto& s : spans) {
    if (s.span.name() != read_span) continue;
    if (hex(s.span.parent_span_id()) == client_span) server = &s.span;
    else upstream_server = &s.span;
  }
  REQUIRE(server != nullptr);
  REQUIRE(upstream_server != nullptr);
  // telemetry.resource_attributes reach the resource of the proxy's spans, next to service.name.
  int tagged = 0;
  for (const auto& s : spans) {
    INFO(s.span.name());
    CHECK(s.resource.at("service.name") == "gorego");
    if (s.resource.contains("deployment.environment")) {
      CHECK(s.resource.at("deployment.environment") == "e2e");
      CHECK(&s.span != upstream_server);  // the upstream has no such setting
      ++tagged;
    }
  }
  CHECK(tagged >= 2);  // at least the proxy's server span and its RemoteFetch
  CHECK(server->kind() == otrace::Span::SPAN_KIND_SERVER);
  CHECK(server->trace_state() == "vendor=value");
  CHECK(attribute(*server, "rpc.method") == "BatchReadBlobs");
  const otrace::Span* get = nullptr;
  for (const auto& s : spans) {
    if (s.span.name() == "proxy.Get" && s.span.parent_span_id() == server->span_id()) get = &s.span;
  }
  REQUIRE(get != nullptr);
  CHECK(attribute(*get, "gorego.digest.hash") == digest_of(blob).hash());
  CHECK(attribute(*get, "gorego.tier") == "remote");
  const auto* fetch = find_span(spans, "gorego", "proxy.Get.RemoteFetch");
  CHECK(fetch->span.parent_span_id() == get->span_id());
  int local_reads = 0;
  for (const auto& s : spans) {
    if (s.span.name() == "local.Read" && s.span.parent_span_id() == get->span_id()) {
      ++local_reads;
      CHECK(attribute(s.span, "gorego.cache.hit") == "false");
    }
  }
  CHECK(local_reads == 1);
  // The upstream's server span is a child of the proxy's RemoteFetch: the context crossed.
  CHECK(upstream_server->parent_span_id() == fetch->span.span_id());
  CHECK(upstream_server->trace_state() == "vendor=value");

  // A trace the client did not sample produces no spans, here or upstream.
  const std::string unsampled = "0af7651916cd43dd8448eb211c80319c";
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("traceparent", "00-" + unsampled + "-b7ad6b7169203331-00");
  re::BatchReadBlobsResponse resp2;
  REQUIRE(proxy.cas->BatchReadBlobs(&ctx2, req, &resp2).ok());
  // A later sampled call proves the exporter has run since.
  grpc::ClientContext ctx3;
  const std::string later = "11111111111111111111111111111111";
  ctx3.AddMetadata("traceparent", "00-" + later + "-2222222222222222-01");
  re::BatchReadBlobsResponse resp3;
  REQUIRE(proxy.cas->BatchReadBlobs(&ctx3, req, &resp3).ok());
  REQUIRE(eventually([&] { return !receiver.trace(later).empty(); }));
  CHECK(receiver.trace(unsampled).empty());

  // Logs inside a request carry its trace id (the access log line, at debug level, is
  // off here; the read-through writes none at info). Metrics count the remote hit.
  const auto m = parse_metrics(http_get(proxy.admin_port, "/metrics").body);
  CHECK(m.at(R"(gorego_cache_requests_total{method="get",status="hit",tier="remote"})") == 1);
  CHECK(m.at(R"(gorego_cache_requests_total{method="get",status="hit",tier="local"})") == 2);
  CHECK(m.at("gorego_trace_spans_dropped_total") == 0);
}

TEST_CASE("logs: the access log line of each RPC carries the trace id", "[process][observability]") {
  TempDir dir;
  Server s(dir, {"--log-level", "debug", "--tracing-endpoint", "stdout"});
  const std::string blob = make_blob(5, 100);
  grpc::ClientContext ctx;
  ctx.AddMetadata("traceparent", "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  re::FindMissingBlobsRequest req;
  *req.add_blob_digests() = digest_of(blob);
  re::FindMissingBlobsResponse resp;
  REQUIRE(s.cas->FindMissingBlobs(&ctx, req, &resp).ok());
  std::string line;
  REQUIRE(eventually([&] {
    const std::string log = slurp(s.log);
    const auto pos = log.find("\"msg\":\"rpc\",\"trace_id\":\"5bf92f3577b34da6a3ce929d0e0e4736\"");
    if (pos == std::string::npos) return false;
    line = log.substr(pos, log.find('\n', pos) - pos);
    return true;
  }));
  CHECK(line.find("FindMissingBlobs") != std::string::npos);
  CHECK(line.find("\"code\":\"OK\"") != std::string::npos);
  CHECK(line.find("\"span_id\":\"") != std::string::npos);
  // With tracing to stdout, the same trace's spans are JSON lines in the same output.
  CHECK(eventually([&] {
    return slurp(s.log).find("\"name\":\"proxy.FindMissing\",\"trace_id\":\"5bf92f3577b34da6a3ce929d0e0e4736\"") !=
           std::string::npos;
  }));
}

}  // namespace gorego::e2e
