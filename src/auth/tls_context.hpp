#pragma once
/// ServerTlsContext: TLS for gorego's own HTTP listener (the HTTP cache protocol), from the
/// same `tls.*` files as the gRPC port: an OpenSSL SSL_CTX (TLS 1.2 and 1.3 only; with
/// `tls.client_ca_file`, client certificates required and verified) rebuilt by a thread of its
/// own when a file changes, every `tls.reload_interval`. A connection takes the context that
/// is current when it is accepted, so new connections get a rotated certificate and open ones
/// keep theirs. A rebuild that fails (a half-written file, a key not matching) keeps the
/// previous context and is logged.
///
/// Thread-safe.

#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gorego/config/security.hpp>
#include <gorego/core/files.hpp>
#include <gorego/core/status.hpp>

namespace gorego::auth {

class ServerTlsContext {
 public:
  /// INVALID_ARGUMENT naming the file when the files do not make a context.
  static Result<std::shared_ptr<ServerTlsContext>> open(const TlsSettings& tls);
  ServerTlsContext(const ServerTlsContext&) = delete;
  ServerTlsContext& operator=(const ServerTlsContext&) = delete;
  ~ServerTlsContext();

  /// The context for a new connection.
  [[nodiscard]] std::shared_ptr<SSL_CTX> current() const { return ctx_.load(); }
  [[nodiscard]] bool mtls() const { return !tls_.client_ca_file.empty(); }

  /// Checks the files and rebuilds the context when one changed (the thread's step).
  void reload();

 private:
  /// Of the certificate, the key and the client CA (nullopt: not configured, or gone).
  using Stamps = std::array<std::optional<FileStamp>, 3>;
  explicit ServerTlsContext(TlsSettings tls) : tls_(std::move(tls)) {}
  [[nodiscard]] Stamps stamps() const;
  TlsSettings tls_;
  std::atomic<std::shared_ptr<SSL_CTX>> ctx_;
  Stamps stamps_;  // of the files the current context was built from (reload thread only)
  std::jthread reloader_;
};

/// Whether the `tls.*` files make a server TLS context (OK when TLS is off):
/// INVALID_ARGUMENT naming the file (unreadable, no certificate, a key that is not the
/// certificate's). The gRPC listener checks its files with this at start.
[[nodiscard]] Status check_tls_files(const TlsSettings& tls);

/// The subject common name, then the DNS and IP subject alternative names, of the verified
/// peer certificate of `ssl` (empty without one).
[[nodiscard]] std::vector<std::string> peer_certificate_names(SSL* ssl);

}  // namespace gorego::auth
