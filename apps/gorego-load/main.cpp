// gorego-load: an end-to-end load generator for any REAPI server. See --help and
// docs/performance.md.

#include <signal.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <gorego/config/config.hpp>
#include <gorego/core/log.hpp>

#include "load.hpp"

namespace gorego::load {
namespace {

constexpr const char* kFooter = R"(
Workloads (--workload):
  populate          Uploads the population: --blobs blobs of --size bytes (or --mixed sizes),
                    content derived from --seed. Blobs up to 1 MiB go by BatchUpdateBlobs,
                    up to --per-request (default 100) per call and within the server's
                    max_batch_total_size_bytes; larger ones by ByteStream Write in --chunk
                    pieces. Runs until every blob is uploaded (--duration/--requests ignored).
                    --mixed: every 1000th blob 4-16 MiB, every 32nd of the rest 100 KiB-1 MiB,
                    the others 64 B-16 KiB (log-uniform).
  find-missing      FindMissingBlobs of --per-request (default 100) digests: population blobs
                    at random plus a --missing-fraction (default 0.1) of random absent ones;
                    the answer must name exactly the absent ones.
  batch-read        BatchReadBlobs of --per-request (default 50) random population blobs; each
                    must come back OK and hash to its digest.
  batch-update      BatchUpdateBlobs of --per-request (default 50) new blobs of --size
                    (default 1 KiB), new in every request; each must be answered OK.
  bytestream-write  ByteStream Write of a new blob of --size (default 4 MiB) in --chunk
                    (default 1 MiB) pieces; committed_size must equal the size.
  bytestream-read   Uploads --distinct (default 16) blobs of --size (default 4 MiB) untimed,
                    then ByteStream Reads them at random, hashing every byte.
  http-put          As bytestream-write, as an HTTP PUT /cas/HASH to --http-target.
  http-get          As bytestream-read, as HTTP GETs of /cas/HASH from --http-target
                    (the length of every answer is checked).
  ac-update         UpdateActionResult of a new action whose result names --outputs (default 4)
                    population blobs as output files plus one as stdout; the answer must
                    carry the same outputs.
  ac-get            Stores --actions (default 1000) such results untimed, then
                    GetActionResult of them at random; each must match what was stored.
  cold-start        Starts --server-cmd on a free port and an empty directory, populates it
                    with --blobs (default 100000) blobs, stops it with SIGTERM, starts it
                    again and measures: time from process start to listening and to a
                    FindMissingBlobs of --check-digests (default 1000) stored digests
                    answering all present; VmRSS then and when the server's log shows --loaded-pattern;
                    finally checks every blob is present. {port} and {dir} in the command are
                    replaced; stdout and stderr go to DIR/server-N.log next to {dir}.

  execute           Execute of a trivial action (`true`, no inputs, do_not_cache and
                    skip_cache_lookup) on a server with execution enabled and workers
                    connected: every call runs on a worker; the result must be exit code 0.
  spawn-local       Runs `true` here (posix_spawn and wait): the baseline of execute, so
                    that execute's latency minus this one is gorego's per-action overhead.

find-missing, batch-read and the ac-* workloads use the population: run populate first
with the same --seed, --blobs and --size/--mixed (they check a sample and refuse
otherwise).

Every run prints throughput (requests/s, items/s, MB/s), latency per request (p50, p99,
max, mean), the client's own CPU (getrusage user+sys, as cores used and as a share of
the machine) and, with --server-pid, the server's CPU per request and per item from
/proc/PID/stat. The client verifies every answer and every byte it reads; a wrong
answer or an unexpected status is an error. Exit status: 0 if no error, 1 if any error
or the set-up failed, 2 for bad options.

Example:
  gorego --data-dir /tmp/d --fsync false &
  gorego-load --workload populate --blobs 200000
  gorego-load --workload find-missing --blobs 200000 --concurrency 8 --duration 10 \
              --server-pid $(pgrep -n gorego)
  gorego-load --workload cold-start --blobs 100000 \
              --server-cmd "build/gorego --listen 127.0.0.1:{port} --data-dir {dir}"
)";

/// "12.3 k", "1.23 M": three significant digits.
std::string si(double v) {
  const char* unit = "";
  for (const char* u : {"k", "M", "G"}) {
    if (std::fabs(v) < 999.5) break;
    v /= 1000;
    unit = u;
  }
  const int decimals = std::fabs(v) >= 99.95 ? 0 : std::fabs(v) >= 9.995 ? 1 : 2;
  return fmt::format("{:.{}f}{}{}", v, decimals, *unit ? " " : "", unit);
}

std::string ms(double v) { return fmt::format("{:.{}f} ms", v, v >= 100 ? 0 : v >= 10 ? 1 : 3); }

std::string json_string(std::string_view s) {
  std::string out;
  log::detail::append_json_string(out, s);
  return out;
}

std::string json_number(double v) { return std::isfinite(v) ? fmt::format("{}", v) : "null"; }

void print_report_lines(const Report& r, std::string_view indent) {
  auto line = [&](std::string_view key, const std::string& value) {
    fmt::print("{}{:<13} {}\n", indent, key, value);
  };
  std::string params;
  for (const auto& [k, v] : r.parameters)
    params += fmt::format("{}{}={}", params.empty() ? "" : " ", k, v);
  if (!params.empty()) line("parameters", params);
  line("threads", fmt::format("{}, {}", r.concurrency,
                              r.shared_channel ? "one shared channel" : "one channel each"));
  line("wall time", fmt::format("{:.2f} s", r.wall_seconds));
  const double wall = r.wall_seconds > 0 ? r.wall_seconds : 1;
  line("requests",
       fmt::format("{:<14} {}/s", r.requests, si(static_cast<double>(r.requests) / wall)));
  line(r.item_unit, fmt::format("{:<14} {}/s", r.items, si(static_cast<double>(r.items) / wall)));
  if (r.has_bytes) {
    line("data", fmt::format("{:<14} {}B/s", si(static_cast<double>(r.bytes)) + "B",
                             si(static_cast<double>(r.bytes) / wall)));
  }
  line("latency", fmt::format("p50 {}   p99 {}   max {}   mean {}", ms(r.p50_ms), ms(r.p99_ms),
                              ms(r.max_ms), ms(r.mean_ms)));
  const double cores_used = r.client.total() / wall;
  line("client CPU",
       fmt::format("{:.2f} s (user {:.2f}, sys {:.2f}) = {:.2f} cores = {:.0f}% of {} cores",
                   r.client.total(), r.client.user, r.client.sys, cores_used,
                   100 * cores_used / r.cores, r.cores));
  if (r.server_cpu) {
    const double s = r.server_cpu->total();
    auto per = [](double secs, std::uint64_t n) {
      if (n == 0) return std::string("-");
      const double us = secs * 1e6 / static_cast<double>(n);
      return us >= 1000 ? fmt::format("{:.2f} ms", us / 1000) : fmt::format("{:.1f} µs", us);
    };
    line(
        "server CPU",
        fmt::format("{:.2f} s (user {:.2f}, sys {:.2f}) = {:.2f} cores; {}/request, {}/{} (pid {})",
                    s, r.server_cpu->user, r.server_cpu->sys, s / wall, per(s, r.requests),
                    per(s, r.items), r.item_unit.substr(0, r.item_unit.size() - 1), *r.server_pid));
    line("machine CPU", fmt::format("client + server = {:.0f}% of {} cores",
                                    100 * (r.client.total() + s) / wall / r.cores, r.cores));
  }
  if (r.steal_fraction)
    line("steal", fmt::format("{:.0f}% of the machine's CPU time went to other guests",
                              100 * *r.steal_fraction));
  line("errors", std::to_string(r.errors));
  for (const auto& e : r.error_samples) fmt::print("{}  {}\n", indent, e);
  if (r.errors > r.error_samples.size())
    fmt::print("{}  ... and {} more\n", indent, r.errors - r.error_samples.size());
}

std::string report_json(const Report& r) {
  const double wall = r.wall_seconds > 0 ? r.wall_seconds : 1;
  std::string params;
  for (const auto& [k, v] : r.parameters)
    params += fmt::format("{}{}:{}", params.empty() ? "" : ",", json_string(k), json_string(v));
  std::string errs;
  for (const auto& e : r.error_samples) errs += (errs.empty() ? "" : ",") + json_string(e);
  std::string server = "null";
  if (r.server_cpu) {
    const double s = r.server_cpu->total();
    server = fmt::format(
        R"({{"pid":{},"seconds":{},"user_seconds":{},"sys_seconds":{},"cores_used":{},"us_per_request":{},"us_per_item":{}}})",
        *r.server_pid, json_number(s), json_number(r.server_cpu->user),
        json_number(r.server_cpu->sys), json_number(s / wall),
        json_number(r.requests ? s * 1e6 / static_cast<double>(r.requests) : NAN),
        json_number(r.items ? s * 1e6 / static_cast<double>(r.items) : NAN));
  }
  return fmt::format(
      R"({{"workload":{},"parameters":{{{}}},"concurrency":{},"channels":{},"wall_seconds":{},)"
      R"("requests":{},"requests_per_second":{},"items":{},"item_unit":{},"items_per_second":{},)"
      R"("bytes":{},"megabytes_per_second":{},)"
      R"("latency_ms":{{"p50":{},"p99":{},"max":{},"mean":{}}},)"
      R"("client_cpu":{{"user_seconds":{},"sys_seconds":{},"cores_used":{},"share_of_machine":{},"cores":{}}},)"
      R"("server_cpu":{},"steal_share":{},"errors":{},"error_samples":[{}]}})",
      json_string(r.workload), params, r.concurrency,
      json_string(r.shared_channel ? "shared" : "per-thread"), json_number(r.wall_seconds),
      r.requests, json_number(static_cast<double>(r.requests) / wall), r.items,
      json_string(r.item_unit), json_number(static_cast<double>(r.items) / wall), r.bytes,
      r.has_bytes ? json_number(static_cast<double>(r.bytes) / wall / 1e6) : "null",
      json_number(r.p50_ms), json_number(r.p99_ms), json_number(r.max_ms), json_number(r.mean_ms),
      json_number(r.client.user), json_number(r.client.sys), json_number(r.client.total() / wall),
      json_number(r.client.total() / wall / r.cores), r.cores, server,
      r.steal_fraction ? json_number(*r.steal_fraction) : "null", r.errors, errs);
}

void print_cold_start(const Options& o, const ColdStartReport& c) {
  auto mb = [](double b) { return fmt::format("{:.1f} MB", b / 1e6); };
  auto per_blob = [&](double b) {
    return fmt::format("{:.0f} B/blob", c.blobs ? b / static_cast<double>(c.blobs) : 0);
  };
  fmt::print("gorego-load cold-start: `{}`\n", o.server_cmd);
  fmt::print("  populate\n");
  print_report_lines(c.populate, "    ");
  auto line = [](std::string_view key, const std::string& value) {
    fmt::print("  {:<13} {}\n", key, value);
  };
  line("empty server", fmt::format("VmRSS {}", mb(c.rss_empty_bytes)));
  line("stop",
       fmt::format("SIGTERM -> exit in {:.3f} s, exit status {}", c.stop_seconds, c.stop_status));
  line("restart", fmt::format("listening after {:.3f} s", c.listen_seconds));
  line("", fmt::format(
               "correct FindMissingBlobs ({} stored digests, none missing) after {:.3f} s{}",
               c.check_digests, c.correct_seconds,
               c.wrong_answers ? fmt::format(" ({} wrong answers before)", c.wrong_answers) : ""));
  line("",
       fmt::format("VmRSS then {} = {}", mb(c.rss_correct_bytes), per_blob(c.rss_correct_bytes)));
  if (c.loaded_seconds) {
    line("", fmt::format("\"{}\" logged after {:.3f} s", o.loaded_pattern, *c.loaded_seconds));
    line("", fmt::format("VmRSS then {} = {} ({} over the empty server)", mb(*c.rss_loaded_bytes),
                         per_blob(*c.rss_loaded_bytes),
                         per_blob(*c.rss_loaded_bytes - c.rss_empty_bytes)));
  } else {
    line("", fmt::format("\"{}\" not logged within {} s", o.loaded_pattern, o.index_timeout));
  }
  line("check", fmt::format("{} of {} blobs present", c.verified_present, c.blobs));
  line("errors", std::to_string(c.errors));
  for (const auto& e : c.error_samples) fmt::print("    {}\n", e);
}

std::string cold_start_json(const Options& o, const ColdStartReport& c) {
  auto opt = [](const std::optional<double>& v) {
    return v ? json_number(*v) : std::string("null");
  };
  std::string errs;
  for (const auto& e : c.error_samples) errs += (errs.empty() ? "" : ",") + json_string(e);
  const double n = c.blobs ? static_cast<double>(c.blobs) : 1;
  return fmt::format(
      R"({{"workload":"cold-start","server_cmd":{},"blobs":{},"populate":{},"rss_empty_bytes":{},)"
      R"("stop_seconds":{},"stop_status":{},"listen_seconds":{},"check_digests":{},"correct_seconds":{},)"
      R"("wrong_answers":{},"rss_correct_bytes":{},"rss_correct_bytes_per_blob":{},"loaded_pattern":{},)"
      R"("loaded_seconds":{},"rss_loaded_bytes":{},"rss_loaded_bytes_per_blob":{},)"
      R"("rss_loaded_bytes_per_blob_over_empty":{},"verified_present":{},"errors":{},"error_samples":[{}]}})",
      json_string(o.server_cmd), c.blobs, report_json(c.populate), json_number(c.rss_empty_bytes),
      json_number(c.stop_seconds), c.stop_status, json_number(c.listen_seconds), c.check_digests,
      json_number(c.correct_seconds), c.wrong_answers, json_number(c.rss_correct_bytes),
      json_number(c.rss_correct_bytes / n), json_string(o.loaded_pattern), opt(c.loaded_seconds),
      opt(c.rss_loaded_bytes), c.rss_loaded_bytes ? json_number(*c.rss_loaded_bytes / n) : "null",
      c.rss_loaded_bytes ? json_number((*c.rss_loaded_bytes - c.rss_empty_bytes) / n) : "null",
      c.verified_present, c.errors, errs);
}

/// The parameters that shaped a run, for the report.
std::vector<std::pair<std::string, std::string>> parameters(const Options& o) {
  std::vector<std::pair<std::string, std::string>> p;
  auto add = [&](std::string k, auto v) { p.emplace_back(std::move(k), fmt::format("{}", v)); };
  const auto& w = o.workload;
  const bool uses_population = w == "populate" || w == "find-missing" || w == "batch-read" ||
                               w == "ac-get" || w == "ac-update" || w == "cold-start";
  if (w != "bytestream-write" && w != "bytestream-read" && w != "ac-get" && w != "ac-update" &&
      !w.starts_with("http-"))
    add("per-request", o.per_request);
  if (w == "find-missing") add("missing-fraction", o.missing_fraction);
  if (uses_population) {
    add("seed", o.population.seed);
    add("blobs", o.population.blobs);
    if (o.population.mixed)
      add("sizes", "mixed");
    else
      add("size", o.population.size);
  } else {
    add("size", o.size);
  }
  if (w.starts_with("bytestream") || w == "populate" || w == "cold-start") add("chunk", o.chunk);
  if (w == "bytestream-read" || w == "http-get") add("distinct", o.distinct);
  if (w.starts_with("bytestream") && o.zstd) add("compressor", "zstd");
  if (w == "ac-get") add("actions", o.actions);
  if (w.starts_with("ac-")) add("outputs", o.outputs);
  if (!o.instance.empty()) add("instance", o.instance);
  return p;
}

int run(int argc, char** argv) {
  Options o;
  CLI::App app{
      "gorego-load: drives any REAPI server (Remote Execution API v2: CAS, ByteStream, "
      "ActionCache) with one "
      "workload at a chosen concurrency, verifies every answer, and reports throughput, latency "
      "and CPU."};
  app.footer(kFooter);
  app.get_formatter()->column_width(34);

  const std::vector<std::string> workloads = {"populate",     "find-missing",     "batch-read",
                                              "batch-update", "bytestream-write", "bytestream-read",
                                              "ac-get",       "ac-update",        "cold-start",
                                              "execute",      "spawn-local",      "http-put",
                                              "http-get"};
  app.add_option("--workload", o.workload, "What to run (see below)")
      ->required()
      ->check(CLI::IsMember(workloads));
  app.add_option("--target", o.target, "Server address HOST:PORT (or grpc://HOST:PORT)")
      ->capture_default_str();
  app.add_option("--instance", o.instance, "REAPI instance name")->capture_default_str();
  app.add_option("--tls-ca", o.tls_ca_file, "grpcs:// targets: PEM CA certificates to verify the server");
  app.add_option("--token", o.bearer_token, "bearer token sent with every gRPC call");
  app.add_option("--concurrency", o.concurrency,
                 "Client threads, each making one request at a time")
      ->capture_default_str()
      ->check(CLI::Range(1u, 4096u));
  std::string channels = "per-thread";
  app.add_option("--channels", channels,
                 "per-thread: each thread its own channel and TCP connection (faster here); "
                 "shared: one for all")
      ->capture_default_str()
      ->check(CLI::IsMember({"per-thread", "shared"}));
  double duration = 0;
  std::uint64_t requests = 0;
  auto* dur = app.add_option("--duration", duration,
                             "Seconds to run (default 10 when --requests is not given)")
                  ->check(CLI::PositiveNumber);
  app.add_option("--requests", requests, "Requests to make in all, over all threads")
      ->check(CLI::PositiveNumber)
      ->excludes(dur);
  app.add_option("--seed", o.population.seed,
                 "Seed of the population's content and of other deterministic blobs")
      ->capture_default_str();
  std::uint64_t blobs = 0;
  app.add_option("--blobs", blobs, "Population size in blobs (default 100000)")
      ->check(CLI::PositiveNumber);
  std::string size_text;
  auto* size_opt =
      app.add_option("--size", size_text,
                     "Blob size, a SIZE like 1KiB or 4MiB: of the population (default 1KiB), of "
                     "batch-update blobs (1KiB), of bytestream-* blobs (4MiB); at least 16 B");
  app.add_flag("--mixed", o.population.mixed,
               "Population of mixed sizes instead of --size (see populate)")
      ->excludes(size_opt);
  app.add_option("--per-request", o.per_request,
                 "Digests or blobs per request (defaults: populate and cold-start 100, "
                 "find-missing 100, batch-* 50)")
      ->check(CLI::PositiveNumber);
  app.add_option("--missing-fraction", o.missing_fraction,
                 "find-missing: share of absent digests per request")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  std::string chunk_text = "1MiB";
  app.add_option("--chunk", chunk_text, "ByteStream Write piece size")->capture_default_str();
  std::string compressor = "identity";
  app.add_option("--compressor", compressor,
                 "bytestream-*: identity, or zstd (compressed-blobs names, one frame per --chunk)")
      ->capture_default_str()
      ->check(CLI::IsMember({"identity", "zstd"}));
  app.add_option("--http-target", o.http_target, "http-*: the HTTP cache listener, HOST:PORT")
      ->capture_default_str();
  app.add_option("--distinct", o.distinct, "bytestream-read, http-get: blobs to read from")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--actions", o.actions, "ac-get: actions stored and read")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--outputs", o.outputs, "ac-*: output files per ActionResult")
      ->capture_default_str();
  pid_t server_pid = 0;
  app.add_option("--server-pid", server_pid,
                 "Server process to charge CPU to (/proc/PID/stat before and after)")
      ->check(CLI::PositiveNumber);
  app.add_option("--rpc-timeout", o.rpc_timeout, "Deadline of each call, seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", o.json, "Print one JSON object instead of the table");
  app.add_option("--server-cmd", o.server_cmd,
                 "cold-start: shell command that starts the server in the foreground; must contain "
                 "{port}, may "
                 "contain {dir}");
  app.add_option("--check-digests", o.check_digests,
                 "cold-start: stored digests in the FindMissingBlobs that must answer all present")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option(
      "--dir", o.dir,
      "cold-start: working directory ({dir} is DIR/data; logs in DIR); default a new temporary "
      "directory, removed afterwards");
  app.add_flag("--keep-dir", o.keep_dir, "cold-start: keep the temporary directory");
  app.add_flag("--drop-caches", o.drop_caches,
               "cold-start: sync and drop the page cache before the restart (root only)");
  app.add_option("--start-timeout", o.start_timeout,
                 "cold-start: seconds to wait for a correct answer")
      ->capture_default_str();
  app.add_option("--index-timeout", o.index_timeout,
                 "cold-start: seconds to wait for --loaded-pattern")
      ->capture_default_str();
  app.add_option("--loaded-pattern", o.loaded_pattern,
                 "cold-start: log text announcing the index is loaded")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  auto usage = [](std::string_view msg) {
    fmt::print(stderr, "gorego-load: {}\n", msg);
    return 2;
  };
  o.shared_channel = channels == "shared";
  if (requests > 0)
    o.requests = requests;
  else
    o.duration = duration > 0 ? duration : 10.0;
  if (server_pid > 0) o.server_pid = server_pid;
  if (blobs > 0) o.population.blobs = blobs;
  const bool bytestream = o.workload.starts_with("bytestream") || o.workload.starts_with("http-");
  std::optional<std::uint64_t> size;
  if (!size_text.empty()) {
    auto s = parse_size(size_text);
    if (!s) return usage(fmt::format("--size: {}", s.error().message()));
    if (*s < kMinBlobSize)
      return usage(fmt::format("--size {} is below the minimum of {} bytes", *s, kMinBlobSize));
    size = *s;
  }
  o.population.size = size.value_or(kKiB);
  o.size = size.value_or(bytestream ? 4 * kMiB : kKiB);
  auto chunk = parse_size(chunk_text);
  if (!chunk) return usage(fmt::format("--chunk: {}", chunk.error().message()));
  if (*chunk == 0 || *chunk > 64 * kMiB)
    return usage(fmt::format("--chunk {} is not in 1 B..64 MiB", *chunk));
  o.chunk = *chunk;
  o.zstd = compressor == "zstd";
  if (o.per_request == 0) {
    o.per_request = o.workload == "batch-read" || o.workload == "batch-update" ? 50 : 100;
  }
  if (o.workload == "cold-start") {
    if (o.server_cmd.empty()) return usage("cold-start needs --server-cmd");
    if (o.server_cmd.find("{port}") == std::string::npos)
      return usage("--server-cmd must contain {port}");
  }
  if (o.workload.starts_with("ac-") && o.outputs == 0) return usage("--outputs must be at least 1");

  ::signal(SIGPIPE, SIG_IGN);
  if (o.workload == "cold-start") {
    auto r = run_cold_start(o);
    if (!r) {
      fmt::print(stderr, "gorego-load: cold-start failed: {}\n", r.error().to_string());
      return 1;
    }
    r->populate.parameters = parameters(o);
    if (o.json)
      fmt::print("{}\n", cold_start_json(o, *r));
    else
      print_cold_start(o, *r);
    return r->errors + r->populate.errors > 0 ? 1 : 0;
  }
  auto r = run_workload(o);
  if (!r) {
    fmt::print(stderr, "gorego-load: {} failed: {}\n", o.workload, r.error().to_string());
    return 1;
  }
  r->parameters = parameters(o);
  if (o.json) {
    fmt::print("{}\n", report_json(*r));
  } else {
    fmt::print("gorego-load {} -> {}\n", r->workload, o.target);
    print_report_lines(*r, "  ");
  }
  return r->errors > 0 ? 1 : 0;
}

}  // namespace
}  // namespace gorego::load

int main(int argc, char** argv) { return gorego::load::run(argc, argv); }
