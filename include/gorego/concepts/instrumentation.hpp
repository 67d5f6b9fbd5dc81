#pragma once
/// Instrumentation: a policy that observes each store operation of a ProxyStore
/// (`Counted` for metrics and `Traced` for spans arrive later).
///
/// Semantics: `begin(op)` is called before the operation and returns a token;
/// `end(token, status)` after it, with its outcome. Instrumentation never changes results.
/// Thread safety: begin/end may be called concurrently.
///
///   auto t = counted.begin(StoreOp::kGet);
///   auto r = local.get(d);
///   counted.end(t, r.status());

#include <concepts>
#include <string_view>

#include <gorego/core/status.hpp>

namespace gorego {

/// The operations a ProxyStore reports to its instrumentation.
enum class StoreOp { kContains, kFindMissing, kGet, kPut, kOpenRead, kOpenWrite, kGetAction, kPutAction };

constexpr std::string_view op_name(StoreOp op) {
  switch (op) {
    case StoreOp::kContains: return "contains";
    case StoreOp::kFindMissing: return "find_missing";
    case StoreOp::kGet: return "get";
    case StoreOp::kPut: return "put";
    case StoreOp::kOpenRead: return "open_read";
    case StoreOp::kOpenWrite: return "open_write";
    case StoreOp::kGetAction: return "get_action";
    case StoreOp::kPutAction: return "put_action";
  }
  return "unknown";
}

template <class I>
concept Instrumentation = requires(I& i, StoreOp op, const Status& s) {
  { I::kName } -> std::convertible_to<std::string_view>;
  typename I::Token;
  { i.begin(op) } -> std::same_as<typename I::Token>;
  { i.end(std::declval<typename I::Token&>(), s) } -> std::same_as<void>;
};

}  // namespace gorego
