#pragma once
/// BlobWriter: an incremental upload of one blob whose digest is known up front.
///
/// Semantics: `append` adds the next bytes (INVALID_ARGUMENT when they run past the
/// digest's size); `commit` verifies that the bytes hash to the digest and only then makes
/// the blob visible (INVALID_ARGUMENT naming both hashes when they differ). A writer
/// destroyed without a successful commit leaves nothing visible. `written()` counts the
/// bytes appended so far. Move-only; one thread at a time.
///
///   auto w = store.open_write(d);
///   for (auto chunk : chunks) GOREGO_RETURN_IF_ERROR(w->append(chunk));
///   GOREGO_RETURN_IF_ERROR(w->commit());

#include <concepts>
#include <cstdint>
#include <string_view>

#include <gorego/core/status.hpp>

namespace gorego {

template <class W>
concept BlobWriter = std::movable<W> && requires(W& w, std::string_view data) {
  { w.append(data) } -> std::same_as<Status>;
  { w.commit() } -> std::same_as<Status>;
  { w.written() } -> std::same_as<std::uint64_t>;
};

}  // namespace gorego
