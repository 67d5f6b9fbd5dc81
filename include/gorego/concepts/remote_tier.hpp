#pragma once
/// RemoteTier: the backing cache behind a ProxyStore (`NoRemote`, or `Remote<Client>`).
///
/// Semantics: `kEnabled` says whether the tier exists; a ProxyStore never calls a disabled
/// tier, so `NoRemote` costs nothing. An enabled tier is the authority for
/// FindMissingBlobs and is read through on local misses and written through on uploads
/// (see Remote<Client> for the members an enabled tier offers).
/// Thread safety: every member may be called concurrently.
///
///   static_assert(RemoteTier<NoRemote>);
///   if constexpr (R::kEnabled) return remote_.find_missing(ds);

#include <concepts>
#include <string_view>

namespace gorego {

template <class R>
concept RemoteTier = requires {
  { R::kName } -> std::convertible_to<std::string_view>;
  { R::kEnabled } -> std::convertible_to<bool>;
};

}  // namespace gorego
