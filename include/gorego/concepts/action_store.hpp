#pragma once
/// ActionStore: the ActionCache, mapping an Action digest to a serialized ActionResult.
///
/// Semantics: `get_action` returns the bytes last stored for the action (NOT_FOUND on a
/// miss); `put_action` replaces them. The store treats the bytes as opaque: parsing and the
/// completeness check (outputs present in the CAS) happen in reapi/, above the store.
/// Thread safety: every member may be called concurrently.
///
///   GOREGO_RETURN_IF_ERROR(store.put_action(action_digest, result_bytes));
///   Result<std::string> r = store.get_action(action_digest);

#include <concepts>
#include <string>
#include <string_view>

#include <gorego/core/digest.hpp>

namespace gorego {

template <class S>
concept ActionStore = requires(S& s, const Digest& d, std::string_view bytes) {
  { s.get_action(d) } -> std::same_as<Result<std::string>>;
  { s.put_action(d, bytes) } -> std::same_as<Status>;
};

}  // namespace gorego
