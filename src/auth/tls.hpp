#pragma once
/// The gRPC listener's TLS: server credentials from `tls.*`, with the certificate files
/// watched by gRPC's FileWatcherCertificateProvider (re-read every `tls.reload_interval`; new
/// handshakes get the new certificate, open connections keep theirs) and, with
/// `tls.client_ca_file`, client certificates required and verified (mTLS). gRPC's TLS stack
/// accepts TLS 1.2 and 1.3 only.

#include <grpcpp/security/server_credentials.h>

#include <memory>

#include <gorego/config/security.hpp>
#include <gorego/core/status.hpp>

namespace gorego::auth {

/// Checks the files once at start (INVALID_ARGUMENT naming the file: unreadable, no PEM
/// certificate, a key that does not match the certificate), then builds the credentials;
/// null when TLS is off (no tls.cert_file).
Result<std::shared_ptr<grpc::ServerCredentials>> server_credentials(const TlsSettings& tls);

}  // namespace gorego::auth
