#include "auth/tls.hpp"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace gorego::auth {

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

Result<std::unique_ptr<BIO, BioFree>> open_file(std::string_view key, const std::filesystem::path& p) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_file(p.c_str(), "r"));
  if (!bio) return error(Code::kInvalidArgument, "{} \"{}\" cannot be read", key, p.string());
  return bio;
}

Result<std::unique_ptr<X509, X509Free>> first_certificate(std::string_view key, const std::filesystem::path& p) {
  auto bio = open_file(key, p);
  if (!bio) return bio.error();
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio->get(), nullptr, nullptr, nullptr));
  if (!cert) return error(Code::kInvalidArgument, "{} \"{}\" holds no PEM certificate", key, p.string());
  return cert;
}

}  // namespace

Result<std::shared_ptr<grpc::ServerCredentials>> server_credentials(const TlsSettings& tls) {
  if (tls.cert_file.empty()) return std::shared_ptr<grpc::ServerCredentials>();
  auto cert = first_certificate("tls.cert_file", tls.cert_file);
  if (!cert) return cert.error();
  auto key_bio = open_file("tls.key_file", tls.key_file);
  if (!key_bio) return key_bio.error();
  std::unique_ptr<EVP_PKEY, KeyFree> key(PEM_read_bio_PrivateKey(key_bio->get(), nullptr, nullptr, nullptr));
  if (!key) {
    return error(Code::kInvalidArgument, "tls.key_file \"{}\" holds no PEM private key (or an encrypted one)",
                 tls.key_file.string());
  }
  if (X509_check_private_key(cert->get(), key.get()) != 1) {
    return error(Code::kInvalidArgument, "tls.key_file \"{}\" is not the key of tls.cert_file \"{}\"",
                 tls.key_file.string(), tls.cert_file.string());
  }
  if (!tls.client_ca_file.empty()) {
    auto ca = first_certificate("tls.client_ca_file", tls.client_ca_file);
    if (!ca) return ca.error();
  }
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
