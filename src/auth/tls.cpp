#include "auth/tls.hpp"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "auth/tls_context.hpp"

namespace gorego::auth {

Result<std::shared_ptr<grpc::ServerCredentials>> server_credentials(const TlsSettings& tls) {
  if (tls.cert_file.empty()) return std::shared_ptr<grpc::ServerCredentials>();
  // gRPC's watcher only logs files it cannot use: check them once, precisely, at start.
  GOREGO_RETURN_IF_ERROR(check_tls_files(tls));
  const auto interval = static_cast<unsigned>(tls.reload_interval.count());
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file.string(), tls.cert_file.string(), tls.client_ca_file.string(), interval);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!tls.client_ca_file.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace gorego::auth
