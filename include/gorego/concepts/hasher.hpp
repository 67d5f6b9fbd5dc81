#pragma once
/// Hasher: a streaming content hash producing a 256-bit digest.
///
/// Semantics: `update` may be called any number of times with consecutive pieces of the
/// content; `finish` returns the hash of their concatenation and leaves the hasher unusable
/// until `reset`. `H::of(data)` is the one-shot form and must equal update+finish.
/// Complexity: linear in the bytes hashed. Thread safety: one object per thread; the
/// static `of` is thread-safe.
///
///   Sha256 h;
///   h.update("ab"); h.update("c");
///   assert(h.finish() == Sha256::of("abc"));

#include <concepts>
#include <string_view>

#include <gorego/core/digest.hpp>

namespace gorego {

template <class H>
concept Hasher = std::default_initializable<H> && std::movable<H> &&
                 requires(H& h, std::string_view data) {
                   { H::kName } -> std::convertible_to<std::string_view>;
                   { h.update(data) } -> std::same_as<void>;
                   { h.finish() } -> std::same_as<Hash256>;
                   { h.reset() } -> std::same_as<void>;
                   { H::of(data) } -> std::same_as<Hash256>;
                 };

}  // namespace gorego
