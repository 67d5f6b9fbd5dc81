#pragma once
// gorego-load: blob content. A Population is a numbered set of blobs whose content, size and
// digest follow from (seed, index) alone, so every workload can name the blobs `populate`
// uploaded without storing anything. FreshBlobs makes new, unique blobs cheaply.

#include <openssl/evp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <gorego/core/digest.hpp>
#include <gorego/hash/sha256.hpp>

namespace gorego::load {

inline constexpr std::uint64_t kKiB = 1024;
inline constexpr std::uint64_t kMiB = 1024 * kKiB;

/// The SplitMix64 output function: a well-mixed 64-bit function of `x`.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// SplitMix64: small, fast, good enough for content and for picking indices. One per thread.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix64(state_);
  }
  /// Uniform in [0, n); n > 0. The modulo bias is below 2^-40 for the n used here.
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  /// `n` random bytes at `out`.
  void fill(char* out, std::size_t n) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const std::uint64_t v = next();
      std::memcpy(out + i, &v, 8);
    }
    if (i < n) {
      const std::uint64_t v = next();
      std::memcpy(out + i, &v, n - i);
    }
  }

 private:
  std::uint64_t state_;
};

/// A random digest that no server holds (2^-256 odds otherwise); size 1..1 MiB.
inline Digest random_digest(Rng& rng) {
  Digest d;
  rng.fill(reinterpret_cast<char*>(d.hash.data()), d.hash.size());
  d.size = static_cast<std::int64_t>(1 + rng.below(kMiB));
  return d;
}

/// Smallest blob size accepted: below it, truncated contents of different blobs could be
/// equal.
inline constexpr std::uint64_t kMinBlobSize = 16;

struct PopulationSpec {
  std::uint64_t seed = 1;
  std::uint64_t blobs = 100000;
  std::uint64_t size = kKiB;  ///< every blob's size, unless `mixed`
  bool mixed = false;         ///< sizes from the mix described at Population::size_of
};

/// Blobs 0..blobs-1. Blob i is "i/seed gorego-load population\n" followed by random bytes
/// keyed by (seed, i), cut to size_of(i). Thread-safe for concurrent reads.
class Population {
 public:
  explicit Population(PopulationSpec spec) : spec_(spec) {}

  [[nodiscard]] const PopulationSpec& spec() const { return spec_; }
  [[nodiscard]] std::uint64_t count() const { return spec_.blobs; }

  /// With `mixed`: every 1000th blob (i % 1000 == 7) is large, 4..16 MiB; every 32nd of the
  /// rest (i % 32 == 3) is medium, 100 KiB..1 MiB; the others are small, log-uniform in
  /// 64 B..16 KiB. So 1000 blobs hold 1 large, ~31 medium and ~968 small ones (~30 MB).
  [[nodiscard]] std::uint64_t size_of(std::uint64_t i) const {
    if (!spec_.mixed) return spec_.size;
    const std::uint64_t r = mix64(mix64(spec_.seed) ^ i);
    if (i % 1000 == 7) return 4 * kMiB + r % (12 * kMiB + 1);
    if (i % 32 == 3) return 100 * kKiB + r % (924 * kKiB + 1);
    const double u = static_cast<double>(r >> 11) * 0x1.0p-53;
    return static_cast<std::uint64_t>(64.0 * std::pow(256.0, u));
  }

  [[nodiscard]] std::string content(std::uint64_t i) const {
    std::string out(size_of(i), '\0');
    const std::string head = fmt::format("{}/{} gorego-load population\n", i, spec_.seed);
    const std::size_t n = std::min(head.size(), out.size());
    std::memcpy(out.data(), head.data(), n);
    Rng rng(mix64(spec_.seed * 0x100000001b3ULL) ^ mix64(~i));
    rng.fill(out.data() + n, out.size() - n);
    return out;
  }

  [[nodiscard]] Digest compute_digest(std::uint64_t i) const {
    return Sha256::digest_of(content(i));
  }

  /// The digest table: digest(i) is valid after compute_digests() or after set_digest(i, ..)
  /// for every i (populate fills it as it uploads).
  void reserve_digests() { digests_.resize(spec_.blobs); }
  void set_digest(std::uint64_t i, const Digest& d) { digests_[i] = d; }
  [[nodiscard]] const Digest& digest(std::uint64_t i) const { return digests_[i]; }

  /// Computes every digest on `threads` threads.
  void compute_digests(unsigned threads) {
    reserve_digests();
    std::vector<std::jthread> pool;
    for (unsigned t = 0; t < threads; ++t) {
      pool.emplace_back([this, t, threads] {
        for (std::uint64_t i = t; i < spec_.blobs; i += threads) digests_[i] = compute_digest(i);
      });
    }
  }

 private:
  PopulationSpec spec_;
  std::vector<Digest> digests_;
};

/// New blobs of one size, each unique, whose digest costs a few SHA-256 blocks instead of a
/// pass over the whole blob: a blob is a random prefix shared by all (a whole number of
/// 64-byte SHA-256 blocks, hashed once here) followed by a random tail of 64..127 bytes (the
/// whole blob when it is under 128 bytes). The server still receives, hashes and stores
/// every byte of every blob; only the client's cost of making them is small, so it stays
/// out of the way of upload measurements. Thread-safe for concurrent make().
class FreshBlobs {
 public:
  struct Blob {
    Digest digest;
    std::string tail;
  };

  FreshBlobs(std::uint64_t size, std::uint64_t seed) : size_(size), midstate_(EVP_MD_CTX_new()) {
    const std::uint64_t prefix = size >= 128 ? (size - 64) / 64 * 64 : 0;
    prefix_.resize(prefix);
    Rng rng(mix64(seed ^ 0x6672657368ULL));
    rng.fill(prefix_.data(), prefix_.size());
    EVP_DigestInit_ex(midstate_.get(), EVP_sha256(), nullptr);
    EVP_DigestUpdate(midstate_.get(), prefix_.data(), prefix_.size());
  }

  [[nodiscard]] std::uint64_t size() const { return size_; }

  /// A new blob: its tail is random bytes from `rng` (at least 16, so two blobs are equal
  /// with odds of 2^-128 at most).
  [[nodiscard]] Blob make(Rng& rng) const {
    Blob b;
    b.tail.resize(size_ - prefix_.size());
    rng.fill(b.tail.data(), b.tail.size());
    std::unique_ptr<EVP_MD_CTX, Free> ctx(EVP_MD_CTX_new());
    EVP_MD_CTX_copy_ex(ctx.get(), midstate_.get());
    EVP_DigestUpdate(ctx.get(), b.tail.data(), b.tail.size());
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx.get(), b.digest.hash.data(), &len);
    b.digest.size = static_cast<std::int64_t>(size_);
    return b;
  }

  /// Bytes [offset, offset + n) of `b`, into `out`.
  void copy(const Blob& b, std::uint64_t offset, std::uint64_t n, std::string& out) const {
    out.clear();
    out.reserve(n);
    if (offset < prefix_.size()) {
      const std::uint64_t k = std::min<std::uint64_t>(n, prefix_.size() - offset);
      out.append(prefix_, offset, k);
      offset += k;
      n -= k;
    }
    if (n > 0) out.append(b.tail, offset - prefix_.size(), n);
  }

  [[nodiscard]] std::string whole(const Blob& b) const { return prefix_ + b.tail; }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
  };
  std::uint64_t size_;
  std::string prefix_;
  std::unique_ptr<EVP_MD_CTX, Free> midstate_;
};

}  // namespace gorego::load
