#pragma once
/// The tree layer: REAPI Directory trees read through any store with continuation
/// operations (ProxyStore), for GetTree, the ActionCache completeness check and, later, the
/// worker's input materialisation.
///
/// - `TreeWalk<Store>`: a breadth-first walk from a root Directory, each directory once
///   (a subtree shared by several parents is visited at its first appearance). `run` reads
///   directories through the store (locally, or through the upstream) and hands them over
///   until told to pause; a paused walk keeps its place, so a GetTree page can park it for
///   the next page (`TreeCursors`) instead of walking again from the root.
/// - `TreeCursors`: walks parked between GetTree pages, found again by their page token; a
///   bounded number, least recently parked out first.
/// - `add_tree_files` / `tree_of`: the digests inside a `Tree` message, and a `Tree` built
///   from a walk (root and children), as an action's output directory is described.
/// Thread safety: a TreeWalk is used by one caller at a time (its reads may complete on
/// other threads, one after another); TreeCursors is fully concurrent.
///
///   auto walk = std::make_shared<TreeWalk<Store>>(store, root);
///   walk->run(&pool, [&](const Digest& d, re::Directory&& dir) { return keep(dir); },
///             [walk](Status s) { ... walk->finished() ... });

#include <atomic>
#include <charconv>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "build/bazel/remote/execution/v2/remote_execution.pb.h"

#include <gorego/concepts/remote_client.hpp>
#include <gorego/core/executor.hpp>
#include <gorego/reapi/convert.hpp>

namespace gorego::reapi {

template <class Store>
class TreeWalk {
 public:
  TreeWalk(Store& store, const Digest& root) : store_(&store) {
    queue_.push_back(root);
    seen_.insert(root);
  }
  TreeWalk(const TreeWalk&) = delete;
  TreeWalk& operator=(const TreeWalk&) = delete;

  /// Directories read so far, including ones skipped as missing.
  [[nodiscard]] std::uint64_t visited() const { return visited_; }
  /// Directories skipped because the CAS does not have them.
  [[nodiscard]] std::uint64_t skipped() const { return skipped_; }
  [[nodiscard]] bool finished() const { return queue_.empty(); }

  /// Reads directories and hands each to `visit(digest, dir)` until `visit` returns false
  /// (paused: call run again to go on), the walk ends, or an error; then `stop(status)`.
  /// A directory missing from the CAS is skipped (REAPI: the part of the tree that is
  /// present is returned), except the root, which is NOT_FOUND. A blob that is not a
  /// Directory, or a malformed child digest, is INVALID_ARGUMENT. Reads answered before
  /// the store's call returns go on in a loop here; a read that lands later (from the
  /// upstream) goes on on `pool` (here too without one), never on the thread it landed on.
  /// The walk must outlive the run; `stop` may destroy it (nothing touches it after).
  template <class Visit, class Stop>
  void run(Executor* pool, Visit visit, Stop stop) {
    pool_ = pool;
    trace_ = TraceContext::current();
    visit_ = std::move(visit);
    stop_ = std::move(stop);
    pump();
  }

 private:
  void pump() {
    while (true) {
      if (queue_.empty()) return end(Status{});
      const Digest d = queue_.front();
      queue_.pop_front();
      turn_.store(0, std::memory_order_relaxed);
      store_->get(d, [this, d](Result<std::string> blob) {
        blob_ = std::move(blob);
        if (turn_.exchange(2, std::memory_order_acq_rel) != 1) return;  // the loop goes on
        auto go_on = [this, d] {
          if (take(d)) pump();
        };
        if (pool_ != nullptr) return pool_->post(trace_, std::move(go_on));
        TraceContext::Scope scope(trace_);
        go_on();
      });
      if (turn_.exchange(1, std::memory_order_acq_rel) != 2) return;  // the callback goes on
      if (!take(d)) return;
    }
  }

  /// Handles the read of `d` in blob_; false when the run ended (paused or failed).
  bool take(const Digest& d) {
    Result<std::string> blob = std::move(*blob_);
    blob_.reset();
    if (visited_++ == 0 && !blob) {
      end(error(Code::kNotFound, "root directory {} not found", d));
      return false;
    }
    if (!blob) {
      ++skipped_;
      return true;
    }
    re::Directory dir;
    if (!dir.ParseFromString(*blob)) {
      end(error(Code::kInvalidArgument, "blob {} in the tree is not a Directory", d));
      return false;
    }
    for (const auto& sub : dir.directories()) {
      auto sd = from_proto(sub.digest(), d.function, fmt::format("directory {} entry \"{}\"", d.hex(), sub.name()));
      if (!sd) {
        end(sd.error());
        return false;
      }
      if (seen_.insert(*sd).second) queue_.push_back(*sd);
    }
    if (visit_(d, std::move(dir))) return true;
    end(Status{});
    return false;
  }

  void end(Status s) {
    auto stop = std::move(stop_);
    stop_ = nullptr;
    visit_ = nullptr;
    stop(std::move(s));
  }

  Store* store_;
  std::deque<Digest> queue_;
  std::unordered_set<Digest> seen_;
  std::uint64_t visited_ = 0;
  std::uint64_t skipped_ = 0;
  Executor* pool_ = nullptr;
  TraceContext trace_;  // run's caller's, for reads that go on after an upstream answer
  std::function<bool(const Digest&, re::Directory&&)> visit_;
  std::function<void(Status)> stop_;
  std::atomic<int> turn_{0};  // who goes on after a read: 1 the loop left, 2 the read landed first
  std::optional<Result<std::string>> blob_;
};

/// Walks parked between GetTree pages. A token is "c<id>.<offset>": the cursor's id and the
/// number of directories the pages before it returned, so that a token whose walk is gone
/// (evicted, or issued before a restart) can still be served by walking again to `offset`.
template <class Walk>
class TreeCursors {
 public:
  explicit TreeCursors(std::size_t capacity = 1024) : capacity_(capacity) {}

  /// Parks `walk`, which has returned `offset` directories; the next page's token.
  std::string park(std::shared_ptr<Walk> walk, const Digest& root, std::uint64_t offset) {
    std::lock_guard lock(mu_);
    const std::uint64_t id = ++last_id_;
    order_.push_back(id);
    parked_[id] = {std::move(walk), root, offset, std::prev(order_.end())};
    while (parked_.size() > capacity_) {
      parked_.erase(order_.front());
      order_.pop_front();
    }
    return fmt::format("c{}.{}", id, offset);
  }

  /// The walk parked under `id` for `root` at `offset` (taken out: a token is used once);
  /// null when it is not there.
  std::shared_ptr<Walk> take(std::uint64_t id, const Digest& root, std::uint64_t offset) {
    std::lock_guard lock(mu_);
    auto it = parked_.find(id);
    if (it == parked_.end() || it->second.root != root || it->second.offset != offset) return nullptr;
    auto walk = std::move(it->second.walk);
    order_.erase(it->second.where);
    parked_.erase(it);
    return walk;
  }

  [[nodiscard]] std::size_t size() {
    std::lock_guard lock(mu_);
    return parked_.size();
  }

 private:
  struct Parked {
    std::shared_ptr<Walk> walk;
    Digest root;
    std::uint64_t offset = 0;
    std::list<std::uint64_t>::iterator where;
  };
  std::size_t capacity_;
  std::mutex mu_;
  std::uint64_t last_id_ = 0;
  std::list<std::uint64_t> order_;
  std::unordered_map<std::uint64_t, Parked> parked_;
};

/// A GetTree page token, parsed: the offset (directories returned before) and, for tokens
/// of a parked walk, its cursor id. The plain number of older servers is accepted too.
struct PageToken {
  std::uint64_t offset = 0;
  std::optional<std::uint64_t> cursor;

  static Result<PageToken> parse(std::string_view t) {
    PageToken out;
    if (t.empty()) return out;
    auto number = [&](std::string_view s, std::uint64_t& v) {
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      return !s.empty() && ec == std::errc() && p == s.data() + s.size();
    };
    if (t.front() == 'c') {
      const auto dot = t.find('.');
      std::uint64_t id = 0;
      if (dot != std::string_view::npos && number(t.substr(1, dot - 1), id) && number(t.substr(dot + 1), out.offset)) {
        out.cursor = id;
        return out;
      }
    } else if (number(t, out.offset)) {
      return out;
    }
    return error(Code::kInvalidArgument, "page_token \"{}\" was not issued by this server", t);
  }
};

/// Adds the digests of every file inside the Tree `bytes` (of output directory `tree`).
inline Status add_tree_files(const Digest& tree_digest, const std::string& bytes, std::vector<Digest>& out) {
  re::Tree tree;
  if (!tree.ParseFromString(bytes)) {
    return error(Code::kNotFound, "output directory tree {} is not a Tree", tree_digest);
  }
  auto add_files = [&](const re::Directory& d) -> Status {
    for (const auto& f : d.files()) {
      auto fd = from_proto(f.digest(), tree_digest.function);
      if (!fd) return error(Code::kNotFound, "tree {} has a bad file digest: {}", tree_digest, fd.error().message());
      out.push_back(*fd);
    }
    return {};
  };
  GOREGO_RETURN_IF_ERROR(add_files(tree.root()));
  for (const auto& child : tree.children()) GOREGO_RETURN_IF_ERROR(add_files(child));
  return {};
}

/// `done(Result<re::Tree>)`: the Tree of the directory `root` (its root and every
/// directory below it once), read through `store`, going on on `pool` after upstream
/// reads. A directory missing below the root is NOT_FOUND here: a Tree must be complete.
template <class Store>
void tree_of(Store& store, Executor* pool, const Digest& root, Callback<Result<re::Tree>> done) {
  struct Build {
    Build(Store& s, const Digest& r) : walk(s, r) {}
    TreeWalk<Store> walk;
    re::Tree tree;
  };
  auto b = std::make_shared<Build>(store, root);
  b->walk.run(
      pool,
      [b = b.get()](const Digest&, re::Directory&& dir) {
        if (b->walk.visited() == 1) *b->tree.mutable_root() = std::move(dir);
        else *b->tree.add_children() = std::move(dir);
        return true;
      },
      [b, root, done = std::move(done)](Status s) {
        if (!s.ok()) return done(s);
        if (b->walk.skipped() > 0) {
          return done(error(Code::kNotFound, "tree of directory {} is incomplete: {} directories are missing", root,
                            b->walk.skipped()));
        }
        done(std::move(b->tree));
      });
}

}  // namespace gorego::reapi
