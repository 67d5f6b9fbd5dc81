#pragma once
/// gorego::Digest: a validated content digest (digest function, 32-byte hash, size), and
/// ObjectKey, the index key that tells CAS blobs from ActionCache entries.

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include <gorego/core/status.hpp>

namespace gorego {

/// Raw bytes of a 256-bit hash (SHA-256 or BLAKE3).
using Hash256 = std::array<std::uint8_t, 32>;

/// The digest functions gorego serves. Each is its own keyspace: a SHA-256 and a BLAKE3
/// digest with equal bytes are different blobs (the index, the disk and the ActionCache log
/// keep the function with the key). The values are gorego's own (they are stored on disk);
/// the wire's DigestFunction.Value is mapped in reapi/convert.hpp.
enum class DigestFunction : std::uint8_t { kSha256 = 0, kBlake3 = 1 };
inline constexpr DigestFunction kLastDigestFunction = DigestFunction::kBlake3;

/// "sha256" or "blake3": the lower-case name resource names and logs use.
constexpr std::string_view name_of(DigestFunction f) noexcept {
  return f == DigestFunction::kBlake3 ? "blake3" : "sha256";
}

/// Largest size a digest may claim before it is rejected as absurd (1 TiB). A store's own
/// limit (RESOURCE_EXHAUSTED) is usually far smaller.
inline constexpr std::int64_t kMaxDigestSize = std::int64_t{1} << 40;

/// Lower-case hex of `h` (64 characters).
inline std::string to_hex(const Hash256& h) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (std::size_t i = 0; i < h.size(); ++i) {
    out[2 * i] = kHex[h[i] >> 4];
    out[2 * i + 1] = kHex[h[i] & 0xf];
  }
  return out;
}

/// A blob's identity: its hash, its size in bytes and the function that made the hash.
/// Construct through `Digest::parse` (validates wire input) or a Hasher's `digest_of`.
/// Value type, thread-compatible.
struct Digest {
  Hash256 hash{};
  std::int64_t size = 0;
  DigestFunction function = DigestFunction::kSha256;

  /// Validates a wire digest: exactly 64 lower-case hex characters and
  /// 0 <= size <= kMaxDigestSize. Errors are INVALID_ARGUMENT naming the bad value.
  static Result<Digest> parse(std::string_view hex, std::int64_t size,
                              DigestFunction function = DigestFunction::kSha256) {
    if (hex.size() != 64) {
      return error(Code::kInvalidArgument, "digest hash \"{}\" has {} characters; {} needs 64",
                   truncate(hex), hex.size(), function == DigestFunction::kBlake3 ? "BLAKE3" : "SHA-256");
    }
    Digest d;
    d.function = function;
    std::uint8_t bad = 0;  // any invalid character sets bit 7 (the table maps it to 0x80)
    for (std::size_t i = 0; i < 32; ++i) {
      const std::uint8_t hi = kNibble[static_cast<unsigned char>(hex[2 * i])];
      const std::uint8_t lo = kNibble[static_cast<unsigned char>(hex[2 * i + 1])];
      bad |= hi | lo;
      d.hash[i] = static_cast<std::uint8_t>(hi << 4 | (lo & 0xf));
    }
    if ((bad & 0x80) != 0) {
      std::size_t at = 0;
      while (kNibble[static_cast<unsigned char>(hex[at])] != 0x80) ++at;
      return error(Code::kInvalidArgument, "digest hash \"{}\" is not lower-case hex (bad character at {})",
                   hex, at);
    }
    if (size < 0) return error(Code::kInvalidArgument, "digest size {} is negative", size);
    if (size > kMaxDigestSize) {
      return error(Code::kInvalidArgument, "digest size {} exceeds the maximum of {} bytes", size,
                   kMaxDigestSize);
    }
    d.size = size;
    return d;
  }

  [[nodiscard]] std::string hex() const { return to_hex(hash); }
  [[nodiscard]] bool empty_blob() const noexcept;

  friend bool operator==(const Digest&, const Digest&) = default;

 private:
  /// Value of each lower-case hex character; 0x80 for every other byte.
  static constexpr std::array<std::uint8_t, 256> kNibble = [] {
    std::array<std::uint8_t, 256> t{};
    t.fill(0x80);
    for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - '0');
    for (int c = 'a'; c <= 'f'; ++c) t[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(c - 'a' + 10);
    return t;
  }();
  static std::string_view truncate(std::string_view s) { return s.substr(0, 80); }
};

/// SHA-256 of the empty string: always present in every CAS (REAPI).
inline constexpr Hash256 kEmptySha256 = {
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};
/// BLAKE3 of the empty string (the first of BLAKE3's published test vectors).
inline constexpr Hash256 kEmptyBlake3 = {
    0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc, 0xc9, 0x49,
    0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca, 0xe4, 0x1f, 0x32, 0x62};

/// The empty blob's hash under `f`.
constexpr const Hash256& empty_hash(DigestFunction f) noexcept {
  return f == DigestFunction::kBlake3 ? kEmptyBlake3 : kEmptySha256;
}

inline bool Digest::empty_blob() const noexcept { return size == 0 && hash == empty_hash(function); }

/// Which tree of the store a key lives in.
enum class Tree : std::uint8_t { kCas = 0, kAc = 1 };

/// Index key: a digest in one tree. For the AC the digest is the Action's.
struct ObjectKey {
  Digest digest;
  Tree tree = Tree::kCas;
  friend bool operator==(const ObjectKey&, const ObjectKey&) = default;
};

}  // namespace gorego

template <>
struct std::hash<gorego::Digest> {
  std::size_t operator()(const gorego::Digest& d) const noexcept {
    std::size_t h;
    std::memcpy(&h, d.hash.data(), sizeof h);  // the hash is already uniformly distributed
    return h ^ static_cast<std::size_t>(d.size) ^ (static_cast<std::size_t>(d.function) << 56);
  }
};

template <>
struct std::hash<gorego::ObjectKey> {
  std::size_t operator()(const gorego::ObjectKey& k) const noexcept {
    return std::hash<gorego::Digest>{}(k.digest) ^ static_cast<std::size_t>(k.tree);
  }
};

/// Formats as "hash/size", the REAPI convention; a BLAKE3 digest as "blake3/hash/size" (the
/// resource-name form), so that logs and errors never confuse the keyspaces.
template <>
struct fmt::formatter<gorego::Digest> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const gorego::Digest& d, Ctx& ctx) const {
    if (d.function != gorego::DigestFunction::kSha256) {
      return fmt::format_to(ctx.out(), "{}/{}/{}", gorego::name_of(d.function), d.hex(), d.size);
    }
    return fmt::format_to(ctx.out(), "{}/{}", d.hex(), d.size);
  }
};
