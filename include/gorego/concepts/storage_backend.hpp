#pragma once
/// StorageBackend: where a Local tier keeps its bytes (MemoryStore, ShardedDisk).
///
/// Semantics: the BlobStore data operations (get, put, open_read, open_write; verified),
/// the ActionStore operations, plus what an index and an eviction policy need:
/// - `stat(key)`: stored bytes of the object, or nullopt when absent (cheap: no hashing);
/// - `remove(key)`: deletes the object (absent is fine);
/// - `for_each_entry(fn)`: calls `fn(key, stored_bytes, access_time_ns)` for every object,
///   concurrently with other operations (used to load the index and by scanning eviction);
/// - `footprint(bytes)`: what `bytes` of content cost against the size limit (block size
///   rounding on disk).
/// A backend keeps no index and enforces no limit: that is Local's job.
/// Thread safety: every member may be called concurrently.
///
///   ShardedDisk disk({.root = "/var/cache/gorego"});
///   disk.for_each_entry([&](const ObjectKey& k, std::uint64_t bytes, std::int64_t) { ... });
///   disk.remove({d, Tree::kCas});

#include <concepts>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <gorego/concepts/action_store.hpp>
#include <gorego/concepts/blob_reader.hpp>
#include <gorego/concepts/blob_writer.hpp>
#include <gorego/core/digest.hpp>

namespace gorego {

namespace detail {
/// Archetype of the callback `for_each_entry` must accept.
struct EntryVisitorArchetype {
  void operator()(const ObjectKey&, std::uint64_t, std::int64_t) const {}
};
}  // namespace detail

template <class B>
concept StorageBackend = requires(B& b, const Digest& d, const ObjectKey& k, std::string_view data,
                                  std::uint64_t n, detail::EntryVisitorArchetype visit) {
  { B::kName } -> std::convertible_to<std::string_view>;
  requires BlobReader<typename B::Reader>;
  requires BlobWriter<typename B::Writer>;
  requires ActionStore<B>;
  { b.get(d) } -> std::same_as<Result<std::string>>;
  { b.put(d, data) } -> std::same_as<Status>;
  { b.open_read(d, n) } -> std::same_as<Result<typename B::Reader>>;
  { b.open_write(d) } -> std::same_as<Result<typename B::Writer>>;
  { b.stat(k) } -> std::same_as<std::optional<std::uint64_t>>;
  { b.remove(k) } -> std::same_as<void>;
  { b.for_each_entry(visit) } -> std::same_as<void>;
  { b.footprint(n) } -> std::same_as<std::uint64_t>;
};

}  // namespace gorego
