#pragma once
/// ByteStream resource names (REAPI "Uploads"/"Downloads" sections):
///   read:  [{instance}/]blobs/[{digest_function}/]{hash}/{size}
///   write: [{instance}/]uploads/{uuid}/blobs/[{digest_function}/]{hash}/{size}[/{metadata}]
/// and the `compressed-blobs/{compressor}/` forms in place of `blobs/` (compressors
/// `identity` and `zstd`). Parsing is strict: every error is INVALID_ARGUMENT naming the
/// resource name and what is wrong with it. An instance name may not contain a segment the
/// API reserves (`blobs`, `uploads`, `compressed-blobs`, ...), so an upload's name given to a
/// read is refused rather than read as instance "uploads/{uuid}".

#include <string>
#include <string_view>
#include <vector>

#include <gorego/core/digest.hpp>
#include <gorego/core/status.hpp>

namespace gorego::reapi {

struct ResourceName {
  std::string instance;
  std::string uuid;        ///< write only
  Digest digest;
  std::string compressor;  ///< empty for plain `blobs/`

  /// The blob travels zstd-compressed (`compressed-blobs/zstd/`).
  [[nodiscard]] bool zstd() const { return compressor == "zstd"; }
};

namespace detail {

inline std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = s.find('/', start);
    out.push_back(s.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

inline std::string join(const std::vector<std::string_view>& parts, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    if (i) out += '/';
    out += parts[i];
  }
  return out;
}

/// Parses `blobs/...` or `compressed-blobs/...` starting at parts[i]; returns the index
/// after the size segment.
inline Result<std::size_t> parse_blob_part(std::string_view name, const std::vector<std::string_view>& p,
                                           std::size_t i, ResourceName& out) {
  if (p[i] == "compressed-blobs") {
    if (i + 1 >= p.size()) return error(Code::kInvalidArgument, "resource name \"{}\" lacks a compressor", name);
    out.compressor = std::string(p[++i]);
    if (out.compressor != "identity" && out.compressor != "zstd") {
      return error(Code::kInvalidArgument,
                   "resource name \"{}\": compressor \"{}\" is not supported by this server",
                   name, out.compressor);
    }
  }
  ++i;
  DigestFunction function = DigestFunction::kSha256;
  if (i < p.size() && p[i].size() != 64) {
    // An explicit digest function segment (REAPI v2.3); without one the function is SHA-256.
    if (p[i] == "blake3") {
      function = DigestFunction::kBlake3;
    } else if (p[i] != "sha256") {
      return error(Code::kInvalidArgument,
                   "resource name \"{}\": digest function \"{}\" is not supported; this server "
                   "supports sha256 and blake3",
                   name, p[i]);
    }
    ++i;
  }
  if (i + 1 >= p.size()) {
    return error(Code::kInvalidArgument, "resource name \"{}\" lacks {{hash}}/{{size}}", name);
  }
  const std::string_view size_text = p[i + 1];
  std::int64_t size = 0;
  if (size_text.empty() || size_text.size() > 18) {
    return error(Code::kInvalidArgument, "resource name \"{}\": size \"{}\" is not a number", name, size_text);
  }
  for (const char c : size_text) {
    if (c < '0' || c > '9') {
      return error(Code::kInvalidArgument, "resource name \"{}\": size \"{}\" is not a number", name, size_text);
    }
    size = size * 10 + (c - '0');
  }
  auto d = Digest::parse(p[i], size, function);
  if (!d) return error(Code::kInvalidArgument, "resource name \"{}\": {}", name, d.error().message());
  out.digest = *d;
  return i + 2;
}

/// Segments the API reserves; none may be part of an instance name (REAPI, "instance_name").
inline bool reserved(std::string_view seg) {
  for (std::string_view r : {"blobs", "uploads", "actions", "actionResults", "operations", "capabilities",
                             "compressed-blobs"}) {
    if (seg == r) return true;
  }
  return false;
}

/// The instance: the segments before parts[i], none of them reserved.
inline Result<std::string> instance_of(std::string_view name, const std::vector<std::string_view>& p,
                                       std::size_t i) {
  for (std::size_t k = 0; k < i; ++k) {
    if (reserved(p[k])) {
      return error(Code::kInvalidArgument,
                   "resource name \"{}\": \"{}\" is reserved and cannot be part of an instance name{}", name,
                   p[k], p[k] == "uploads" ? " (an upload's name cannot be read; use [instance/]blobs/hash/size)" : "");
    }
  }
  return join(p, i);
}

inline std::size_t find_segment(const std::vector<std::string_view>& p, std::string_view a,
                                std::string_view b = {}) {
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == a || (!b.empty() && p[i] == b)) return i;
  }
  return p.size();
}

/// Longest resource name accepted: an instance name, a keyword, a UUID, a hash and a size fit
/// many times over; a longer one is refused before it is split or quoted in a message.
inline constexpr std::size_t kMaxResourceName = 4096;

inline Status check_length(std::string_view name) {
  if (name.size() <= kMaxResourceName) return {};
  return error(Code::kInvalidArgument, "resource name of {} bytes is longer than the {} accepted (it is not shown)",
               name.size(), kMaxResourceName);
}

}  // namespace detail

inline Result<ResourceName> parse_read_resource(std::string_view name) {
  GOREGO_RETURN_IF_ERROR(detail::check_length(name));
  const auto p = detail::split(name);
  const std::size_t i = detail::find_segment(p, "blobs", "compressed-blobs");
  if (i == p.size()) {
    return error(Code::kInvalidArgument,
                 "resource name \"{}\" is not of the form [instance/]blobs/hash/size", name);
  }
  ResourceName out;
  auto instance = detail::instance_of(name, p, i);
  if (!instance) return instance.error();
  out.instance = std::move(*instance);
  auto end = detail::parse_blob_part(name, p, i, out);
  if (!end) return end.error();
  if (*end != p.size()) {
    return error(Code::kInvalidArgument, "resource name \"{}\" has trailing segments after the size", name);
  }
  return out;
}

inline Result<ResourceName> parse_write_resource(std::string_view name) {
  GOREGO_RETURN_IF_ERROR(detail::check_length(name));
  const auto p = detail::split(name);
  const std::size_t i = detail::find_segment(p, "uploads");
  if (i == p.size() || i + 2 >= p.size() ||
      (p[i + 2] != "blobs" && p[i + 2] != "compressed-blobs")) {
    return error(Code::kInvalidArgument,
                 "resource name \"{}\" is not of the form [instance/]uploads/uuid/blobs/hash/size",
                 name);
  }
  ResourceName out;
  auto instance = detail::instance_of(name, p, i);
  if (!instance) return instance.error();
  out.instance = std::move(*instance);
  out.uuid = std::string(p[i + 1]);
  if (out.uuid.empty()) return error(Code::kInvalidArgument, "resource name \"{}\" has an empty upload id", name);
  auto end = detail::parse_blob_part(name, p, i + 2, out);
  if (!end) return end.error();
  return out;  // anything after the size is optional metadata and ignored
}

}  // namespace gorego::reapi
