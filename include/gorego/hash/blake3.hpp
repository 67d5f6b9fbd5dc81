#pragma once
/// Blake3: the Hasher for REAPI's BLAKE3 digest function (DigestFunction.BLAKE3, 256-bit
/// output), on the official C implementation; its dispatcher uses the widest SIMD kernel
/// the CPU has (SSE2 up to AVX-512). The state lives inline (no allocation).

#include <blake3.h>

#include <string_view>

#include <gorego/concepts/hasher.hpp>

namespace gorego {

/// Streaming BLAKE3 with the default 32-byte output. Not thread-safe per object; `of` is.
class Blake3 {
 public:
  static constexpr std::string_view kName = "blake3";

  Blake3() { reset(); }

  void reset() { blake3_hasher_init(&state_); }

  void update(std::string_view data) { blake3_hasher_update(&state_, data.data(), data.size()); }

  Hash256 finish() {
    Hash256 out{};
    blake3_hasher_finalize(&state_, out.data(), out.size());
    return out;
  }

  static Hash256 of(std::string_view data) {
    Blake3 h;
    h.update(data);
    return h.finish();
  }

  /// The BLAKE3 digest (hash and size) of `data`.
  static Digest digest_of(std::string_view data) {
    return Digest{of(data), static_cast<std::int64_t>(data.size()), DigestFunction::kBlake3};
  }

 private:
  blake3_hasher state_;
};
static_assert(Hasher<Blake3>);

}  // namespace gorego
