#pragma once
/// gorego-worker: connects to a gorego scheduler, runs the actions it is assigned and
/// reports their results. Inputs are read through a local cache that is an instance of the
/// framework's own store (Local<ShardedDisk> in front of the gorego CAS), so a blob the
/// worker holds is never downloaded again; outputs are uploaded to the CAS (FindMissingBlobs
/// first, batches for small blobs, ByteStream for large ones).

#include <cstdint>
#include <filesystem>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

namespace gorego::worker {

struct WorkerOptions {
  std::string scheduler;                   ///< grpc:// or grpcs://HOST:PORT of the gorego serving execution
  std::string cas;                         ///< grpc:// or grpcs://HOST:PORT of the CAS; empty: the scheduler's
  std::string tls_ca_file;                 ///< PEM CA to verify grpcs:// servers; empty: the system roots
  std::string tls_cert_file, tls_key_file; ///< PEM client certificate and key for mTLS; empty: none
  std::string bearer_token;                ///< sent as "authorization: Bearer ..." to both; empty: none
  std::string instance_name;               ///< sent with CAS calls
  std::filesystem::path work_dir = "gorego-worker";  ///< actions/ and cache/ live here
  std::uint64_t cache_bytes = std::uint64_t{10} << 30;
  std::uint32_t slots = 0;                 ///< 0: the number of CPUs
  std::vector<std::pair<std::string, std::string>> properties;
  std::string id;                          ///< empty: host:pid
};

/// Runs until `stop` is requested; reconnects with backoff when the stream breaks.
/// Returns a process exit code.
int run_worker(WorkerOptions o, std::stop_token stop);

}  // namespace gorego::worker
