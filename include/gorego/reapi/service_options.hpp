#pragma once
/// Limits shared by the gRPC services; Capabilities advertises the same numbers.

#include <cstddef>
#include <cstdint>
#include <memory>

#include <gorego/core/digest.hpp>
#include <gorego/reapi/upload_budget.hpp>

namespace gorego::reapi {

struct ServiceOptions {
  /// Largest sum of blob sizes in one BatchUpdateBlobs/BatchReadBlobs call.
  std::uint64_t max_batch_total_size_bytes = std::uint64_t{4} << 20;
  /// Largest single blob accepted (0: bounded only by the store's size limit).
  std::uint64_t max_cas_blob_size_bytes = 0;
  /// Bytes per ByteStream ReadResponse.
  std::size_t read_chunk_bytes = std::size_t{1} << 20;
  /// zstd level of compressed-blobs reads and compressed BatchReadBlobs answers.
  int zstd_level = 1;
  /// Largest GetTree page (directories).
  int max_tree_page_size = 10000;
  /// Remote execution is served (`execution.enabled`): Capabilities advertises it.
  bool exec_enabled = false;
  /// The execution priorities accepted (others are clamped into the range).
  std::int32_t min_priority = -1000, max_priority = 1000;
  /// Bytes of ByteStream uploads in flight, per connection and overall; null: no limit.
  std::shared_ptr<UploadBudget> upload_budget;

  /// INVALID_ARGUMENT when `d` is larger than `max_cas_blob_size_bytes` (a configured
  /// limit: retrying cannot help, unlike a full cache's RESOURCE_EXHAUSTED).
  [[nodiscard]] Status check_blob_size(const Digest& d) const {
    if (max_cas_blob_size_bytes != 0 && static_cast<std::uint64_t>(d.size) > max_cas_blob_size_bytes) {
      return error(Code::kInvalidArgument, "blob {} is larger than max_cas_blob_size_bytes {}", d,
                   max_cas_blob_size_bytes);
    }
    return {};
  }
};

}  // namespace gorego::reapi
