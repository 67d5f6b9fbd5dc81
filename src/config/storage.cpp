// The settings of the local tier: `data_dir`, `max_size`, `eviction` and `storage.*`
// (StorageSettings).
#include "settings.hpp"

namespace gorego::settings {
namespace {

template <auto Member>
using Storage = Field<&Config::storage, Member>;

Result<std::string> parse_data_dir(std::string_view text) {
  if (text.empty()) return invalid("data directory \"\" is empty");
  return std::string(text);
}

Result<std::uint64_t> parse_max_size(std::string_view text) {
  auto size = parse_size(text);
  if (size && *size == 0) return invalid(fmt::format("size \"{}\" must be greater than 0", text));
  return size;
}

Result<Eviction> parse_eviction(std::string_view text) {
  return parse_enum<Eviction>("eviction", text);
}

Result<ReadVerification> parse_verify_reads(std::string_view text) {
  return parse_enum<ReadVerification>("storage.verify_reads", text);
}

/// A power of two SIZE in 1..1MiB.
Result<std::uint64_t> parse_block_size(std::string_view text) {
  constexpr std::uint64_t kMax = kMiB;
  auto size = parse_size(text);
  if (size && (*size == 0 || *size > kMax || (*size & (*size - 1)) != 0)) {
    return invalid(
        fmt::format("size \"{}\" is not a power of two in 1..{}", text, format_size(kMax)));
  }
  return size;
}

constexpr std::array kSettings{
    scalar<Storage<&StorageSettings::data_dir>, &parse_data_dir, &format_path>(
        "data_dir", "data-dir", "DIR", "directory holding the CAS and the action cache"),
    scalar<Storage<&StorageSettings::max_size_bytes>, &parse_max_size, &format_size>(
        "max_size", "max-size", "SIZE", "size limit of the store, e.g. 10GiB, 500GB"),
    scalar<Storage<&StorageSettings::eviction>, &parse_eviction, &format_enum<Eviction>>(
        "eviction", "eviction", "NAME", "eviction policy: sampled-lru, lru or atime"),
    scalar<Storage<&StorageSettings::fsync>, &parse_bool, &format_bool>(
        "storage.fsync", "fsync", "BOOL", "fsync each blob before acknowledging it"),
    scalar<Storage<&StorageSettings::janitor_interval>, &parse_positive_duration, &format_duration>(
        "storage.janitor_interval", "", "DURATION",
        "how often the atime janitor scans (eviction: atime): 60s, 5m, 1h"),
    scalar<Storage<&StorageSettings::verify_reads>, &parse_verify_reads,
           &format_enum<ReadVerification>>(
        "storage.verify_reads", "", "WHEN",
        "re-hash full reads: first (once per blob after start) or always"),
    scalar<Storage<&StorageSettings::memory_cache_bytes>, &parse_size, &format_size>(
        "storage.memory_cache", "memory-cache", "SIZE",
        "memory for small verified blobs served without a disk read; 0 disables"),
    scalar<Storage<&StorageSettings::ac_memory_bytes>, &parse_size, &format_size>(
        "storage.ac_memory", "", "SIZE",
        "memory for ActionCache entries served without a disk read; 0 disables"),
    scalar<Storage<&StorageSettings::force_update_atime>, &parse_bool, &format_bool>(
        "storage.force_update_atime", "", "BOOL",
        "touch a blob's atime on every read (for relatime/noatime mounts)"),
    scalar<Storage<&StorageSettings::block_size>, &parse_block_size, &format_size>(
        "storage.block_size", "", "SIZE",
        "accounting granularity of the size limit, a power of two up to 1MiB"),
};

/// The sizes that must fit in max_size: the largest blob and the accounting block.
Status validate_storage(const Config& config) {
  const std::array<std::pair<std::string_view, std::uint64_t>, 2> bounded{{
      {"server.max_blob_size", config.server.max_blob_size_bytes},
      {"storage.block_size", config.storage.block_size},
  }};
  for (const auto& [key, bytes] : bounded) {
    if (bytes <= config.storage.max_size_bytes) continue;
    return invalid(fmt::format("{} {} is larger than max_size {}", key, format_size(bytes),
                               format_size(config.storage.max_size_bytes)));
  }
  return ok_status();
}

}  // namespace

Area storage_area() { return {kSettings, &validate_storage}; }

}  // namespace gorego::settings
