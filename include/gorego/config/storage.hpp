#pragma once
/// StorageSettings: the local tier on disk (`data_dir`, `max_size`, `eviction`,
/// `storage.*`), and the enumerations Eviction and ReadVerification. Part of Config; see
/// config.hpp for how settings are read.

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string_view>
#include <utility>

#include <gorego/config/enum_names.hpp>
#include <gorego/config/values.hpp>

namespace gorego {

/// `eviction`: which eviction policy the local tier runs (docs/architecture.md#eviction).
enum class Eviction : std::uint8_t {
  kSampledLru,  ///< "sampled-lru": approximate LRU from the index's access stamps
  kLru,         ///< "lru": exact LRU, a recency list under one mutex
  kAtime,       ///< "atime": a janitor that scans file access times
};

template <>
struct EnumNames<Eviction> {
  static constexpr std::array<std::pair<Eviction, std::string_view>, 3> kNames{{
      {Eviction::kSampledLru, "sampled-lru"},
      {Eviction::kLru, "lru"},
      {Eviction::kAtime, "atime"},
  }};
};

/// `storage.verify_reads`: which full reads re-hash the blob before its last byte is served.
enum class ReadVerification : std::uint8_t {
  kFirst,   ///< "first": a blob's first full read after start, unless this process hashed it
  kAlways,  ///< "always": every full read
};

template <>
struct EnumNames<ReadVerification> {
  static constexpr std::array<std::pair<ReadVerification, std::string_view>, 2> kNames{{
      {ReadVerification::kFirst, "first"},
      {ReadVerification::kAlways, "always"},
  }};
};

/// The settings of the local tier. A plain aggregate holding the embedded defaults; the
/// comment of each field gives its YAML key and flag.
struct StorageSettings {
  /// `data_dir`, `--data-dir`: where the CAS and AC live. Relative paths are relative to the
  /// working directory (not to the config file).
  std::filesystem::path data_dir = "./gorego-data";
  /// `max_size`, `--max-size`: the size limit of the store, a SIZE (see parse_size()).
  std::uint64_t max_size_bytes = 10 * kGiB;
  /// `eviction`, `--eviction`: the eviction policy.
  Eviction eviction = Eviction::kSampledLru;
  /// `storage.fsync`, `--fsync`: fsync blobs and their directory before acknowledging a write.
  bool fsync = true;
  /// `storage.janitor_interval`: how often the atime janitor scans when `eviction` is
  /// "atime" (a duration, > 0); LRU evicts on demand and ignores it.
  std::chrono::seconds janitor_interval{60};
  /// `storage.verify_reads`: "first" (re-hash a blob's first full read after start; trust
  /// bytes this process verified) or "always" (re-hash every full read).
  ReadVerification verify_reads = ReadVerification::kFirst;
  /// `storage.memory_cache`, `--memory-cache`: memory for the verified bytes of small CAS
  /// blobs (up to 64 KiB each), served without a disk read; a SIZE, 0 disables it. Not
  /// used with `verify_reads: always`.
  std::uint64_t memory_cache_bytes = 256 * kMiB;
  /// `storage.ac_memory`: memory for ActionCache entries (up to 64 KiB each) kept with the
  /// index and served without a disk read; a SIZE, 0 disables it.
  std::uint64_t ac_memory_bytes = 64 * kMiB;
  /// `storage.force_update_atime`: touch the atime on every read, for filesystems mounted
  /// relatime/noatime when `eviction` is "atime".
  bool force_update_atime = false;
  /// `storage.block_size`: accounting granularity of the size limit, a power of two SIZE in
  /// 1..1MiB; every blob counts as its size rounded up to a multiple of it.
  std::uint32_t block_size = 4096;

  friend bool operator==(const StorageSettings&, const StorageSettings&) = default;
};

}  // namespace gorego
