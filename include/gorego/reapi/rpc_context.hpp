#pragma once
/// The trace context of an incoming call, as the services see it.
///
/// When tracing is on, the server's interceptor opens a server span per call and records
/// its context in the call's metadata under `kServerSpanKey` (removing any value a client
/// sent under that key). Handlers read it with `incoming_context(ctx)` and hand it to the
/// Executor, so store operations become children of the server span. Without tracing the
/// key is absent and the context is empty.

#include <grpcpp/grpcpp.h>

#include <charconv>
#include <string_view>

#include <fmt/format.h>

#include <gorego/core/call_context.hpp>
#include <gorego/core/executor.hpp>
#include <gorego/core/trace_context.hpp>

namespace gorego::reapi {

inline constexpr std::string_view kServerSpanKey = "gorego-server-span";

/// Set by the server's admission interceptor (src/auth/admission.hpp) on a call it refused:
/// "CODE:message". The handler answers that status and does nothing else.
inline constexpr std::string_view kRefusedKey = "gorego-refused";
/// Set by the admission interceptor on an admitted call when authentication is on: the
/// principal's name.
inline constexpr std::string_view kPrincipalKey = "gorego-principal";

/// The status a call was refused with by admission (authentication, rights, call limits);
/// OK when it was admitted or when nothing checks admission (a framework user's server).
inline grpc::Status refusal(const grpc::ServerContextBase* ctx) {
  if (ctx == nullptr) return grpc::Status::OK;
  const auto& md = ctx->client_metadata();
  const auto it = md.find(grpc::string_ref(kRefusedKey.data(), kRefusedKey.size()));
  if (it == md.end()) return grpc::Status::OK;
  const std::string_view v(it->second.data(), it->second.size());
  int code = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), code);
  if (ec != std::errc{} || end == v.data() + v.size() || *end != ':' || code <= 0 || code > 16) {
    return {grpc::StatusCode::PERMISSION_DENIED, std::string(v)};  // not ours: refuse all the same
  }
  return {static_cast<grpc::StatusCode>(code), std::string(end + 1, v.data() + v.size())};
}

/// Answers a refused unary call (see refusal()); whether it was refused.
inline bool finish_if_refused(const grpc::ServerContextBase* ctx, grpc::ServerUnaryReactor* reactor) {
  grpc::Status refused = refusal(ctx);
  if (refused.ok()) return false;
  reactor->Finish(std::move(refused));
  return true;
}

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

/// The CallContext of an incoming call: its instance name (as the request names it), its
/// deadline (none when the client set none) and its principal (when authentication is on).
inline CallContext call_context(const grpc::ServerContextBase* ctx, std::string_view instance = {}) {
  CallContext c;
  c.instance_name = std::string(instance);
  if (ctx != nullptr) {
    const auto& md = ctx->client_metadata();
    if (const auto p = md.find(grpc::string_ref(kPrincipalKey.data(), kPrincipalKey.size())); p != md.end()) {
      c.principal = std::make_shared<const Principal>(Principal{std::string(p->second.data(), p->second.size()), {}});
    }
    const auto d = ctx->deadline();
    // gRPC reports "no deadline" as a time far in the future.
    if (d < std::chrono::system_clock::now() + std::chrono::hours(24 * 365)) c.deadline = d;
  }
  return c;
}

/// The answer to a call refused because `pool`'s queue is full: UNAVAILABLE, which
/// clients (Bazel among them) retry with backoff, naming the queue and its bound.
inline grpc::Status busy(const Executor& pool) {
  return {grpc::StatusCode::UNAVAILABLE,
          fmt::format("server busy: {} tasks wait for the {} executor (limit {}); retry with backoff",
                      pool.queued(), pool.name(), pool.max_queued())};
}

/// A streaming reactor that only answers `status` (a call refused before it started).
template <class Reactor>
class RefusedStream final : public Reactor {
 public:
  explicit RefusedStream(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

/// Admits the start of a call: posts `task` to `pool`, or finishes `reactor` busy.
template <class Reactor, class Task>
void admit(Executor& pool, TraceContext tc, Reactor* reactor, Task&& task) {
  if (!pool.try_post(std::move(tc), std::forward<Task>(task))) reactor->Finish(busy(pool));
}

}  // namespace gorego::reapi
