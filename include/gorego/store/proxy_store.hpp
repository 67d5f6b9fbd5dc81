#pragma once
/// ProxyStore<LocalT, RemoteT, Instrumentation...>: the store the gRPC services talk to.
///
/// It composes a local tier, the tiers behind it (`NoRemote`, one `Remote<Client>`, or a
/// chain `Tiers<...>`, in read order) and any number of instrumentation policies. With no
/// tier connected, every operation goes to the local tier. With a connected one (DESIGN.md,
/// capability 2; "the upstream" below is the first active authority of the chain):
/// - FindMissingBlobs is answered by the upstream, the authority, so a blob held only
///   locally is still reported missing and the client uploads it; if the upstream cannot
///   be asked, the local tier answers (degraded, logged).
/// - Reads are served locally when present; a miss is fetched from the upstream once for
///   all concurrent callers (singleflight), verified while it is written to the local tier,
///   and then served from there; a chain is read in order, each tier's miss or failure
///   passing to the next. Large blobs stream to disk, never whole into memory.
///   Any read-through failure (upstream miss, unreachable, wrong bytes) is a NOT_FOUND to
///   the caller, naming the upstream's error: clients treat it as a cache miss.
/// - Uploads land locally and in every connected tier, each per its mode: `through`
///   acknowledges once the tier accepted (its error is returned otherwise), `back` once the
///   local tier stored it, queueing the tier's upload. ActionCache updates do the same.
///
/// Every operation comes in two forms. The continuation form, `op(args..., done)`, is what
/// the services use: `done(result)` runs exactly once, before the call returns when the
/// local tier answers, or later when the upstream does. No thread waits for the upstream:
/// its answers arrive on the client's callback threads, and the local work they need
/// (verifying, writing the blob, opening it) is posted to the executor given to
/// `set_executor` (inline without one, as in tests). The plain form, `op(args...)`, waits
/// for the result: for tests, tools and the write-back worker, never a gRPC or executor
/// thread while an upstream is connected.
/// Each operation is reported to every instrumentation policy in order; with none, the
/// wrapper compiles away. Thread safety: fully concurrent.
///
///   using Store = ProxyStore<Local<ShardedDisk, Lru>, Remote<Reapi>>;
///   Store store(ShardedDisk::Options{.root = "/var/cache/gorego"}, Store::Local::Options{});
///   store.remote().connect(std::move(client), {.mode = WriteMode::kThrough});
///   store.set_executor(&pool);
///   GOREGO_RETURN_IF_ERROR(store.start());
///   store.get(d, [reactor](Result<std::string> r) { ... });

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include <gorego/concepts/action_store.hpp>
#include <gorego/concepts/blob_store.hpp>
#include <gorego/concepts/instrumentation.hpp>
#include <gorego/concepts/remote_tier.hpp>
#include <gorego/core/call_context.hpp>
#include <gorego/core/executor.hpp>
#include <gorego/core/log.hpp>
#include <gorego/core/name.hpp>
#include <gorego/hash/content_hash.hpp>
#include <gorego/hash/sha256.hpp>
#include <gorego/store/no_remote.hpp>
#include <gorego/store/remote.hpp>
#include <gorego/store/singleflight.hpp>
#include <gorego/store/tiers.hpp>

namespace gorego {

namespace detail {

/// Waits for one callback's value (the plain forms of ProxyStore's operations). Both sides
/// take the lock, and the setter notifies under it: the waiter, which destroys the latch
/// when it returns, cannot return before the setter is done with it.
template <class T>
class Latch {
 public:
  void set(T v) {
    std::lock_guard lock(mu_);
    value_.emplace(std::move(v));
    cv_.notify_one();
  }
  T take() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return value_.has_value(); });
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
  std::mutex mu_;
  std::condition_variable cv_;
};

template <class T, class Start>
T wait_for(Start&& start) {
  Latch<T> latch;
  start([&latch](T v) { latch.set(std::move(v)); });
  return latch.take();
}

/// Restores the thread's current span when a scope ends: an operation that continues
/// elsewhere leaves its caller's context as it found it.
class SpanKeeper {
 public:
  SpanKeeper() : saved_(TraceContext::current().span_id) {}
  SpanKeeper(const SpanKeeper&) = delete;
  SpanKeeper& operator=(const SpanKeeper&) = delete;
  ~SpanKeeper() { TraceContext::current().span_id = saved_; }

 private:
  TraceContext::SpanId saved_;
};

/// Stands in for members a store without tiers does not need (one type per member, so
/// that they take no space together).
template <int N>
struct Nothing {};

/// How many tiers a ProxyStore's RemoteT puts behind the local one.
template <class R>
struct ChainSize {
  static constexpr std::size_t value = R::kEnabled ? 1 : 0;
};
template <TierChain R>
struct ChainSize<R> {
  static constexpr std::size_t value = std::tuple_size_v<decltype(std::declval<R&>().tiers())>;
};

}  // namespace detail

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

 private:
  /// What an operation learns about itself while it runs, for its Outcome.
  struct OpState {
    Tier tier = Tier::kLocal;
    std::uint64_t bytes = 0;
    std::size_t missing = 0;
  };
  using Tokens = std::tuple<typename Instr::Token...>;
  /// A begun top-level operation.
  struct Op {
    Tokens tokens;
    OpState st;
  };
  /// A top-level operation waiting for the upstream: its tokens, its caller's `done`, the
  /// trace context to finish it in, and the tokens of its nested remote step.
  template <class Done>
  struct Pending {
    Op op;
    Done done;
    TraceContext context;
    std::optional<Tokens> step;
    CallContext call;  // the caller's, current again when it finishes
  };

 public:
  /// A local write that, at commit, is written through to the upstream per the mode.
  class Writer {
   public:
    Writer(typename LocalT::Writer inner, ProxyStore* owner, Digest d)
        : inner_(std::move(inner)), owner_(owner), digest_(d) {}
    Status append(std::string_view data) { return inner_.append(data); }
    /// Publishes locally, then writes through; `done(status)` once acknowledged.
    template <class Done>
    void commit(Done&& done) {
      detail::SpanKeeper keep;
      Op op = owner_->begin({.op = StoreOp::kCommit, .digest = &digest_});
      op.st.bytes = inner_.written();
      Status s = owner_->step({.op = StoreOp::kLocalWrite, .digest = &digest_}, op.st.bytes,
                              [&] { return inner_.commit(); });
      if (!s.ok() || !owner_->remote_on()) return owner_->finish(op, std::move(s), done);
      owner_->write_through(std::move(op), digest_, {}, /*local_ok=*/true, std::forward<Done>(done));
    }
    Status commit() {
      return detail::wait_for<Status>([&](auto cb) { commit(std::move(cb)); });
    }
    [[nodiscard]] std::uint64_t written() const { return inner_.written(); }

   private:
    typename LocalT::Writer inner_;
    ProxyStore* owner_;
    Digest digest_;
  };

  /// Forwards `args` to the local tier's constructor.
  template <class... Args>
    requires std::constructible_from<LocalT, Args...>
  explicit ProxyStore(Args&&... args) : local_(std::forward<Args>(args)...) {}

  /// Where local work after an upstream answer runs (disk writes, hashing, opening the
  /// fetched blob). Without one it runs on the thread that delivered the answer. Set
  /// before the store serves; reset (nullptr) before the executor is destroyed.
  void set_executor(Executor* e) {
    if constexpr (RemoteT::kEnabled) exec_.store(e, std::memory_order_release);
  }

  Status start() {
    std::apply([&](auto&... i) { (attach_one(i), ...); }, instr_);
    if constexpr (sizeof...(Instr) > 0 && requires { local_.set_eviction_observer(nullptr); }) {
      local_.set_eviction_observer([this](const EvictionRun& run) {
        std::apply([&](auto&... i) { (evicted_one(i, run), ...); }, instr_);
      });
    }
    if constexpr (requires { local_.start(); }) GOREGO_RETURN_IF_ERROR(local_.start());
    // Write-back uploads an earlier run acknowledged but did not finish.
    for_each_tier([&](auto& t) {
      if constexpr (requires { t.replay([](const ObjectKey&) { return std::function<Status()>(); }); }) {
        if (t.active()) t.replay([&](const ObjectKey& k) { return write_back_job(t, k); });
      }
    });
    return {};
  }
  void stop() {
    if constexpr (requires { remote_.stop(); }) remote_.stop();
    if constexpr (requires { local_.stop(); }) local_.stop();
  }

  LocalT& local() { return local_; }
  RemoteT& remote() { return remote_; }
  /// Calls `f(tier)` for every enabled tier, in read order (metrics, health, shutdown).
  template <class F>
  void for_each_tier(F&& f) {
    auto c = chain();
    std::apply([&](auto&... t) { (each_enabled(t, f), ...); }, c);
  }
  /// Whether any tier behind the local one is connected.
  bool tiers_active() { return remote_on(); }
  /// The read-through flights: whole blobs (get) and streamed ones (open_read).
  auto& small_fetches()
    requires RemoteT::kEnabled
  {
    return small_;
  }
  auto& large_fetches()
    requires RemoteT::kEnabled
  {
    return large_;
  }
  template <class I>
  I& instrumentation() {
    return std::get<I>(instr_);
  }

  /// Whether a presence check (contains, find_missing) returns without blocking: the local
  /// index is loaded (then an authority tier is asked asynchronously, and the local answer,
  /// its fallback, comes from memory). Callers may then run it on any thread.
  bool presence_never_blocks() {
    if constexpr (requires { local_.loaded(); }) return local_.loaded();
    return false;
  }

  // ---- presence ----

  /// `done(bool)`: whether `d` is present (in the upstream, when one is connected).
  template <class Done>
  void contains(const Digest& d, Done&& done) {
    detail::SpanKeeper keep;
    Op op = begin({.op = StoreOp::kContains, .digest = &d});
    missing(std::move(op), std::span(&d, 1), [done = std::forward<Done>(done)](std::vector<Digest> m) mutable {
      done(m.empty());
    });
  }
  bool contains(const Digest& d) {
    return detail::wait_for<bool>([&](auto cb) { contains(d, std::move(cb)); });
  }

  /// `done(bool)`: whether an upload of `d` may finish early because the store has it.
  /// With a tier in mode `back` the local tier decides (the upload is for it), so a slow
  /// or hung upstream never delays an upload it would not have to take part in.
  template <class Done>
  void present_for_upload(const Digest& d, Done&& done) {
    bool back = false;
    for_each_tier([&](auto& t) { back = back || (t.active() && t.mode() == WriteMode::kBack); });
    if (!back) return contains(d, std::forward<Done>(done));
    done(local_.contains(d));
  }

  /// `done(std::vector<Digest>)`: the digests of `ds` that are missing.
  template <class Done>
  void find_missing(std::span<const Digest> ds, Done&& done) {
    detail::SpanKeeper keep;
    Op op = begin({.op = StoreOp::kFindMissing, .digests = ds.size()});
    missing(std::move(op), ds, std::forward<Done>(done));
  }
  std::vector<Digest> find_missing(std::span<const Digest> ds) {
    return detail::wait_for<std::vector<Digest>>([&](auto cb) { find_missing(ds, std::move(cb)); });
  }

  /// Digests neither tier can serve: what the ActionCache completeness check needs (a blob
  /// still queued for upload in mode `back` is local-only, yet downloadable).
  template <class Done>
  void find_unavailable(std::span<const Digest> ds, Done&& done) {
    std::vector<Digest> out = local_.find_missing(ds);
    if (out.empty() || !remote_on()) return done(std::move(out));
    unavailable_from<0>(std::make_shared<std::vector<Digest>>(std::move(out)),
                        Callback<std::vector<Digest>>(std::forward<Done>(done)));
  }
  std::vector<Digest> find_unavailable(std::span<const Digest> ds) {
    return detail::wait_for<std::vector<Digest>>([&](auto cb) { find_unavailable(ds, std::move(cb)); });
  }

  // ---- reads ----

  /// `done(Result<std::string>)`: the blob's bytes.
  template <class Done>
  void get(const Digest& d, Done&& done) {
    detail::SpanKeeper keep;
    Op op = begin({.op = StoreOp::kGet, .digest = &d});
    auto r = step({.op = StoreOp::kLocalRead, .digest = &d}, 0, [&] { return local_.get(d); });
    if (r) op.st.bytes = r->size();
    if (r || r.error().code() != Code::kNotFound || !remote_on()) return finish(op, std::move(r), done);
    if constexpr (RemoteT::kEnabled) {
      auto p = detach(std::move(op), std::forward<Done>(done));
      p->step = begin_tokens({.op = StoreOp::kRemoteFetch, .digest = &d});
      small_.run(
          d,
          [this, d](auto complete) {
            CallContext::Scope shared(CallContext::current().unbounded());  // for all its readers
            fetch_small_from<0>(d, Status{}, std::move(complete));
          },
          [this, p, d](const SmallFetch& shared) {
            resume(p, [&]() -> Result<std::string> {
              end_step(*p->step, shared, static_cast<std::uint64_t>(d.size));
              if (!shared) return shared.error();
              p->op.st.tier = Tier::kRemote;
              p->op.st.bytes = (*shared)->size();
              return std::string(**shared);
            });
          });
    }
  }
  Result<std::string> get(const Digest& d) {
    return detail::wait_for<Result<std::string>>([&](auto cb) { get(d, std::move(cb)); });
  }

  /// `get` of every blob in `ds` when the local tier holds them all in memory (hits that
  /// cannot block and need no upstream); nullopt otherwise, and then nothing was reported.
  std::optional<std::vector<std::string>> get_all_in_memory(std::span<const Digest> ds) {
    if constexpr (requires(const Digest& d) { local_.blob_in_memory(d); }) {
      std::vector<std::string> out;
      out.reserve(ds.size());
      for (const Digest& d : ds) {
        auto held = local_.blob_in_memory(d);
        if (!held) return std::nullopt;
        out.push_back(std::move(*held));
      }
      local_.count_memory_hits(static_cast<std::uint64_t>(
          std::count_if(ds.begin(), ds.end(), [](const Digest& d) { return !d.empty_blob(); })));
      for (std::size_t i = 0; i < ds.size(); ++i) {
        Op op = begin({.op = StoreOp::kGet, .digest = &ds[i]});
        op.st.bytes = out[i].size();
        end(op, Status{});
      }
      return out;
    }
    return std::nullopt;
  }

  /// `done(Result<Reader>)`: a reader of the blob from `offset`.
  template <class Done>
  void open_read(const Digest& d, std::uint64_t offset, Done&& done) {
    detail::SpanKeeper keep;
    Op op = begin({.op = StoreOp::kOpenRead, .digest = &d});
    const auto size = static_cast<std::uint64_t>(d.size);
    op.st.bytes = offset < size ? size - offset : 0;
    auto r = step({.op = StoreOp::kLocalRead, .digest = &d}, 0, [&] { return local_.open_read(d, offset); });
    if (r || r.error().code() != Code::kNotFound || !remote_on()) return finish(op, std::move(r), done);
    if constexpr (RemoteT::kEnabled) {
      auto p = detach(std::move(op), std::forward<Done>(done));
      p->step = begin_tokens({.op = StoreOp::kRemoteFetch, .digest = &d});
      large_.run(
          d,
          [this, d](auto complete) {
            CallContext::Scope shared(CallContext::current().unbounded());  // for all its readers
            fetch_large_from<0>(d, Status{}, std::move(complete));
          },
          [this, p, d, offset, size](const Status& s) {
            // Runs where the fetch landed: an executor thread, or the caller's in tests.
            resume(p, [&]() -> Result<Reader> {
              end_step(*p->step, s, size);
              if (!s.ok()) return s;
              p->op.st.tier = Tier::kRemote;
              return local_.open_read(d, offset);
            });
          });
    }
  }
  Result<Reader> open_read(const Digest& d, std::uint64_t offset) {
    return detail::wait_for<Result<Reader>>([&](auto cb) { open_read(d, offset, std::move(cb)); });
  }

  /// `done(Result<std::string>)`: the serialized ActionResult stored for `d`.
  template <class Done>
  void get_action(const Digest& d, Done&& done) {
    detail::SpanKeeper keep;
    Op op = begin({.op = StoreOp::kGetAction, .digest = &d});
    auto r = step({.op = StoreOp::kLocalRead, .digest = &d}, 0, [&] { return local_.get_action(d); });
    if (r) op.st.bytes = r->size();
    if (r || r.error().code() != Code::kNotFound || !remote_on()) return finish(op, std::move(r), done);
    if constexpr (RemoteT::kEnabled) {
      auto p = detach(std::move(op), std::forward<Done>(done));
      p->step = begin_tokens({.op = StoreOp::kRemoteFetch, .digest = &d});
      action_from<0>(d, Status{}, [this, p, d](Result<std::string> up) {
        // Runs on the executor: keeping it locally writes the ActionCache log.
        resume(p, [&]() -> Result<std::string> {
          end_step(*p->step, up, 0);
          if (!up) {
            return error(Code::kNotFound, "action {} not in the action cache (upstream: {})", d, up.error().message());
          }
          p->op.st.tier = Tier::kRemote;
          p->op.st.bytes = up->size();
          if (Status s = local_.put_action(d, *up); !s.ok()) {
            log::warn("could not keep an upstream action result locally",
                      {{"action", fmt::format("{}", d)}, {"error", s.to_string()}});
          }
          return std::move(up);
        });
      });
    }
  }
  Result<std::string> get_action(const Digest& d) {
    return detail::wait_for<Result<std::string>>([&](auto cb) { get_action(d, std::move(cb)); });
  }

  /// `get_action` when it can be answered without blocking (no upstream, local answer in
  /// memory); nullopt otherwise, and then nothing was reported to the instrumentation.
  std::optional<Result<std::string>> get_action_in_memory(const Digest& d) {
    if constexpr (requires { local_.action_in_memory(d); }) {
      if (remote_on()) return std::nullopt;
      auto probe = local_.action_in_memory(d);
      if (!probe) return std::nullopt;
      Op op = begin({.op = StoreOp::kGetAction, .digest = &d});
      if (*probe) op.st.bytes = (*probe)->size();
      end(op, *probe);
      return std::move(*probe);
    }
    return std::nullopt;
  }

  // ---- writes ----

  /// `done(Status)` once `data` is acknowledged. `data` is read before the call returns.
  template <class Done>
  void put(const Digest& d, std::string_view data, Done&& done) {
    detail::SpanKeeper keep;
    Op op = begin({.op = StoreOp::kPut, .digest = &d});
    op.st.bytes = data.size();
    Status s = step({.op = StoreOp::kLocalWrite, .digest = &d}, data.size(), [&] { return local_.put(d, data); });
    if (!remote_on() || s.code() == Code::kInvalidArgument) return finish(op, std::move(s), done);
    if (!s.ok() && !any_through()) return finish(op, std::move(s), done);  // nothing to acknowledge on
    write_through(std::move(op), d, data, s.ok(), std::forward<Done>(done));
  }
  Status put(const Digest& d, std::string_view data) {
    return detail::wait_for<Status>([&](auto cb) { put(d, data, std::move(cb)); });
  }

  /// Stores several blobs; `done(std::vector<Status>)` with `out[i]` the result for
  /// `blobs[i]`. Without an active upstream the local tier stores them with one
  /// durability barrier (one `put_batch` operation for the instrumentation); with one,
  /// each blob is a `put` as above. The blobs are read before the call returns.
  template <class Done>
  void put_batch(std::span<const BlobWrite> blobs, Done&& done) {
    if (!remote_on()) {
      detail::SpanKeeper keep;
      Op op = begin({.op = StoreOp::kPutBatch, .digests = blobs.size()});
      for (const BlobWrite& b : blobs) op.st.bytes += b.data.size();
      std::vector<Status> out = local_.put_batch(blobs);
      end(op, Status{});
      return done(std::move(out));
    }
    if (blobs.empty()) return done(std::vector<Status>{});
    struct Batch {
      explicit Batch(std::size_t n, std::decay_t<Done> d) : out(n), left(n), done(std::move(d)) {}
      std::vector<Status> out;
      std::atomic<std::size_t> left;
      std::decay_t<Done> done;
    };
    auto batch = std::make_shared<Batch>(blobs.size(), std::forward<Done>(done));
    for (std::size_t i = 0; i < blobs.size(); ++i) {
      put(blobs[i].digest, blobs[i].data, [batch, i](Status s) {
        batch->out[i] = std::move(s);
        if (batch->left.fetch_sub(1, std::memory_order_acq_rel) == 1) batch->done(std::move(batch->out));
      });
    }
  }
  std::vector<Status> put_batch(std::span<const BlobWrite> blobs) {
    return detail::wait_for<std::vector<Status>>([&](auto cb) { put_batch(blobs, std::move(cb)); });
  }

  /// A writer of the local tier (no upstream call until commit).
  Result<Writer> open_write(const Digest& d) {
    detail::SpanKeeper keep;
    Op op = begin({.op = StoreOp::kOpenWrite, .digest = &d});
    auto w = local_.open_write(d);
    end(op, w);
    if (!w) return w.error();
    return Writer(std::move(*w), this, d);
  }

  /// `done(Status)` once the ActionResult `bytes` for `d` is acknowledged. `bytes` is read
  /// before the call returns.
  template <class Done>
  void put_action(const Digest& d, std::string_view bytes, Done&& done) {
    detail::SpanKeeper keep;
    Op op = begin({.op = StoreOp::kPutAction, .digest = &d});
    op.st.bytes = bytes.size();
    Status s = step({.op = StoreOp::kLocalWrite, .digest = &d}, bytes.size(),
                    [&] { return local_.put_action(d, bytes); });
    if (!remote_on()) return finish(op, std::move(s), done);
    if (!s.ok() && !any_through()) return finish(op, std::move(s), done);
    fan_out(
        std::move(op), std::forward<Done>(done),
        [&, d](auto& t, Callback<Status> landed) { t.client().put_action(d, bytes, std::move(landed)); },
        [&, d](auto& t) {
          if (!s.ok()) return;  // a queued upload would have nothing to send
          t.enqueue(ObjectKey{d, Tree::kAc}, [&t, d, copy = std::string(bytes)] {
            return detail::wait_for<Status>([&](auto cb) { t.client().put_action(d, copy, std::move(cb)); });
          });
        });
  }
  Status put_action(const Digest& d, std::string_view bytes) {
    return detail::wait_for<Status>([&](auto cb) { put_action(d, bytes, std::move(cb)); });
  }

 private:
  using SmallFetch = Result<std::shared_ptr<const std::string>>;
  static constexpr std::size_t kTiers = detail::ChainSize<RemoteT>::value;

  /// The tiers behind the local one, in read order, as a tuple of references.
  auto chain() {
    if constexpr (TierChain<RemoteT>) return remote_.tiers();
    else if constexpr (RemoteT::kEnabled) return std::tie(remote_);
    else return std::tuple<>{};
  }
  template <std::size_t I>
  auto& tier() {
    if constexpr (TierChain<RemoteT>) return remote_.template get<I>();
    else return remote_;
  }
  template <class T, class F>
  static void each_enabled(T& t, F& f) {
    if constexpr (T::kEnabled) f(t);
  }

  bool remote_on() {
    bool on = false;
    for_each_tier([&](auto& t) { on = on || t.active(); });
    return on;
  }
  /// Whether a connected tier acknowledges writes only once it accepted them.
  bool any_through() {
    bool through = false;
    for_each_tier([&](auto& t) { through = through || (t.active() && t.mode() == WriteMode::kThrough); });
    return through;
  }

  /// Runs `task` on the executor (with `tc` current), or here without one.
  template <class F>
  void dispatch(const TraceContext& tc, F&& task) {
    Executor* e = nullptr;
    if constexpr (RemoteT::kEnabled) e = exec_.load(std::memory_order_acquire);
    if (e == nullptr) {
      TraceContext::Scope scope(tc);
      task();
      return;
    }
    e->post(tc, std::forward<F>(task));
  }

  /// The presence check behind contains and find_missing; finishes `op` with `done(missing)`.
  /// The first active authority of the chain answers; with none, or when it cannot be
  /// asked, the local tier does (degraded, logged).
  template <class Done>
  void missing(Op&& op, std::span<const Digest> ds, Done&& done) {
    if constexpr (RemoteT::kEnabled) {
      bool asked = false;
      for_each_tier([&](auto& t) {
        if (asked || !t.active() || !t.authority()) return;
        asked = true;
        auto p = detach(std::move(op), std::forward<Done>(done));
        auto keep = std::make_shared<std::vector<Digest>>(ds.begin(), ds.end());
        t.client().find_missing(ds, [this, &t, p, keep](Result<std::vector<Digest>> r) {
          if (r) {
            return resume(p, [&]() -> std::vector<Digest> {
              p->op.st.tier = Tier::kRemote;
              if constexpr (requires { t.client().serves(keep->front()); }) settle_unserved(t.client(), *keep, *r);
              p->op.st.missing = r->size();
              return std::move(*r);
            });
          }
          t.stats().count_error(r.error().code());
          if (t.should_warn()) {
            log::warn("upstream FindMissingBlobs failed: answering from the local tier",
                      {{"upstream", std::string(t.client().target())}, {"error", r.error().to_string()}});
          }
          auto local = [this, p, keep] {
            resume(p, [&]() -> std::vector<Digest> {
              auto out = local_.find_missing(*keep);
              p->op.st.missing = out.size();
              return out;
            });
          };
          // From memory once the index is loaded; before, it may stat files: not here.
          if (presence_never_blocks()) return local();
          dispatch(p->context, std::move(local));
        });
      });
      if (asked) return;
    }
    auto out = local_.find_missing(ds);
    op.st.missing = out.size();
    finish(op, std::move(out), done);
  }

  /// An authority's answer about blobs it cannot hold at all (a digest function it does not
  /// serve, as `client.serves` tells) is no answer: for those the local tier is the
  /// authority. Rewrites `missing` (the authority's answer for `asked`), in request order.
  template <class Client>
  void settle_unserved(const Client& client, const std::vector<Digest>& asked, std::vector<Digest>& missing) {
    std::vector<Digest> unserved;
    for (const Digest& d : asked) {
      if (!client.serves(d)) unserved.push_back(d);
    }
    if (unserved.empty()) return;
    std::unordered_set<Digest> gone(missing.begin(), missing.end());
    for (const Digest& d : unserved) gone.erase(d);
    for (const Digest& d : local_.find_missing(unserved)) gone.insert(d);
    missing.clear();
    for (const Digest& d : asked) {
      if (gone.erase(d) != 0) missing.push_back(d);
    }
  }

  /// Asks tier I on, in order, which of `left` it cannot serve either; `done(still missing)`.
  template <std::size_t I>
  void unavailable_from(std::shared_ptr<std::vector<Digest>> left, Callback<std::vector<Digest>> done) {
    if constexpr (I == kTiers) {
      done(std::move(*left));
    } else {
      auto& t = tier<I>();
      using T = std::remove_cvref_t<decltype(t)>;
      if constexpr (!T::kEnabled) {
        unavailable_from<I + 1>(std::move(left), std::move(done));
      } else {
        if (left->empty() || !t.active()) return unavailable_from<I + 1>(std::move(left), std::move(done));
        TraceContext tc = TraceContext::current();
        t.client().find_missing(*left, [this, left, tc, done = std::move(done)](Result<std::vector<Digest>> r) mutable {
          if (r) *left = std::move(*r);
          TraceContext::Scope scope(tc);  // the next tier's call joins the same trace
          unavailable_from<I + 1>(std::move(left), std::move(done));
        });
      }
    }
  }

  /// A read-through failure, as the caller sees it: a miss naming the last tier's error.
  static Status miss(const Digest& d, const Status& last) {
    return error(Code::kNotFound, "blob {} not found (upstream: {})", d, last.ok() ? "no tier connected" : last.message());
  }
  /// Counts a tier's failure (a miss is an answer, not a failure).
  template <class T>
  static void count(T& t, const Status& s) {
    if (s.code() != Code::kNotFound) t.stats().count_error(s.code());
  }

  /// Tier `t` sent bytes that do not match `d` (`why`): logged, counted, and the status
  /// that passes the fetch on. Nothing of them is stored or served.
  template <class T>
  static Status wrong_bytes(T& t, const Digest& d, const Status& why) {
    log::error("upstream returned wrong bytes: not stored, not served",
               {{"digest", fmt::format("{}", d)}, {"upstream", std::string(t.client().target())},
                {"error", why.message()}});
    Status wrong(Code::kDataLoss, fmt::format("returned wrong bytes: {}", why.message()));
    count(t, wrong);
    return wrong;
  }

  /// The leader's fetch of a small blob, from tier I on: its bytes, verified and kept
  /// locally on the executor, then `complete`. A tier's miss, failure or wrong bytes pass
  /// the fetch to the next tier.
  template <std::size_t I>
  void fetch_small_from(const Digest& d, Status last, std::function<void(SmallFetch)> complete) {
    if constexpr (I == kTiers) {
      complete(miss(d, last));
    } else {
      auto& t = tier<I>();
      using T = std::remove_cvref_t<decltype(t)>;
      if constexpr (!T::kEnabled) {
        fetch_small_from<I + 1>(d, std::move(last), std::move(complete));
      } else {
        if (!t.active()) return fetch_small_from<I + 1>(d, std::move(last), std::move(complete));
        TraceContext tc = TraceContext::current();
        t.client().get(d, [this, &t, d, tc, complete = std::move(complete)](Result<std::string> data) {
          dispatch(tc, [this, &t, d, complete, data = std::move(data)]() mutable {
            if (!data) {
              count(t, data.error());
              return fetch_small_from<I + 1>(d, data.error(), std::move(complete));
            }
            if (Status v = verify_blob(d, *data); !v.ok()) {
              return fetch_small_from<I + 1>(d, wrong_bytes(t, d, v), std::move(complete));
            }
            if (Status s = local_.put(d, *data); !s.ok()) {
              log::warn("could not keep an upstream blob locally",
                        {{"digest", fmt::format("{}", d)}, {"error", s.to_string()}});
            }
            complete(std::make_shared<const std::string>(std::move(*data)));
          });
        });
      }
    }
  }

  /// The leader's fetch of a large blob, from tier I on: streamed into a verifying local
  /// writer, each chunk appended on the executor before the next is asked for. A tier's
  /// miss, failure or wrong bytes discard its partial copy and pass to the next tier.
  template <std::size_t I>
  void fetch_large_from(const Digest& d, Status last, std::function<void(Status)> complete) {
    if constexpr (I == kTiers) {
      complete(miss(d, last));
    } else {
      auto& t = tier<I>();
      using T = std::remove_cvref_t<decltype(t)>;
      if constexpr (!T::kEnabled) {
        fetch_large_from<I + 1>(d, std::move(last), std::move(complete));
      } else {
        if (!t.active()) return fetch_large_from<I + 1>(d, std::move(last), std::move(complete));
        auto w = local_.open_write(d);
        if (!w) return complete(w.error());
        auto writer = std::make_shared<typename LocalT::Writer>(std::move(*w));
        TraceContext tc = TraceContext::current();
        t.client().read(
            d, 0,
            [this, writer, tc](std::string chunk, Callback<Status> next) {
              dispatch(tc, [writer, chunk = std::move(chunk), next = std::move(next)] { next(writer->append(chunk)); });
            },
            [this, &t, d, writer, tc, complete = std::move(complete)](Status s) mutable {
              dispatch(tc, [this, &t, d, writer, complete = std::move(complete), s = std::move(s)]() mutable {
                if (!s.ok()) {
                  count(t, s);
                  return fetch_large_from<I + 1>(d, std::move(s), std::move(complete));
                }
                if (Status c = writer->commit(); !c.ok()) {
                  if (c.code() != Code::kInvalidArgument) return complete(c);  // a local failure
                  return fetch_large_from<I + 1>(d, wrong_bytes(t, d, c), std::move(complete));
                }
                complete(Status{});
              });
            });
      }
    }
  }

  /// The ActionResult of `d` from tier I on; `done` runs on the executor.
  template <std::size_t I>
  void action_from(const Digest& d, Status last, Callback<Result<std::string>> done) {
    if constexpr (I == kTiers) {
      if (last.ok()) last = error(Code::kNotFound, "action {}: no tier connected", d);
      dispatch(TraceContext::current(), [done = std::move(done), last = std::move(last)] { done(last); });
    } else {
      auto& t = tier<I>();
      using T = std::remove_cvref_t<decltype(t)>;
      if constexpr (!T::kEnabled) {
        action_from<I + 1>(d, std::move(last), std::move(done));
      } else {
        if (!t.active()) return action_from<I + 1>(d, std::move(last), std::move(done));
        TraceContext tc = TraceContext::current();
        t.client().get_action(d, [this, &t, d, tc, done = std::move(done)](Result<std::string> up) mutable {
          if (up) return dispatch(tc, [done = std::move(done), up = std::move(up)]() mutable { done(std::move(up)); });
          count(t, up.error());
          TraceContext::Scope scope(tc);
          action_from<I + 1>(d, up.error(), std::move(done));
        });
      }
    }
  }

  /// Sends a write to every connected tier, each per its mode: `send(tier, landed)` for
  /// tiers in mode through (acknowledged when all landed; the first error wins), `queue(tier)`
  /// for tiers in mode back. Finishes `op` with `done(status)`.
  template <class Done, class Send, class Queue>
  void fan_out(Op&& op, Done&& done, Send&& send, Queue&& queue) {
    std::size_t through = 0;
    for_each_tier([&](auto& t) {
      if (t.active() && t.mode() == WriteMode::kThrough) ++through;
    });
    for_each_tier([&](auto& t) {
      if (t.active() && t.mode() == WriteMode::kBack) queue(t);
    });
    if (through == 0) return finish(op, Status{}, done);
    auto p = detach(std::move(op), std::forward<Done>(done));
    struct Acks {
      explicit Acks(std::size_t n) : left(n) {}
      std::atomic<std::size_t> left;
      std::mutex mu;
      std::optional<Status> failed;
    };
    auto acks = std::make_shared<Acks>(through);
    for_each_tier([&](auto& t) {
      if (!t.active() || t.mode() != WriteMode::kThrough) return;
      send(t, [this, &t, p, acks](Status u) {
        if (!u.ok()) {
          t.stats().count_error(u.code());
          std::lock_guard lock(acks->mu);
          if (!acks->failed) acks->failed = std::move(u);
        }
        if (acks->left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
        resume(p, [&] {
          if (acks->failed) {
            return error(acks->failed->code(), "upstream did not accept the upload: {}", acks->failed->message());
          }
          p->op.st.tier = Tier::kRemote;
          return Status{};
        });
      });
    });
  }

  /// After a local write of `d` (`local_ok`: it succeeded; with `data` when the caller has
  /// it in memory): upload it to the tiers in mode through now, queue it for those in mode
  /// back; finishes `op` with `done(status)`.
  template <class Done>
  void write_through(Op&& op, const Digest& d, std::string_view data, bool local_ok, Done&& done) {
    const bool in_memory = data.size() == static_cast<std::uint64_t>(d.size) && !data.empty();
    fan_out(
        std::move(op), std::forward<Done>(done),
        [&, d](auto& t, Callback<Status> landed) {
          if (in_memory) return t.client().put(d, data, std::move(landed));
          upload_from_local(t, d, std::move(landed));
        },
        [&, d](auto& t) {
          if (!local_ok) return;  // a queued upload would have nothing to send
          t.enqueue(ObjectKey{d, Tree::kCas}, write_back_job(t, ObjectKey{d, Tree::kCas}));
        });
  }

  /// The write-back upload of `k` to tier `t`, from the local copy (run by the tier's
  /// write-back worker, which may wait).
  template <class T>
  std::function<Status()> write_back_job(T& t, const ObjectKey& k) {
    if (k.tree == Tree::kCas) {
      return [this, &t, d = k.digest] {
        return detail::wait_for<Status>([&](auto cb) { upload_from_local(t, d, std::move(cb)); });
      };
    }
    return [this, &t, d = k.digest]() -> Status {
      auto bytes = local_.get_action(d);
      if (!bytes) return bytes.error();
      return detail::wait_for<Status>([&](auto cb) { t.client().put_action(d, *bytes, std::move(cb)); });
    };
  }

  /// Uploads the local copy of `d` to tier `t`: by batch when small, streamed from disk when
  /// large. Disk reads run on the executor.
  template <class T>
  void upload_from_local(T& t, const Digest& d, Callback<Status> done) {
    auto& client = t.client();
    const TraceContext tc = TraceContext::current();
    if (static_cast<std::uint64_t>(d.size) <= client.max_batch_bytes()) {
      dispatch(tc, [this, &client, d, done = std::move(done)] {
        auto data = local_.get(d);
        if (!data) return done(data.error());
        client.put(d, *data, done);
      });
      return;
    }
    // One reader, reopened only when the upload restarts at another offset.
    struct Cursor {
      std::optional<Reader> reader;
      std::uint64_t pos = 0;
    };
    auto cursor = std::make_shared<Cursor>();
    client.write(
        d,
        [this, d, tc, cursor](std::uint64_t offset, std::size_t max, Callback<Result<std::string>> got) {
          dispatch(tc, [this, d, cursor, offset, max, got = std::move(got)] {
            if (!cursor->reader || cursor->pos != offset) {
              auto r = local_.open_read(d, offset);
              if (!r) return got(r.error());
              cursor->reader.emplace(std::move(*r));
              cursor->pos = offset;
            }
            std::string buf(max, '\0');
            auto n = cursor->reader->read({buf.data(), buf.size()});
            if (!n) return got(n.error());
            buf.resize(*n);
            cursor->pos += *n;
            got(std::move(buf));
          });
        },
        std::move(done));
  }

  template <class R>
  static Status status_of(const R& result) {
    if constexpr (std::is_same_v<R, Status>) return result;
    else if constexpr (requires { result.status(); }) return result.status();
    else if constexpr (requires { result.error(); }) return result ? Status{} : result.error();
    else return Status{};
  }

  Tokens begin_tokens(const OpInfo& info) {
    return std::apply([&](auto&... i) { return Tokens{i.begin(info)...}; }, instr_);
  }
  Op begin(const OpInfo& info) { return Op{begin_tokens(info), {}}; }

  /// Ends `op` with `result`'s status and what the operation learnt.
  template <class R>
  void end(Op& op, const R& result) {
    if constexpr (sizeof...(Instr) > 0) {
      Outcome o{.status = status_of(result), .tier = op.st.tier, .bytes = op.st.bytes, .missing = op.st.missing};
      if (!o.status.ok()) o.tier = Tier::kNone;
      end_all(op.tokens, o);
    }
  }
  /// Ends `op`, then hands `result` to `done`.
  template <class R, class Done>
  void finish(Op& op, R&& result, Done& done) {
    end(op, result);
    done(std::forward<R>(result));
  }

  /// Moves a begun operation to the heap to finish it later; the thread's trace context
  /// (with the operation's span current) goes with it.
  template <class Done>
  std::shared_ptr<Pending<std::decay_t<Done>>> detach(Op&& op, Done&& done) {
    return std::make_shared<Pending<std::decay_t<Done>>>(Pending<std::decay_t<Done>>{
        std::move(op), std::forward<Done>(done), TraceContext::current(), std::nullopt, CallContext::current()});
  }
  /// Finishes a detached operation with `produce()`'s result, in its trace context.
  template <class P, class F>
  void resume(const std::shared_ptr<P>& p, F&& produce) {
    TraceContext::Scope scope(p->context);
    CallContext::Scope call(p->call);
    auto result = produce();
    end(p->op, result);
    p->done(std::move(result));
  }
  template <class R>
  void end_step(Tokens& tokens, const R& result, std::uint64_t bytes) {
    if constexpr (sizeof...(Instr) > 0) {
      Outcome o{.status = status_of(result), .tier = Tier::kRemote, .bytes = bytes};
      end_all(tokens, o);
    }
  }

  /// Runs a nested, local step `f()` of the current operation; `bytes` is reported on
  /// success (for reads, the size of what was read when it is known only after).
  template <class F>
  auto step(const OpInfo& info, std::uint64_t bytes, F&& f) {
    if constexpr (sizeof...(Instr) == 0) {
      return f();
    } else {
      auto tokens = begin_tokens(info);
      auto result = f();
      Outcome o{.status = status_of(result), .tier = Tier::kLocal, .bytes = bytes};
      if constexpr (requires { result->size(); }) {
        if (result && o.bytes == 0) o.bytes = result->size();
      }
      end_all(tokens, o);
      return result;
    }
  }

  void end_all(Tokens& tokens, const Outcome& o) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (std::get<I>(instr_).end(std::get<I>(tokens), o), ...);
    }(std::index_sequence_for<Instr...>{});
  }

  template <class I>
  void attach_one(I& i) {
    if constexpr (requires { i.attach(*this); }) i.attach(*this);
  }
  template <class I>
  static void evicted_one(I& i, const EvictionRun& run) {
    if constexpr (requires { i.on_eviction(run); }) i.on_eviction(run);
  }

  template <class T, int N>
  using IfTiers = std::conditional_t<RemoteT::kEnabled, T, detail::Nothing<N>>;

  LocalT local_;
  [[no_unique_address]] std::tuple<Instr...> instr_;
  /// Only a store with a tier behind the local one has work to post (no bytes without one).
  [[no_unique_address]] IfTiers<std::atomic<Executor*>, 2> exec_{};
  [[no_unique_address]] IfTiers<Singleflight<Digest, SmallFetch>, 0> small_;
  [[no_unique_address]] IfTiers<Singleflight<Digest, Status>, 1> large_;
  // Last, so destroyed first: a tier's client waits for its calls in flight, whose
  // callbacks use everything above.
  [[no_unique_address]] RemoteT remote_;
};

}  // namespace gorego
