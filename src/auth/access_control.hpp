#pragma once
/// AccessControl: who a caller is (bearer token, HTTP basic credentials, mTLS certificate)
/// and whether it may do what it asks (Rights), for every listener of the process: the gRPC
/// admission interceptor, the HTTP cache listener and the admin server ask the same object.
///
/// Credentials files (`auth.tokens_file`, `auth.htpasswd_file`) are read at start (an error
/// there stops the start, naming the file and line, never a secret) and re-read by a thread
/// of their own when their size, mtime or inode change; a file that no longer parses keeps
/// the previous contents in force and is logged. Token lookups go through a SHA-256 of the
/// token, so no comparison with a stored secret depends on how many bytes match. Basic
/// credentials are checked with bcrypt once and then remembered, right or wrong (by a SHA-256
/// of the decoded USER:PASSWORD), until the next reload, so bcrypt's cost is paid once per
/// pair, not per call; at most two run at once (more callers get UNAVAILABLE), and an unknown
/// user costs a bcrypt too, so timing does not tell which users exist.
///
/// Thread-safe: every method may be called from any thread.

#include <atomic>
#include <cstdint>
#include <optional>
#include <utility>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include <gorego/config/security.hpp>
#include <gorego/core/files.hpp>
#include <gorego/core/call_context.hpp>
#include <gorego/core/rights.hpp>
#include <gorego/core/status.hpp>

namespace gorego::auth {

/// What a caller presented.
struct Credentials {
  std::string_view authorization;                 ///< the authorization header's value; "" when none
  std::span<const std::string> certificate_names;  ///< CN, then SANs, of a verified client certificate
  /// The request came over the mTLS listener (the gRPC port with tls.client_ca_file), where a
  /// certificate is required and checked against tls.allowed_clients. Plain-HTTP listeners
  /// (the admin port, the HTTP cache) leave it false: their callers authenticate by header.
  bool over_mtls = false;
};

class AccessControl {
 public:
  struct Options {
    AuthSettings auth;
    bool mtls = false;                         ///< client certificates are required and verified
    std::vector<std::string> allowed_clients;  ///< tls.allowed_clients
  };
  struct Stats {
    std::atomic<std::uint64_t> unauthenticated{0}, denied{0}, reloads{0}, reload_errors{0};
  };

  /// Reads the credentials files and starts the reload thread. INVALID_ARGUMENT naming the
  /// file and line of a bad entry (never its secret), NOT_FOUND for a missing file.
  static Result<std::shared_ptr<AccessControl>> open(Options o);
  AccessControl(const AccessControl&) = delete;
  AccessControl& operator=(const AccessControl&) = delete;
  ~AccessControl();

  /// Whether any authentication or rights are configured; when not, everyone may do
  /// everything and callers need not ask.
  [[nodiscard]] bool enabled() const { return enabled_; }

  /// The principal presenting `c`: the anonymous principal without credentials;
  /// UNAUTHENTICATED for an unknown token, wrong basic credentials, an unknown scheme, or
  /// (`over_mtls`) a missing client certificate or one whose names are not in
  /// tls.allowed_clients. A header's principal wins over the certificate's name.
  [[nodiscard]] Result<std::shared_ptr<const Principal>> authenticate(const Credentials& c) const;

  /// authenticate(), then the right: PERMISSION_DENIED naming the principal, the right and
  /// `what` ("ActionCache/UpdateActionResult") when the principal lacks it. Logs each
  /// refusal at warn (at most 20 lines a second; the rest are counted), never a secret.
  [[nodiscard]] Result<std::shared_ptr<const Principal>> admit(const Credentials& c, Right right,
                                                               std::string_view what) const;

  /// Re-reads the credentials files that changed (the reload thread's step; tests call it).
  void reload();

  [[nodiscard]] const Stats& stats() const { return stats_; }

  struct State;
  /// The stamps of the tokens and htpasswd files (nullopt: not configured, or gone).
  using Stamps = std::pair<std::optional<FileStamp>, std::optional<FileStamp>>;

 private:
  explicit AccessControl(Options o);
  void log_refusal(std::string_view what, std::string_view principal, const Status& s) const;

  Options opt_;
  bool enabled_ = false;
  std::atomic<std::shared_ptr<const State>> state_;
  mutable Stats stats_;
  mutable std::atomic<std::int64_t> log_second_{0};
  mutable std::atomic<int> logged_in_second_{0};
  mutable std::atomic<int> bcrypts_{0};
  /// The stamps of the credentials files that last failed to load, so that they are not read
  /// again until they change; the reload thread's alone.
  std::optional<Stamps> failed_;
  std::jthread reloader_;
};

}  // namespace gorego::auth
