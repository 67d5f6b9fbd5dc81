// gorego-worker: runs actions for a gorego scheduler (docs/operations.md, "Workers").
#include <signal.h>

#include <CLI/CLI.hpp>

#include <fstream>
#include <thread>

#include <gorego/config/telemetry.hpp>
#include <gorego/config/values.hpp>
#include <gorego/core/log.hpp>

#include "worker/worker.hpp"

int main(int argc, char** argv) {
  using namespace gorego;
  CLI::App app{"gorego-worker: runs the actions a gorego scheduler assigns (REAPI remote execution)"};
  worker::WorkerOptions o;
  std::string cache_size = "10GiB";
  std::vector<std::string> properties;
  std::string level = "info";
  std::string token_file;
  app.add_option("--scheduler", o.scheduler, "gorego serving execution, grpc://HOST:PORT or grpcs://HOST:PORT")
      ->required();
  app.add_option("--tls-ca", o.tls_ca_file, "PEM CA certificates to verify grpcs:// servers; default: system roots");
  auto* cert = app.add_option("--tls-cert", o.tls_cert_file, "PEM client certificate for mTLS with grpcs:// servers");
  auto* key = app.add_option("--tls-key", o.tls_key_file, "PEM private key of --tls-cert");
  cert->needs(key);
  key->needs(cert);
  app.add_option("--token-file", token_file,
                 "file holding the bearer token sent to the scheduler and the CAS (needs the worker, read and "
                 "write-cas rights)");
  app.add_option("--cas", o.cas, "CAS to read inputs from and upload outputs to; default: the scheduler");
  app.add_option("--instance-name", o.instance_name, "instance name of the CAS calls");
  app.add_option("--work-dir", o.work_dir, "directory for action directories and the cache")
      ->capture_default_str();
  app.add_option("--cache-size", cache_size, "size of the worker's input cache")->capture_default_str();
  app.add_option("--slots", o.slots, "actions run at once; 0: the number of CPUs")->capture_default_str();
  app.add_option("--property", properties, "platform property offered, NAME=VALUE (repeatable)");
  app.add_option("--id", o.id, "worker name in the scheduler, logs and results; default HOST:PID");
  app.add_option("--log-level", level, "debug, info, warn or error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (!o.scheduler.starts_with("grpc://") && !o.scheduler.starts_with("grpcs://")) {
    fmt::print(stderr, "gorego-worker: --scheduler \"{}\" must be grpc://HOST:PORT or grpcs://HOST:PORT\n",
               o.scheduler);
    return 2;
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    std::getline(in, o.bearer_token);
    while (!o.bearer_token.empty() && (o.bearer_token.back() == '\r' || o.bearer_token.back() == ' ')) {
      o.bearer_token.pop_back();
    }
    if (!in || o.bearer_token.empty()) {
      fmt::print(stderr, "gorego-worker: --token-file \"{}\" cannot be read or is empty\n", token_file);
      return 2;
    }
  }
  auto size = parse_size(cache_size);
  if (!size) {
    fmt::print(stderr, "gorego-worker: --cache-size: {}\n", size.error().message());
    return 2;
  }
  o.cache_bytes = *size;
  for (const auto& p : properties) {
    const auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      fmt::print(stderr, "gorego-worker: --property \"{}\" must be NAME=VALUE\n", p);
      return 2;
    }
    o.properties.emplace_back(p.substr(0, eq), p.substr(eq + 1));
  }
  if (auto l = enum_from_name<log::Level>(level)) {
    log::threshold() = *l;
  } else {
    fmt::print(stderr, "gorego-worker: --log-level \"{}\" is not one of debug, info, warn, error\n", level);
    return 2;
  }

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::stop_source stop;
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    log::info("stopping", {{"signal", std::to_string(sig)}});
    stop.request_stop();
  });
  waiter.detach();
  return worker::run_worker(std::move(o), stop.get_token());
}
