#include "process_metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace gorego {

namespace {

/// Fields of /proc/self/stat after the command name (field 3 is index 0).
std::vector<std::string> stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  const auto close = line.rfind(')');
  std::vector<std::string> out;
  if (close == std::string::npos) return out;
  std::istringstream rest(line.substr(close + 2));
  for (std::string f; rest >> f;) out.push_back(f);
  return out;
}

double stat_field(std::size_t field) {
  const auto f = stat_fields();
  const std::size_t i = field - 3;
  return i < f.size() ? std::stod(f[i]) : 0.0;
}

double boot_time() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") {
      double v = 0;
      in >> v;
      return v;
    }
  }
  return 0;
}

double open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  double n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;  // the directory stream's own descriptor
}

}  // namespace

void add_process_metrics(telemetry::CallbackCollector& c) {
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  const double start = boot_time() + stat_field(22) / ticks;
  c.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
            [ticks] { return (stat_field(14) + stat_field(15)) / ticks; });
  c.gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
          [page] { return stat_field(24) * page; });
  c.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", [] { return stat_field(23); });
  c.gauge("process_open_fds", "Number of open file descriptors.", [] { return open_fds(); });
  c.gauge("process_max_fds", "Maximum number of open file descriptors.", [] {
    rlimit r{};
    return ::getrlimit(RLIMIT_NOFILE, &r) == 0 ? static_cast<double>(r.rlim_cur) : 0.0;
  });
  c.gauge("process_threads", "Number of OS threads in the process.", [] { return stat_field(20); });
  c.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          [start] { return start; });
}

}  // namespace gorego
