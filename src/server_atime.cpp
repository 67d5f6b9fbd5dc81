// The shipped stack with the atime janitor: its one instantiation.
#include "server_impl.hpp"

namespace gorego {
template class ServerImpl<AppStore<AtimeJanitor>>;
template Result<std::unique_ptr<Server>> start_server_with<AppStore<AtimeJanitor>>(const Config&);
}  // namespace gorego
