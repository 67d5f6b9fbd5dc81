// The settings of the upstream (backing) cache: `remote.*` (RemoteSettings).
#include "settings.hpp"

namespace gorego::settings {
namespace {

template <auto Member>
using Remote = Field<&Config::remote, Member>;

/// "" (no upstream), or grpc://HOST:PORT or grpcs://HOST:PORT with a port 1..65535.
Result<std::string> parse_remote_target(std::string_view text) {
  if (text.empty()) return std::string();
  static constexpr std::array<std::string_view, 2> kSchemes{"grpc://", "grpcs://"};
  const auto scheme = std::find_if(kSchemes.begin(), kSchemes.end(),
                                   [&](std::string_view s) { return text.starts_with(s); });
  if (scheme == kSchemes.end()) {
    return invalid(fmt::format("remote.target \"{}\" must start with grpc:// or grpcs://", text));
  }
  GOREGO_RETURN_IF_ERROR(
      check_host_port("remote.target", text, *scheme, text.substr(scheme->size()), 1));
  return std::string(text);
}

/// "" or a '/'-separated path of non-empty segments, none of them a REAPI resource-name
/// keyword (those would make ByteStream resource names ambiguous).
Result<std::string> parse_remote_instance_name(std::string_view text) {
  static constexpr std::array<std::string_view, 7> kReserved{
      "blobs",      "uploads",      "actions",         "actionResults",
      "operations", "capabilities", "compressed-blobs"};
  if (text.empty()) return std::string();
  if (std::any_of(text.begin(), text.end(), is_space_or_control)) {
    return invalid(
        fmt::format("remote.instance_name \"{}\" has a space or a control character", text));
  }
  std::size_t begin = 0;
  while (true) {
    const std::size_t slash = text.find('/', begin);
    const std::string_view segment = text.substr(
        begin, slash == std::string_view::npos ? std::string_view::npos : slash - begin);
    if (segment.empty()) {
      return invalid(fmt::format(
          "remote.instance_name \"{}\" has an empty path segment (a leading, trailing or "
          "doubled '/')",
          text));
    }
    if (std::find(kReserved.begin(), kReserved.end(), segment) != kReserved.end()) {
      return invalid(fmt::format(
          "remote.instance_name \"{}\" has the segment \"{}\", a reserved word of REAPI "
          "resource names",
          text, segment));
    }
    if (slash == std::string_view::npos) break;
    begin = slash + 1;
  }
  return std::string(text);
}

Result<RemoteMode> parse_remote_mode(std::string_view text) {
  return parse_enum<RemoteMode>("remote.mode", text);
}

/// "" (none) or a token of visible ASCII. A secret: messages never quote it.
Result<std::string> parse_bearer_token(std::string_view text) {
  if (text == kRedacted) {
    return invalid(fmt::format(
        "remote.bearer_token is \"{}\", the placeholder --print-config prints for a secret; "
        "give the real token",
        kRedacted));
  }
  const auto bad = std::find_if(text.begin(), text.end(), [](char c) {
    return is_space_or_control(c) || !is_printable_ascii(c);
  });
  if (bad != text.end()) {
    return invalid(fmt::format(
        "remote.bearer_token has a space, a control or a non-ASCII character at position {} "
        "(the token is not shown)",
        bad - text.begin() + 1));
  }
  return std::string(text);
}

/// The name of a "Name: value" header: the text before the first ':'.
std::string_view header_name(std::string_view header) { return header.substr(0, header.find(':')); }

/// "Name: value", the header `what` ("remote.header", "remote.headers[1]"): a name of letters,
/// digits, '-', '_' and '.' (sent lower-cased, as gRPC metadata keys are) not starting with
/// "grpc-", then ':', optional spaces or tabs, and a non-empty value of printable ASCII
/// without trailing whitespace. The value may be a secret (an API key): messages quote the
/// name only, and only once it is known to be a name.
Result<std::string> parse_header(std::string_view what, std::string_view text) {
  if (text.empty()) return invalid(fmt::format("{} is empty; a header is \"Name: value\"", what));
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return invalid(
        fmt::format("{} is not \"Name: value\": it has no ':' (the header is not shown)", what));
  }
  const std::string_view name = text.substr(0, colon);
  if (name.empty()) return invalid(fmt::format("{} has an empty name before the ':'", what));
  const auto bad_name = std::find_if_not(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' || c == '.';
  });
  if (bad_name != name.end()) {
    return invalid(fmt::format(
        "{} has a name with a character other than a letter, a digit, '-', '_' or '.' at "
        "position {} (the header is not shown)",
        what, bad_name - name.begin() + 1));
  }
  if (to_lower(name).starts_with("grpc-")) {
    return invalid(fmt::format("{} name \"{}\" is reserved by gRPC (grpc-*)", what, name));
  }
  std::string_view value = text.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  if (value.empty()) return invalid(fmt::format("{} \"{}\" has an empty value", what, name));
  if (value == kRedacted) {
    return invalid(fmt::format(
        "{} \"{}\" has the value \"{}\", the placeholder --print-config prints for a secret; "
        "give the real value",
        what, name, kRedacted));
  }
  const auto bad_value = std::find_if_not(value.begin(), value.end(), is_printable_ascii);
  if (bad_value != value.end()) {
    return invalid(fmt::format(
        "{} \"{}\" has a control or a non-ASCII character at position {} of its value (the "
        "value is not shown)",
        what, name, bad_value - value.begin() + 1));
  }
  if (value.back() == ' ') {
    return invalid(fmt::format("{} \"{}\" has a value ending in a space", what, name));
  }
  return std::string(text);
}

/// "" (none) or a header as parse_header() reads it.
Result<std::string> parse_remote_header(std::string_view text) {
  if (text.empty()) return std::string();
  return parse_header("remote.header", text);
}

/// Keeps the name of a "Name: value" header, hides the value.
std::string redact_header_value(const std::string& text) {
  if (text.empty()) return text;
  if (text.find(':') == std::string::npos) return std::string(kRedacted);
  return fmt::format("{}: {}", header_name(text), kRedacted);
}

constexpr std::array kSettings{
    scalar<Remote<&RemoteSettings::target>, &parse_remote_target, &format_string>(
        "remote.target", "upstream", "URL",
        "upstream REAPI cache, grpc://HOST:PORT or grpcs://HOST:PORT; empty: none"),
    scalar<Remote<&RemoteSettings::instance_name>, &parse_remote_instance_name, &format_string>(
        "remote.instance_name", "", "NAME", "instance name sent to the upstream"),
    scalar<Remote<&RemoteSettings::timeout>, &parse_positive_duration, &format_duration>(
        "remote.timeout", "", "DURATION", "deadline of each upstream call"),
    scalar<Remote<&RemoteSettings::retries>, &parse_uint_in<0, 10>, &format_uint>(
        "remote.retries", "", "N", "retries of an upstream call that failed transiently, 0..10"),
    scalar<Remote<&RemoteSettings::mode>, &parse_remote_mode, &format_enum<RemoteMode>>(
        "remote.mode", "upstream-mode", "MODE",
        "through: ack an upload once the upstream has it; back: once local, upload later"),
    scalar<Remote<&RemoteSettings::queue_size>, &parse_uint_in<1, 1'000'000>, &format_uint>(
        "remote.queue_size", "", "N", "capacity of the write-back queue (mode back), 1..1000000"),
    scalar<Remote<&RemoteSettings::journal>, &parse_bool, &format_bool>(
        "remote.journal", "", "BOOL",
        "keep the write-back queue (mode back) in a journal in the data dir, replayed at start"),
    scalar<Remote<&RemoteSettings::tls_ca_file>, &parse_string, &format_path>(
        "remote.tls_ca_file", "", "FILE",
        "PEM CA certificates to verify a grpcs:// upstream; empty: the system roots"),
    scalar<Remote<&RemoteSettings::tls_cert_file>, &parse_string, &format_path>(
        "remote.tls_cert_file", "", "FILE",
        "PEM client certificate for a grpcs:// upstream, with remote.tls_key_file"),
    scalar<Remote<&RemoteSettings::tls_key_file>, &parse_string, &format_path>(
        "remote.tls_key_file", "", "FILE", "PEM private key of remote.tls_cert_file"),
    scalar<Remote<&RemoteSettings::bearer_token>, &parse_bearer_token, &format_string, &redact_all>(
        "remote.bearer_token", "", "TOKEN",
        "sent upstream as \"authorization: Bearer TOKEN\"; --print-config "
        "redacts it"),
    scalar<Remote<&RemoteSettings::header>, &parse_remote_header, &format_string,
           &redact_header_value>(
        "remote.header", "", "HEADER",
        "one more header sent upstream, \"Name: value\"; --print-config redacts the value"),
    list<Remote<&RemoteSettings::headers>, &parse_header, &format_string, &redact_header_value>(
        "remote.headers", "upstream-header", "HEADER",
        "more headers sent upstream, \"Name: value\" each; the flag may be repeated; "
        "--print-config redacts the values"),
};

/// The rules between the remote.* settings: the TLS files need grpcs:// and go in pairs; no
/// authorization header next to a bearer token.
Status validate_remote(const Config& config) {
  const RemoteSettings& remote = config.remote;
  const std::array<std::pair<std::string_view, const std::filesystem::path*>, 3> tls_files{{
      {"remote.tls_ca_file", &remote.tls_ca_file},
      {"remote.tls_cert_file", &remote.tls_cert_file},
      {"remote.tls_key_file", &remote.tls_key_file},
  }};
  if (remote.target.starts_with("grpc://")) {
    for (const auto& [key, file] : tls_files) {
      if (file->empty()) continue;
      return invalid(fmt::format("{} \"{}\" needs a grpcs:// remote.target, not \"{}\"", key,
                                 file->string(), remote.target));
    }
  }
  if (remote.tls_cert_file.empty() != remote.tls_key_file.empty()) {
    const bool cert_given = remote.tls_key_file.empty();
    const auto& [key, file] = tls_files[cert_given ? 1 : 2];
    return invalid(fmt::format("{} \"{}\" is set without {}; give both or neither", key,
                               file->string(), tls_files[cert_given ? 2 : 1].first));
  }
  if (!remote.bearer_token.empty()) {
    std::vector<std::pair<std::string, std::string_view>> headers;
    headers.emplace_back("remote.header", remote.header);
    for (std::size_t i = 0; i < remote.headers.size(); ++i) {
      headers.emplace_back(fmt::format("remote.headers[{}]", i), remote.headers[i]);
    }
    for (const auto& [what, header] : headers) {
      if (to_lower(header_name(header)) != "authorization") continue;
      return invalid(fmt::format(
          "{} \"{}\" conflicts with remote.bearer_token, which sends authorization too; set "
          "one of them",
          what, header_name(header)));
    }
  }
  return ok_status();
}

}  // namespace

Area remote_area() { return {kSettings, &validate_remote}; }

}  // namespace gorego::settings
