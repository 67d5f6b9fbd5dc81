#pragma once
/// Span exporters: OTLP over gRPC (TraceService.Export, to an OpenTelemetry Collector,
/// Jaeger, Tempo...) and JSON lines on stdout for development.
///
///   auto exporter = OtlpExporter::connect({.endpoint = "127.0.0.1:4317", .service_version = "0.1.0"});
///   auto tracer = std::make_shared<Tracer>(Tracer::Options{}, std::move(*exporter));

#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <variant>

#include <grpcpp/grpcpp.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"

#include <gorego/core/log.hpp>
#include <gorego/core/status.hpp>
#include <gorego/instrument/tracer.hpp>

namespace gorego::telemetry {

/// Who produced the spans: the OTLP resource and scope.
struct ServiceInfo {
  std::string service_name = "gorego";
  std::string service_version;
  std::string host_name;  ///< empty: gethostname()
  /// More resource attributes (`deployment.environment`: "prod"), sent after service.name;
  /// one named service.version or host.name replaces gorego's own. Not service.name.
  std::map<std::string, std::string> attributes;
};

class OtlpExporter final : public SpanExporter {
 public:
  struct Options {
    std::string endpoint;  ///< host:port, or grpc://host:port (plaintext)
    ServiceInfo service;
    std::chrono::milliseconds timeout{5000};
  };

  static Result<std::unique_ptr<SpanExporter>> connect(Options o) {
    std::string address = o.endpoint;
    if (address.starts_with("grpc://")) address = address.substr(7);
    if (address.empty() || address.find("://") != std::string::npos) {
      return error(Code::kInvalidArgument,
                   "telemetry.tracing_endpoint \"{}\" must be host:port or grpc://host:port", o.endpoint);
    }
    auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    return std::unique_ptr<SpanExporter>(new OtlpExporter(std::move(o), std::move(channel)));
  }

  Status export_spans(std::span<const SpanData> spans) override {
    namespace coll = opentelemetry::proto::collector::trace::v1;
    coll::ExportTraceServiceRequest req;
    auto* rs = req.add_resource_spans();
    fill_resource(*rs->mutable_resource());
    auto* ss = rs->add_scope_spans();
    ss->mutable_scope()->set_name("gorego");
    ss->mutable_scope()->set_version(opt_.service.service_version);
    for (const SpanData& s : spans) to_proto(s, *ss->add_spans());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + opt_.timeout);
    coll::ExportTraceServiceResponse resp;
    const grpc::Status st = stub_->Export(&ctx, req, &resp);
    if (!st.ok()) {
      return error(static_cast<Code>(st.error_code()), "OTLP export to {}: {}", opt_.endpoint, st.error_message());
    }
    if (resp.has_partial_success() && resp.partial_success().rejected_spans() > 0) {
      log::warn("OTLP receiver rejected spans",
                {{"rejected", std::to_string(resp.partial_success().rejected_spans())},
                 {"error", resp.partial_success().error_message()}});
    }
    return {};
  }

  static void to_proto(const SpanData& s, opentelemetry::proto::trace::v1::Span& out) {
    using PSpan = opentelemetry::proto::trace::v1::Span;
    out.set_trace_id(s.trace_id.data(), s.trace_id.size());
    out.set_span_id(s.span_id.data(), s.span_id.size());
    if (s.parent_span_id != TraceContext::SpanId{}) out.set_parent_span_id(s.parent_span_id.data(), s.parent_span_id.size());
    if (s.tracestate) out.set_trace_state(*s.tracestate);
    out.set_name(s.name);
    out.set_kind(s.kind == SpanData::Kind::kServer   ? PSpan::SPAN_KIND_SERVER
                 : s.kind == SpanData::Kind::kClient ? PSpan::SPAN_KIND_CLIENT
                                                     : PSpan::SPAN_KIND_INTERNAL);
    out.set_start_time_unix_nano(static_cast<std::uint64_t>(s.start_unix_ns));
    out.set_end_time_unix_nano(static_cast<std::uint64_t>(s.end_unix_ns));
    out.set_flags(s.flags);
    for (const auto& [k, v] : s.attributes) set_attribute(*out.add_attributes(), k, v);
    if (s.error) {
      out.mutable_status()->set_code(opentelemetry::proto::trace::v1::Status::STATUS_CODE_ERROR);
      out.mutable_status()->set_message(s.status_message);
    }
  }

 private:
  OtlpExporter(Options o, std::shared_ptr<grpc::Channel> channel)
      : opt_(std::move(o)), stub_(opentelemetry::proto::collector::trace::v1::TraceService::NewStub(channel)) {
    if (opt_.service.host_name.empty()) {
      char host[256] = {};
      if (::gethostname(host, sizeof(host) - 1) == 0) opt_.service.host_name = host;
    }
  }

  static void set_attribute(opentelemetry::proto::common::v1::KeyValue& kv, const std::string& key,
                            const AttributeValue& v) {
    kv.set_key(key);
    auto* val = kv.mutable_value();
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) val->set_string_value(x);
          else if constexpr (std::is_same_v<T, bool>) val->set_bool_value(x);
          else if constexpr (std::is_same_v<T, double>) val->set_double_value(x);
          else val->set_int_value(x);
        },
        v);
  }

  void fill_resource(opentelemetry::proto::resource::v1::Resource& r) const {
    const auto& more = opt_.service.attributes;
    set_attribute(*r.add_attributes(), "service.name", opt_.service.service_name);
    if (!more.contains("service.version")) {
      set_attribute(*r.add_attributes(), "service.version", opt_.service.service_version);
    }
    if (!opt_.service.host_name.empty() && !more.contains("host.name")) {
      set_attribute(*r.add_attributes(), "host.name", opt_.service.host_name);
    }
    for (const auto& [key, value] : more) set_attribute(*r.add_attributes(), key, value);
  }

  Options opt_;
  std::unique_ptr<opentelemetry::proto::collector::trace::v1::TraceService::Stub> stub_;
};

/// One JSON object per span on stdout (development; `telemetry.tracing_endpoint: stdout`).
class JsonLinesExporter final : public SpanExporter {
 public:
  explicit JsonLinesExporter(ServiceInfo service, int fd = 1) : service_(std::move(service)), fd_(fd) {}

  Status export_spans(std::span<const SpanData> spans) override {
    std::string out;
    for (const SpanData& s : spans) {
      out += "{\"service\":";
      log::detail::append_json_string(out, service_.service_name);
      out += ",\"name\":";
      log::detail::append_json_string(out, s.name);
      out += ",\"trace_id\":\"";
      TraceContext::append_hex(out, s.trace_id.data(), s.trace_id.size());
      out += "\",\"span_id\":\"";
      TraceContext::append_hex(out, s.span_id.data(), s.span_id.size());
      out += "\",\"parent_span_id\":\"";
      if (s.parent_span_id != TraceContext::SpanId{}) {
        TraceContext::append_hex(out, s.parent_span_id.data(), s.parent_span_id.size());
      }
      out += fmt::format("\",\"kind\":\"{}\",\"start_unix_ns\":{},\"duration_ns\":{},\"error\":{}",
                         s.kind == SpanData::Kind::kServer ? "server" : s.kind == SpanData::Kind::kClient ? "client" : "internal",
                         s.start_unix_ns, s.end_unix_ns - s.start_unix_ns, s.error ? "true" : "false");
      if (s.error) {
        out += ",\"status\":";
        log::detail::append_json_string(out, s.status_message);
      }
      out += ",\"attributes\":{";
      bool first = true;
      for (const auto& [k, v] : s.attributes) {
        if (!first) out += ',';
        first = false;
        log::detail::append_json_string(out, k);
        out += ':';
        std::visit(
            [&](const auto& x) {
              using T = std::decay_t<decltype(x)>;
              if constexpr (std::is_same_v<T, std::string>) log::detail::append_json_string(out, x);
              else if constexpr (std::is_same_v<T, bool>) out += x ? "true" : "false";
              else out += fmt::format("{}", x);
            },
            v);
      }
      out += "}}\n";
    }
    std::string_view rest = out;
    while (!rest.empty()) {
      const ssize_t n = ::write(fd_, rest.data(), rest.size());
      if (n <= 0) return error(Code::kUnavailable, "cannot write spans to fd {}", fd_);
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
  }

 private:
  ServiceInfo service_;
  int fd_;
};

}  // namespace gorego::telemetry
