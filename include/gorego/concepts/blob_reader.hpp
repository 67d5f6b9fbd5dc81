#pragma once
/// BlobReader: a pull-style stream over one stored blob, from the offset it was opened at.
///
/// Semantics: `read(buf)` fills up to `buf.size()` bytes and returns how many; 0 means the
/// end of the blob. A reader that finds the stored bytes do not match the digest returns
/// DATA_LOSS at the end instead of 0, so a consumer never completes on wrong bytes.
/// `remaining()` is the number of bytes left. Move-only; one thread at a time.
///
///   auto r = store.open_read(d, 0);
///   std::array<char, 65536> buf;
///   while (auto n = r->read(buf); n && *n > 0) send(buf.data(), *n);

#include <concepts>
#include <cstdint>
#include <span>

#include <gorego/core/status.hpp>

namespace gorego {

template <class R>
concept BlobReader = std::movable<R> && requires(R& r, std::span<char> buf) {
  { r.read(buf) } -> std::same_as<Result<std::size_t>>;
  { r.remaining() } -> std::same_as<std::uint64_t>;
};

}  // namespace gorego
