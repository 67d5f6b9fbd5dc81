#pragma once
/// BlobStore: a content-addressable store of verified blobs.
///
/// Semantics:
/// - Small blobs as values: `get` returns the whole blob (NOT_FOUND on a miss), `put`
///   stores `data` only if it hashes to `d` (INVALID_ARGUMENT otherwise) and is idempotent.
/// - Large blobs as streams: `open_read(d, offset)` (OUT_OF_RANGE when offset > size) and
///   `open_write(d)`; see BlobReader and BlobWriter.
/// - `contains` and `find_missing` answer presence; `find_missing` keeps request order.
/// - The empty blob is always present.
/// - Nothing unverified is ever returned: a stored blob found corrupt is dropped and
///   reported as a miss.
/// Complexity: presence checks are O(1) per digest on an in-memory index; data operations
/// are linear in the bytes moved. Thread safety: every member may be called concurrently.
///
///   static_assert(BlobStore<Local<MemoryStore, Lru>>);
///   if (!store.contains(d)) GOREGO_RETURN_IF_ERROR(store.put(d, bytes));
///   Result<std::string> blob = store.get(d);

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gorego/concepts/blob_reader.hpp>
#include <gorego/concepts/blob_writer.hpp>
#include <gorego/core/digest.hpp>

namespace gorego {

/// One blob of a batched upload (`put_batch`, an optional BlobStore member): like `put`
/// for each blob, with one durability barrier for the whole batch.
struct BlobWrite {
  Digest digest;
  std::string_view data;
};

template <class S>
concept BlobStore = requires(S& s, const Digest& d, std::span<const Digest> ds,
                             std::string_view data, std::uint64_t offset) {
  { S::kName } -> std::convertible_to<std::string_view>;
  requires BlobReader<typename S::Reader>;
  requires BlobWriter<typename S::Writer>;
  { s.contains(d) } -> std::same_as<bool>;
  { s.find_missing(ds) } -> std::same_as<std::vector<Digest>>;
  { s.get(d) } -> std::same_as<Result<std::string>>;
  { s.put(d, data) } -> std::same_as<Status>;
  { s.open_read(d, offset) } -> std::same_as<Result<typename S::Reader>>;
  { s.open_write(d) } -> std::same_as<Result<typename S::Writer>>;
};

}  // namespace gorego
