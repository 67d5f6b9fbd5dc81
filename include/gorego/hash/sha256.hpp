#pragma once
/// Sha256: the Hasher for REAPI's default digest function, on OpenSSL EVP (uses SHA-NI
/// where the CPU has it).

#include <memory>
#include <stdexcept>
#include <string_view>

#include <openssl/evp.h>

#include <gorego/concepts/hasher.hpp>

namespace gorego {

/// Streaming SHA-256. Not thread-safe per object; `of` is.
class Sha256 {
 public:
  static constexpr std::string_view kName = "sha256";

  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_) throw std::bad_alloc();
    reset();
  }

  void reset() { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }

  void update(std::string_view data) { EVP_DigestUpdate(ctx_.get(), data.data(), data.size()); }

  Hash256 finish() {
    Hash256 out{};
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), out.data(), &len);
    return out;
  }

  static Hash256 of(std::string_view data) {
    Hash256 out{};
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
    return out;
  }

  /// The digest (hash and size) of `data`.
  static Digest digest_of(std::string_view data) {
    return Digest{of(data), static_cast<std::int64_t>(data.size())};
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};
static_assert(Hasher<Sha256>);

}  // namespace gorego
