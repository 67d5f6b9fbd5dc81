#include <gorego/config/config.hpp>

#include <unistd.h>  // environ

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <system_error>
#include <type_traits>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace gorego {
namespace {

constexpr std::string_view kEnvPrefix = "GOREGO_";
constexpr std::string_view kConfigEnv = "GOREGO_CONFIG";
/// What to_yaml() prints for a secret; the parsers of secrets reject it, so a printed config
/// with a secret in it cannot be loaded back by mistake.
constexpr std::string_view kRedacted = "<redacted>";

__extension__ using Uint128 = unsigned __int128;  // exact size arithmetic; GCC and Clang

Status invalid(std::string message) { return Status(Code::kInvalidArgument, std::move(message)); }

/// Prefixes a parser's message with where the value came from: "flag --max-size: size ...".
Status in_context(const Status& status, std::string_view context) {
  return Status(status.code(), fmt::format("{}: {}", context, status.message()));
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::size_t count_digits(std::string_view text) {
  return static_cast<std::size_t>(std::find_if_not(text.begin(), text.end(), is_digit) -
                                  text.begin());
}

std::string to_lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// ---- value parsers: each names the value in its message and leaves the key to the caller ----

Result<bool> parse_bool(std::string_view text) {
  const std::string word = to_lower(text);
  if (word == "true" || word == "yes" || word == "on" || word == "1") return true;
  if (word == "false" || word == "no" || word == "off" || word == "0") return false;
  return invalid(fmt::format("\"{}\" is not a boolean (expected true or false)", text));
}

template <std::uint64_t Min, std::uint64_t Max>
Result<std::uint64_t> parse_uint_in(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || !is_digit(text.front()) || end != text.data() + text.size()) {
    return invalid(fmt::format("\"{}\" is not a whole number", text));
  }
  const bool below = [&] {
    if constexpr (Min > 0) return value < Min;
    return false;
  }();
  if (ec == std::errc::result_out_of_range || below || value > Max) {
    return invalid(fmt::format("\"{}\" is out of range {}..{}", text, Min, Max));
  }
  return value;
}

Result<std::uint64_t> parse_max_size(std::string_view text) {
  auto size = parse_size(text);
  if (size && *size == 0) return invalid(fmt::format("size \"{}\" must be greater than 0", text));
  return size;
}

Result<std::uint64_t> parse_batch_size(std::string_view text) {
  constexpr std::uint64_t kMin = 64 * kKiB;
  constexpr std::uint64_t kMax = 64 * kMiB;
  auto size = parse_size(text);
  if (size && (*size < kMin || *size > kMax)) {
    return invalid(fmt::format("size \"{}\" is out of range {}..{}", text, format_size(kMin),
                               format_size(kMax)));
  }
  return size;
}

Result<std::uint64_t> parse_block_size(std::string_view text) {
  constexpr std::uint64_t kMax = kMiB;
  auto size = parse_size(text);
  if (size && (*size == 0 || *size > kMax || (*size & (*size - 1)) != 0)) {
    return invalid(
        fmt::format("size \"{}\" is not a power of two in 1..{}", text, format_size(kMax)));
  }
  return size;
}

Result<std::chrono::seconds> parse_positive_duration(std::string_view text) {
  auto duration = parse_duration(text);
  if (duration && duration->count() == 0) {
    return invalid(fmt::format("duration \"{}\" must be greater than 0", text));
  }
  return duration;
}

template <std::size_t N>
Result<std::string> parse_one_of(std::string_view what, std::string_view text,
                                 const std::array<std::string_view, N>& names) {
  if (std::find(names.begin(), names.end(), text) != names.end()) return std::string(text);
  return invalid(fmt::format("{} \"{}\" is not one of: {}", what, text, fmt::join(names, ", ")));
}

Result<std::string> parse_eviction(std::string_view text) {
  static constexpr std::array<std::string_view, 3> kNames{"sampled-lru", "lru", "atime"};
  return parse_one_of("eviction", text, kNames);
}

Result<std::string> parse_verify_reads(std::string_view text) {
  static constexpr std::array<std::string_view, 2> kNames{"first", "always"};
  return parse_one_of("storage.verify_reads", text, kNames);
}

Result<std::string> parse_log_level(std::string_view text) {
  static constexpr std::array<std::string_view, 4> kNames{"debug", "info", "warn", "error"};
  return parse_one_of("log level", text, kNames);
}

Result<std::string> parse_data_dir(std::string_view text) {
  if (text.empty()) return invalid("data directory \"\" is empty");
  return std::string(text);
}

/// Checks `address`, the HOST:PORT part of the value `text` of the setting `what` (`scheme`
/// is what precedes it in `text`, for the messages): an IPv6 host in brackets ("[::1]:50051"),
/// a port in min_port..65535.
Status check_host_port(std::string_view what, std::string_view text, std::string_view scheme,
                       std::string_view address, unsigned min_port) {
  const auto malformed = [&] {
    return invalid(fmt::format("{} \"{}\" is not {}HOST:PORT", what, text, scheme));
  };
  std::string_view host;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    const std::size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return malformed();
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
    const bool ipv6_chars = std::all_of(host.begin(), host.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.' || c == '%' ||
             c == '_' || c == '-';
    });
    if (host.find(':') == std::string_view::npos || !ipv6_chars) {
      return invalid(
          fmt::format("{} \"{}\" has \"{}\" in brackets, not an IPv6 address", what, text, host));
    }
  } else {
    const std::size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return malformed();
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return invalid(fmt::format("{} \"{}\" has an IPv6 host without brackets; write {}[HOST]:PORT",
                                 what, text, scheme));
    }
    const bool host_chars = std::all_of(host.begin(), host.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_';
    });
    if (host.empty() || !host_chars) {
      return invalid(fmt::format("{} \"{}\" has an invalid host \"{}\"", what, text, host));
    }
  }
  if (port.empty() || port.size() > 5 || count_digits(port) != port.size()) {
    return invalid(
        fmt::format("{} \"{}\" has a port \"{}\" that is not a number", what, text, port));
  }
  unsigned value = 0;
  std::from_chars(port.data(), port.data() + port.size(), value);
  if (value < min_port || value > 65535) {
    return invalid(
        fmt::format("{} \"{}\" has port {} outside {}..65535", what, text, value, min_port));
  }
  return ok_status();
}

/// HOST:PORT with an IPv6 host in brackets ("[::1]:50051"); port 0..65535 (0: pick one).
Result<std::string> parse_listen_addr(std::string_view text) {
  GOREGO_RETURN_IF_ERROR(check_host_port("listen address", text, "", text, 0));
  return std::string(text);
}

/// "" (no admin server) or HOST:PORT as for listen_addr.
Result<std::string> parse_metrics_addr(std::string_view text) {
  if (text.empty()) return std::string();
  GOREGO_RETURN_IF_ERROR(check_host_port("metrics address", text, "", text, 0));
  return std::string(text);
}

/// "" (off), "stdout", or an OTLP/gRPC receiver: HOST:PORT or grpc://HOST:PORT.
Result<std::string> parse_tracing_endpoint(std::string_view text) {
  if (text.empty() || text == "stdout") return std::string(text);
  if (text.starts_with("grpc://")) {
    GOREGO_RETURN_IF_ERROR(check_host_port("tracing endpoint", text, "grpc://", text.substr(7), 1));
    return std::string(text);
  }
  if (text.find("://") != std::string_view::npos) {
    return invalid(fmt::format(
        "tracing endpoint \"{}\" must be stdout, HOST:PORT or grpc://HOST:PORT (OTLP over gRPC, plaintext)", text));
  }
  GOREGO_RETURN_IF_ERROR(check_host_port("tracing endpoint", text, "", text, 1));
  return std::string(text);
}

/// A fraction in 0..1 ("0.1", "1", "0").
Result<double> parse_sample_rate(std::string_view text) {
  double v = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || !(v >= 0.0 && v <= 1.0)) {
    return invalid(fmt::format("sample rate \"{}\" is not a number in 0..1", text));
  }
  return v;
}

std::string format_double(double v) { return fmt::format("{}", v); }

/// A non-empty name of printable ASCII without spaces.
Result<std::string> parse_service_name(std::string_view text) {
  const bool ok = !text.empty() && text.size() <= 128 && std::all_of(text.begin(), text.end(), [](char c) {
    return c > ' ' && c < 127;
  });
  if (!ok) return invalid(fmt::format("service name \"{}\" must be 1..128 printable characters without spaces", text));
  return std::string(text);
}

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

/// A space or a control character (or DEL): never part of a name, a token or a path segment.
bool is_space_or_control(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte <= 0x20 || byte == 0x7f;
}

/// Printable ASCII, the characters gRPC allows in a text metadata value.
bool is_printable_ascii(char c) { return c >= 0x20 && c <= 0x7e; }

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

Result<std::string> parse_remote_mode(std::string_view text) {
  static constexpr std::array<std::string_view, 2> kNames{"through", "back"};
  return parse_one_of("remote.mode", text, kNames);
}

/// Any path, empty meaning "not given"; whether the file exists is checked where it is read.
Result<std::string> parse_optional_path(std::string_view text) { return std::string(text); }

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

/// "" (none) or "Name: value": a name of letters, digits, '-', '_' and '.' (sent lower-cased,
/// as gRPC metadata keys are) not starting with "grpc-", then ':', optional spaces or tabs,
/// and a non-empty value of printable ASCII without trailing whitespace. The value may be a
/// secret (an API key): messages quote the name only, and only once it is known to be a name.
Result<std::string> parse_remote_header(std::string_view text) {
  if (text.empty()) return std::string();
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return invalid("remote.header is not \"Name: value\": it has no ':' (the header is not shown)");
  }
  const std::string_view name = text.substr(0, colon);
  if (name.empty()) return invalid("remote.header has an empty name before the ':'");
  const auto bad_name = std::find_if_not(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' || c == '.';
  });
  if (bad_name != name.end()) {
    return invalid(fmt::format(
        "remote.header has a name with a character other than a letter, a digit, '-', '_' or "
        "'.' at position {} (the header is not shown)",
        bad_name - name.begin() + 1));
  }
  if (to_lower(name).starts_with("grpc-")) {
    return invalid(fmt::format("remote.header name \"{}\" is reserved by gRPC (grpc-*)", name));
  }
  std::string_view value = text.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  if (value.empty()) {
    return invalid(fmt::format("remote.header \"{}\" has an empty value", name));
  }
  if (value == kRedacted) {
    return invalid(fmt::format(
        "remote.header \"{}\" has the value \"{}\", the placeholder --print-config prints for a "
        "secret; give the real value",
        name, kRedacted));
  }
  const auto bad_value = std::find_if_not(value.begin(), value.end(), is_printable_ascii);
  if (bad_value != value.end()) {
    return invalid(fmt::format(
        "remote.header \"{}\" has a control or a non-ASCII character at position {} of its "
        "value (the value is not shown)",
        name, bad_value - value.begin() + 1));
  }
  if (value.back() == ' ') {
    return invalid(fmt::format("remote.header \"{}\" has a value ending in a space", name));
  }
  return std::string(text);
}

// ---- formatters: the inverse of the parsers, used by to_yaml() and validate() ----

std::string format_bool(bool value) { return value ? "true" : "false"; }
std::string format_uint(std::uint64_t value) { return fmt::format("{}", value); }
std::string format_string(const std::string& value) { return value; }
std::string format_path(const std::filesystem::path& value) { return value.string(); }

// ---- redactors: what to_yaml() and --help show of a secret instead of its text ----

std::string redact_all(const std::string& text) {
  return text.empty() ? text : std::string(kRedacted);
}

/// Keeps the name of a "Name: value" header, hides the value.
std::string redact_header_value(const std::string& text) {
  if (text.empty()) return text;
  if (text.find(':') == std::string::npos) return std::string(kRedacted);
  return fmt::format("{}: {}", header_name(text), kRedacted);
}

// ---- the settings table ----

/// One setting: its YAML key (the environment variable follows from it), its optional flag,
/// and how to parse text into the Config and render it back.
struct Setting {
  std::string_view key;         ///< YAML key path: "storage.fsync"
  std::string_view flag;        ///< long flag without "--", empty when there is none
  std::string_view value_name;  ///< placeholder in --help: "SIZE"
  std::string_view help;
  Status (*assign)(Config&, std::string_view);
  std::string (*render)(const Config&);  ///< the exact text; parsing it gives the field back
  std::string (*show)(const Config&);    ///< what to_yaml() and --help print: secrets redacted
};

template <auto Member, auto Parse>
Status assign(Config& config, std::string_view text) {
  auto parsed = Parse(text);
  if (!parsed) return parsed.error();
  using Field = std::remove_reference_t<decltype(config.*Member)>;
  config.*Member = static_cast<Field>(*std::move(parsed));
  return ok_status();
}

template <auto Member, auto Format>
std::string render(const Config& config) {
  return Format(config.*Member);
}

template <auto Member, auto Format, auto Redact>
std::string render_redacted(const Config& config) {
  return Redact(Format(config.*Member));
}

/// A setting; with a Redact function it is a secret, shown only through Redact.
template <auto Member, auto Parse, auto Format, auto Redact = nullptr>
constexpr Setting setting(std::string_view key, std::string_view flag, std::string_view value_name,
                          std::string_view help) {
  std::string (*show)(const Config&) = &render<Member, Format>;
  if constexpr (!std::is_null_pointer_v<decltype(Redact)>) {
    show = &render_redacted<Member, Format, Redact>;
  }
  return {key, flag, value_name, help, &assign<Member, Parse>, &render<Member, Format>, show};
}

constexpr std::array kSettings{
    setting<&Config::listen_addr, &parse_listen_addr, &format_string>(
        "listen_addr", "listen", "HOST:PORT",
        "address to serve gRPC on; IPv6 as [::1]:50051, port 0 picks a free one"),
    setting<&Config::data_dir, &parse_data_dir, &format_path>(
        "data_dir", "data-dir", "DIR", "directory holding the CAS and the action cache"),
    setting<&Config::max_size_bytes, &parse_max_size, &format_size>(
        "max_size", "max-size", "SIZE", "size limit of the store, e.g. 10GiB, 500GB"),
    setting<&Config::eviction, &parse_eviction, &format_string>("eviction", "eviction", "NAME",
                                                                "eviction policy: sampled-lru, lru or atime"),
    setting<&Config::fsync, &parse_bool, &format_bool>("storage.fsync", "fsync", "BOOL",
                                                       "fsync each blob before acknowledging it"),
    setting<&Config::janitor_interval, &parse_positive_duration, &format_duration>(
        "storage.janitor_interval", "", "DURATION",
        "how often the atime janitor scans (eviction: atime): 60s, 5m, 1h"),
    setting<&Config::verify_reads, &parse_verify_reads, &format_string>(
        "storage.verify_reads", "", "WHEN",
        "re-hash full reads: first (once per blob after start) or always"),
    setting<&Config::memory_cache_bytes, &parse_size, &format_size>(
        "storage.memory_cache", "memory-cache", "SIZE",
        "memory for small verified blobs served without a disk read; 0 disables"),
    setting<&Config::ac_memory_bytes, &parse_size, &format_size>(
        "storage.ac_memory", "", "SIZE",
        "memory for ActionCache entries served without a disk read; 0 disables"),
    setting<&Config::force_update_atime, &parse_bool, &format_bool>(
        "storage.force_update_atime", "", "BOOL",
        "touch a blob's atime on every read (for relatime/noatime mounts)"),
    setting<&Config::block_size, &parse_block_size, &format_size>(
        "storage.block_size", "", "SIZE",
        "accounting granularity of the size limit, a power of two up to 1MiB"),
    setting<&Config::io_threads, &parse_uint_in<1, 1024>, &format_uint>(
        "server.io_threads", "io-threads", "N", "threads doing disk I/O, 1..1024"),
    setting<&Config::io_queue, &parse_uint_in<16, 1'000'000>, &format_uint>(
        "server.io_queue", "", "N", "requests waiting for an I/O thread before more are refused busy, 16..1000000"),
    setting<&Config::max_batch_total_size_bytes, &parse_batch_size, &format_size>(
        "server.max_batch_size", "", "SIZE", "largest total size of a batch request, 64KiB..64MiB"),
    setting<&Config::max_blob_size_bytes, &parse_size, &format_size>(
        "server.max_blob_size", "", "SIZE", "largest blob accepted; 0: bounded only by max_size"),
    setting<&Config::shutdown_grace, &parse_duration, &format_duration>(
        "server.shutdown_grace", "", "DURATION",
        "how long in-flight calls may finish after SIGTERM"),
    setting<&Config::log_level, &parse_log_level, &format_string>(
        "telemetry.log_level", "log-level", "LEVEL", "debug, info, warn or error"),
    setting<&Config::metrics_addr, &parse_metrics_addr, &format_string>(
        "telemetry.metrics_addr", "metrics-addr", "HOST:PORT",
        "admin HTTP server: /metrics, /health/{live,ready,startup}, /debug/pprof/; empty: off"),
    setting<&Config::tracing_endpoint, &parse_tracing_endpoint, &format_string>(
        "telemetry.tracing_endpoint", "tracing-endpoint", "ENDPOINT",
        "span export: OTLP/gRPC HOST:PORT or grpc://HOST:PORT, or stdout; empty: tracing off"),
    setting<&Config::sample_rate, &parse_sample_rate, &format_double>(
        "telemetry.sample_rate", "", "RATE",
        "fraction of new traces recorded, 0..1; incoming traceparent flags are followed"),
    setting<&Config::service_name, &parse_service_name, &format_string>(
        "telemetry.service_name", "", "NAME", "service.name resource attribute of exported spans"),
    setting<&Config::remote_target, &parse_remote_target, &format_string>(
        "remote.target", "upstream", "URL",
        "upstream REAPI cache, grpc://HOST:PORT or grpcs://HOST:PORT; empty: none"),
    setting<&Config::remote_instance_name, &parse_remote_instance_name, &format_string>(
        "remote.instance_name", "", "NAME", "instance name sent to the upstream"),
    setting<&Config::remote_timeout, &parse_positive_duration, &format_duration>(
        "remote.timeout", "", "DURATION", "deadline of each upstream call"),
    setting<&Config::remote_retries, &parse_uint_in<0, 10>, &format_uint>(
        "remote.retries", "", "N", "retries of an upstream call that failed transiently, 0..10"),
    setting<&Config::remote_mode, &parse_remote_mode, &format_string>(
        "remote.mode", "upstream-mode", "MODE",
        "through: ack an upload once the upstream has it; back: once local, upload later"),
    setting<&Config::remote_queue_size, &parse_uint_in<1, 1'000'000>, &format_uint>(
        "remote.queue_size", "", "N", "capacity of the write-back queue (mode back), 1..1000000"),
    setting<&Config::remote_tls_ca_file, &parse_optional_path, &format_path>(
        "remote.tls_ca_file", "", "FILE",
        "PEM CA certificates to verify a grpcs:// upstream; empty: the system roots"),
    setting<&Config::remote_tls_cert_file, &parse_optional_path, &format_path>(
        "remote.tls_cert_file", "", "FILE",
        "PEM client certificate for a grpcs:// upstream, with remote.tls_key_file"),
    setting<&Config::remote_tls_key_file, &parse_optional_path, &format_path>(
        "remote.tls_key_file", "", "FILE", "PEM private key of remote.tls_cert_file"),
    setting<&Config::remote_bearer_token, &parse_bearer_token, &format_string, &redact_all>(
        "remote.bearer_token", "", "TOKEN",
        "sent upstream as \"authorization: Bearer TOKEN\"; --print-config redacts it"),
    setting<&Config::remote_header, &parse_remote_header, &format_string, &redact_header_value>(
        "remote.header", "", "HEADER",
        "one more header sent upstream, \"Name: value\"; --print-config redacts the value"),
};

constexpr std::string_view section_of(std::string_view key) {
  const std::size_t dot = key.rfind('.');
  return dot == std::string_view::npos ? std::string_view{} : key.substr(0, dot);
}

constexpr std::string_view leaf_of(std::string_view key) {
  const std::size_t dot = key.rfind('.');
  return dot == std::string_view::npos ? key : key.substr(dot + 1);
}

/// to_yaml() writes one mapping per section, so the keys of a section must be adjacent and
/// the top-level keys come first.
constexpr bool sections_are_grouped() {
  for (std::size_t i = 1; i < kSettings.size(); ++i) {
    const std::string_view section = section_of(kSettings[i].key);
    if (section == section_of(kSettings[i - 1].key)) continue;
    if (section.empty() || section.find('.') != std::string_view::npos) return false;
    for (std::size_t j = 0; j + 1 < i; ++j) {
      if (section_of(kSettings[j].key) == section) return false;
    }
  }
  return true;
}
static_assert(sections_are_grouped());

std::string env_name(std::string_view key) {
  std::string name(kEnvPrefix);
  for (const char c : key) {
    name += c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

const Setting* find_by_key(std::string_view key) {
  for (const Setting& s : kSettings) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

const Setting* find_by_env(std::string_view name) {
  for (const Setting& s : kSettings) {
    if (env_name(s.key) == name) return &s;
  }
  return nullptr;
}

bool is_section(std::string_view path) {
  return std::any_of(kSettings.begin(), kSettings.end(), [&](const Setting& s) {
    return s.key.size() > path.size() && s.key.starts_with(path) && s.key[path.size()] == '.';
  });
}

// ---- YAML file ----

std::string_view node_kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence: return "a sequence";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Null: return "empty";
    case YAML::NodeType::Scalar: return "a single value";
    case YAML::NodeType::Undefined: break;
  }
  return "undefined";
}

std::string position(const YAML::Mark& mark) {
  if (mark.is_null()) return {};
  return fmt::format(" (line {}, column {})", mark.line + 1, mark.column + 1);
}

/// Applies the settings of `node` (the mapping at `path`, "" for the root) to `config`.
Status apply_yaml_map(const YAML::Node& node, const std::string& path, const std::string& file,
                      std::set<std::string>& seen, Config& config) {
  for (const auto& entry : node) {
    const YAML::Node& key_node = entry.first;
    const YAML::Node& value = entry.second;
    if (!key_node.IsScalar()) {
      return invalid(fmt::format("config file {} has a key that is not a name{}", file,
                                 position(key_node.Mark())));
    }
    const std::string key = path.empty() ? key_node.Scalar() : path + "." + key_node.Scalar();
    const std::string where = fmt::format("{}{}", file, position(key_node.Mark()));
    const std::string value_where = fmt::format("{}{}", file, position(value.Mark()));
    if (!seen.insert(key).second) {
      return invalid(fmt::format("config key \"{}\" appears twice in {}", key, where));
    }
    if (const Setting* setting = find_by_key(key)) {
      if (!value.IsScalar()) {
        return invalid(fmt::format("config key \"{}\" in {} must be a single value, not {}", key,
                                   where, node_kind(value)));
      }
      const Status status = setting->assign(config, value.Scalar());
      if (!status.ok()) {
        return in_context(status, fmt::format("config key \"{}\" in {}", key, value_where));
      }
    } else if (is_section(key)) {
      if (value.IsNull()) continue;  // "storage:" with nothing under it
      if (!value.IsMap()) {
        return invalid(fmt::format("config key \"{}\" in {} must be a mapping of keys, not {}", key,
                                   where, node_kind(value)));
      }
      GOREGO_RETURN_IF_ERROR(apply_yaml_map(value, key, file, seen, config));
    } else {
      return invalid(fmt::format("unknown config key \"{}\" in {}", key, where));
    }
  }
  return ok_status();
}

Status apply_yaml_file(const std::string& file, Config& config) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) {
    return invalid(fmt::format("cannot read config file \"{}\": it is a directory", file));
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return invalid(fmt::format("cannot read config file \"{}\": {}", file, std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return invalid(fmt::format("cannot read config file \"{}\": {}", file, std::strerror(errno)));
  }
  try {
    const YAML::Node root = YAML::Load(text.str());
    if (root.IsNull()) return ok_status();  // an empty file changes nothing
    if (!root.IsMap()) {
      return invalid(fmt::format("config file \"{}\" must be a mapping of keys, not {}", file,
                                 node_kind(root)));
    }
    std::set<std::string> seen;
    return apply_yaml_map(root, "", file, seen, config);
  } catch (const YAML::Exception& e) {
    return invalid(
        fmt::format("cannot parse config file \"{}\"{}: {}", file, position(e.mark), e.msg));
  }
}

// ---- command line ----

/// A default as --help shows it; an empty one as "" so the column is not blank.
std::string shown_default(const Setting& s, const Config& defaults) {
  std::string text = s.show(defaults);
  return text.empty() ? "\"\"" : text;
}

std::string settings_footer() {
  const Config defaults;
  std::string out =
      "Every setting can be given in the YAML file named by --config FILE (or GOREGO_CONFIG),\n"
      "in an environment variable, and some by a flag. Later sources win:\n"
      "  defaults < config file < environment < flags\n"
      "Unknown config keys and unknown GOREGO_* environment variables are errors.\n\n"
      "Settings (config key, environment variable, default):\n";
  for (const Setting& s : kSettings) {
    out += fmt::format("  {:<28}{:<34}{}\n      {}\n", s.key, env_name(s.key),
                       shown_default(s, defaults), s.help);
  }
  return out;
}

struct CommandLine {
  std::optional<std::string> config_file;
  bool print_config = false;
  /// (setting, value) in the order of kSettings, for the flags that were given.
  std::vector<std::pair<const Setting*, std::string>> values;
  std::optional<std::string> help;
};

Result<CommandLine> parse_command_line(int argc, const char* const* argv) {
  const Config defaults;
  CLI::App app{"gorego: a Remote Execution API v2 remote cache server.", "gorego"};
  app.footer(settings_footer());

  CommandLine result;
  std::string config_file;
  CLI::Option* config_option =
      app.add_option("--config", config_file, "YAML config file (also GOREGO_CONFIG)")
          ->type_name("FILE");
  app.add_flag("--print-config", result.print_config,
               "print the effective config as YAML and exit");

  std::array<std::string, kSettings.size()> values;
  std::array<CLI::Option*, kSettings.size()> options{};
  for (std::size_t i = 0; i < kSettings.size(); ++i) {
    const Setting& s = kSettings[i];
    if (s.flag.empty()) continue;
    options[i] = app.add_option(fmt::format("--{}", s.flag), values[i],
                                fmt::format("{} [{}, default {}]", s.help, env_name(s.key),
                                            shown_default(s, defaults)))
                     ->type_name(std::string(s.value_name))
                     ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }

  static constexpr std::array<const char*, 1> kNoArgs{"gorego"};
  try {
    if (argc < 1 || argv == nullptr) {
      app.parse(static_cast<int>(kNoArgs.size()), kNoArgs.data());
    } else {
      app.parse(argc, argv);
    }
  } catch (const CLI::CallForHelp&) {
    result.help = app.help();
    return result;
  } catch (const CLI::Error& e) {
    return invalid(fmt::format("command line: {}", e.what()));
  }

  if (config_option->count() > 0) result.config_file = config_file;
  for (std::size_t i = 0; i < kSettings.size(); ++i) {
    if (options[i] != nullptr && options[i]->count() > 0) {
      result.values.emplace_back(&kSettings[i], values[i]);
    }
  }
  return result;
}

}  // namespace

// ---- public API ----

Result<std::uint64_t> parse_size(std::string_view text) {
  struct Unit {
    std::string_view name;
    std::uint64_t bytes;
  };
  static constexpr std::array<Unit, 11> kUnits{{
      {"", 1},
      {"B", 1},
      {"KB", 1'000},
      {"kB", 1'000},
      {"MB", 1'000'000},
      {"GB", 1'000'000'000},
      {"TB", 1'000'000'000'000},
      {"KiB", kKiB},
      {"MiB", kMiB},
      {"GiB", kGiB},
      {"TiB", kGiB * kKiB},
  }};
  constexpr std::size_t kMaxFractionDigits = 18;

  if (text.empty()) return invalid("size \"\" is empty");
  if (text.front() == '-') return invalid(fmt::format("size \"{}\" is negative", text));
  const std::size_t whole_digits = count_digits(text);
  if (whole_digits == 0) {
    return invalid(fmt::format("size \"{}\" does not start with a number", text));
  }
  const std::string_view whole = text.substr(0, whole_digits);
  std::string_view rest = text.substr(whole_digits);
  std::string_view fraction;
  if (!rest.empty() && rest.front() == '.') {
    fraction = rest.substr(1, count_digits(rest.substr(1)));
    if (fraction.empty()) {
      return invalid(fmt::format("size \"{}\" has no digits after the decimal point", text));
    }
    if (fraction.size() > kMaxFractionDigits) {
      return invalid(
          fmt::format("size \"{}\" has more than {} decimal places", text, kMaxFractionDigits));
    }
    rest.remove_prefix(1 + fraction.size());
  }
  if (!rest.empty() && rest.front() == ' ') {
    rest.remove_prefix(1);
    if (rest.empty()) return invalid(fmt::format("size \"{}\" has a space but no unit", text));
  }
  std::uint64_t unit_bytes = 0;
  for (const Unit& unit : kUnits) {
    if (unit.name == rest) unit_bytes = unit.bytes;
  }
  if (unit_bytes == 0) {
    return invalid(fmt::format(
        "size \"{}\" has an unknown unit \"{}\" (expected B, KB, MB, GB, TB, KiB, MiB, GiB or "
        "TiB)",
        text, rest));
  }
  if (!fraction.empty() && unit_bytes == 1) {
    return invalid(fmt::format("size \"{}\" is not a whole number of bytes", text));
  }

  constexpr Uint128 kMax = std::numeric_limits<std::uint64_t>::max();
  const auto too_large = [&] {
    return invalid(fmt::format("size \"{}\" is too large (more than {} bytes)", text,
                               std::numeric_limits<std::uint64_t>::max()));
  };
  Uint128 number = 0;
  for (const char c : whole) {
    number = number * 10 + static_cast<unsigned>(c - '0');
    if (number > kMax) return too_large();
  }
  Uint128 bytes = number * unit_bytes;
  if (!fraction.empty()) {
    Uint128 numerator = 0;
    Uint128 denominator = 1;
    for (const char c : fraction) {
      numerator = numerator * 10 + static_cast<unsigned>(c - '0');
      denominator *= 10;
    }
    bytes += numerator * unit_bytes / denominator;  // rounds down to whole bytes
  }
  if (bytes > kMax) return too_large();
  return static_cast<std::uint64_t>(bytes);
}

std::string format_size(std::uint64_t bytes) {
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 4> kUnits{{
      {"TiB", kGiB * kKiB},
      {"GiB", kGiB},
      {"MiB", kMiB},
      {"KiB", kKiB},
  }};
  for (const auto& [name, size] : kUnits) {
    if (bytes != 0 && bytes % size == 0) return fmt::format("{}{}", bytes / size, name);
  }
  return fmt::format("{}", bytes);
}

Result<std::chrono::seconds> parse_duration(std::string_view text) {
  if (text.empty()) return invalid("duration \"\" is empty");
  if (text.front() == '-') return invalid(fmt::format("duration \"{}\" is negative", text));
  const std::size_t digits = count_digits(text);
  if (digits == 0) {
    return invalid(fmt::format("duration \"{}\" does not start with a number", text));
  }
  const std::string_view unit = text.substr(digits);
  std::int64_t scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1;
  } else if (unit == "m") {
    scale = 60;
  } else if (unit == "h") {
    scale = 3600;
  } else if (unit.front() == '.') {
    return invalid(fmt::format("duration \"{}\" is not a whole number", text));
  } else {
    return invalid(
        fmt::format("duration \"{}\" has an unknown unit \"{}\" (expected s, m or h)", text, unit));
  }
  std::int64_t count = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, count);
  if (ec == std::errc::result_out_of_range ||
      count > std::numeric_limits<std::chrono::seconds::rep>::max() / scale) {
    return invalid(fmt::format("duration \"{}\" is too long", text));
  }
  return std::chrono::seconds(count * scale);
}

std::string format_duration(std::chrono::seconds duration) {
  const auto count = duration.count();
  if (count != 0 && count % 3600 == 0) return fmt::format("{}h", count / 3600);
  if (count != 0 && count % 60 == 0) return fmt::format("{}m", count / 60);
  return fmt::format("{}s", count);
}

Status validate(const Config& config) {
  // A value is valid when it survives its own parser: one rule per setting, kept in one place.
  for (const Setting& s : kSettings) {
    Config scratch;
    const Status status = s.assign(scratch, s.render(config));
    if (!status.ok()) return in_context(status, fmt::format("config key \"{}\"", s.key));
  }
  if (config.max_blob_size_bytes > config.max_size_bytes) {
    return invalid(fmt::format("server.max_blob_size {} is larger than max_size {}",
                               format_size(config.max_blob_size_bytes),
                               format_size(config.max_size_bytes)));
  }
  if (config.block_size > config.max_size_bytes) {
    return invalid(fmt::format("storage.block_size {} is larger than max_size {}",
                               format_size(config.block_size), format_size(config.max_size_bytes)));
  }
  const std::array<std::pair<std::string_view, const std::filesystem::path*>, 3> tls_files{{
      {"remote.tls_ca_file", &config.remote_tls_ca_file},
      {"remote.tls_cert_file", &config.remote_tls_cert_file},
      {"remote.tls_key_file", &config.remote_tls_key_file},
  }};
  if (config.remote_target.starts_with("grpc://")) {
    for (const auto& [key, file] : tls_files) {
      if (file->empty()) continue;
      return invalid(fmt::format("{} \"{}\" needs a grpcs:// remote.target, not \"{}\"", key,
                                 file->string(), config.remote_target));
    }
  }
  if (config.remote_tls_cert_file.empty() != config.remote_tls_key_file.empty()) {
    const bool cert_given = config.remote_tls_key_file.empty();
    const auto& [key, file] = tls_files[cert_given ? 1 : 2];
    return invalid(fmt::format("{} \"{}\" is set without {}; give both or neither", key,
                               file->string(), tls_files[cert_given ? 2 : 1].first));
  }
  if (!config.remote_bearer_token.empty() &&
      to_lower(header_name(config.remote_header)) == "authorization") {
    return invalid(fmt::format(
        "remote.header \"{}\" conflicts with remote.bearer_token, which sends authorization "
        "too; set one of them",
        header_name(config.remote_header)));
  }
  return ok_status();
}

std::string to_yaml(const Config& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string_view section;
  for (const Setting& s : kSettings) {
    if (section_of(s.key) != section) {
      if (!section.empty()) out << YAML::EndMap;
      section = section_of(s.key);
      out << YAML::Key << std::string(section) << YAML::Value << YAML::BeginMap;
    }
    out << YAML::Key << std::string(leaf_of(s.key)) << YAML::Value << s.show(config);
  }
  if (!section.empty()) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

Environment current_environment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::size_t eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace_back(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
  }
  return env;
}

namespace {
/// Kubernetes injects GOREGO_SERVICE_HOST, GOREGO_PORT_50051_TCP_ADDR and the like into
/// every pod when a Service is named "gorego"; they are not settings and must not be
/// mistaken for typos. No setting's key starts with "service" or "port".
bool is_kubernetes_service_link(std::string_view name) {
  const std::string_view rest = name.substr(kEnvPrefix.size());
  return rest.starts_with("SERVICE_") || rest == "PORT" || rest.starts_with("PORT_");
}
}  // namespace

Result<LoadOutcome> load_config(int argc, const char* const* argv, const Environment& env) {
  auto command_line = parse_command_line(argc, argv);
  if (!command_line) return command_line.error();
  if (command_line->help) return LoadOutcome{Config{}, std::move(command_line->help)};

  // Check every GOREGO_* name before using any, so a typo is never silently ignored.
  std::optional<std::string> config_file = command_line->config_file;
  std::optional<std::string> config_env;
  std::vector<std::pair<const Setting*, const std::string*>> env_values;
  for (const auto& [name, value] : env) {
    if (!name.starts_with(kEnvPrefix) || is_kubernetes_service_link(name)) continue;
    if (name == kConfigEnv) {
      config_env = value;
    } else if (const Setting* setting = find_by_env(name)) {
      env_values.emplace_back(setting, &value);
    } else {
      std::string known(kConfigEnv);
      for (const Setting& s : kSettings) known += ", " + env_name(s.key);
      return invalid(fmt::format("unknown environment variable {} (known: {})", name, known));
    }
  }
  if (!config_file) config_file = std::move(config_env);

  Config config;
  if (config_file) GOREGO_RETURN_IF_ERROR(apply_yaml_file(*config_file, config));
  for (const auto& [setting, value] : env_values) {
    const Status status = setting->assign(config, *value);
    if (!status.ok()) {
      return in_context(status, fmt::format("environment variable {}", env_name(setting->key)));
    }
  }
  for (const auto& [setting, value] : command_line->values) {
    const Status status = setting->assign(config, value);
    if (!status.ok()) return in_context(status, fmt::format("flag --{}", setting->flag));
  }
  GOREGO_RETURN_IF_ERROR(validate(config));

  if (command_line->print_config) return LoadOutcome{config, to_yaml(config)};
  return LoadOutcome{std::move(config), std::nullopt};
}

}  // namespace gorego
