#include "server.hpp"

#include "server_impl.hpp"

namespace gorego {

Result<std::unique_ptr<Server>> start_server(const Config& c) {
  if (c.eviction == AtimeJanitor::kName) return start_server_with<AppStore<AtimeJanitor>>(c);
  if (c.eviction == Lru::kName) return start_server_with<AppStore<Lru>>(c);
  return error(Code::kInvalidArgument, "eviction \"{}\" is not one of: lru, atime", c.eviction);
}

}  // namespace gorego
