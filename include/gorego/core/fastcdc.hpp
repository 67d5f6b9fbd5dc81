#pragma once
/// FastCDC 2020 (Xia et al., "The Design of Fast Content-Defined Chunking for Data
/// Deduplication Based Storage Systems", IEEE TPDS 2020) with normalization level 2, as REAPI's
/// blob splitting names it (`ChunkingFunction.FAST_CDC_2020`): a gear rolling hash whose cut
/// condition is stricter before the average size and looser after it, chunks between avg/4
/// and avg*4. Parameters as REAPI fixes them so that clients and servers cut alike:
/// - the gear table: entry i is the first 8 bytes (big-endian) of MD5 of 64 bytes of value i;
/// - the masks: the paper's normalized masks, `mask_s` for log2(avg)+2 bits and `mask_l` for
///   log2(avg)-2;
/// - a chunk ends before the byte whose hash meets the condition, or at avg*4.
/// Thread safety: a Chunker is immutable after construction.
///
///   Chunker c(512 << 10);
///   for (std::size_t off = 0; off < data.size();) off += c.cut(data.substr(off));

#include <openssl/evp.h>

#include <array>
#include <bit>
#include <cstdint>
#include <string_view>
#include <vector>

#include <gorego/core/status.hpp>

namespace gorego::fastcdc {

/// The average chunk size REAPI recommends, which gorego's SplitBlob cuts at and advertises.
inline constexpr std::uint64_t kRecommendedAverage = 512 << 10;

/// The gear table, computed once.
inline const std::array<std::uint64_t, 256>& gear() {
  static const std::array<std::uint64_t, 256> table = [] {
    std::array<std::uint64_t, 256> t{};
    for (unsigned i = 0; i < 256; ++i) {
      unsigned char in[64];
      for (unsigned char& b : in) b = static_cast<unsigned char>(i);
      unsigned char md[16];
      unsigned int len = 0;
      EVP_Digest(in, sizeof in, md, &len, EVP_md5(), nullptr);
      std::uint64_t v = 0;
      for (int k = 0; k < 8; ++k) v = v << 8 | md[k];
      t[i] = v;
    }
    return t;
  }();
  return table;
}

/// The paper's normalized masks by number of bits (log2 of a chunk size); REAPI's range of
/// averages (1 KiB..1 MiB) at level 2 needs bits 8..22.
constexpr std::uint64_t mask_for_bits(unsigned bits) {
  constexpr std::uint64_t kMasks[] = {
      0x0000001800035300,  // 8
      0x0000019000353000,  // 9
      0x0000590003530000,  // 10
      0x0000d90003530000,  // 11
      0x0000d90103530000,  // 12
      0x0000d90303530000,  // 13
      0x0000d90313530000,  // 14
      0x0000d90f03530000,  // 15
      0x0000d90303537000,  // 16
      0x0000d90703537000,  // 17
      0x0000d90707537000,  // 18
      0x0000d91707537000,  // 19
      0x0000d91747537000,  // 20
      0x0000d91767537000,  // 21
      0x0000d93767537000,  // 22
  };
  return kMasks[bits - 8];
}

class Chunker {
 public:
  static constexpr std::uint64_t kMinAverage = 1 << 10;
  static constexpr std::uint64_t kMaxAverage = 1 << 20;

  /// INVALID_ARGUMENT unless `avg` is a power of two in 1 KiB..1 MiB.
  static Result<Chunker> make(std::uint64_t avg) {
    if (avg < kMinAverage || avg > kMaxAverage || !std::has_single_bit(avg)) {
      return error(Code::kInvalidArgument, "FastCDC average chunk size {} is not a power of two in 1KiB..1MiB", avg);
    }
    return Chunker(avg);
  }

  [[nodiscard]] std::uint64_t min_size() const { return min_; }
  [[nodiscard]] std::uint64_t avg_size() const { return avg_; }
  [[nodiscard]] std::uint64_t max_size() const { return max_; }

  /// The length of the chunk that starts `data` (all of it when it is no longer than the
  /// minimum, at most the maximum).
  [[nodiscard]] std::size_t cut(std::string_view data) const {
    std::size_t n = data.size();
    if (n <= min_) return n;
    if (n > max_) n = max_;
    const std::size_t center = n < avg_ ? n : avg_;
    const auto& g = gear();
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    std::uint64_t fp = 0;
    std::size_t i = min_;
    for (; i < center; ++i) {
      fp = (fp << 1) + g[p[i]];
      if ((fp & mask_s_) == 0) return i;
    }
    for (; i < n; ++i) {
      fp = (fp << 1) + g[p[i]];
      if ((fp & mask_l_) == 0) return i;
    }
    return n;
  }

  /// The lengths of all chunks of `data`, in order.
  [[nodiscard]] std::vector<std::size_t> split(std::string_view data) const {
    std::vector<std::size_t> out;
    for (std::size_t off = 0; off < data.size();) {
      const std::size_t n = cut(data.substr(off));
      out.push_back(n);
      off += n;
    }
    return out;
  }

 private:
  explicit Chunker(std::uint64_t avg)
      : min_(avg / 4),
        avg_(avg),
        max_(avg * 4),
        mask_s_(mask_for_bits(static_cast<unsigned>(std::countr_zero(avg)) + 2)),
        mask_l_(mask_for_bits(static_cast<unsigned>(std::countr_zero(avg)) - 2)) {}

  std::uint64_t min_;
  std::uint64_t avg_;
  std::uint64_t max_;
  std::uint64_t mask_s_;
  std::uint64_t mask_l_;
};

}  // namespace gorego::fastcdc
