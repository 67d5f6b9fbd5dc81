// The shipped stack with sampled LRU eviction (the default): its one instantiation.
#include "server_impl.hpp"

namespace gorego {
template class ServerImpl<AppStore<SampledLru>>;
template Result<std::unique_ptr<Server>> start_server_with<AppStore<SampledLru>>(const Config&);
}  // namespace gorego
