#include <gorego/config/config.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <gorego/testing/temp_dir.hpp>

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using gorego::Code;
using gorego::Config;
using gorego::Environment;
using gorego::Eviction;
using gorego::kGiB;
using gorego::kKiB;
using gorego::kMiB;
using gorego::ReadVerification;
using gorego::RemoteMode;
using gorego::log::Level;
using gorego::testing::TempDir;

/// Writes `text` to a file `name` in `dir` and returns its path.
fs::path write_file(const TempDir& dir, std::string_view name, std::string_view text) {
  fs::path file = dir.path() / name;
  std::ofstream out(file, std::ios::binary);
  out << text;
  REQUIRE(out.good());
  return file;
}

/// load_config() with argv = {"gorego", args...}.
gorego::Result<gorego::LoadOutcome> load(const std::vector<std::string>& args,
                                         const Environment& env = {}) {
  std::vector<const char*> argv{"gorego"};
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  return gorego::load_config(static_cast<int>(argv.size()), argv.data(), env);
}

/// The Config of a load that must succeed and must not ask to exit.
Config load_ok(const std::vector<std::string>& args, const Environment& env = {}) {
  auto result = load(args, env);
  INFO(result.status().to_string());
  REQUIRE(result.ok());
  REQUIRE_FALSE(result->exit_message.has_value());
  return result->config;
}

/// The message of a load that must fail with INVALID_ARGUMENT.
std::string load_error(const std::vector<std::string>& args, const Environment& env = {}) {
  auto result = load(args, env);
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code() == Code::kInvalidArgument);
  return result.error().message();
}

}  // namespace

TEST_CASE("Config: defaults apply with no file, environment or flags") {
  const Config config = load_ok({}, {{"PATH", "/usr/bin"}, {"HOME", "/root"}});
  CHECK(config == Config{});
  CHECK(config.server.listen_addr == "127.0.0.1:50051");
  CHECK(config.storage.data_dir == fs::path("./gorego-data"));
  CHECK(config.storage.max_size_bytes == 10 * kGiB);
  CHECK(config.storage.eviction == Eviction::kSampledLru);
  CHECK(config.storage.verify_reads == ReadVerification::kFirst);
  CHECK(config.storage.memory_cache_bytes == 256 * kMiB);
  CHECK(config.storage.ac_memory_bytes == 64 * kMiB);
  CHECK(config.storage.fsync);
  CHECK(config.storage.janitor_interval == std::chrono::seconds(60));
  CHECK_FALSE(config.storage.force_update_atime);
  CHECK(config.storage.block_size == 4096);
  CHECK(config.server.io_threads == 8);
  CHECK(config.server.max_batch_total_size_bytes == 4 * kMiB);
  CHECK(config.server.max_blob_size_bytes == 0);
  CHECK(config.server.shutdown_grace == std::chrono::seconds(10));
  CHECK(config.telemetry.log_level == Level::kInfo);
  CHECK(config.remote.target.empty());  // no upstream
  CHECK(config.remote.instance_name.empty());
  CHECK(config.remote.timeout == std::chrono::seconds(60));
  CHECK(config.remote.retries == 3);
  CHECK(config.remote.mode == RemoteMode::kThrough);
  CHECK(config.remote.queue_size == 10000);
  CHECK(config.remote.tls_ca_file.empty());
  CHECK(config.remote.tls_cert_file.empty());
  CHECK(config.remote.tls_key_file.empty());
  CHECK(config.remote.bearer_token.empty());
  CHECK(config.remote.header.empty());
  CHECK(gorego::validate(config).ok());
}

TEST_CASE("Config: parse_size reads plain bytes, SI and IEC units") {
  const std::vector<std::pair<std::string, std::uint64_t>> cases{
      {"0", 0},
      {"100", 100},
      {"1048576", kMiB},
      {"7B", 7},
      {"1kB", 1000},
      {"1KB", 1000},
      {"2MB", 2'000'000},
      {"3GB", 3'000'000'000},
      {"1TB", 1'000'000'000'000},
      {"1KiB", kKiB},
      {"512MiB", 512 * kMiB},
      {"512 MiB", 512 * kMiB},
      {"10GiB", 10 * kGiB},
      {"1.5GiB", 3 * kGiB / 2},
      {"1.5KiB", 1536},
      {"0.3KiB", 307},  // 307.2 rounds down
      {"2.5MB", 2'500'000},
      {"1TiB", 1024 * kGiB},
      {"18446744073709551615", UINT64_MAX},
  };
  for (const auto& [text, bytes] : cases) {
    INFO("size \"" << text << "\"");
    const auto parsed = gorego::parse_size(text);
    REQUIRE(parsed.ok());
    CHECK(*parsed == bytes);
  }
}

TEST_CASE("Config: parse_size rejects bad sizes naming the value") {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"12XB", "size \"12XB\" has an unknown unit \"XB\""},
      {"1kb", "unknown unit \"kb\""},
      {"1gib", "unknown unit \"gib\""},
      {"", "size \"\" is empty"},
      {"-5", "size \"-5\" is negative"},
      {"-1GiB", "size \"-1GiB\" is negative"},
      {"abc", "size \"abc\" does not start with a number"},
      {"1.5", "size \"1.5\" is not a whole number of bytes"},
      {"1.5B", "size \"1.5B\" is not a whole number of bytes"},
      {"5.GiB", "size \"5.GiB\" has no digits after the decimal point"},
      {"5 ", "size \"5 \" has a space but no unit"},
      {"5  MiB", "unknown unit \" MiB\""},
      {"18446744073709551616", "size \"18446744073709551616\" is too large"},
      {"20000000TiB", "size \"20000000TiB\" is too large"},
      {"99999999999999999999999", "is too large"},
  };
  for (const auto& [text, message] : cases) {
    INFO("size \"" << text << "\"");
    const auto parsed = gorego::parse_size(text);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().code() == Code::kInvalidArgument);
    CHECK_THAT(parsed.error().message(), Contains(message));
  }
}

TEST_CASE("Config: format_size is exact and parse_size inverts it") {
  CHECK(gorego::format_size(0) == "0");
  CHECK(gorego::format_size(1000) == "1000");
  CHECK(gorego::format_size(4096) == "4KiB");
  CHECK(gorego::format_size(10 * kGiB) == "10GiB");
  CHECK(gorego::format_size(3 * kGiB / 2) == "1536MiB");
  for (const std::uint64_t bytes : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1023}, kKiB,
                                    3 * kGiB / 2, 5 * kGiB * kKiB, std::uint64_t{UINT64_MAX}}) {
    INFO(bytes);
    const auto parsed = gorego::parse_size(gorego::format_size(bytes));
    REQUIRE(parsed.ok());
    CHECK(*parsed == bytes);
  }
}

TEST_CASE("Config: parse_duration reads seconds, minutes and hours") {
  using std::chrono::seconds;
  CHECK(*gorego::parse_duration("30") == seconds(30));
  CHECK(*gorego::parse_duration("30s") == seconds(30));
  CHECK(*gorego::parse_duration("5m") == seconds(300));
  CHECK(*gorego::parse_duration("2h") == seconds(7200));
  CHECK(*gorego::parse_duration("0") == seconds(0));
  CHECK(gorego::format_duration(seconds(60)) == "1m");
  CHECK(gorego::format_duration(seconds(90)) == "90s");
  CHECK(gorego::format_duration(seconds(7200)) == "2h");
  CHECK(gorego::format_duration(seconds(0)) == "0s");

  const std::vector<std::pair<std::string, std::string>> bad{
      {"", "duration \"\" is empty"},
      {"-5s", "duration \"-5s\" is negative"},
      {"5x", "duration \"5x\" has an unknown unit \"x\""},
      {"500ms", "duration \"500ms\" has an unknown unit \"ms\""},
      {"1.5h", "duration \"1.5h\" is not a whole number"},
      {"s", "duration \"s\" does not start with a number"},
      {"9999999999999999999h", "duration \"9999999999999999999h\" is too long"},
      {"9223372036854775807h", "is too long"},
  };
  for (const auto& [text, message] : bad) {
    INFO("duration \"" << text << "\"");
    const auto parsed = gorego::parse_duration(text);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().code() == Code::kInvalidArgument);
    CHECK_THAT(parsed.error().message(), Contains(message));
  }
}

TEST_CASE("Config: the file sets values, the environment overrides it, flags override both") {
  const TempDir dir("gorego-config-test");
  const fs::path file = write_file(dir, "gorego.yaml",
                                   "listen_addr: 0.0.0.0:9000\n"
                                   "max_size: 1GiB\n"
                                   "eviction: atime\n"
                                   "storage:\n"
                                   "  fsync: false\n"
                                   "  janitor_interval: 5m\n"
                                   "server:\n"
                                   "  io_threads: 4\n"
                                   "telemetry:\n"
                                   "  log_level: warn\n");
  const Environment env{
      {"GOREGO_MAX_SIZE", "2GiB"}, {"GOREGO_EVICTION", "lru"}, {"GOREGO_SERVER_IO_THREADS", "16"}};

  SECTION("file alone") {
    const Config config = load_ok({"--config", file.string()});
    CHECK(config.server.listen_addr == "0.0.0.0:9000");
    CHECK(config.storage.max_size_bytes == kGiB);
    CHECK(config.storage.eviction == Eviction::kAtime);
    CHECK_FALSE(config.storage.fsync);
    CHECK(config.storage.janitor_interval == std::chrono::minutes(5));
    CHECK(config.server.io_threads == 4);
    CHECK(config.telemetry.log_level == Level::kWarn);
    CHECK(config.storage.data_dir == Config{}.storage.data_dir);  // not in the file: the default
  }
  SECTION("environment over file") {
    const Config config = load_ok({"--config", file.string()}, env);
    CHECK(config.server.listen_addr == "0.0.0.0:9000");
    CHECK(config.storage.max_size_bytes == 2 * kGiB);
    CHECK(config.storage.eviction == Eviction::kLru);
    CHECK(config.server.io_threads == 16);
  }
  SECTION("flags over environment and file") {
    const Config config = load_ok({"--config", file.string(), "--eviction", "atime",
                                   "--io-threads=32", "--listen", "[::1]:0"},
                                  env);
    CHECK(config.server.listen_addr == "[::1]:0");
    CHECK(config.storage.max_size_bytes == 2 * kGiB);  // environment
    CHECK(config.storage.eviction == Eviction::kAtime);
    CHECK(config.server.io_threads == 32);
    CHECK(config.telemetry.log_level == Level::kWarn);  // file
  }
  SECTION("a flag given twice: the last wins") {
    const Config config = load_ok({"--log-level", "debug", "--log-level", "error"});
    CHECK(config.telemetry.log_level == Level::kError);
  }
}

TEST_CASE("Config: GOREGO_CONFIG names the file and --config overrides it") {
  const TempDir dir("gorego-config-test");
  const fs::path from_env = write_file(dir, "env.yaml", "eviction: atime\n");
  const fs::path from_flag = write_file(dir, "flag.yaml", "log_level_is_not_here: 1\n");
  const fs::path good_flag = write_file(dir, "good.yaml", "max_size: 3GiB\n");

  const Config config = load_ok({}, {{"GOREGO_CONFIG", from_env.string()}});
  CHECK(config.storage.eviction == Eviction::kAtime);

  // --config wins: the env file is not read at all, the flag file is.
  const Config overridden =
      load_ok({"--config", good_flag.string()}, {{"GOREGO_CONFIG", from_env.string()}});
  CHECK(overridden.storage.eviction == Eviction::kSampledLru);
  CHECK(overridden.storage.max_size_bytes == 3 * kGiB);
  CHECK_THAT(load_error({"--config", from_flag.string()}, {{"GOREGO_CONFIG", from_env.string()}}),
             Contains("unknown config key \"log_level_is_not_here\""));
}

TEST_CASE("Config: every setting has an environment variable") {
  const Environment env{
      {"GOREGO_LISTEN_ADDR", "localhost:1234"},
      {"GOREGO_DATA_DIR", "/var/cache/gorego"},
      {"GOREGO_MAX_SIZE", "500GB"},
      {"GOREGO_EVICTION", "atime"},
      {"GOREGO_STORAGE_FSYNC", "off"},
      {"GOREGO_STORAGE_JANITOR_INTERVAL", "1h"},
      {"GOREGO_STORAGE_FORCE_UPDATE_ATIME", "yes"},
      {"GOREGO_STORAGE_VERIFY_READS", "always"},
      {"GOREGO_STORAGE_MEMORY_CACHE", "0"},
      {"GOREGO_STORAGE_AC_MEMORY", "1MiB"},
      {"GOREGO_STORAGE_BLOCK_SIZE", "512"},
      {"GOREGO_SERVER_IO_THREADS", "2"},
      {"GOREGO_SERVER_MAX_BATCH_SIZE", "64KiB"},
      {"GOREGO_SERVER_MAX_BLOB_SIZE", "1GiB"},
      {"GOREGO_SERVER_SHUTDOWN_GRACE", "30"},
      {"GOREGO_TELEMETRY_LOG_LEVEL", "debug"},
      {"GOREGO_REMOTE_TARGET", "grpcs://cache.example.com:443"},
      {"GOREGO_REMOTE_INSTANCE_NAME", "main/ci"},
      {"GOREGO_REMOTE_TIMEOUT", "2m"},
      {"GOREGO_REMOTE_RETRIES", "0"},
      {"GOREGO_REMOTE_MODE", "back"},
      {"GOREGO_REMOTE_QUEUE_SIZE", "1000000"},
      {"GOREGO_REMOTE_TLS_CA_FILE", "/etc/ssl/ca.pem"},
      {"GOREGO_REMOTE_TLS_CERT_FILE", "/etc/gorego/client.pem"},
      {"GOREGO_REMOTE_TLS_KEY_FILE", "/etc/gorego/client.key"},
      {"GOREGO_REMOTE_BEARER_TOKEN", "eyJhbGciOi.J9-_~+/="},
      {"GOREGO_REMOTE_HEADER", "X-Api-Key: s3cr3t value"},
      {"NOT_GOREGO_EVICTION", "ignored"},
  };
  const Config expected{
      .server = {.listen_addr = "localhost:1234",
                 .io_threads = 2,
                 .max_batch_total_size_bytes = 64 * kKiB,
                 .max_blob_size_bytes = kGiB,
                 .shutdown_grace = std::chrono::seconds(30)},
      .storage = {.data_dir = "/var/cache/gorego",
                  .max_size_bytes = 500'000'000'000,
                  .eviction = Eviction::kAtime,
                  .fsync = false,
                  .janitor_interval = std::chrono::hours(1),
                  .verify_reads = ReadVerification::kAlways,
                  .memory_cache_bytes = 0,
                  .ac_memory_bytes = kMiB,
                  .force_update_atime = true,
                  .block_size = 512},
      .telemetry = {.log_level = Level::kDebug},
      .remote = {.target = "grpcs://cache.example.com:443",
                 .instance_name = "main/ci",
                 .timeout = std::chrono::minutes(2),
                 .retries = 0,
                 .mode = RemoteMode::kBack,
                 .queue_size = 1'000'000,
                 .tls_ca_file = "/etc/ssl/ca.pem",
                 .tls_cert_file = "/etc/gorego/client.pem",
                 .tls_key_file = "/etc/gorego/client.key",
                 .bearer_token = "eyJhbGciOi.J9-_~+/=",
                 .header = "X-Api-Key: s3cr3t value"},
  };
  CHECK(load_ok({}, env) == expected);
}

TEST_CASE("Config: an empty file or an empty section changes nothing") {
  const TempDir dir("gorego-config-test");
  CHECK(load_ok({"--config", write_file(dir, "empty.yaml", "").string()}) == Config{});
  CHECK(load_ok({"--config", write_file(dir, "comment.yaml", "# nothing\n").string()}) == Config{});
  CHECK(load_ok({"--config", write_file(dir, "section.yaml", "storage:\n").string()}) == Config{});
}

TEST_CASE("Config: errors in the config file are INVALID_ARGUMENT naming file, key and value") {
  struct Case {
    std::string yaml;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases{
      {"storage:\n  fsnyc: false\n",
       {"unknown config key \"storage.fsnyc\" in ", "line 2, column 3"}},
      {"colour: red\n", {"unknown config key \"colour\""}},
      {"storage:\n  fsync: [true]\n",
       {"config key \"storage.fsync\"", "must be a single value, not a sequence"}},
      {"max_size: {a: 1}\n", {"config key \"max_size\"", "not a mapping"}},
      {"eviction:\n", {"config key \"eviction\"", "not empty"}},
      {"storage: 5\n", {"config key \"storage\"", "must be a mapping of keys, not a single value"}},
      {"- a\n- b\n", {"must be a mapping of keys"}},
      {"storage:\n  fsync: maybe\n",
       {"config key \"storage.fsync\"", "\"maybe\" is not a boolean"}},
      {"max_size: 12XB\n",
       {"config key \"max_size\"", "line 1, column 11",
        "size \"12XB\" has an unknown unit \"XB\""}},
      {"storage:\n  janitor_interval: 5x\n", {"duration \"5x\" has an unknown unit \"x\""}},
      {"storage:\n  janitor_interval: 0s\n", {"duration \"0s\" must be greater than 0"}},
      {"storage:\n  block_size: 3000\n", {"size \"3000\" is not a power of two"}},
      {"eviction: lru\neviction: atime\n", {"config key \"eviction\" appears twice"}},
      {"server: [1,\n  io_threads: 2\n", {"cannot parse config file \"", "line 3, column 1"}},
  };
  for (const Case& c : cases) {
    INFO("config file:\n" << c.yaml);
    const TempDir dir("gorego-config-test");
    const std::string file = write_file(dir, "gorego.yaml", c.yaml).string();
    const std::string message = load_error({"--config", file});
    CHECK_THAT(message, Contains(file));
    for (const std::string& part : c.expected) CHECK_THAT(message, Contains(part));
  }

  CHECK_THAT(load_error({"--config", "/nonexistent/gorego.yaml"}),
             Contains("cannot read config file \"/nonexistent/gorego.yaml\": No such file"));
  CHECK_THAT(load_error({"--config", "/"}),
             Contains("cannot read config file \"/\": it is a directory"));
  CHECK_THAT(load_error({}, {{"GOREGO_CONFIG", "/nonexistent/env.yaml"}}),
             Contains("cannot read config file \"/nonexistent/env.yaml\""));
}

TEST_CASE("Config: errors in the environment are INVALID_ARGUMENT naming variable and value") {
  struct Case {
    Environment env;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases{
      {{{"GOREGO_MAX_SIZ", "1GiB"}},
       {"unknown environment variable GOREGO_MAX_SIZ ", "GOREGO_MAX_SIZE"}},
      {{{"GOREGO_EVICTION", "lfu"}},
       {"environment variable GOREGO_EVICTION",
        "eviction \"lfu\" is not one of: sampled-lru, lru, atime"}},
      {{{"GOREGO_SERVER_MAX_BATCH_SIZE", "128MiB"}},
       {"size \"128MiB\" is out of range 64KiB..64MiB"}},
      {{{"GOREGO_SERVER_MAX_BATCH_SIZE", "1KiB"}}, {"size \"1KiB\" is out of range 64KiB..64MiB"}},
      {{{"GOREGO_MAX_SIZE", "1GiB"}, {"GOREGO_SERVER_MAX_BLOB_SIZE", "2GiB"}},
       {"server.max_blob_size 2GiB is larger than max_size 1GiB"}},
      {{{"GOREGO_SERVER_SHUTDOWN_GRACE", "soon"}},
       {"GOREGO_SERVER_SHUTDOWN_GRACE", "duration \"soon\" does not start with a number"}},
      {{{"GOREGO_STORAGE_FORCE_UPDATE_ATIME", "sure"}}, {"\"sure\" is not a boolean"}},
      {{{"GOREGO_STORAGE_MEMORY_CACHE", "lots"}}, {"GOREGO_STORAGE_MEMORY_CACHE", "\"lots\""}},
      {{{"GOREGO_STORAGE_VERIFY_READS", "never"}},
       {"GOREGO_STORAGE_VERIFY_READS",
        "storage.verify_reads \"never\" is not one of: first, always"}},
  };
  for (const Case& c : cases) {
    INFO("environment: " << c.env.front().first << "=" << c.env.front().second);
    const std::string message = load_error({}, c.env);
    for (const std::string& part : c.expected) CHECK_THAT(message, Contains(part));
  }
}

TEST_CASE("Config: Kubernetes service-link variables are not mistaken for settings") {
  const Environment env{{"GOREGO_SERVICE_HOST", "10.0.0.1"},
                        {"GOREGO_SERVICE_PORT", "50051"},
                        {"GOREGO_PORT", "tcp://10.0.0.1:50051"},
                        {"GOREGO_PORT_50051_TCP_ADDR", "10.0.0.1"},
                        {"GOREGO_EVICTION", "atime"}};
  const char* argv[] = {"gorego"};
  auto loaded = gorego::load_config(1, argv, env);
  REQUIRE(loaded.ok());
  CHECK(loaded->config.storage.eviction == Eviction::kAtime);
  CHECK(loaded->config.server.listen_addr == "127.0.0.1:50051");
}

TEST_CASE("Config: errors on the command line are INVALID_ARGUMENT naming flag and value") {
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases{
      {{"--max-sise", "1GiB"}, {"--max-sise"}},
      {{"serve"}, {"serve"}},
      {{"--max-size"}, {"--max-size"}},
      {{"--max-size", "12XB"}, {"flag --max-size: size \"12XB\" has an unknown unit \"XB\""}},
      {{"--max-size", "0"}, {"size \"0\" must be greater than 0"}},
      {{"--log-level", "verbose"},
       {"log level \"verbose\" is not one of: debug, info, warn, error"}},
      {{"--io-threads", "2000"}, {"flag --io-threads: \"2000\" is out of range 1..1024"}},
      {{"--io-threads", "many"}, {"\"many\" is not a whole number"}},
      {{"--fsync", "sometimes"}, {"\"sometimes\" is not a boolean"}},
      {{"--data-dir", ""}, {"data directory \"\" is empty"}},
      {{"--listen", "localhost"}, {"listen address \"localhost\" is not HOST:PORT"}},
      {{"--listen", "localhost:70000"},
       {"listen address \"localhost:70000\" has port 70000 outside 0..65535"}},
      {{"--listen", "localhost:http"},
       {"listen address \"localhost:http\" has a port \"http\" that is not a number"}},
      {{"--listen", "localhost:"}, {"listen address \"localhost:\" has a port \"\""}},
      {{"--listen", ":50051"}, {"listen address \":50051\" has an invalid host \"\""}},
      {{"--listen", "::1:50051"},
       {"listen address \"::1:50051\" has an IPv6 host without brackets"}},
      {{"--listen", "[::1]"}, {"listen address \"[::1]\" is not HOST:PORT"}},
      {{"--listen", "[localhost]:1"}, {"\"[localhost]:1\"", "not an IPv6 address"}},
  };
  for (const Case& c : cases) {
    INFO("flags: " << fmt::format("{}", fmt::join(c.args, " ")));
    const std::string message = load_error(c.args);
    for (const std::string& part : c.expected) CHECK_THAT(message, Contains(part));
  }
}

TEST_CASE("Config: --help returns the usage as an exit message") {
  // --help is answered even when other input is bad.
  auto result = load({"--help", "--max-size", "bogus"}, {{"GOREGO_TYPO", "1"}});
  REQUIRE(result.ok());
  REQUIRE(result->exit_message.has_value());
  const std::string& help = *result->exit_message;
  for (const std::string_view part :
       {"--config FILE", "--listen HOST:PORT", "--data-dir DIR", "--max-size SIZE",
        "--eviction NAME", "--log-level LEVEL", "--io-threads N", "--fsync BOOL", "--print-config",
        "GOREGO_CONFIG", "GOREGO_LISTEN_ADDR", "GOREGO_STORAGE_JANITOR_INTERVAL",
        "server.max_batch_size", "storage.block_size", "--upstream URL", "--upstream-mode MODE",
        "GOREGO_REMOTE_TARGET", "remote.bearer_token", "remote.tls_key_file"}) {
    CHECK_THAT(help, Contains(std::string(part)));
  }
}

TEST_CASE("Config: --print-config returns the effective config as YAML") {
  auto result = load({"--print-config", "--max-size", "2GiB"}, {{"GOREGO_EVICTION", "atime"}});
  REQUIRE(result.ok());
  REQUIRE(result->exit_message.has_value());
  CHECK_THAT(*result->exit_message, Contains("max_size: 2GiB"));
  CHECK_THAT(*result->exit_message, Contains("eviction: atime"));
  CHECK(*result->exit_message == gorego::to_yaml(result->config));

  // Invalid input is still an error, not printed.
  CHECK_THAT(load_error({"--print-config", "--eviction", "lfu"}), Contains("\"lfu\""));
}

TEST_CASE("Config: to_yaml round-trips through load_config") {
  const Config custom{
      .server = {.listen_addr = "[::1]:0",
                 .io_threads = 1024,
                 .max_batch_total_size_bytes = 64 * kMiB,
                 .max_blob_size_bytes = 1000,
                 .shutdown_grace = std::chrono::seconds(0)},
      .storage = {.data_dir = "/tmp/gorego data: #1",
                  .max_size_bytes = 3 * kGiB / 2 + 7,
                  .eviction = Eviction::kAtime,
                  .fsync = false,
                  .janitor_interval = std::chrono::seconds(90),
                  .force_update_atime = true,
                  .block_size = 1},
      .telemetry = {.log_level = Level::kError,
                    .resource_attributes = {{"deployment.environment", "prod: eu #1"},
                                            {"k8s.pod.name", "gorego-0"}}},
      .remote = {.target = "grpcs://[2001:db8::1]:8980",
                 .instance_name = "projects/p:#1/instances/default_instance",
                 .timeout = std::chrono::hours(2),
                 .retries = 10,
                 .mode = RemoteMode::kBack,
                 .queue_size = 1,
                 .tls_ca_file = "/etc/ssl/my ca.pem",
                 .tls_cert_file = "client: cert.pem",
                 .tls_key_file = "'key'.pem"},
      // remote.bearer_token, remote.header and remote.headers are redacted by to_yaml: see
      // their own test.
  };
  REQUIRE(gorego::validate(custom).ok());
  const Config plaintext{.remote = {.target = "grpc://10.0.0.7:1", .mode = RemoteMode::kThrough}};
  REQUIRE(gorego::validate(plaintext).ok());
  const Config config = GENERATE_COPY(Config{}, custom, plaintext);
  const TempDir dir("gorego-config-test");
  const fs::path file = write_file(dir, "round-trip.yaml", gorego::to_yaml(config));
  INFO(gorego::to_yaml(config));
  CHECK(load_ok({"--config", file.string()}) == config);
}

TEST_CASE("Config: to_yaml uses the nested keys and readable units") {
  const std::string yaml = gorego::to_yaml(Config{});
  CHECK_THAT(yaml, Contains("listen_addr: 127.0.0.1:50051\n"));
  CHECK_THAT(yaml, Contains("max_size: 10GiB\n"));
  CHECK_THAT(yaml, Contains("storage:\n  fsync: true\n  janitor_interval: 1m\n"));
  CHECK_THAT(yaml,
             Contains("server:\n  io_threads: 8\n  io_queue: 4096\n  max_batch_size: 4MiB\n"));
  CHECK_THAT(yaml, Contains("telemetry:\n  log_level: info\n"));
  CHECK_THAT(yaml, Contains("remote:\n  target: \"\"\n"));
  CHECK_THAT(yaml, Contains("  timeout: 1m\n  retries: 3\n  mode: through\n  queue_size: 10000\n"));
}

TEST_CASE("Config: validate checks a Config built in code") {
  CHECK(gorego::validate(Config{}).ok());

  const auto message = [](const Config& config) {
    const gorego::Status status = gorego::validate(config);
    REQUIRE_FALSE(status.ok());
    CHECK(status.code() == Code::kInvalidArgument);
    return status.message();
  };
  CHECK_THAT(message(Config{.server = {.io_threads = 0}}),
             Contains("config key \"server.io_threads\": \"0\" is out of range 1..1024"));
  // An enum value outside its names (a cast integer) is named by its number.
  CHECK_THAT(message(Config{.storage = {.eviction = static_cast<Eviction>(7)}}),
             Contains("eviction \"7\" is not one of"));
  CHECK_THAT(message(Config{.server = {.listen_addr = "nope"}}),
             Contains("\"nope\" is not HOST:PORT"));
  CHECK_THAT(message(Config{.storage = {.max_size_bytes = 0}}), Contains("max_size"));
  CHECK_THAT(message(Config{.storage = {.block_size = 3}}),
             Contains("\"3\" is not a power of two"));
  CHECK_THAT(message(Config{.server = {.max_batch_total_size_bytes = 64 * kKiB,
                                       .max_blob_size_bytes = 2 * kKiB},
                            .storage = {.max_size_bytes = kKiB}}),
             Contains("server.max_blob_size 2KiB is larger than max_size 1KiB"));
}

TEST_CASE("Config: current_environment reads the process environment") {
  REQUIRE(::setenv("GORECONFIG_TEST_PROBE", "a=b", 1) == 0);
  const Environment env = gorego::current_environment();
  ::unsetenv("GORECONFIG_TEST_PROBE");
  CHECK(std::count(env.begin(), env.end(),
                   std::pair<std::string, std::string>{"GORECONFIG_TEST_PROBE", "a=b"}) == 1);
}

TEST_CASE("Config: remote.target and remote.mode: file < GOREGO_REMOTE_* < --upstream flags") {
  const TempDir dir("gorego-config-test");
  const fs::path file = write_file(dir, "gorego.yaml",
                                   "remote:\n"
                                   "  target: grpc://file-cache:9092\n"
                                   "  mode: back\n"
                                   "  retries: 5\n");
  const Environment env{{"GOREGO_REMOTE_TARGET", "grpcs://env-cache.example.com:443"},
                        {"GOREGO_REMOTE_MODE", "through"}};

  const Config from_file = load_ok({"--config", file.string()});
  CHECK(from_file.remote.target == "grpc://file-cache:9092");
  CHECK(from_file.remote.mode == RemoteMode::kBack);
  CHECK(from_file.remote.retries == 5);

  const Config from_env = load_ok({"--config", file.string()}, env);
  CHECK(from_env.remote.target == "grpcs://env-cache.example.com:443");
  CHECK(from_env.remote.mode == RemoteMode::kThrough);
  CHECK(from_env.remote.retries == 5);  // file

  const Config from_flag = load_ok(
      {"--config", file.string(), "--upstream", "grpc://[::1]:8980", "--upstream-mode=back"}, env);
  CHECK(from_flag.remote.target == "grpc://[::1]:8980");
  CHECK(from_flag.remote.mode == RemoteMode::kBack);

  // The flag can also switch the upstream off again.
  CHECK(load_ok({"--upstream", ""}, env).remote.target.empty());
  CHECK(load_ok({}, {{"GOREGO_REMOTE_TARGET", ""}}).remote.target.empty());
}

TEST_CASE("Config: remote.target accepts grpc:// and grpcs:// with a name, IPv4 or [IPv6] host") {
  for (const std::string target :
       {"grpc://localhost:1", "grpcs://cache.example.com:443", "grpc://10.1.2.3:65535",
        "grpcs://[::1]:8980", "grpc://[fe80::1%eth0]:9092", "grpc://my_cache-1.internal:50051"}) {
    INFO(target);
    CHECK(load_ok({"--upstream", target}).remote.target == target);
  }
}

TEST_CASE("Config: bad remote.* values are INVALID_ARGUMENT naming the key and the value") {
  struct Case {
    Environment env;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases{
      {{{"GOREGO_REMOTE_TARGET", "http://x:1"}},
       {"environment variable GOREGO_REMOTE_TARGET",
        "remote.target \"http://x:1\" must start with grpc:// or grpcs://"}},
      {{{"GOREGO_REMOTE_TARGET", "cache:9092"}},
       {"remote.target \"cache:9092\" must start with grpc:// or grpcs://"}},
      {{{"GOREGO_REMOTE_TARGET", "GRPC://cache:9092"}}, {"must start with grpc:// or grpcs://"}},
      {{{"GOREGO_REMOTE_TARGET", "grpc://cache"}},
       {"remote.target \"grpc://cache\" is not grpc://HOST:PORT"}},
      {{{"GOREGO_REMOTE_TARGET", "grpcs://"}},
       {"remote.target \"grpcs://\" is not grpcs://HOST:PORT"}},
      {{{"GOREGO_REMOTE_TARGET", "grpc://cache:0"}},
       {"remote.target \"grpc://cache:0\" has port 0 outside 1..65535"}},
      {{{"GOREGO_REMOTE_TARGET", "grpc://cache:65536"}}, {"has port 65536 outside 1..65535"}},
      {{{"GOREGO_REMOTE_TARGET", "grpc://cache:443/"}},
       {"remote.target \"grpc://cache:443/\" has a port \"443/\" that is not a number"}},
      {{{"GOREGO_REMOTE_TARGET", "grpc://:443"}},
       {"remote.target \"grpc://:443\" has an invalid host \"\""}},
      {{{"GOREGO_REMOTE_TARGET", "grpc://user@cache:443"}}, {"has an invalid host \"user@cache\""}},
      {{{"GOREGO_REMOTE_TARGET", "grpcs://::1:443"}},
       {"remote.target \"grpcs://::1:443\" has an IPv6 host without brackets; write "
        "grpcs://[HOST]:PORT"}},
      {{{"GOREGO_REMOTE_TARGET", "grpc://[cache]:443"}},
       {"remote.target \"grpc://[cache]:443\" has \"cache\" in brackets, not an IPv6 address"}},
      {{{"GOREGO_REMOTE_INSTANCE_NAME", "/main"}},
       {"GOREGO_REMOTE_INSTANCE_NAME", "remote.instance_name \"/main\" has an empty path segment"}},
      {{{"GOREGO_REMOTE_INSTANCE_NAME", "a//b"}}, {"\"a//b\" has an empty path segment"}},
      {{{"GOREGO_REMOTE_INSTANCE_NAME", "main/"}}, {"\"main/\" has an empty path segment"}},
      {{{"GOREGO_REMOTE_INSTANCE_NAME", "main/blobs"}},
       {"remote.instance_name \"main/blobs\" has the segment \"blobs\", a reserved word"}},
      {{{"GOREGO_REMOTE_INSTANCE_NAME", "compressed-blobs"}}, {"segment \"compressed-blobs\""}},
      {{{"GOREGO_REMOTE_INSTANCE_NAME", "my instance"}},
       {"remote.instance_name \"my instance\" has a space or a control character"}},
      {{{"GOREGO_REMOTE_TIMEOUT", "0s"}},
       {"GOREGO_REMOTE_TIMEOUT", "duration \"0s\" must be greater than 0"}},
      {{{"GOREGO_REMOTE_TIMEOUT", "500ms"}}, {"duration \"500ms\" has an unknown unit \"ms\""}},
      {{{"GOREGO_REMOTE_RETRIES", "11"}},
       {"GOREGO_REMOTE_RETRIES", "\"11\" is out of range 0..10"}},
      {{{"GOREGO_REMOTE_RETRIES", "-1"}}, {"\"-1\" is not a whole number"}},
      {{{"GOREGO_REMOTE_MODE", "around"}},
       {"GOREGO_REMOTE_MODE", "remote.mode \"around\" is not one of: through, back"}},
      {{{"GOREGO_REMOTE_MODE", "Back"}}, {"remote.mode \"Back\" is not one of"}},
      {{{"GOREGO_REMOTE_QUEUE_SIZE", "0"}},
       {"GOREGO_REMOTE_QUEUE_SIZE", "\"0\" is out of range 1..1000000"}},
      {{{"GOREGO_REMOTE_QUEUE_SIZE", "1000001"}}, {"\"1000001\" is out of range 1..1000000"}},
      {{{"GOREGO_REMOTE_HEADER", "X-Api-Key"}},
       {"GOREGO_REMOTE_HEADER", "remote.header is not \"Name: value\": it has no ':'"}},
      {{{"GOREGO_REMOTE_HEADER", ": value"}}, {"remote.header has an empty name before the ':'"}},
      {{{"GOREGO_REMOTE_HEADER", "X Api Key: value"}},
       {"remote.header has a name with a character other than", "at position 2"}},
      {{{"GOREGO_REMOTE_HEADER", "grpc-timeout: 1S"}},
       {"remote.header name \"grpc-timeout\" is reserved by gRPC"}},
      {{{"GOREGO_REMOTE_HEADER", "GRPC-Foo: 1"}}, {"remote.header name \"GRPC-Foo\" is reserved"}},
      {{{"GOREGO_REMOTE_HEADER", "x-api-key:  "}},
       {"remote.header \"x-api-key\" has an empty value"}},
      {{{"GOREGO_REMOTE_HEADER", "x-api-key: abc "}},
       {"remote.header \"x-api-key\" has a value ending in a space"}},
      {{{"GOREGO_REMOTE_HEADER", "x-api-key: a\nb"}},
       {"remote.header \"x-api-key\" has a control or a non-ASCII character at position 2"}},
      {{{"GOREGO_REMOTE_BEARER_TOKEN", "abc def"}},
       {"GOREGO_REMOTE_BEARER_TOKEN", "remote.bearer_token has a space", "at position 4"}},
      {{{"GOREGO_REMOTE_BEARER_TOKEN", "abc\n"}}, {"remote.bearer_token has a space, a control"}},
  };
  for (const Case& c : cases) {
    INFO("environment: " << c.env.front().first << "=" << c.env.front().second);
    const std::string message = load_error({}, c.env);
    for (const std::string& part : c.expected) CHECK_THAT(message, Contains(part));
  }

  // The same parsers answer for the flags and the file.
  CHECK_THAT(load_error({"--upstream", "http://x:1"}),
             Contains("flag --upstream: remote.target \"http://x:1\" must start with grpc:// or "
                      "grpcs://"));
  CHECK_THAT(
      load_error({"--upstream-mode", "forward"}),
      Contains("flag --upstream-mode: remote.mode \"forward\" is not one of: through, back"));
  const TempDir dir("gorego-config-test");
  const std::string file =
      write_file(dir, "gorego.yaml", "remote:\n  queue_size: 2000000\n").string();
  const std::string message = load_error({"--config", file});
  CHECK_THAT(message, Contains("config key \"remote.queue_size\" in " + file));
  CHECK_THAT(message, Contains("\"2000000\" is out of range 1..1000000"));
}

TEST_CASE("Config: messages about remote.bearer_token and remote.header never quote the secret") {
  for (const Environment& env : std::vector<Environment>{
           {{"GOREGO_REMOTE_BEARER_TOKEN", "t0psecret token"}},
           {{"GOREGO_REMOTE_HEADER", "t0psecret"}},
           {{"GOREGO_REMOTE_HEADER", "x-api-key t0psecret: v"}},
           {{"GOREGO_REMOTE_HEADER", "x-api-key: t0psecret\t"}},
           {{"GOREGO_REMOTE_HEADER", "x-api-key: t0psecret "}},
       }) {
    INFO(env.front().first << "=" << env.front().second);
    const std::string message = load_error({}, env);
    CHECK_THAT(message, !Contains("t0psecret"));
  }
}

TEST_CASE("Config: validate checks the rules between the remote.* settings") {
  const auto message = [](const Config& config) {
    const gorego::Status status = gorego::validate(config);
    REQUIRE_FALSE(status.ok());
    CHECK(status.code() == Code::kInvalidArgument);
    return status.message();
  };
  CHECK(gorego::validate(Config{.remote = {.target = "grpcs://cache:443",
                                           .tls_ca_file = "ca.pem",
                                           .tls_cert_file = "cert.pem",
                                           .tls_key_file = "key.pem"}})
            .ok());
  // The files are not opened here.
  CHECK(gorego::validate(
            Config{.remote = {.target = "grpcs://cache:443", .tls_ca_file = "/nonexistent/ca.pem"}})
            .ok());
  // Without a target the remote.* settings are unused; only the pairing is checked.
  CHECK(gorego::validate(Config{.remote = {.tls_ca_file = "ca.pem"}}).ok());

  CHECK_THAT(message(Config{.remote = {.target = "grpc://cache:9092", .tls_ca_file = "ca.pem"}}),
             Contains("remote.tls_ca_file \"ca.pem\" needs a grpcs:// remote.target, not "
                      "\"grpc://cache:9092\""));
  CHECK_THAT(message(Config{.remote = {.target = "grpc://cache:9092",
                                       .tls_cert_file = "cert.pem",
                                       .tls_key_file = "key.pem"}}),
             Contains("remote.tls_cert_file \"cert.pem\" needs a grpcs:// remote.target"));
  CHECK_THAT(message(Config{.remote = {.target = "grpc://cache:9092", .tls_key_file = "k.pem"}}),
             Contains("remote.tls_key_file \"k.pem\" needs a grpcs:// remote.target"));
  CHECK_THAT(message(Config{.remote = {.target = "grpcs://cache:443", .tls_cert_file = "c.pem"}}),
             Contains("remote.tls_cert_file \"c.pem\" is set without remote.tls_key_file; give "
                      "both or neither"));
  CHECK_THAT(message(Config{.remote = {.target = "grpcs://cache:443", .tls_key_file = "k.pem"}}),
             Contains("remote.tls_key_file \"k.pem\" is set without remote.tls_cert_file"));
  CHECK_THAT(message(Config{
                 .remote = {.bearer_token = "t0psecret", .header = "Authorization: Basic Zm9v"}}),
             Contains("remote.header \"Authorization\" conflicts with remote.bearer_token"));
  CHECK_THAT(message(Config{
                 .remote = {.bearer_token = "t0psecret", .header = "Authorization: Basic Zm9v"}}),
             !Contains("t0psecret"));
  CHECK(gorego::validate(Config{.remote = {.header = "authorization: Basic Zm9v"}}).ok());

  // The per-setting rules apply to a Config built in code too.
  CHECK_THAT(message(Config{.remote = {.target = "http://x:1"}}),
             Contains("config key \"remote.target\": remote.target \"http://x:1\" must start with "
                      "grpc:// or grpcs://"));
  CHECK_THAT(message(Config{.remote = {.retries = 11}}), Contains("config key \"remote.retries\""));
  CHECK_THAT(message(Config{.remote = {.queue_size = 0}}),
             Contains("config key \"remote.queue_size\""));
  CHECK_THAT(message(Config{.remote = {.timeout = std::chrono::seconds(0)}}),
             Contains("config key \"remote.timeout\": duration \"0s\" must be greater than 0"));
  CHECK_THAT(message(Config{.remote = {.mode = static_cast<RemoteMode>(9)}}),
             Contains("remote.mode \"9\" is not one of: through, back"));

  // The same rules through load_config().
  CHECK_THAT(load_error({"--upstream", "grpc://cache:9092"},
                        {{"GOREGO_REMOTE_TLS_CA_FILE", "/etc/ssl/ca.pem"}}),
             Contains("remote.tls_ca_file \"/etc/ssl/ca.pem\" needs a grpcs:// remote.target"));
  CHECK_THAT(load_error({"--upstream", "grpcs://cache:443"},
                        {{"GOREGO_REMOTE_TLS_CERT_FILE", "/etc/gorego/client.pem"}}),
             Contains("remote.tls_cert_file \"/etc/gorego/client.pem\" is set without "
                      "remote.tls_key_file"));
}

TEST_CASE("Config: to_yaml and --print-config redact remote.bearer_token and remote.header") {
  const Config config{.remote = {.target = "grpcs://cache.example.com:443",
                                 .bearer_token = "t0psecret",
                                 .header = "X-Api-Key:  k3y"}};
  REQUIRE(gorego::validate(config).ok());
  const std::string yaml = gorego::to_yaml(config);
  CHECK_THAT(yaml, !Contains("t0psecret"));
  CHECK_THAT(yaml, !Contains("k3y"));
  CHECK_THAT(yaml, Contains("bearer_token: <redacted>\n"));
  CHECK_THAT(yaml, Contains("header: \"X-Api-Key: <redacted>\"\n"));

  auto printed = load({"--print-config"}, {{"GOREGO_REMOTE_BEARER_TOKEN", "t0psecret"},
                                           {"GOREGO_REMOTE_HEADER", "x-api-key: k3y"}});
  REQUIRE(printed.ok());
  REQUIRE(printed->exit_message.has_value());
  CHECK(printed->config.remote.bearer_token == "t0psecret");  // only the printout is redacted
  CHECK_THAT(*printed->exit_message, !Contains("t0psecret"));
  CHECK_THAT(*printed->exit_message, !Contains("k3y"));
  CHECK_THAT(*printed->exit_message, Contains("bearer_token: <redacted>"));

  // Unset secrets print as empty, and the defaults in --help show nothing secret either.
  CHECK_THAT(gorego::to_yaml(Config{}), Contains("  bearer_token: \"\"\n  header: \"\"\n"));

  // Loading the printout back is an error, not an upstream that rejects "<redacted>".
  const TempDir dir("gorego-config-test");
  const std::string file = write_file(dir, "printed.yaml", yaml).string();
  CHECK_THAT(load_error({"--config", file}),
             Contains("remote.bearer_token is \"<redacted>\", the placeholder --print-config "
                      "prints for a secret"));
  CHECK_THAT(load_error({}, {{"GOREGO_REMOTE_HEADER", "X-Api-Key: <redacted>"}}),
             Contains("remote.header \"X-Api-Key\" has the value \"<redacted>\", the placeholder"));
}

TEST_CASE("Config: telemetry.* settings from flags and environment, and their errors") {
  const Config d = load_ok({});
  CHECK(d.telemetry.metrics_addr == "127.0.0.1:9090");
  CHECK(d.telemetry.tracing_endpoint.empty());
  CHECK(d.telemetry.sample_rate == 1.0);
  CHECK(d.telemetry.service_name == "gorego");

  const Config c = load_ok(
      {"--metrics-addr", "", "--tracing-endpoint", "grpc://collector:4317"},
      {{"GOREGO_TELEMETRY_SAMPLE_RATE", "0.05"}, {"GOREGO_TELEMETRY_SERVICE_NAME", "cache-eu"}});
  CHECK(c.telemetry.metrics_addr.empty());
  CHECK(c.telemetry.tracing_endpoint == "grpc://collector:4317");
  CHECK(c.telemetry.sample_rate == 0.05);
  CHECK(c.telemetry.service_name == "cache-eu");
  CHECK(load_ok({"--tracing-endpoint", "stdout"}).telemetry.tracing_endpoint == "stdout");
  CHECK(load_ok({"--tracing-endpoint", "[::1]:4317", "--metrics-addr", "[::1]:0"})
            .telemetry.metrics_addr == "[::1]:0");

  struct Case {
    std::vector<std::string> args;
    Environment env;
    std::string expected;
  };
  const std::vector<Case> cases{
      {{"--metrics-addr", "9090"}, {}, "metrics address \"9090\" is not HOST:PORT"},
      {{"--metrics-addr", "localhost:70000"}, {}, "has port 70000 outside 0..65535"},
      {{"--tracing-endpoint", "http://collector:4318"},
       {},
       "must be stdout, HOST:PORT or grpc://HOST:PORT"},
      {{"--tracing-endpoint", "collector:0"}, {}, "has port 0 outside 1..65535"},
      {{},
       {{"GOREGO_TELEMETRY_SAMPLE_RATE", "1.5"}},
       "sample rate \"1.5\" is not a number in 0..1"},
      {{},
       {{"GOREGO_TELEMETRY_SAMPLE_RATE", "half"}},
       "sample rate \"half\" is not a number in 0..1"},
      {{},
       {{"GOREGO_TELEMETRY_SERVICE_NAME", "my cache"}},
       "service name \"my cache\" must be 1..128 printable"},
  };
  for (const Case& k : cases) {
    INFO(k.expected);
    CHECK_THAT(load_error(k.args, k.env), Catch::Matchers::Contains(k.expected));
  }
}

// ---- settings by area: nested structs, lists, maps and enumerations ----

TEST_CASE("Config: every area's struct is filled from YAML, the environment and flags") {
  const TempDir dir("gorego-config-test");
  const fs::path file = write_file(dir, "gorego.yaml",
                                   "listen_addr: 0.0.0.0:9000\n"
                                   "eviction: lru\n"
                                   "server:\n"
                                   "  io_queue: 100\n"
                                   "storage:\n"
                                   "  verify_reads: always\n"
                                   "telemetry:\n"
                                   "  log_level: error\n"
                                   "  resource_attributes:\n"
                                   "    deployment.environment: staging\n"
                                   "remote:\n"
                                   "  target: grpc://file:1\n"
                                   "  mode: back\n"
                                   "  headers:\n"
                                   "    - \"x-file: 1\"\n");
  const Environment env{{"GOREGO_SERVER_IO_QUEUE", "200"},
                        {"GOREGO_TELEMETRY_LOG_LEVEL", "warn"},
                        {"GOREGO_REMOTE_MODE", "through"}};
  const Config config = load_ok(
      {"--config", file.string(), "--eviction", "atime", "--upstream", "grpc://flag:2"}, env);
  CHECK(config.server.listen_addr == "0.0.0.0:9000");               // file
  CHECK(config.server.io_queue == 200);                             // environment
  CHECK(config.storage.eviction == Eviction::kAtime);               // flag
  CHECK(config.storage.verify_reads == ReadVerification::kAlways);  // file
  CHECK(config.telemetry.log_level == Level::kWarn);                // environment
  CHECK(config.telemetry.resource_attributes.at("deployment.environment") == "staging");
  CHECK(config.remote.target == "grpc://flag:2");                         // flag
  CHECK(config.remote.mode == RemoteMode::kThrough);                      // environment
  CHECK(config.remote.headers == std::vector<std::string>{"x-file: 1"});  // file
  // What no source set keeps the area's default.
  CHECK(config.server.io_threads == gorego::ServerSettings{}.io_threads);
  CHECK(config.storage.block_size == gorego::StorageSettings{}.block_size);
  CHECK(config.telemetry.service_name == gorego::TelemetrySettings{}.service_name);
  CHECK(config.remote.queue_size == gorego::RemoteSettings{}.queue_size);
}

TEST_CASE("Config: a list comes from a YAML sequence, a comma-separated variable or flags") {
  using Headers = std::vector<std::string>;
  const TempDir dir("gorego-config-test");
  const fs::path file = write_file(dir, "gorego.yaml",
                                   "remote:\n"
                                   "  headers:\n"
                                   "    - \"x-one: 1\"\n"
                                   "    - 'X-Two: a, b'\n");
  const fs::path flow = write_file(dir, "flow.yaml", "remote:\n  headers: [\"a: 1\", \"b: 2\"]\n");
  const fs::path none = write_file(dir, "none.yaml", "remote:\n  headers: []\n");

  CHECK(load_ok({"--config", file.string()}).remote.headers == Headers{"x-one: 1", "X-Two: a, b"});
  CHECK(load_ok({"--config", flow.string()}).remote.headers == Headers{"a: 1", "b: 2"});
  CHECK(load_ok({"--config", none.string()}).remote.headers.empty());

  // The environment: split at commas, spaces around an element dropped; it replaces the file's.
  CHECK(load_ok({"--config", file.string()}, {{"GOREGO_REMOTE_HEADERS", "x-env: 1, y-env: 2"}})
            .remote.headers == Headers{"x-env: 1", "y-env: 2"});
  CHECK(
      load_ok({"--config", file.string()}, {{"GOREGO_REMOTE_HEADERS", ""}}).remote.headers.empty());

  // A repeated flag appends, each occurrence may hold several; the flags replace the others.
  CHECK(load_ok({"--config", file.string(), "--upstream-header", "x-a: 1",
                 "--upstream-header=x-b: 2,x-c: 3"},
                {{"GOREGO_REMOTE_HEADERS", "x-env: 1"}})
            .remote.headers == Headers{"x-a: 1", "x-b: 2", "x-c: 3"});

  // remote.header keeps working next to the list.
  const Config both =
      load_ok({"--upstream-header", "x-b: 2"}, {{"GOREGO_REMOTE_HEADER", "x-a: 1"}});
  CHECK(both.remote.header == "x-a: 1");
  CHECK(both.remote.headers == Headers{"x-b: 2"});
}

TEST_CASE("Config: a map comes from a YAML mapping or K=V,K2=V2 in the environment") {
  using Attributes = std::map<std::string, std::string>;
  const TempDir dir("gorego-config-test");
  const fs::path file = write_file(dir, "gorego.yaml",
                                   "telemetry:\n"
                                   "  resource_attributes:\n"
                                   "    deployment.environment: prod\n"
                                   "    cloud.region: \"eu-west-1, zone b\"\n"
                                   "    empty.value: \"\"\n");
  const fs::path none = write_file(dir, "none.yaml", "telemetry:\n  resource_attributes: {}\n");

  CHECK(load_ok({"--config", file.string()}).telemetry.resource_attributes ==
        Attributes{{"deployment.environment", "prod"},
                   {"cloud.region", "eu-west-1, zone b"},
                   {"empty.value", ""}});
  CHECK(load_ok({"--config", none.string()}).telemetry.resource_attributes.empty());

  // The environment replaces the file's map; spaces around keys and values are dropped and
  // a value may hold '='.
  CHECK(load_ok({"--config", file.string()},
                {{"GOREGO_TELEMETRY_RESOURCE_ATTRIBUTES", "team = build, query=a=b"}})
            .telemetry.resource_attributes == Attributes{{"team", "build"}, {"query", "a=b"}});
  CHECK(load_ok({"--config", file.string()}, {{"GOREGO_TELEMETRY_RESOURCE_ATTRIBUTES", ""}})
            .telemetry.resource_attributes.empty());
}

TEST_CASE("Config: enumerations parse to enum values and print back by name") {
  static_assert(gorego::NamedEnum<Eviction>);
  static_assert(gorego::NamedEnum<Level>);
  static_assert(!gorego::NamedEnum<int>);
  static_assert(!gorego::NamedEnum<Code>);  // an enum without a names table
  static_assert(gorego::enum_name(RemoteMode::kBack) == "back");
  static_assert(gorego::enum_from_name<Eviction>("sampled-lru") == Eviction::kSampledLru);
  static_assert(!gorego::enum_from_name<Eviction>("LRU").has_value());  // case-sensitive

  struct Case {
    std::string variable;
    std::string value;
    Config expected;
    std::string printed;  ///< the line --print-config prints for it
  };
  const std::vector<Case> cases{
      {"GOREGO_EVICTION", "lru", Config{.storage = {.eviction = Eviction::kLru}},
       "\neviction: lru\n"},
      {"GOREGO_EVICTION", "atime", Config{.storage = {.eviction = Eviction::kAtime}},
       "\neviction: atime\n"},
      {"GOREGO_STORAGE_VERIFY_READS", "always",
       Config{.storage = {.verify_reads = ReadVerification::kAlways}}, "  verify_reads: always\n"},
      {"GOREGO_TELEMETRY_LOG_LEVEL", "debug", Config{.telemetry = {.log_level = Level::kDebug}},
       "  log_level: debug\n"},
      {"GOREGO_TELEMETRY_LOG_LEVEL", "error", Config{.telemetry = {.log_level = Level::kError}},
       "  log_level: error\n"},
      {"GOREGO_REMOTE_MODE", "back", Config{.remote = {.mode = RemoteMode::kBack}},
       "  mode: back\n"},
  };
  for (const Case& c : cases) {
    INFO(c.variable << "=" << c.value);
    auto printed = load({"--print-config"}, {{c.variable, c.value}});
    REQUIRE(printed.ok());
    CHECK(printed->config == c.expected);
    REQUIRE(printed->exit_message.has_value());
    CHECK_THAT(*printed->exit_message, Contains(c.printed));
  }
  // The defaults print by name too.
  const std::string defaults = gorego::to_yaml(Config{});
  for (const std::string_view line : {"\neviction: sampled-lru\n", "  verify_reads: first\n",
                                      "  log_level: info\n", "  mode: through\n"}) {
    CHECK_THAT(defaults, Contains(std::string(line)));
  }
}

TEST_CASE("Config: a list or map setting of the wrong YAML kind names the key, file and line") {
  struct Case {
    std::string yaml;
    std::string expected;
  };
  const std::vector<Case> cases{
      {"remote:\n  headers:\n    a: 1\n",
       "config key \"remote.headers\" in {} (line 2, column 3) must be a list, not a mapping"},
      {"remote:\n  headers: \"x-api-key: 1\"\n",
       "config key \"remote.headers\" in {} (line 2, column 3) must be a list, not a single value"},
      {"remote:\n  headers:\n",
       "config key \"remote.headers\" in {} (line 2, column 3) must be a list, not empty (write [] "
       "for none)"},
      // The classic slip: an unquoted "Name: value" is a mapping in YAML.
      {"remote:\n  headers:\n    - x-api-key: abc\n",
       "config key \"remote.headers\" in {} (line 3, column 7): remote.headers[0] must be a single "
       "value, not a mapping (quote a value that contains \": \")"},
      {"remote:\n  headers:\n    - \"a: 1\"\n    - [b]\n",
       "config key \"remote.headers\" in {} (line 4, column 7): remote.headers[1] must be a single "
       "value, not a sequence"},
      {"telemetry:\n  resource_attributes: [a, b]\n",
       "config key \"telemetry.resource_attributes\" in {} (line 2, column 3) must be a mapping of "
       "KEY: VALUE, not a sequence"},
      {"telemetry:\n  resource_attributes:\n",
       "must be a mapping of KEY: VALUE, not empty (write {{}} for none)"},
      {"telemetry:\n  resource_attributes:\n    team:\n      name: build\n",
       "config key \"telemetry.resource_attributes\" in {} (line 4, column 7): "
       "telemetry.resource_attributes[\"team\"] must be a single value, not a mapping"},
      // A setting of one value still says so.
      {"remote:\n  header: [\"a: 1\"]\n",
       "config key \"remote.header\" in {} (line 2, column 3) must be a single value, not a "
       "sequence"},
  };
  for (const Case& c : cases) {
    INFO("config file:\n" << c.yaml);
    const TempDir dir("gorego-config-test");
    const std::string file = write_file(dir, "gorego.yaml", c.yaml).string();
    CHECK_THAT(load_error({"--config", file}),
               Contains(fmt::format(fmt::runtime(c.expected), file)));
  }
}

TEST_CASE("Config: a bad list element is named by its index, in every source") {
  const TempDir dir("gorego-config-test");
  const std::string file = write_file(dir, "gorego.yaml",
                                      "remote:\n"
                                      "  headers:\n"
                                      "    - \"x-a: 1\"\n"
                                      "    - \"x-b s3cret\"\n")
                               .string();
  CHECK_THAT(load_error({"--config", file}),
             Contains(fmt::format("config key \"remote.headers\" in {} (line 4, column 7): "
                                  "remote.headers[1] is not \"Name: value\": it has no ':'",
                                  file)));

  struct Case {
    std::vector<std::string> args;
    Environment env;
    std::string expected;
  };
  const std::vector<Case> cases{
      {{},
       {{"GOREGO_REMOTE_HEADERS", "x-a: 1,,x-c: 3"}},
       "environment variable GOREGO_REMOTE_HEADERS: remote.headers[1] is empty; a header is "
       "\"Name: value\""},
      {{}, {{"GOREGO_REMOTE_HEADERS", "x-a: 1,"}}, "remote.headers[1] is empty"},
      {{},
       {{"GOREGO_REMOTE_HEADERS", "grpc-timeout: 1S"}},
       "remote.headers[0] name \"grpc-timeout\" is reserved by gRPC (grpc-*)"},
      {{},
       {{"GOREGO_REMOTE_HEADERS", "x-a: s3cret\t"}},
       "remote.headers[0] \"x-a\" has a control or a non-ASCII character at position 7 of its "
       "value"},
      {{"--upstream-header", "x-a: 1", "--upstream-header", "x-b: 2,x c: s3cret"},
       {},
       "flag --upstream-header: remote.headers[2] has a name with a character other than a "
       "letter, a digit, '-', '_' or '.' at position 2"},
      {{"--upstream-header", "x-a: <redacted>"},
       {},
       "remote.headers[0] \"x-a\" has the value \"<redacted>\", the placeholder --print-config "
       "prints for a secret"},
  };
  for (const Case& c : cases) {
    INFO(c.expected);
    const std::string message = load_error(c.args, c.env);
    CHECK_THAT(message, Contains(c.expected));
    CHECK_THAT(message, !Contains("s3cret"));  // header values are secrets
  }
}

TEST_CASE("Config: a bad map entry is named by its key") {
  const std::string long_key(256, 'k');
  const std::string long_value(4097, 'v');
  struct Case {
    std::string text;  ///< GOREGO_TELEMETRY_RESOURCE_ATTRIBUTES
    std::string expected;
  };
  const std::vector<Case> cases{
      {"team=build,=x", "telemetry.resource_attributes has an empty key"},
      {"team=build,oops", "telemetry.resource_attributes entry 1 \"oops\" is not KEY=VALUE"},
      {"team=build,team=test", "telemetry.resource_attributes has the key \"team\" twice"},
      {"my team=build",
       "telemetry.resource_attributes key \"my team\" has a space, a control or a non-ASCII "
       "character at position 3"},
      {long_key + "=x",
       "telemetry.resource_attributes key \"" + long_key + "\" has 256 characters, more than 255"},
      {"service.name=other",
       "telemetry.resource_attributes[\"service.name\"] is set by telemetry.service_name"},
      {"team=" + long_value,
       "telemetry.resource_attributes[\"team\"] has a value of 4097 characters, more than 4096"},
  };
  for (const Case& c : cases) {
    INFO(c.expected);
    CHECK_THAT(
        load_error({}, {{"GOREGO_TELEMETRY_RESOURCE_ATTRIBUTES", c.text}}),
        Contains("environment variable GOREGO_TELEMETRY_RESOURCE_ATTRIBUTES: " + c.expected));
  }
  // 255 characters and 4 KiB are still fine.
  CHECK(load_ok({}, {{"GOREGO_TELEMETRY_RESOURCE_ATTRIBUTES",
                      std::string(255, 'k') + "=" + std::string(4096, 'v')}})
            .telemetry.resource_attributes.size() == 1);

  // In the file the entry's line is given too, and a control character in a key is escaped.
  const TempDir dir("gorego-config-test");
  const std::string file = write_file(dir, "gorego.yaml",
                                      "telemetry:\n"
                                      "  resource_attributes:\n"
                                      "    team: build\n"
                                      "    \"bad\\tkey\": x\n"
                                      "    region: \"eu\\u0001\"\n")
                               .string();
  CHECK_THAT(
      load_error({"--config", file}),
      Contains(fmt::format("config key \"telemetry.resource_attributes\" in {} (line 4, "
                           "column 5): telemetry.resource_attributes key \"bad\\tkey\" has a "
                           "space, a control or a non-ASCII character at position 4",
                           file)));
  const std::string twice = write_file(dir, "twice.yaml",
                                       "telemetry:\n"
                                       "  resource_attributes:\n"
                                       "    team: a\n"
                                       "    team: b\n")
                                .string();
  CHECK_THAT(load_error({"--config", twice}),
             Contains("(line 4, column 5): telemetry.resource_attributes has the key \"team\" "
                      "twice"));
  const std::string values = write_file(dir, "values.yaml",
                                        "telemetry:\n"
                                        "  resource_attributes:\n"
                                        "    region: \"eu\\u0001\"\n")
                                 .string();
  CHECK_THAT(load_error({"--config", values}),
             Contains("(line 3, column 5): telemetry.resource_attributes[\"region\"] has a control "
                      "or a non-ASCII character at position 3 of its value"));
}

TEST_CASE("Config: an unknown enum value lists the accepted ones, in every source") {
  const TempDir dir("gorego-config-test");
  const std::string file =
      write_file(dir, "gorego.yaml", "storage:\n  verify_reads: sometimes\n").string();
  CHECK_THAT(load_error({"--config", file}),
             Contains(fmt::format("config key \"storage.verify_reads\" in {} (line 2, column 17): "
                                  "storage.verify_reads \"sometimes\" is not one of: first, always",
                                  file)));
  CHECK_THAT(load_error({}, {{"GOREGO_EVICTION", "LRU"}}),
             Contains("environment variable GOREGO_EVICTION: eviction \"LRU\" is not one of: "
                      "sampled-lru, lru, atime"));
  CHECK_THAT(load_error({"--log-level", "trace"}),
             Contains("flag --log-level: log level \"trace\" is not one of: debug, info, warn, "
                      "error"));
  CHECK_THAT(load_error({"--upstream-mode", ""}),
             Contains("flag --upstream-mode: remote.mode \"\" is not one of: through, back"));
}

TEST_CASE("Config: to_yaml prints lists and maps as YAML, header values redacted") {
  const Config config{
      .telemetry = {.resource_attributes = {{"deployment.environment", "prod"}, {"note", "a: b"}}},
      .remote = {.headers = {"x-one: s3cret1", "X-Two:s3cret2"}},
  };
  REQUIRE(gorego::validate(config).ok());
  const std::string yaml = gorego::to_yaml(config);
  CHECK_THAT(yaml, Contains("  resource_attributes:\n    deployment.environment: prod\n"
                            "    note: \"a: b\"\n"));
  CHECK_THAT(yaml,
             Contains("  headers:\n    - \"x-one: <redacted>\"\n    - \"X-Two: <redacted>\"\n"));
  CHECK_THAT(yaml, !Contains("s3cret"));
  const std::string defaults = gorego::to_yaml(Config{});
  CHECK_THAT(defaults, Contains("  resource_attributes: {}\n"));
  CHECK_THAT(defaults, Contains("  headers: []\n"));

  // --print-config shows the redacted list; the printout does not load back as is.
  auto printed = load({"--print-config"}, {{"GOREGO_REMOTE_HEADERS", "a: 1,b: 2"}});
  REQUIRE(printed.ok());
  CHECK(printed->config.remote.headers == std::vector<std::string>{"a: 1", "b: 2"});
  REQUIRE(printed->exit_message.has_value());
  CHECK_THAT(*printed->exit_message,
             Contains("  headers:\n    - \"a: <redacted>\"\n    - \"b: <redacted>\"\n"));
  const TempDir dir("gorego-config-test");
  const std::string file = write_file(dir, "printed.yaml", *printed->exit_message).string();
  const std::string& text = *printed->exit_message;
  const auto line = 1 + std::count(text.begin(), text.begin() + text.find("- \"a: "), '\n');
  CHECK_THAT(load_error({"--config", file}),
             Contains(fmt::format("(line {}, column 7): remote.headers[0] \"a\" has the value "
                                  "\"<redacted>\"",
                                  line)));
}

TEST_CASE("Config: validate checks remote.headers against remote.bearer_token") {
  const Config config{
      .remote = {.bearer_token = "t0psecret", .headers = {"x-a: 1", "Authorization: Basic Zm9v"}}};
  const gorego::Status status = gorego::validate(config);
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(status.message(),
             Contains("remote.headers[1] \"Authorization\" conflicts with remote.bearer_token"));
  CHECK_THAT(status.message(), !Contains("t0psecret"));
  CHECK(gorego::validate(Config{.remote = {.headers = {"authorization: Basic Zm9v"}}}).ok());
  // Each element passes the header parser, in code as from a file.
  CHECK_THAT(
      gorego::validate(Config{.remote = {.headers = {"x-a: 1", "x-b:"}}}).message(),
      Contains("config key \"remote.headers\": remote.headers[1] \"x-b\" has an empty value"));
}

TEST_CASE("Config: --help shows the list and map settings with their syntax") {
  auto result = load({"--help"});
  REQUIRE(result.ok());
  REQUIRE(result->exit_message.has_value());
  const std::string& help = *result->exit_message;
  for (const std::string_view part :
       {"--upstream-header HEADER", "GOREGO_REMOTE_HEADERS", "remote.headers",
        "telemetry.resource_attributes", "GOREGO_TELEMETRY_RESOURCE_ATTRIBUTES",
        "a YAML sequence in the file and A,B in the environment"}) {
    CHECK_THAT(help, Contains(std::string(part)));
  }
  // The default column of the settings table: an empty list and an empty map.
  const auto shown_default = [&](const std::string& variable) {
    const std::size_t at = help.find(variable + " ");
    REQUIRE(at != std::string::npos);
    const std::size_t begin = help.find_first_not_of(' ', at + variable.size());
    return help.substr(begin, help.find('\n', begin) - begin);
  };
  CHECK(shown_default("GOREGO_REMOTE_HEADERS") == "[]");
  CHECK(shown_default("GOREGO_TELEMETRY_RESOURCE_ATTRIBUTES") == "{}");
  CHECK(shown_default("GOREGO_REMOTE_MODE") == "through");
}

TEST_CASE("Config: execution settings from YAML, environment and flags, with precise errors") {
  const Config defaults = load_ok({});
  CHECK_FALSE(defaults.execution.enabled);
  CHECK(defaults.execution.keepalive == std::chrono::seconds(10));
  CHECK(defaults.execution.retention == std::chrono::seconds(120));

  TempDir dir;
  const fs::path file = write_file(dir, "exec.yaml",
                                   "execution:\n  enabled: true\n  default_timeout: 30m\n  max_attempts: 5\n"
                                   "  worker_wait: 2m\n");
  const Config c = load_ok({"--config", file.string()}, {{"GOREGO_EXECUTION_KEEPALIVE", "5s"}});
  CHECK(c.execution.enabled);
  CHECK(c.execution.default_timeout == std::chrono::minutes(30));
  CHECK(c.execution.max_attempts == 5);
  CHECK(c.execution.worker_wait == std::chrono::minutes(2));
  CHECK(c.execution.keepalive == std::chrono::seconds(5));
  CHECK(load_ok({"--execution", "false", "--config", file.string()}).execution.enabled == false);

  CHECK_THAT(load_error({"--execution", "maybe"}), Catch::Contains("maybe"));
  CHECK_THAT(load_error({}, {{"GOREGO_EXECUTION_MAX_ATTEMPTS", "11"}}), Catch::Contains("11"));
  const std::string order = load_error({}, {{"GOREGO_EXECUTION_MAX_TIMEOUT", "10m"}});
  CHECK_THAT(order, Catch::Contains("execution.max_timeout 10m") && Catch::Contains("execution.default_timeout 1h"));
  CHECK_THAT(load_error({}, {{"GOREGO_EXECUTION_KEEPALIVE", "0s"}}),
             Catch::Contains("GOREGO_EXECUTION_KEEPALIVE") && Catch::Contains("\"0s\""));
}

TEST_CASE("Config: tls.* and auth.* from YAML, environment and flags, with precise errors") {
  const Config defaults = load_ok({});
  CHECK(defaults.tls.cert_file.empty());
  CHECK(defaults.auth.rights.empty());
  CHECK(defaults.tls.reload_interval == std::chrono::seconds(60));
  CHECK_FALSE(defaults.telemetry.pprof);
  CHECK(defaults.server.max_calls_per_connection == 1000);

  TempDir dir;
  const fs::path file = write_file(dir, "sec.yaml",
                                   "tls:\n  cert_file: /etc/gorego/tls.crt\n  key_file: /etc/gorego/tls.key\n"
                                   "  client_ca_file: /etc/gorego/ca.crt\n  allowed_clients: [ci, \"build farm\"]\n"
                                   "auth:\n  tokens_file: /etc/gorego/tokens\n  rights:\n    ci: read+write\n"
                                   "    anonymous: read\n");
  const Config c = load_ok({"--config", file.string()}, {{"GOREGO_AUTH_RELOAD_INTERVAL", "30s"}});
  CHECK(c.tls.cert_file == "/etc/gorego/tls.crt");
  CHECK(c.tls.allowed_clients == std::vector<std::string>{"ci", "build farm"});
  CHECK(c.auth.rights.at("ci") == "read+write");
  CHECK(c.auth.reload_interval == std::chrono::seconds(30));
  CHECK(load_ok({}, {{"GOREGO_AUTH_RIGHTS", "ci=all,anonymous=none"}}).auth.rights.at("ci") == "all");

  CHECK_THAT(load_error({"--tls-cert", "/x.pem"}), Contains("tls.cert_file \"/x.pem\"") && Contains("tls.key_file"));
  CHECK_THAT(load_error({"--tls-client-ca", "/ca.pem"}), Contains("tls.client_ca_file") && Contains("needs tls.cert_file"));
  CHECK_THAT(load_error({}, {{"GOREGO_TLS_ALLOWED_CLIENTS", "ci"}}), Contains("tls.allowed_clients"));
  CHECK_THAT(load_error({}, {{"GOREGO_AUTH_RIGHTS", "ci=read+wrte"}}),
             Contains("GOREGO_AUTH_RIGHTS") && Contains("\"wrte\""));
  CHECK_THAT(load_error({}, {{"GOREGO_AUTH_RIGHTS", "c:i=read"}}), Contains("\"c:i\""));
  CHECK(load_ok({}, {{"GOREGO_AUTH_RIGHTS", "gorego test client=read"}}).auth.rights.count("gorego test client") == 1);
  CHECK_THAT(load_error({}, {{"GOREGO_TLS_RELOAD_INTERVAL", "25h"}}), Contains("at most 24h"));
  CHECK_THAT(load_error({}, {{"GOREGO_SERVER_MAX_CALLS_PER_CONNECTION", "0"}}),
             Contains("GOREGO_SERVER_MAX_CALLS_PER_CONNECTION"));
}
