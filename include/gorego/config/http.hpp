#pragma once
/// HttpSettings: the HTTP cache protocol listener (`http.*`), off unless `http.addr` is
/// set. Part of Config; see config.hpp for how settings are read.

#include <cstdint>
#include <string>

#include <gorego/config/values.hpp>

namespace gorego {

/// The settings of the HTTP cache listener (bazel-remote's and Bazel's `--remote_cache=
/// http://` protocol). A plain aggregate holding the embedded defaults; the comment of each
/// field gives its YAML key and flag.
struct HttpSettings {
  /// `http.addr`, `--http-addr`: HOST:PORT of the listener; "" (the default) turns it off;
  /// port 0 picks a free port.
  std::string addr;
  /// `http.max_connections`: connections served at once (1..4096), one thread each; a
  /// connection beyond it is answered 503 and closed.
  std::uint32_t max_connections = 256;
  /// `http.max_body`: the largest request body accepted, a SIZE (1KiB..1TiB); larger
  /// uploads are answered 413.
  std::uint64_t max_body_bytes = std::uint64_t{4} << 30;

  friend bool operator==(const HttpSettings&, const HttpSettings&) = default;
};

}  // namespace gorego
