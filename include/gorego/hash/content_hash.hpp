#pragma once
/// Hashing by digest function: ContentHasher (a Hasher whose function is chosen at run
/// time, from the digest being written or read), `digest_of` and `verify_blob`. The stores
/// use these, so every blob is hashed with its own digest's function.

#include <string_view>
#include <variant>

#include <gorego/core/digest.hpp>
#include <gorego/core/status.hpp>
#include <gorego/hash/blake3.hpp>
#include <gorego/hash/sha256.hpp>

namespace gorego {

/// Streaming hash under one DigestFunction (SHA-256 unless told). Thread-compatible.
class ContentHasher {
 public:
  ContentHasher() = default;
  explicit ContentHasher(DigestFunction f) {
    if (f == DigestFunction::kBlake3) impl_.emplace<Blake3>();
  }

  [[nodiscard]] DigestFunction function() const {
    return std::holds_alternative<Blake3>(impl_) ? DigestFunction::kBlake3 : DigestFunction::kSha256;
  }
  void update(std::string_view data) {
    std::visit([&](auto& h) { h.update(data); }, impl_);
  }
  Hash256 finish() {
    return std::visit([](auto& h) { return h.finish(); }, impl_);
  }
  void reset() {
    std::visit([](auto& h) { h.reset(); }, impl_);
  }

 private:
  std::variant<Sha256, Blake3> impl_;
};

/// The hash of `data` under `f`.
inline Hash256 hash_of(DigestFunction f, std::string_view data) {
  return f == DigestFunction::kBlake3 ? Blake3::of(data) : Sha256::of(data);
}

/// The digest of `data` under `f`.
inline Digest digest_of(DigestFunction f, std::string_view data) {
  return Digest{hash_of(f, data), static_cast<std::int64_t>(data.size()), f};
}

/// OK when `data` is the blob `d` (hashed with `d`'s function); INVALID_ARGUMENT naming
/// both sizes or both hashes.
inline Status verify_blob(const Digest& d, std::string_view data) {
  if (data.size() != static_cast<std::uint64_t>(d.size)) {
    return error(Code::kInvalidArgument, "blob {} has {} bytes, not the {} of its digest", d,
                 data.size(), d.size);
  }
  if (const Hash256 h = hash_of(d.function, data); h != d.hash) {
    return error(Code::kInvalidArgument, "data hashes to {}, not to the digest's {}", to_hex(h),
                 d.hex());
  }
  return {};
}

}  // namespace gorego
