#include "auth/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <fmt/format.h>

#include <gorego/core/log.hpp>
#include <gorego/core/stop.hpp>

namespace gorego::auth {

namespace {

struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Result<std::shared_ptr<SSL_CTX>> build(const TlsSettings& t) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), CtxFree{});
  if (!ctx) return error(Code::kInternal, "cannot make a TLS context: {}", openssl_error());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), t.cert_file.c_str()) != 1) {
    return error(Code::kInvalidArgument, "tls.cert_file \"{}\": {}", t.cert_file.string(), openssl_error());
  }
  // OpenSSL checks the key against the certificate as it loads it.
  const bool loaded = SSL_CTX_use_PrivateKey_file(ctx.get(), t.key_file.c_str(), SSL_FILETYPE_PEM) == 1;
  if (!loaded && ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
    return error(Code::kInvalidArgument, "tls.key_file \"{}\": {}", t.key_file.string(), openssl_error());
  }
  if (!loaded || SSL_CTX_check_private_key(ctx.get()) != 1) {
    ERR_clear_error();
    return error(Code::kInvalidArgument, "tls.key_file \"{}\" is not the key of tls.cert_file \"{}\"",
                 t.key_file.string(), t.cert_file.string());
  }
  if (!t.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), t.client_ca_file.c_str(), nullptr) != 1) {
      return error(Code::kInvalidArgument, "tls.client_ca_file \"{}\": {}", t.client_ca_file.string(),
                   openssl_error());
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return ctx;
}

}  // namespace

Status check_tls_files(const TlsSettings& tls) {
  if (tls.cert_file.empty()) return {};
  auto ctx = build(tls);
  return ctx ? Status() : ctx.error();
}

ServerTlsContext::Stamps ServerTlsContext::stamps() const {
  return {stamp_of(tls_.cert_file), stamp_of(tls_.key_file),
          tls_.client_ca_file.empty() ? std::nullopt : stamp_of(tls_.client_ca_file)};
}

Result<std::shared_ptr<ServerTlsContext>> ServerTlsContext::open(const TlsSettings& tls) {
  std::shared_ptr<ServerTlsContext> c(new ServerTlsContext(tls));
  c->stamps_ = c->stamps();
  auto ctx = build(tls);
  if (!ctx) return ctx.error();
  c->ctx_.store(std::move(*ctx));
  c->reloader_ = std::jthread([raw = c.get()](std::stop_token st) {
    while (!sleep_unless_stopped(st, raw->tls_.reload_interval)) raw->reload();
  });
  return c;
}

ServerTlsContext::~ServerTlsContext() {
  if (reloader_.joinable()) {
    reloader_.request_stop();
    reloader_.join();
  }
}

void ServerTlsContext::reload() {
  const Stamps now = stamps();
  if (now == stamps_) return;
  auto ctx = build(tls_);
  if (!ctx) {
    // Perhaps caught between the certificate and the key being replaced: the next interval
    // tries again, since the stamp is not taken.
    log::warn("HTTP TLS certificate not reloaded; the previous one stays in force", {{"error", ctx.error().message()}});
    return;
  }
  stamps_ = now;
  ctx_.store(std::move(*ctx));
  log::info("HTTP TLS certificate reloaded", {{"cert_file", tls_.cert_file.string()}});
}

std::vector<std::string> peer_certificate_names(SSL* ssl) {
  std::vector<std::string> out;
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return out;
  char cn[256] = {};
  // The common name first, empty when there is none, as gRPC reports it (AccessControl skips it).
  out.emplace_back(X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0 ? cn : "");
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type == GEN_DNS) {
        const auto* s = n->d.dNSName;
        out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<std::size_t>(ASN1_STRING_length(s)));
      } else if (n->type == GEN_EMAIL || n->type == GEN_URI) {  // as gRPC reports them (SPIFFE IDs)
        const auto* v = n->type == GEN_EMAIL ? n->d.rfc822Name : n->d.uniformResourceIdentifier;
        out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(v)), static_cast<std::size_t>(ASN1_STRING_length(v)));
      } else if (n->type == GEN_IPADD && (n->d.iPAddress->length == 4 || n->d.iPAddress->length == 16)) {
        char text[INET6_ADDRSTRLEN] = {};
        const int family = n->d.iPAddress->length == 4 ? AF_INET : AF_INET6;
        if (inet_ntop(family, n->d.iPAddress->data, text, sizeof text) != nullptr) out.emplace_back(text);
      }
    }
    GENERAL_NAMES_free(sans);
  }
  return out;
}

}  // namespace gorego::auth
