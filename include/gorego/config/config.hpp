#pragma once
/// gorego's configuration: one struct of per-area settings, and the loader that layers
///   embedded defaults < YAML file < GOREGO_* environment < command-line flags.
///
/// Each area (server, storage, telemetry, remote, execution, http, tls and auth) has its settings struct in its own header
/// here and its settings table in src/config/<area>.cpp: every setting is described once
/// (key, help text, parser, formatter). The tables are composed into the one table that
/// drives the YAML keys, the environment variable names, the flags, `--help` and to_yaml(),
/// so they cannot drift apart. The environment variable of a key is "GOREGO_" + the key with
/// dots as underscores, upper-case: `storage.janitor_interval` ->
/// `GOREGO_STORAGE_JANITOR_INTERVAL`.
///
/// A setting holds one value, a list or a map. A list is a YAML sequence in the file and
/// comma-separated text in the environment and in a flag (`a,b`); a repeated flag appends
/// to the list. A map is a YAML mapping in the file and `k=v,k2=v2` in the environment.
///
/// Nothing here touches the disk except reading the config file: whether `data_dir` is
/// writable is the app's business.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gorego/config/enum_names.hpp>
#include <gorego/config/execution.hpp>
#include <gorego/config/remote.hpp>
#include <gorego/config/security.hpp>
#include <gorego/config/server.hpp>
#include <gorego/config/storage.hpp>
#include <gorego/config/http.hpp>
#include <gorego/config/telemetry.hpp>
#include <gorego/config/values.hpp>
#include <gorego/core/status.hpp>

namespace gorego {

/// The effective settings of one gorego process, one plain struct per area with the
/// embedded defaults; build it with designated initializers in tests:
/// `Config{.storage = {.max_size_bytes = kGiB}, .remote = {.target = "grpc://up:9092"}}`.
/// load_config() only ever returns a Config that passes validate().
struct Config {
  ServerSettings server;
  StorageSettings storage;
  TelemetrySettings telemetry;
  RemoteSettings remote;
  ExecutionSettings execution;
  HttpSettings http;
  TlsSettings tls;
  AuthSettings auth;

  friend bool operator==(const Config&, const Config&) = default;
};

/// Checks every field against the rule its parser applies, and the rules between fields
/// (`max_blob_size` <= `max_size`, `block_size` <= `max_size`; `remote.tls_cert_file` and
/// `remote.tls_key_file` together or not at all; no `remote.tls_*` file with a grpc://
/// `remote.target`; no `authorization` header in `remote.header` or `remote.headers` next to
/// a `remote.bearer_token`). INVALID_ARGUMENT naming the key and the value (never a secret's
/// value) otherwise. For a Config built in code; load_config() already calls it.
[[nodiscard]] Status validate(const Config& config);

/// The config as YAML with the keys load_config() reads (`--print-config` prints this); lists
/// are sequences and maps are mappings. Loading the output gives an equal Config, except that
/// secrets are redacted: a set `remote.bearer_token` is printed as "<redacted>" and the value
/// of each header in `remote.header` and `remote.headers` as "Name: <redacted>", and
/// load_config() rejects those placeholders.
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
/// --eviction, --fsync, --memory-cache, --io-threads, --log-level, --metrics-addr,
/// --tracing-endpoint, --upstream, --upstream-mode, --upstream-header, --print-config,
/// --help; everything else is set in the file or the environment. A later source replaces a
/// list or a map of an earlier one as a whole; the occurrences of a repeated list flag are
/// appended to each other.
///
/// Errors are INVALID_ARGUMENT with a message naming the source and the bad value: an unknown
/// flag, an unknown key in the file, a value of the wrong YAML type (a list where one value
/// belongs, ...), an unreadable or unparseable file (with yaml-cpp's line and column), an
/// unknown GOREGO_* variable (so typos do not pass silently: every GOREGO_* name in `env`
/// must be a setting or GOREGO_CONFIG), a bad value anywhere (a bad list element is named by
/// its index from 0, `remote.headers[1]`, a bad map entry by its key), or a Config failing
/// validate(). `--help` wins over every other error except a flag missing its value.
///
/// Thread-compatible: reads only its arguments and the config file.
[[nodiscard]] Result<LoadOutcome> load_config(int argc, const char* const* argv,
                                              const Environment& env);

}  // namespace gorego
