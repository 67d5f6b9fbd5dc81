#pragma once
/// TlsSettings and AuthSettings: TLS on gorego's own gRPC listener (`tls.*`) and who may do
/// what (`auth.*`). Part of Config; see config.hpp for how settings are read, and
/// docs/operations.md, "Security", for the threat model and recommended setups.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gorego/config/values.hpp>

namespace gorego {

/// TLS of the gRPC listener. Off (plaintext) unless `cert_file` and `key_file` are set. The
/// files are re-read every `reload_interval`, so a rotated certificate (cert-manager) is
/// served to new connections without a restart; connections already open keep theirs.
/// TLS 1.2 is the lowest version accepted.
struct TlsSettings {
  /// `tls.cert_file`: PEM certificate chain of the server; with `tls.key_file`.
  std::filesystem::path cert_file;
  /// `tls.key_file`: PEM private key of `tls.cert_file`.
  std::filesystem::path key_file;
  /// `tls.client_ca_file`: PEM CA certificates; when set, every client must present a
  /// certificate signed by one of them (mTLS), and its identity can be a principal.
  std::filesystem::path client_ca_file;
  /// `tls.allowed_clients`: with mTLS, the client certificate's subject common name or one of
  /// its subject alternative names must be one of these (empty: any certificate of the CA).
  std::vector<std::string> allowed_clients;
  /// `tls.reload_interval`: how often the certificate files are checked for changes.
  std::chrono::seconds reload_interval{60};

  friend bool operator==(const TlsSettings&, const TlsSettings&) = default;
};

/// Authentication and rights. Off (everyone may do everything, as before) unless a
/// credentials file, mTLS or `auth.rights` is set.
///
/// Rights: `read` (CAS and ActionCache reads, FindMissingBlobs, GetTree, Capabilities),
/// `write-cas` (uploads), `write-ac` (UpdateActionResult), `write` (both), `execute`
/// (Execute, WaitExecution, operations), `worker` (connect as a gorego-worker), `admin`
/// (the admin port's metrics and profiles), `all`, `none`; joined with '+': `read+write`.
struct AuthSettings {
  /// `auth.tokens_file`: bearer tokens, one `PRINCIPAL TOKEN` per line ('#' starts a
  /// comment); clients send `authorization: Bearer TOKEN`. Re-read when it changes.
  std::filesystem::path tokens_file;
  /// `auth.htpasswd_file`: `USER:HASH` lines with bcrypt hashes (`htpasswd -B`), for HTTP basic
  /// authentication (`authorization: Basic ...`) over gRPC and HTTP. Re-read when it changes.
  std::filesystem::path htpasswd_file;
  /// `auth.rights`: principal -> rights. Two names are reserved: `anonymous` (callers without
  /// credentials; default `none`) and `authenticated` (any known principal without an entry
  /// of its own; default `read+write-cas`: ActionCache writes need an explicit grant).
  std::map<std::string, std::string> rights;
  /// `auth.reload_interval`: how often the credentials files are checked for changes.
  std::chrono::seconds reload_interval{10};

  friend bool operator==(const AuthSettings&, const AuthSettings&) = default;
};

}  // namespace gorego
