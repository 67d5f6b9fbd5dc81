#pragma once
/// NoRemote: the RemoteTier of a ProxyStore without a backing cache. Disabled, so every
/// operation is answered by the local tier alone.

#include <string_view>

#include <gorego/concepts/remote_tier.hpp>

namespace gorego {

struct NoRemote {
  static constexpr std::string_view kName = "none";
  static constexpr bool kEnabled = false;
  struct Options {};
};
static_assert(RemoteTier<NoRemote>);

}  // namespace gorego
