#pragma once
// gorego-load: options, reports and the entry points of the workloads (workloads.cpp) and of
// the cold-start measurement (cold_start.cpp).

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gorego/core/status.hpp>

#include "blobs.hpp"

namespace gorego::load {

/// Everything the command line sets. main.cpp fills the per-workload defaults (size,
/// per_request, duration) before a workload runs.
struct Options {
  std::string workload;
  std::string target = "127.0.0.1:50051";
  std::string instance;
  std::string tls_ca_file;   ///< grpcs:// targets: the CA to verify the server with
  std::string bearer_token;  ///< sent as "authorization: Bearer ..." with every call
  unsigned concurrency = 8;
  bool shared_channel = false;            ///< one channel for all threads instead of one each
  std::optional<double> duration;         ///< seconds
  std::optional<std::uint64_t> requests;  ///< total over all threads
  PopulationSpec population;
  std::uint64_t size = 0;         ///< blob size of batch-update, bytestream-*
  std::uint64_t per_request = 0;  ///< digests or blobs per request
  double missing_fraction = 0.1;
  std::uint64_t chunk = kMiB;
  bool zstd = false;             ///< bytestream-*: compressed-blobs/zstd/ names
  std::uint64_t distinct = 16;   ///< bytestream-read, http-get: blobs uploaded, then read at random
  std::string http_target = "127.0.0.1:8080";  ///< http-*: the HTTP cache listener
  std::uint64_t actions = 1000;  ///< ac-get: actions stored, then read at random
  unsigned outputs = 4;          ///< output files per ActionResult
  std::optional<pid_t> server_pid;
  std::uint64_t check_digests = 1000;  ///< cold-start: digests in the correctness probe
  double rpc_timeout = 60;
  bool json = false;
  // cold-start
  std::string server_cmd;
  std::string dir;
  bool keep_dir = false;
  bool drop_caches = false;
  double start_timeout = 60;
  double index_timeout = 600;
  std::string loaded_pattern = "index loaded";
};

/// CPU seconds of a process (utime + stime), from getrusage or /proc/PID/stat.
struct CpuTimes {
  double user = 0;
  double sys = 0;
  [[nodiscard]] double total() const { return user + sys; }
};

/// The outcome of one timed run.
struct Report {
  std::string workload;
  std::string item_unit;  ///< "digests", "blobs", "actions"
  bool has_bytes = false;
  std::vector<std::pair<std::string, std::string>> parameters;  ///< echoed in the output
  unsigned concurrency = 0;
  bool shared_channel = false;
  double wall_seconds = 0;
  std::uint64_t requests = 0;
  std::uint64_t items = 0;
  std::uint64_t bytes = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0, mean_ms = 0;
  CpuTimes client;
  unsigned cores = 1;
  std::optional<pid_t> server_pid;
  std::optional<CpuTimes> server_cpu;
  /// Share of the machine's CPU time the hypervisor gave to others during the run.
  std::optional<double> steal_fraction;
  std::uint64_t errors = 0;
  std::vector<std::string> error_samples;  ///< the first few
};

/// The cold-start measurement: a populate run, then a restart of the server.
struct ColdStartReport {
  Report populate;
  std::uint64_t blobs = 0;
  std::uint64_t check_digests = 0;
  double rss_empty_bytes = 0;       ///< first start, answering, empty store
  double stop_seconds = 0;          ///< SIGTERM -> exit
  int stop_status = 0;              ///< exit status, or 128 + signal
  double listen_seconds = 0;        ///< restart -> TCP connect succeeds
  double correct_seconds = 0;       ///< restart -> FindMissingBlobs reports all present
  std::uint64_t wrong_answers = 0;  ///< answers before that which reported some missing
  double rss_correct_bytes = 0;
  std::optional<double> loaded_seconds;  ///< restart -> the loaded pattern in the log
  std::optional<double> rss_loaded_bytes;
  std::uint64_t verified_present = 0;  ///< full check after loading
  std::uint64_t errors = 0;
  std::vector<std::string> error_samples;
};

/// Runs o.workload (every one but cold-start). An error is a setup failure (nothing
/// measured); errors during the run are counted in the Report.
Result<Report> run_workload(const Options& o);

/// Runs cold-start.
Result<ColdStartReport> run_cold_start(const Options& o);

// ---- shared between workloads.cpp and cold_start.cpp ----------------------------------

/// User and system CPU of this process so far.
CpuTimes self_cpu();
/// CPU of process `pid` so far, from /proc/PID/stat; nullopt if unreadable.
std::optional<CpuTimes> process_cpu(pid_t pid);
/// Machine-wide (steal, total) jiffies from /proc/stat; nullopt if unreadable.
std::optional<std::pair<double, double>> machine_steal();

/// Uploads the population (populate's timed run) through o.target; fills the digest table.
Result<Report> populate(const Options& o, Population& pop);

}  // namespace gorego::load
