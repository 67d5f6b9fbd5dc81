// The settings of TLS on the gRPC listener (`tls.*`, TlsSettings) and of authentication and
// rights (`auth.*`, AuthSettings).
#include <gorego/core/rights.hpp>

#include "settings.hpp"

namespace gorego::settings {
namespace {

template <auto Member>
using Tls = Field<&Config::tls, Member>;
template <auto Member>
using Auth = Field<&Config::auth, Member>;

/// A control character (or DEL); spaces are allowed: a certificate's common name may have them.
bool is_control(char c) { return c != ' ' && is_space_or_control(c); }

/// A client identity to allow: a certificate name, 1..255 characters, no control characters,
/// no leading or trailing space.
Result<std::string> parse_client_name(std::string_view what, std::string_view text) {
  if (text.empty() || text.size() > 255) {
    return invalid(fmt::format("{} \"{}\" must be 1..255 characters", what, text));
  }
  const auto bad = std::find_if(text.begin(), text.end(), is_control);
  if (bad != text.end() || text.front() == ' ' || text.back() == ' ') {
    return invalid(fmt::format("{} {:?} has a control character or a leading or trailing space", what, text));
  }
  return std::string(text);
}

/// A duration of 1s..1d: how often files are checked for changes.
Result<std::chrono::seconds> parse_reload_interval(std::string_view text) {
  auto d = parse_positive_duration(text);
  if (d && *d > std::chrono::hours(24)) {
    return invalid(fmt::format("reload interval \"{}\" must be at most 24h", text));
  }
  return d;
}

/// A principal (or `anonymous`, `authenticated`) and its rights.
Status check_rights_entry(std::string_view key, std::string_view principal, std::string_view rights) {
  if (principal.empty()) return invalid(fmt::format("{} has an empty principal", key));
  const auto bad = std::find_if(principal.begin(), principal.end(), [](char c) { return is_control(c) || c == ':'; });
  if (bad != principal.end() || principal.front() == ' ' || principal.back() == ' ') {
    return invalid(fmt::format("{} principal {:?} has a control character, a ':', or a leading or trailing space",
                               key, principal));
  }
  auto parsed = parse_rights(fmt::format("{}.{}", key, principal), rights);
  if (!parsed) return invalid(parsed.error().message());
  return ok_status();
}

constexpr std::array kSettings{
    scalar<Tls<&TlsSettings::cert_file>, &parse_string, &format_path>(
        "tls.cert_file", "tls-cert", "FILE", "PEM certificate chain: serve gRPC over TLS (with tls.key_file)"),
    scalar<Tls<&TlsSettings::key_file>, &parse_string, &format_path>(
        "tls.key_file", "tls-key", "FILE", "PEM private key of tls.cert_file"),
    scalar<Tls<&TlsSettings::client_ca_file>, &parse_string, &format_path>(
        "tls.client_ca_file", "tls-client-ca", "FILE",
        "PEM CA certificates: require client certificates signed by them (mTLS)"),
    list<Tls<&TlsSettings::allowed_clients>, &parse_client_name, &format_string>(
        "tls.allowed_clients", "", "NAME",
        "with mTLS, the client certificate names (CN or SAN) let in; empty: any of the CA"),
    scalar<Tls<&TlsSettings::reload_interval>, &parse_reload_interval, &format_duration>(
        "tls.reload_interval", "", "DURATION", "how often the certificate files are checked for changes"),
    scalar<Auth<&AuthSettings::tokens_file>, &parse_string, &format_path>(
        "auth.tokens_file", "", "FILE", "bearer tokens, one \"PRINCIPAL TOKEN\" per line; re-read on change"),
    scalar<Auth<&AuthSettings::htpasswd_file>, &parse_string, &format_path>(
        "auth.htpasswd_file", "", "FILE", "USER:BCRYPT-HASH lines for basic authentication; re-read on change"),
    map<Auth<&AuthSettings::rights>, &check_rights_entry>(
        "auth.rights", "", "PRINCIPAL=RIGHTS,...",
        "rights per principal (read, write-cas, write-ac, write, execute, worker, admin, all, none, "
        "joined with '+'); anonymous and authenticated are the defaults"),
    scalar<Auth<&AuthSettings::reload_interval>, &parse_reload_interval, &format_duration>(
        "auth.reload_interval", "", "DURATION", "how often the credentials files are checked for changes"),
};

/// The rules between the tls.* settings: the pair of files, and mTLS needing TLS.
Status validate_security(const Config& config) {
  const TlsSettings& tls = config.tls;
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    const bool cert = !tls.cert_file.empty();
    return invalid(fmt::format("{} \"{}\" is set without {}; give both or neither",
                               cert ? "tls.cert_file" : "tls.key_file",
                               (cert ? tls.cert_file : tls.key_file).string(),
                               cert ? "tls.key_file" : "tls.cert_file"));
  }
  if (!tls.client_ca_file.empty() && tls.cert_file.empty()) {
    return invalid(fmt::format("tls.client_ca_file \"{}\" needs tls.cert_file and tls.key_file (mTLS is TLS)",
                               tls.client_ca_file.string()));
  }
  if (!tls.allowed_clients.empty() && tls.client_ca_file.empty()) {
    return invalid(fmt::format("tls.allowed_clients (\"{}\", ...) needs tls.client_ca_file: without client "
                               "certificates there is no name to allow",
                               tls.allowed_clients.front()));
  }
  return ok_status();
}

}  // namespace

Area security_area() { return {kSettings, &validate_security}; }

}  // namespace gorego::settings
