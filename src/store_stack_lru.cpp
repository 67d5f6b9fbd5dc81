// The shipped stack with Lru eviction: its one instantiation.
#include "store_stack_impl.hpp"

namespace gorego {

std::unique_ptr<StoreStack> make_lru_stack(const Config& c, const reapi::ServiceOptions& opt, Executor& pool,
                                           std::shared_ptr<Tracer> tracer) {
  return std::make_unique<StoreStackImpl<AppStore<Lru>>>(c, opt, pool, std::move(tracer));
}

}  // namespace gorego
