#pragma once
/// RemoteSettings: the upstream (backing) REAPI cache (`remote.*`), and the enumeration
/// RemoteMode. Part of Config; see config.hpp for how settings are read. The remote tier is
/// described in docs/architecture.md.

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gorego/config/enum_names.hpp>

namespace gorego {

/// `remote.mode`: when an upload is acknowledged to the client.
enum class RemoteMode : std::uint8_t {
  kThrough,  ///< "through": once the upstream accepted it
  kBack,     ///< "back": once stored locally; uploaded in the background from a bounded queue
};

template <>
struct EnumNames<RemoteMode> {
  static constexpr std::array<std::pair<RemoteMode, std::string_view>, 2> kNames{{
      {RemoteMode::kThrough, "through"},
      {RemoteMode::kBack, "back"},
  }};
};

/// The settings of the remote tier. A plain aggregate holding the embedded defaults; the
/// comment of each field gives its YAML key and flag. Every field but `target` is ignored
/// while `target` is empty.
struct RemoteSettings {
  /// `remote.target`, `--upstream`: the upstream cache, "" (none), `grpc://HOST:PORT` or
  /// `grpcs://HOST:PORT`; HOST is a name, an IPv4 address or an [IPv6] address, PORT 1..65535.
  std::string target;
  /// `remote.instance_name`: the instance name sent upstream; "" or a '/'-separated path whose
  /// segments are non-empty and none of the REAPI keywords ("blobs", "uploads", ...).
  std::string instance_name;
  /// `remote.timeout`: the deadline of each upstream call (a duration, > 0).
  std::chrono::seconds timeout{60};
  /// `remote.retries`: how often a transiently failed upstream call is retried, 0..10.
  std::uint32_t retries = 3;
  /// `remote.mode`, `--upstream-mode`: when an upload is acknowledged.
  RemoteMode mode = RemoteMode::kThrough;
  /// `remote.queue_size`: capacity of the write-back queue of `remote.mode` "back",
  /// 1..1000000.
  std::uint32_t queue_size = 10000;
  /// `remote.journal`: keep the write-back queue in `<data_dir>/write-back.journal`, synced
  /// before an upload is acknowledged (with `storage.fsync`), so acknowledged uploads reach
  /// the upstream after a crash or a stop that ran out of time.
  bool journal = true;
  /// `remote.tls_ca_file`: PEM roots to verify a grpcs:// upstream with; empty: the system
  /// roots. Not checked for existence here.
  std::filesystem::path tls_ca_file;
  /// `remote.tls_cert_file`: PEM client certificate for a grpcs:// upstream (mutual TLS);
  /// given together with `remote.tls_key_file` or not at all.
  std::filesystem::path tls_cert_file;
  /// `remote.tls_key_file`: PEM private key of `remote.tls_cert_file`.
  std::filesystem::path tls_key_file;
  /// `remote.bearer_token`: when set, every upstream call carries `authorization: Bearer
  /// <token>`. A secret: to_yaml() prints "<redacted>" for it and no error message quotes it;
  /// visible ASCII only, and the literal "<redacted>" is rejected.
  std::string bearer_token;
  /// `remote.header`: one extra request header sent upstream, "Name: value" (e.g.
  /// "x-api-key: ..."). The name is an HTTP token of letters, digits, '-', '_' and '.', is
  /// sent lower-cased (gRPC metadata keys are), must not start with "grpc-" and must not be
  /// "authorization" when `remote.bearer_token` is set. The value is treated as a secret like
  /// the bearer token: to_yaml() prints "Name: <redacted>" and errors do not quote it.
  std::string header;
  /// `remote.headers`, `--upstream-header` (repeatable): more "Name: value" headers sent
  /// upstream on every call, after `header`; each one follows the rules of `header` (and
  /// none may be empty). Values are secrets as `header`'s are.
  std::vector<std::string> headers;

  friend bool operator==(const RemoteSettings&, const RemoteSettings&) = default;
};

}  // namespace gorego
