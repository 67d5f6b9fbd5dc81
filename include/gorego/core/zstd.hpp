#pragma once
/// zstd for the wire (REAPI `compressed-blobs/zstd`, BatchUpdateBlobs/BatchReadBlobs
/// compressors, HTTP `Content-Encoding: zstd`): a streaming encoder, a streaming decoder that
/// accepts any number of concatenated frames (Bazel compresses each upload chunk as its own
/// frame), and one-shot helpers over both. Errors are INVALID_ARGUMENT naming what is wrong,
/// since bad compressed bytes always come from a client or an upstream.

#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <gorego/core/status.hpp>

namespace gorego::zstd {

/// Level used for data gorego compresses itself: fast, and still about half the bytes of
/// typical build outputs (docs/performance.md, "zstd").
inline constexpr int kDefaultLevel = 1;

/// Compresses a stream chunk by chunk into one frame. Each `add` flushes, so every chunk's
/// output can be sent at once (a streamed download never waits for more input).
class Encoder {
 public:
  explicit Encoder(int level = kDefaultLevel) : ctx_(ZSTD_createCCtx()) {
    ZSTD_CCtx_setParameter(ctx_.get(), ZSTD_c_compressionLevel, level);
  }

  /// Upper bound of what `add` appends for `n` input bytes.
  [[nodiscard]] static std::size_t bound(std::size_t n) { return ZSTD_compressBound(n) + 16; }

  /// Compresses `in` into `out` (which must hold bound(in.size()) bytes); `last` ends the
  /// frame. Returns the bytes written.
  Result<std::size_t> add(std::string_view in, std::span<char> out, bool last) {
    ZSTD_inBuffer src{in.data(), in.size(), 0};
    ZSTD_outBuffer dst{out.data(), out.size(), 0};
    const ZSTD_EndDirective mode = last ? ZSTD_e_end : ZSTD_e_flush;
    std::size_t left = 0;
    do {
      left = ZSTD_compressStream2(ctx_.get(), &dst, &src, mode);
      if (ZSTD_isError(left)) {
        return error(Code::kInternal, "zstd compression failed: {}", ZSTD_getErrorName(left));
      }
      if (left != 0 && dst.pos == dst.size) {
        return error(Code::kInternal, "zstd output buffer of {} bytes too small", out.size());
      }
    } while (left != 0);
    return dst.pos;
  }

 private:
  struct Free {
    void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
  };
  std::unique_ptr<ZSTD_CCtx, Free> ctx_;
};

/// Decompresses a stream of concatenated frames, refusing to produce more than `limit`
/// bytes (the digest's size: a decompression bomb stops there).
class Decoder {
 public:
  explicit Decoder(std::uint64_t limit) : ctx_(ZSTD_createDCtx()), limit_(limit) {}

  /// Feeds compressed bytes; `sink(std::string_view)` gets the output as it is produced and
  /// returns a Status (a failing sink stops the decoding).
  template <class Sink>
  Status add(std::string_view in, Sink&& sink) {
    if (in.empty()) return {};
    ZSTD_inBuffer src{in.data(), in.size(), 0};
    bool full = false;  // the last call filled the buffer: the context may hold more output
    while (src.pos < src.size || full) {
      ZSTD_outBuffer dst{buf_, sizeof buf_, 0};
      const std::size_t r = ZSTD_decompressStream(ctx_.get(), &dst, &src);
      if (ZSTD_isError(r)) {
        return error(Code::kInvalidArgument, "zstd data is corrupt after {} compressed bytes: {}",
                     consumed_ + src.pos, ZSTD_getErrorName(r));
      }
      frame_done_ = r == 0;
      // A full buffer may leave output in the context, unless the frame just ended (then
      // another call would only start reading the next frame's header).
      full = dst.pos == dst.size && r != 0;
      produced_ += dst.pos;
      if (produced_ > limit_) {
        return error(Code::kInvalidArgument, "zstd data decompresses to more than the {} bytes the digest names",
                     limit_);
      }
      if (dst.pos > 0) {
        if (Status s = sink(std::string_view(buf_, dst.pos)); !s.ok()) return s;
      }
    }
    consumed_ += in.size();
    started_ = true;
    return {};
  }

  /// OK when the input ended at a frame boundary (or there was none: an empty blob may be
  /// sent as zero bytes); INVALID_ARGUMENT for a truncated frame.
  [[nodiscard]] Status finish() const {
    if (started_ && !frame_done_) {
      return error(Code::kInvalidArgument, "zstd data ends inside a frame after {} compressed bytes", consumed_);
    }
    return {};
  }

  [[nodiscard]] std::uint64_t produced() const { return produced_; }
  [[nodiscard]] std::uint64_t consumed() const { return consumed_; }

 private:
  struct Free {
    void operator()(ZSTD_DCtx* c) const noexcept { ZSTD_freeDCtx(c); }
  };
  std::unique_ptr<ZSTD_DCtx, Free> ctx_;
  std::uint64_t limit_;
  std::uint64_t produced_ = 0;
  std::uint64_t consumed_ = 0;
  bool frame_done_ = false;
  bool started_ = false;
  char buf_[64 * 1024];
};

/// One frame holding all of `in`.
inline Result<std::string> compress(std::string_view in, int level = kDefaultLevel) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  const std::size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), level);
  if (ZSTD_isError(n)) return error(Code::kInternal, "zstd compression failed: {}", ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

/// All frames of `in`, decompressed; INVALID_ARGUMENT for corrupt or truncated data, or
/// more than `limit` bytes of output.
inline Result<std::string> decompress(std::string_view in, std::uint64_t limit) {
  auto d = std::make_unique<Decoder>(limit);
  std::string out;
  Status s = d->add(in, [&out](std::string_view part) {
    out.append(part);
    return Status{};
  });
  if (!s.ok()) return s;
  GOREGO_RETURN_IF_ERROR(d->finish());
  return out;
}

}  // namespace gorego::zstd
