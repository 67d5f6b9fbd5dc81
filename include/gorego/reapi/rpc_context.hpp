#pragma once
/// The trace context of an incoming call, as the services see it.
///
/// When tracing is on, the server's interceptor opens a server span per call and records
/// its context in the call's metadata under `kServerSpanKey` (removing any value a client
/// sent under that key). Handlers read it with `incoming_context(ctx)` and hand it to the
/// Executor, so store operations become children of the server span. Without tracing the
/// key is absent and the context is empty.

#include <grpcpp/grpcpp.h>

#include <string_view>

#include <gorego/core/trace_context.hpp>

namespace gorego::reapi {

inline constexpr std::string_view kServerSpanKey = "gorego-server-span";

inline TraceContext incoming_context(const grpc::ServerContextBase* ctx) {
  if (ctx == nullptr) return {};
  const auto& md = ctx->client_metadata();
  const auto it = md.find(grpc::string_ref(kServerSpanKey.data(), kServerSpanKey.size()));
  if (it == md.end()) return {};
  auto tc = TraceContext::parse(std::string_view(it->second.data(), it->second.size()));
  if (!tc) return {};
  if (const auto ts = md.find("tracestate"); ts != md.end() && ts->second.size() <= 512) {
    tc->tracestate = std::make_shared<const std::string>(ts->second.data(), ts->second.size());
  }
  return *tc;
}

}  // namespace gorego::reapi
