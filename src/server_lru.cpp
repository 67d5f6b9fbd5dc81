// The shipped stack with exact LRU eviction: its one instantiation.
#include "server_impl.hpp"

namespace gorego {
template class ServerImpl<AppStore<Lru>>;
template Result<std::unique_ptr<Server>> start_server_with<AppStore<Lru>>(const Config&);
}  // namespace gorego
