// gorego: the caching REAPI server. See README.md and docs/configuration.md.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include <gorego/config/config.hpp>
#include <gorego/core/log.hpp>

#include "server.hpp"

int main(int argc, char** argv) {
  using namespace gorego;
  // tcmalloc reads its heap-sampling period once, at load: set the default (one sample
  // per 512 KiB allocated, as Go's runtime) and start again, so /debug/pprof/heap works
  // without the operator knowing about it. An explicit value, even 0, is kept.
  if (std::getenv("TCMALLOC_SAMPLE_PARAMETER") == nullptr) {
    ::setenv("TCMALLOC_SAMPLE_PARAMETER", "524288", 1);
    ::execv("/proc/self/exe", argv);  // returns only on failure: run on without sampling
    ::unsetenv("TCMALLOC_SAMPLE_PARAMETER");
  }
  auto loaded = load_config(argc, argv, current_environment());
  if (!loaded) {
    fmt::print(stderr, "gorego: {}\n", loaded.error().message());
    return 2;
  }
  if (loaded->exit_message) {
    fmt::print("{}", *loaded->exit_message);
    return 0;
  }
  const Config& cfg = loaded->config;
  log::threshold() = cfg.telemetry.log_level;

  // Signals are taken synchronously by this thread; every thread started below inherits
  // the mask, so SIGINT/SIGTERM never interrupt I/O elsewhere.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // The data directory alone keeps 512 directories open, and every connection and read
  // needs one more descriptor: raise the soft limit (often 1024) to the hard one, as Go's
  // runtime does for its servers.
  if (rlimit r{}; ::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }

  auto server = start_server(cfg);
  if (!server) {
    log::error("cannot start", {{"error", server.error().to_string()}});
    fmt::print(stderr, "gorego: {}\n", server.error().message());
    return 1;
  }
  const TelemetrySettings& telemetry = cfg.telemetry;
  log::info("serving",
            {{"listen_addr", cfg.server.listen_addr},
             {"port", std::to_string((*server)->port())},
             {"metrics_addr", telemetry.metrics_addr.empty() ? "off" : telemetry.metrics_addr},
             {"metrics_port", std::to_string((*server)->admin_port())},
             {"tracing", telemetry.tracing_endpoint.empty() ? "off" : telemetry.tracing_endpoint},
             {"data_dir", cfg.storage.data_dir.string()},
             {"max_size", format_size(cfg.storage.max_size_bytes)},
             {"eviction", std::string(enum_name(cfg.storage.eviction))},
             {"upstream", cfg.remote.target.empty() ? "none" : cfg.remote.target},
             {"upstream_mode", std::string(enum_name(cfg.remote.mode))}});

  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::info("shutting down", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"},
                              {"grace", format_duration(cfg.server.shutdown_grace)}});
  (*server)->begin_shutdown();
  (*server)->shutdown(std::chrono::system_clock::now() + cfg.server.shutdown_grace);
  server->reset();
  log::info("stopped");
  // Everything is stopped, flushed and durable. Skip the static destructors: once in a
  // test run, with the upstream killed beforehand, the process hung after this point
  // (in library teardown) until SIGKILL.
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(0);
}
