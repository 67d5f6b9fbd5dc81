#pragma once
/// ProxyStore<LocalT, RemoteT, Instrumentation...>: the store the gRPC services talk to.
///
/// It composes a local tier, a remote tier and any number of instrumentation policies.
/// With `NoRemote` every operation goes to the local tier; with an enabled remote the
/// upstream becomes the authority for FindMissingBlobs and is read and written through
/// (DESIGN.md, capability 2). Each operation is reported to every instrumentation policy
/// in order; with none, the wrapper compiles away.
/// Thread safety: as the tiers it composes (all of gorego's are fully concurrent).
///
///   using Store = ProxyStore<Local<ShardedDisk, Lru>, NoRemote>;
///   Store store({.root = "/var/cache/gorego"}, {}, {.max_bytes = 10ull << 30});
///   GOREGO_RETURN_IF_ERROR(store.start());

#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <gorego/concepts/action_store.hpp>
#include <gorego/concepts/blob_store.hpp>
#include <gorego/concepts/instrumentation.hpp>
#include <gorego/concepts/remote_tier.hpp>
#include <gorego/core/name.hpp>
#include <gorego/store/no_remote.hpp>

namespace gorego {

template <class LocalT, RemoteTier RemoteT = NoRemote, Instrumentation... Instr>
  requires BlobStore<LocalT> && ActionStore<LocalT>
class ProxyStore {
 public:
  static constexpr std::string_view kProxy = "proxy";
  static constexpr std::string_view kName =
      detail::JoinNames<kProxy, detail::kOpen, LocalT::kName, detail::kComma, RemoteT::kName,
                        detail::kClose>::value;

  using Local = LocalT;
  using Remote = RemoteT;
  using Reader = typename LocalT::Reader;
  using Writer = typename LocalT::Writer;

  /// Forwards `args` to the local tier's constructor.
  template <class... Args>
    requires std::constructible_from<LocalT, Args...>
  explicit ProxyStore(Args&&... args) : local_(std::forward<Args>(args)...) {}

  Status start() {
    if constexpr (requires { local_.start(); }) return local_.start();
    return {};
  }
  void stop() {
    if constexpr (requires { local_.stop(); }) local_.stop();
  }

  LocalT& local() { return local_; }
  template <class I>
  I& instrumentation() {
    return std::get<I>(instr_);
  }
  RemoteT& remote() { return remote_; }

  bool contains(const Digest& d) {
    return observe(StoreOp::kContains, [&] { return local_.contains(d); });
  }
  std::vector<Digest> find_missing(std::span<const Digest> ds) {
    return observe(StoreOp::kFindMissing, [&] { return local_.find_missing(ds); });
  }
  Result<std::string> get(const Digest& d) {
    return observe(StoreOp::kGet, [&] { return local_.get(d); });
  }
  Status put(const Digest& d, std::string_view data) {
    return observe(StoreOp::kPut, [&] { return local_.put(d, data); });
  }
  Result<Reader> open_read(const Digest& d, std::uint64_t offset) {
    return observe(StoreOp::kOpenRead, [&] { return local_.open_read(d, offset); });
  }
  Result<Writer> open_write(const Digest& d) {
    return observe(StoreOp::kOpenWrite, [&] { return local_.open_write(d); });
  }
  Result<std::string> get_action(const Digest& d) {
    return observe(StoreOp::kGetAction, [&] { return local_.get_action(d); });
  }
  Status put_action(const Digest& d, std::string_view bytes) {
    return observe(StoreOp::kPutAction, [&] { return local_.put_action(d, bytes); });
  }

 private:
  template <class F>
  auto observe(StoreOp op, F&& f) {
    if constexpr (sizeof...(Instr) == 0) {
      return f();
    } else {
      auto tokens = std::apply([&](auto&... i) { return std::tuple{i.begin(op)...}; }, instr_);
      auto result = f();
      Status s;
      if constexpr (requires { result.status(); }) s = result.status();
      else if constexpr (std::is_same_v<decltype(result), Status>) s = result;
      [&]<std::size_t... I>(std::index_sequence<I...>) {
        (std::get<I>(instr_).end(std::get<I>(tokens), s), ...);
      }(std::index_sequence_for<Instr...>{});
      return result;
    }
  }

  LocalT local_;
  [[no_unique_address]] RemoteT remote_;
  [[no_unique_address]] std::tuple<Instr...> instr_;
};

}  // namespace gorego
