#pragma once
/// gorego's configuration: one plain struct, its parsers and the loader that layers
///   embedded defaults < YAML file < GOREGO_* environment < command-line flags.
///
/// Every setting is described once (key, help text, parser) in src/config.cpp; that one table
/// drives the YAML keys, the environment variable names, the flags, `--help` and to_yaml(), so
/// they cannot drift apart. The environment variable of a key is "GOREGO_" + the key with dots
/// as underscores, upper-case: `storage.janitor_interval` -> `GOREGO_STORAGE_JANITOR_INTERVAL`.
///
/// Nothing here touches the disk except reading the config file: whether `data_dir` is
/// writable is the app's business.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gorego/core/status.hpp>

namespace gorego {

inline constexpr std::uint64_t kKiB = std::uint64_t{1} << 10;
inline constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
inline constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

/// The effective settings of one gorego process. A plain aggregate with the embedded defaults;
/// build it with designated initializers in tests. The comment of each field gives its YAML
/// key; the environment variable and flag follow from it (see the file comment).
/// load_config() only ever returns a Config that passes validate().
struct Config {
  /// `listen_addr`, `--listen`: HOST:PORT, IPv6 as `[::1]:50051`; port 0 picks a free port.
  std::string listen_addr = "127.0.0.1:50051";
  /// `data_dir`, `--data-dir`: where the CAS and AC live. Relative paths are relative to the
  /// working directory (not to the config file).
  std::filesystem::path data_dir = "./gorego-data";
  /// `max_size`, `--max-size`: the size limit of the store, a SIZE (see parse_size()).
  std::uint64_t max_size_bytes = 10 * kGiB;
  /// `eviction`, `--eviction`: "sampled-lru", "lru" or "atime".
  std::string eviction = "sampled-lru";

  /// `storage.fsync`, `--fsync`: fsync blobs and their directory before acknowledging a write.
  bool fsync = true;
  /// `storage.janitor_interval`: how often the atime janitor scans when `eviction` is
  /// "atime" (a duration, > 0); LRU evicts on demand and ignores it.
  std::chrono::seconds janitor_interval{60};
  /// `storage.verify_reads`: "first" (re-hash a blob's first full read after start; trust
  /// bytes this process verified) or "always" (re-hash every full read).
  std::string verify_reads = "first";
  /// `storage.memory_cache`, `--memory-cache`: memory for the verified bytes of small CAS
  /// blobs (up to 64 KiB each), served without a disk read; a SIZE, 0 disables it. Not
  /// used with `verify_reads: always`.
  std::uint64_t memory_cache_bytes = 256 * kMiB;
  /// `storage.ac_memory`: memory for ActionCache entries (up to 64 KiB each) kept with the
  /// index and served without a disk read; a SIZE, 0 disables it.
  std::uint64_t ac_memory_bytes = 64 * kMiB;
  /// `storage.force_update_atime`: touch the atime on every read, for filesystems mounted
  /// relatime/noatime when `eviction` is "atime".
  bool force_update_atime = false;
  /// `storage.block_size`: accounting granularity of the size limit, a power of two SIZE in
  /// 1..1MiB; every blob counts as its size rounded up to a multiple of it.
  std::uint32_t block_size = 4096;

  /// `server.io_threads`, `--io-threads`: threads doing disk I/O (1..1024).
  std::uint32_t io_threads = 8;
  /// `server.io_queue`: requests that may wait for an I/O thread (16..1000000); beyond it
  /// new calls are refused UNAVAILABLE ("server busy"), which clients retry with backoff.
  std::uint32_t io_queue = 4096;
  /// `server.max_batch_size`: max_batch_total_size_bytes advertised in GetCapabilities and
  /// enforced by the batch calls, a SIZE in 64KiB..64MiB.
  std::uint64_t max_batch_total_size_bytes = 4 * kMiB;
  /// `server.max_blob_size`: the largest blob accepted, a SIZE; 0 means bounded only by
  /// `max_size`. Must not exceed `max_size`.
  std::uint64_t max_blob_size_bytes = 0;
  /// `server.shutdown_grace`: how long in-flight calls may run on after SIGTERM (a duration).
  std::chrono::seconds shutdown_grace{10};

  /// `telemetry.log_level`, `--log-level`: "debug", "info", "warn" or "error".
  std::string log_level = "info";
  /// `telemetry.metrics_addr`, `--metrics-addr`: HOST:PORT of the admin HTTP server
  /// (/metrics, /health/*, /debug/pprof/); "" disables it.
  std::string metrics_addr = "127.0.0.1:9090";
  /// `telemetry.tracing_endpoint`, `--tracing-endpoint`: where spans go: "" (tracing off),
  /// "stdout" (JSON lines), or an OTLP/gRPC receiver as HOST:PORT or grpc://HOST:PORT.
  std::string tracing_endpoint;
  /// `telemetry.sample_rate`: fraction of new traces recorded, 0..1; a request that comes
  /// with a W3C traceparent follows its sampled flag.
  double sample_rate = 1.0;
  /// `telemetry.service_name`: service.name of the spans (and of nothing else).
  std::string service_name = "gorego";

  // The upstream (backing) REAPI cache; the remote tier is described in docs/architecture.md.
  // Every remote.* setting but the target is ignored while `remote.target` is empty.

  /// `remote.target`, `--upstream`: the upstream cache, "" (none), `grpc://HOST:PORT` or
  /// `grpcs://HOST:PORT`; HOST is a name, an IPv4 address or an [IPv6] address, PORT 1..65535.
  std::string remote_target;
  /// `remote.instance_name`: the instance name sent upstream; "" or a '/'-separated path whose
  /// segments are non-empty and none of the REAPI keywords ("blobs", "uploads", ...).
  std::string remote_instance_name;
  /// `remote.timeout`: the deadline of each upstream call (a duration, > 0).
  std::chrono::seconds remote_timeout{60};
  /// `remote.retries`: how often a transiently failed upstream call is retried, 0..10.
  std::uint32_t remote_retries = 3;
  /// `remote.mode`, `--upstream-mode`: "through" (an upload is acknowledged once the upstream
  /// accepted it) or "back" (acknowledged once stored locally; uploaded in the background from
  /// a bounded queue).
  std::string remote_mode = "through";
  /// `remote.queue_size`: capacity of the write-back queue of `remote.mode` "back",
  /// 1..1000000.
  std::uint32_t remote_queue_size = 10000;
  /// `remote.tls_ca_file`: PEM roots to verify a grpcs:// upstream with; empty: the system
  /// roots. Not checked for existence here.
  std::filesystem::path remote_tls_ca_file;
  /// `remote.tls_cert_file`: PEM client certificate for a grpcs:// upstream (mutual TLS);
  /// given together with `remote.tls_key_file` or not at all.
  std::filesystem::path remote_tls_cert_file;
  /// `remote.tls_key_file`: PEM private key of `remote.tls_cert_file`.
  std::filesystem::path remote_tls_key_file;
  /// `remote.bearer_token`: when set, every upstream call carries `authorization: Bearer
  /// <token>`. A secret: to_yaml() prints "<redacted>" for it and no error message quotes it;
  /// visible ASCII only, and the literal "<redacted>" is rejected.
  std::string remote_bearer_token;
  /// `remote.header`: one extra request header sent upstream, "Name: value" (e.g.
  /// "x-api-key: ..."). The name is an HTTP token of letters, digits, '-', '_' and '.', is
  /// sent lower-cased (gRPC metadata keys are), must not start with "grpc-" and must not be
  /// "authorization" when `remote.bearer_token` is set. The value is treated as a secret like
  /// the bearer token: to_yaml() prints "Name: <redacted>" and errors do not quote it.
  std::string remote_header;

  friend bool operator==(const Config&, const Config&) = default;
};

/// Parses a SIZE: plain bytes ("1048576"), or a number, an optional single space and a unit:
/// B, KB/kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024); units are
/// case-sensitive. A number with a unit other than B may have a fraction ("1.5GiB"); the result
/// is rounded down to whole bytes. INVALID_ARGUMENT naming the value when it is empty,
/// negative, malformed, has an unknown unit (`size "12XB" has an unknown unit "XB" ...`) or
/// does not fit in 64 bits.
[[nodiscard]] Result<std::uint64_t> parse_size(std::string_view text);

/// Formats bytes as the largest binary unit that is exact ("10GiB", "1536KiB"), else as plain
/// bytes ("1000"). parse_size(format_size(n)) == n.
[[nodiscard]] std::string format_size(std::uint64_t bytes);

/// Parses a duration in whole seconds: "30" or "30s", "5m", "2h". INVALID_ARGUMENT naming the
/// value when it is empty, negative, malformed, has an unknown unit or overflows.
[[nodiscard]] Result<std::chrono::seconds> parse_duration(std::string_view text);

/// Formats a duration as the largest exact unit: "1h", "90s", "5m". parse_duration() inverts it.
[[nodiscard]] std::string format_duration(std::chrono::seconds duration);

/// Checks every field against the rule its parser applies, and the rules between fields
/// (`max_blob_size` <= `max_size`, `block_size` <= `max_size`; `remote.tls_cert_file` and
/// `remote.tls_key_file` together or not at all; no `remote.tls_*` file with a grpc://
/// `remote.target`; no `authorization` `remote.header` next to a `remote.bearer_token`).
/// INVALID_ARGUMENT naming the key and the value (never a secret's value) otherwise. For a
/// Config built in code; load_config() already calls it.
[[nodiscard]] Status validate(const Config& config);

/// The config as YAML with the keys load_config() reads (`--print-config` prints this).
/// Loading the output gives an equal Config, except that secrets are redacted: a set
/// `remote.bearer_token` is printed as "<redacted>" and the value of a set `remote.header` as
/// "Name: <redacted>", and load_config() rejects those placeholders.
[[nodiscard]] std::string to_yaml(const Config& config);

/// The process environment as (name, value) pairs, in the order of `environ`.
using Environment = std::vector<std::pair<std::string, std::string>>;

/// Reads the real process environment (`environ`) into an Environment. Not thread-safe with
/// concurrent setenv(); call it once at startup.
[[nodiscard]] Environment current_environment();

/// What the command line asked for: run with `config`, or, when `exit_message` is set (by
/// `--help` or `--print-config`), print it to stdout and exit with status 0. `config` is
/// unspecified when `exit_message` is set.
struct LoadOutcome {
  Config config;
  std::optional<std::string> exit_message;
};

/// Builds the effective Config: defaults, then the YAML file named by `--config FILE` (else by
/// GOREGO_CONFIG, else none), then the GOREGO_* variables of `env`, then the flags in `argv`
/// (argv[0] is the program name). Flags: --config, --listen, --data-dir, --max-size,
/// --eviction, --fsync, --io-threads, --log-level, --upstream, --upstream-mode,
/// --print-config, --help; everything else is set in the file or the environment.
///
/// Errors are INVALID_ARGUMENT with a message naming the source and the bad value: an unknown
/// flag, an unknown key in the file, a value of the wrong YAML type, an unreadable or
/// unparseable file (with yaml-cpp's line and column), an unknown GOREGO_* variable (so typos
/// do not pass silently: every GOREGO_* name in `env` must be a setting or GOREGO_CONFIG), a
/// bad value anywhere, or a Config failing validate(). `--help` wins over every other error
/// except a flag missing its value.
///
/// Thread-compatible: reads only its arguments and the config file.
[[nodiscard]] Result<LoadOutcome> load_config(int argc, const char* const* argv,
                                              const Environment& env);

}  // namespace gorego
