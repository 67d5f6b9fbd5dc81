#pragma once
/// ProxyStore<LocalT, RemoteT, Instrumentation...>: the store the gRPC services talk to.
///
/// It composes a local tier, a remote tier and any number of instrumentation policies.
/// With `NoRemote`, or a Remote that is not connected, every operation goes to the local
/// tier. With a connected Remote (DESIGN.md, capability 2):
/// - FindMissingBlobs is answered by the upstream, the authority, so a blob held only
///   locally is still reported missing and the client uploads it; if the upstream cannot
///   be asked, the local tier answers (degraded, logged).
/// - Reads are served locally when present; a miss is fetched from the upstream once for
///   all concurrent callers (singleflight), verified while it is written to the local tier,
///   and then served from there. Large blobs stream to disk, never whole into memory.
///   Any read-through failure (upstream miss, unreachable, wrong bytes) is a NOT_FOUND to
///   the caller, naming the upstream's error: clients treat it as a cache miss.
/// - Uploads land locally and upstream: mode `through` acknowledges once the upstream
///   accepted (its error is returned otherwise), mode `back` once the local tier stored it,
///   queueing the upstream upload. ActionCache updates follow the same mode.
/// Each operation is reported to every instrumentation policy in order; with none, the
/// wrapper compiles away. Thread safety: fully concurrent.
///
///   using Store = ProxyStore<Local<ShardedDisk, Lru>, Remote<Reapi>>;
///   Store store(ShardedDisk::Options{.root = "/var/cache/gorego"}, Store::Local::Options{});
///   store.remote().connect(std::move(client), {.mode = WriteMode::kThrough});
///   GOREGO_RETURN_IF_ERROR(store.start());

#include <algorithm>
#include <memory>
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
#include <gorego/core/log.hpp>
#include <gorego/core/name.hpp>
#include <gorego/hash/sha256.hpp>
#include <gorego/store/no_remote.hpp>
#include <gorego/store/remote.hpp>

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

 private:
  /// What an operation learns about itself while it runs, for its Outcome.
  struct OpState {
    Tier tier = Tier::kLocal;
    std::uint64_t bytes = 0;
    std::size_t missing = 0;
  };

 public:

  /// A local write that, at commit, is written through to the upstream per the mode.
  class Writer {
   public:
    Writer(typename LocalT::Writer inner, ProxyStore* owner, Digest d)
        : inner_(std::move(inner)), owner_(owner), digest_(d) {}
    Status append(std::string_view data) { return inner_.append(data); }
    Status commit() {
      return owner_->observe({.op = StoreOp::kCommit, .digest = &digest_}, [&](OpState& st) {
        st.bytes = inner_.written();
        GOREGO_RETURN_IF_ERROR(owner_->step({.op = StoreOp::kLocalWrite, .digest = &digest_}, st.bytes,
                                            [&] { return inner_.commit(); }));
        return owner_->write_through(digest_, {}, st);
      });
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

  Status start() {
    std::apply([&](auto&... i) { (attach_one(i), ...); }, instr_);
    if constexpr (sizeof...(Instr) > 0 && requires { local_.set_eviction_observer(nullptr); }) {
      local_.set_eviction_observer([this](const EvictionRun& run) {
        std::apply([&](auto&... i) { (evicted_one(i, run), ...); }, instr_);
      });
    }
    if constexpr (requires { local_.start(); }) return local_.start();
    return {};
  }
  void stop() {
    if constexpr (requires { remote_.stop(); }) remote_.stop();
    if constexpr (requires { local_.stop(); }) local_.stop();
  }

  LocalT& local() { return local_; }
  RemoteT& remote() { return remote_; }
  template <class I>
  I& instrumentation() {
    return std::get<I>(instr_);
  }

  /// Whether presence checks are answered from memory alone, without blocking: no upstream
  /// to ask and the local index loaded.
  bool answers_from_memory() {
    if constexpr (requires { local_.loaded(); }) return !remote_on() && local_.loaded();
    return false;
  }

  bool contains(const Digest& d) {
    return observe({.op = StoreOp::kContains, .digest = &d}, [&](OpState& st) {
      return missing(std::span(&d, 1), st).empty();
    });
  }
  std::vector<Digest> find_missing(std::span<const Digest> ds) {
    return observe({.op = StoreOp::kFindMissing, .digests = ds.size()}, [&](OpState& st) {
      auto out = missing(ds, st);
      st.missing = out.size();
      return out;
    });
  }

  /// Digests neither tier can serve: what the ActionCache completeness check needs (a blob
  /// still queued for upload in mode `back` is local-only, yet downloadable).
  std::vector<Digest> find_unavailable(std::span<const Digest> ds) {
    std::vector<Digest> out = local_.find_missing(ds);
    if (out.empty() || !remote_on()) return out;
    if constexpr (RemoteT::kEnabled) {
      auto r = remote_.client().find_missing(out);
      if (r) return std::move(*r);
    }
    return out;
  }

  Result<std::string> get(const Digest& d) {
    return observe({.op = StoreOp::kGet, .digest = &d}, [&](OpState& st) -> Result<std::string> {
      auto r = step({.op = StoreOp::kLocalRead, .digest = &d}, 0, [&] { return local_.get(d); });
      if (r) st.bytes = r->size();
      if (r || r.error().code() != Code::kNotFound || !remote_on()) return r;
      if constexpr (RemoteT::kEnabled) {
        auto shared = step({.op = StoreOp::kRemoteFetch, .digest = &d}, static_cast<std::uint64_t>(d.size), [&] {
          return remote_.small_fetches().run(d, [&] { return fetch_small(d); });
        });
        if (!shared) return shared.error();
        st.tier = Tier::kRemote;
        st.bytes = (*shared)->size();
        return std::string(**shared);
      }
      return r;
    });
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
        // Reports each read; the body cannot fail, so the status is always OK.
        static_cast<void>(observe({.op = StoreOp::kGet, .digest = &ds[i]}, [&](OpState& st) {
          st.bytes = out[i].size();
          return Status{};
        }));
      }
      return out;
    }
    return std::nullopt;
  }

  Status put(const Digest& d, std::string_view data) {
    return observe({.op = StoreOp::kPut, .digest = &d}, [&](OpState& st) {
      st.bytes = data.size();
      Status s = step({.op = StoreOp::kLocalWrite, .digest = &d}, data.size(), [&] { return local_.put(d, data); });
      if (!remote_on() || s.code() == Code::kInvalidArgument) return s;
      if (!s.ok() && mode_back()) return s;  // nothing to acknowledge on
      return write_through(d, data, st);
    });
  }

  /// Stores several blobs; `out[i]` is the result for `blobs[i]`. Without an active
  /// upstream the local tier stores them with one durability barrier (one `put_batch`
  /// operation for the instrumentation); with one, each blob is a `put` as above.
  std::vector<Status> put_batch(std::span<const BlobWrite> blobs) {
    if (remote_on()) {
      std::vector<Status> out;
      out.reserve(blobs.size());
      for (const BlobWrite& b : blobs) out.push_back(put(b.digest, b.data));
      return out;
    }
    return observe({.op = StoreOp::kPutBatch, .digests = blobs.size()}, [&](OpState& st) {
      for (const BlobWrite& b : blobs) st.bytes += b.data.size();
      return local_.put_batch(blobs);
    });
  }

  Result<Reader> open_read(const Digest& d, std::uint64_t offset) {
    return observe({.op = StoreOp::kOpenRead, .digest = &d}, [&](OpState& st) -> Result<Reader> {
      const auto size = static_cast<std::uint64_t>(d.size);
      st.bytes = offset < size ? size - offset : 0;
      auto r = step({.op = StoreOp::kLocalRead, .digest = &d}, 0, [&] { return local_.open_read(d, offset); });
      if (r || r.error().code() != Code::kNotFound || !remote_on()) return r;
      if constexpr (RemoteT::kEnabled) {
        const Status s = step({.op = StoreOp::kRemoteFetch, .digest = &d}, size, [&] {
          return remote_.large_fetches().run(d, [&] { return fetch_large(d); });
        });
        if (!s.ok()) return s;
        st.tier = Tier::kRemote;
        return local_.open_read(d, offset);
      }
      return r;
    });
  }

  Result<Writer> open_write(const Digest& d) {
    return observe({.op = StoreOp::kOpenWrite, .digest = &d}, [&](OpState&) -> Result<Writer> {
      auto w = local_.open_write(d);
      if (!w) return w.error();
      return Writer(std::move(*w), this, d);
    });
  }

  Result<std::string> get_action(const Digest& d) {
    return observe({.op = StoreOp::kGetAction, .digest = &d}, [&](OpState& st) -> Result<std::string> {
      auto r = step({.op = StoreOp::kLocalRead, .digest = &d}, 0, [&] { return local_.get_action(d); });
      if (r) st.bytes = r->size();
      if (r || r.error().code() != Code::kNotFound || !remote_on()) return r;
      if constexpr (RemoteT::kEnabled) {
        auto up = step({.op = StoreOp::kRemoteFetch, .digest = &d}, 0, [&] { return remote_.client().get_action(d); });
        if (!up) {
          if (up.error().code() != Code::kNotFound) count_upstream_error(up.error().code());
          return error(Code::kNotFound, "action {} not in the action cache (upstream: {})", d,
                       up.error().message());
        }
        st.tier = Tier::kRemote;
        st.bytes = up->size();
        if (Status s = local_.put_action(d, *up); !s.ok()) {
          log::warn("could not keep an upstream action result locally",
                    {{"action", fmt::format("{}", d)}, {"error", s.to_string()}});
        }
        return up;
      }
      return r;
    });
  }

  /// `get_action` when it can be answered without blocking (no upstream, local answer in
  /// memory); nullopt otherwise, and then nothing was reported to the instrumentation.
  std::optional<Result<std::string>> get_action_in_memory(const Digest& d) {
    if constexpr (requires { local_.action_in_memory(d); }) {
      if (remote_on()) return std::nullopt;
      auto probe = local_.action_in_memory(d);
      if (!probe) return std::nullopt;
      return observe({.op = StoreOp::kGetAction, .digest = &d}, [&](OpState& st) -> Result<std::string> {
        if (*probe) st.bytes = (*probe)->size();
        return std::move(*probe);
      });
    }
    return std::nullopt;
  }

  Status put_action(const Digest& d, std::string_view bytes) {
    return observe({.op = StoreOp::kPutAction, .digest = &d}, [&](OpState& st) {
      st.bytes = bytes.size();
      Status s = step({.op = StoreOp::kLocalWrite, .digest = &d}, bytes.size(),
                      [&] { return local_.put_action(d, bytes); });
      if (!remote_on()) return s;
      if constexpr (RemoteT::kEnabled) {
        if (mode_back()) {
          if (!s.ok()) return s;
          remote_.enqueue(fmt::format("action {}", d), [this, d, copy = std::string(bytes)] {
            return remote_.client().put_action(d, copy);
          });
          return Status{};
        }
        if (Status u = remote_.client().put_action(d, bytes); !u.ok()) return upstream_write_error(u);
        st.tier = Tier::kRemote;
      }
      return Status{};
    });
  }

 private:
  bool remote_on() {
    if constexpr (RemoteT::kEnabled) return remote_.active();
    return false;
  }
  bool mode_back() {
    if constexpr (RemoteT::kEnabled) return remote_.mode() == WriteMode::kBack;
    return false;
  }

  std::vector<Digest> missing(std::span<const Digest> ds, OpState& st) {
    if constexpr (RemoteT::kEnabled) {
      if (remote_.active()) {
        auto r = remote_.client().find_missing(ds);
        if (r) {
          st.tier = Tier::kRemote;
          return std::move(*r);
        }
        count_upstream_error(r.error().code());
        if (remote_.should_warn()) {
          log::warn("upstream FindMissingBlobs failed: answering from the local tier",
                    {{"upstream", std::string(remote_.client().target())}, {"error", r.error().to_string()}});
        }
      }
    }
    return local_.find_missing(ds);
  }

  void count_upstream_error(Code c) {
    if constexpr (RemoteT::kEnabled) remote_.stats().count_error(c);
  }

  /// A read-through failure, as the caller sees it: a miss naming the upstream's error.
  Status miss(const Digest& d, const Status& upstream) {
    if (upstream.code() != Code::kNotFound) count_upstream_error(upstream.code());
    return error(Code::kNotFound, "blob {} not found (upstream: {})", d, upstream.message());
  }

  Status upstream_write_error(const Status& s) {
    count_upstream_error(s.code());
    if constexpr (RemoteT::kEnabled) {
      return error(s.code(), "upstream did not accept the upload: {}", s.message());
    }
    return s;
  }

  Result<std::shared_ptr<const std::string>> fetch_small(const Digest& d) {
    if constexpr (RemoteT::kEnabled) {
      auto data = remote_.client().get(d);
      if (!data) return miss(d, data.error());
      if (Status v = verify_blob(d, *data); !v.ok()) {
        log::error("upstream returned wrong bytes: not stored, not served",
                   {{"digest", fmt::format("{}", d)}, {"error", v.message()}});
        return miss(d, Status(Code::kDataLoss, fmt::format("returned wrong bytes: {}", v.message())));
      }
      if (Status s = local_.put(d, *data); !s.ok()) {
        log::warn("could not keep an upstream blob locally", {{"digest", fmt::format("{}", d)}, {"error", s.to_string()}});
      }
      return std::make_shared<const std::string>(std::move(*data));
    }
    return error(Code::kNotFound, "blob {} not found", d);
  }

  /// Streams the blob from upstream into the local tier; the local writer verifies it.
  Status fetch_large(const Digest& d) {
    if constexpr (RemoteT::kEnabled) {
      auto w = local_.open_write(d);
      if (!w) return w.error();
      const Status s = remote_.client().read(d, 0, [&](std::string_view chunk) { return w->append(chunk); });
      if (!s.ok()) return miss(d, s);
      if (Status c = w->commit(); !c.ok()) {
        if (c.code() != Code::kInvalidArgument) return c;
        log::error("upstream returned wrong bytes: not stored, not served",
                   {{"digest", fmt::format("{}", d)}, {"error", c.message()}});
        return miss(d, Status(Code::kDataLoss, fmt::format("returned wrong bytes: {}", c.message())));
      }
    }
    return {};
  }

  /// After a local write of `d` (with `data` when the caller has it in memory): upload it
  /// now (mode through; the upstream is then the tier that accepted it) or queue the
  /// upload (mode back).
  Status write_through(const Digest& d, std::string_view data, OpState& st) {
    if constexpr (RemoteT::kEnabled) {
      if (!remote_.active()) return {};
      if (mode_back()) {
        remote_.enqueue(fmt::format("blob {}", d), [this, d] { return upload_from_local(d); });
        return {};
      }
      const Status u = data.size() == static_cast<std::uint64_t>(d.size) && !data.empty()
                           ? remote_.client().put(d, data)
                           : upload_from_local(d);
      if (!u.ok()) return upstream_write_error(u);
      st.tier = Tier::kRemote;
    }
    return {};
  }

  Status upload_from_local(const Digest& d) {
    if constexpr (RemoteT::kEnabled) {
      auto& client = remote_.client();
      if (static_cast<std::uint64_t>(d.size) <= client.max_batch_bytes()) {
        auto data = local_.get(d);
        if (!data) return data.error();
        return client.put(d, *data);
      }
      return client.write(d, [this, d](std::uint64_t offset) -> Result<ChunkSource> {
        auto r = local_.open_read(d, offset);
        if (!r) return r.error();
        auto reader = std::make_shared<Reader>(std::move(*r));
        return ChunkSource([reader](std::span<char> buf) { return reader->read(buf); });
      });
    }
    return {};
  }

  template <class R>
  static Status status_of(const R& result) {
    if constexpr (std::is_same_v<R, Status>) return result;
    else if constexpr (requires { result.status(); }) return result.status();
    else return Status{};
  }

  /// Runs a top-level operation `f(OpState&)` between begin and end of every policy.
  template <class F>
  auto observe(const OpInfo& info, F&& f) {
    OpState st;
    if constexpr (sizeof...(Instr) == 0) {
      return f(st);
    } else {
      auto tokens = std::apply([&](auto&... i) { return std::tuple{i.begin(info)...}; }, instr_);
      auto result = f(st);
      Outcome o{.status = status_of(result), .tier = st.tier, .bytes = st.bytes, .missing = st.missing};
      if (!o.status.ok()) o.tier = Tier::kNone;
      end_all(tokens, o);
      return result;
    }
  }

  /// Runs a nested step `f()` of the current operation; `bytes` is reported on success
  /// (for reads, the size of what was read when it is known only after).
  template <class F>
  auto step(const OpInfo& info, std::uint64_t bytes, F&& f) {
    if constexpr (sizeof...(Instr) == 0) {
      return f();
    } else {
      auto tokens = std::apply([&](auto&... i) { return std::tuple{i.begin(info)...}; }, instr_);
      auto result = f();
      Outcome o{.status = status_of(result),
                .tier = info.op == StoreOp::kRemoteFetch ? Tier::kRemote : Tier::kLocal,
                .bytes = bytes};
      if constexpr (requires { result->size(); }) {
        if (result && o.bytes == 0) o.bytes = result->size();
      }
      end_all(tokens, o);
      return result;
    }
  }

  template <class Tokens>
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

  LocalT local_;
  [[no_unique_address]] RemoteT remote_;
  [[no_unique_address]] std::tuple<Instr...> instr_;
};

}  // namespace gorego
