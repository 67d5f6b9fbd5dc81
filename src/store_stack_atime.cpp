// The shipped stack with AtimeJanitor eviction: its one instantiation.
#include "store_stack_impl.hpp"

namespace gorego {

std::unique_ptr<StoreStack> make_atime_stack(const Config& c, const reapi::ServiceOptions& opt, Executor& pool,
                                           std::shared_ptr<Tracer> tracer) {
  return std::make_unique<StoreStackImpl<AppStore<AtimeJanitor>>>(c, opt, pool, std::move(tracer));
}

}  // namespace gorego
