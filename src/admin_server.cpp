#include "admin_server.hpp"

#include <civetweb.h>
#include <gperftools/malloc_extension.h>
#include <gperftools/profiler.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include <gorego/core/log.hpp>

namespace gorego {

namespace {

void send(mg_connection* c, int status, std::string_view type, std::string_view body) {
  const char* reason = status == 200 ? "OK" : status == 400 ? "Bad Request" : status == 404 ? "Not Found"
                     : status == 401 ? "Unauthorized" : status == 403 ? "Forbidden"
                     : status == 409 ? "Conflict" : status == 503 ? "Service Unavailable" : "Error";
  mg_printf(c,
            "HTTP/1.1 %d %s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
            "%sConnection: close\r\n\r\n",
            status, reason, static_cast<int>(type.size()), type.data(), body.size(),
            status == 401 ? "WWW-Authenticate: Basic realm=\"gorego admin\"\r\n" : "");
  if (std::string_view(mg_get_request_info(c)->request_method) != "HEAD") mg_write(c, body.data(), body.size());
}

const AdminServer& server_of(void* cbdata) { return *static_cast<const AdminServer*>(cbdata); }

/// Whether the request may go on; when not, the 401, 403 (or 503: too many password checks)
/// has been sent and `*status` is it.
bool allowed(mg_connection* c, void* cbdata, int* status) {
  const auto& authorize = server_of(cbdata).handlers().authorize;
  if (!authorize) return true;
  const char* header = mg_get_header(c, "Authorization");
  const mg_request_info* ri = mg_get_request_info(c);
  const Status st = authorize(header != nullptr ? std::string_view(header) : std::string_view(),
                              fmt::format("admin {}", ri->local_uri));
  if (st.ok()) return true;
  *status = st.code() == Code::kUnauthenticated ? 401 : st.code() == Code::kPermissionDenied ? 403 : 503;
  send(c, *status, "text/plain; charset=utf-8", st.message() + "\n");
  return false;
}

int metrics(mg_connection* c, void* cbdata) {
  if (int status = 0; !allowed(c, cbdata, &status)) return status;
  send(c, 200, "text/plain; version=0.0.4; charset=utf-8", server_of(cbdata).handlers().metrics());
  return 200;
}

std::string health_json(const HealthReport& r) {
  std::string out = fmt::format("{{\"status\":\"{}\",\"checks\":{{", r.state);
  bool first = true;
  for (const auto& [name, value] : r.checks) {
    if (!first) out += ',';
    first = false;
    log::detail::append_json_string(out, name);
    out += ':';
    log::detail::append_json_string(out, value);
  }
  return out + "}}\n";
}

int live(mg_connection* c, void*) {
  send(c, 200, "application/json", "{\"status\":\"live\"}\n");
  return 200;
}

int ready(mg_connection* c, void* cbdata) {
  const HealthReport r = server_of(cbdata).handlers().health();
  send(c, r.ready ? 200 : 503, "application/json", health_json(r));
  return r.ready ? 200 : 503;
}

int startup(mg_connection* c, void* cbdata) {
  HealthReport r = server_of(cbdata).handlers().health();
  if (r.state != "shutting_down") r.state = r.started ? "started" : "starting";
  send(c, r.started ? 200 : 503, "application/json", health_json(r));
  return r.started ? 200 : 503;
}

/// ?seconds=N (1..300, default 30).
Result<int> seconds_param(const mg_request_info* ri) {
  if (ri->query_string == nullptr) return 30;
  char value[32] = {};
  const int n = mg_get_var(ri->query_string, std::strlen(ri->query_string), "seconds", value, sizeof(value));
  if (n < 0) return 30;
  int s = 0;
  const auto [end, ec] = std::from_chars(value, value + n, s);
  if (ec != std::errc{} || end != value + n || s < 1 || s > 300) {
    return error(Code::kInvalidArgument, "seconds=\"{}\" is not a whole number in 1..300", value);
  }
  return s;
}

int pprof(mg_connection* c, void* cbdata) {
  if (int status = 0; !allowed(c, cbdata, &status)) return status;
  const mg_request_info* ri = mg_get_request_info(c);
  if (!server_of(cbdata).handlers().pprof) {
    send(c, 404, "text/plain; charset=utf-8", "profiles are off; set telemetry.pprof: true to serve them\n");
    return 404;
  }
  const std::string_view uri = ri->local_uri;
  if (uri == "/debug/pprof/" || uri == "/debug/pprof") {
    send(c, 200, "text/plain; charset=utf-8",
         "gorego profiles (pprof format, gperftools):\n"
         "  /debug/pprof/profile?seconds=30  CPU profile of the next N seconds\n"
         "  /debug/pprof/heap                sampled heap in use\n"
         "e.g.  pprof -http=: http://HOST:PORT/debug/pprof/profile?seconds=10\n");
    return 200;
  }
  Result<std::string> profile = error(Code::kNotFound, "no profile at {}; see /debug/pprof/", uri);
  if (uri == "/debug/pprof/profile") {
    auto seconds = seconds_param(ri);
    profile = seconds ? cpu_profile(*seconds) : Result<std::string>(seconds.error());
  } else if (uri == "/debug/pprof/heap") {
    profile = heap_profile();
  }
  if (!profile) {
    const int status = profile.error().code() == Code::kInvalidArgument     ? 400
                       : profile.error().code() == Code::kNotFound          ? 404
                       : profile.error().code() == Code::kAlreadyExists     ? 409
                                                                            : 503;
    send(c, status, "text/plain; charset=utf-8", profile.error().message() + "\n");
    return status;
  }
  send(c, 200, "application/octet-stream", *profile);
  return 200;
}

}  // namespace

Result<std::unique_ptr<AdminServer>> AdminServer::start(const std::string& addr, Handlers h) {
  static std::once_flag init;
  std::call_once(init, [] { mg_init_library(0); });
  std::unique_ptr<AdminServer> s(new AdminServer(std::move(h)));
  // civetweb wants "[::1]:9090" for IPv6 and "127.0.0.1:9090" for IPv4, as we do.
  const char* options[] = {"listening_ports", addr.c_str(), "num_threads", "4", "enable_keep_alive", "no",
                           "request_timeout_ms", "330000", nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = [](const mg_connection*, const char* message) {
    log::warn("admin server", {{"error", message}});
    return 1;
  };
  s->ctx_ = mg_start(&callbacks, nullptr, options);
  if (s->ctx_ == nullptr) return error(Code::kUnavailable, "cannot serve the admin endpoints on {}", addr);
  mg_server_port ports[4] = {};
  if (mg_get_server_ports(s->ctx_, 4, ports) > 0) s->port_ = ports[0].port;
  s->host_ = addr.substr(0, addr.rfind(':'));
  if (s->host_.size() >= 2 && s->host_.front() == '[') s->host_ = s->host_.substr(1, s->host_.size() - 2);
  mg_set_request_handler(s->ctx_, "/metrics$", metrics, s.get());
  mg_set_request_handler(s->ctx_, "/health/live$", live, s.get());
  mg_set_request_handler(s->ctx_, "/health/ready$", ready, s.get());
  mg_set_request_handler(s->ctx_, "/health/startup$", startup, s.get());
  mg_set_request_handler(s->ctx_, "/debug/pprof", pprof, s.get());
  return s;
}

namespace {
/// Opens and closes a connection to host:port, without waiting: wakes an accept loop.
void knock(const std::string& host, int port) {
  sockaddr_in6 a6{};
  sockaddr_in a4{};
  sockaddr* sa = nullptr;
  socklen_t len = 0;
  if (::inet_pton(AF_INET6, host.c_str(), &a6.sin6_addr) == 1) {
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(static_cast<std::uint16_t>(port));
    sa = reinterpret_cast<sockaddr*>(&a6);
    len = sizeof a6;
  } else {
    a4.sin_family = AF_INET;
    a4.sin_port = htons(static_cast<std::uint16_t>(port));
    // A wildcard or named host: the loopback reaches a wildcard listener.
    if (::inet_pton(AF_INET, host.c_str(), &a4.sin_addr) != 1 || a4.sin_addr.s_addr == INADDR_ANY) {
      a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    sa = reinterpret_cast<sockaddr*>(&a4);
    len = sizeof a4;
  }
  const int fd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  (void)::connect(fd, sa, len);
  ::close(fd);
}
}  // namespace

AdminServer::~AdminServer() {
  if (ctx_ == nullptr) return;
  // civetweb's accept loop notices the stop only when its poll times out (hundreds of
  // milliseconds); a connection attempt ends the poll at once, so an idle server exits in
  // milliseconds (a rolling restart pays this per pod).
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    mg_stop(ctx_);
    stopped = true;
  });
  while (!stopped) {
    if (port_ != 0) knock(host_, port_);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stopper.join();
}

Result<std::string> cpu_profile(int seconds) {
  static std::atomic<bool> running{false};
  if (running.exchange(true)) {
    return error(Code::kAlreadyExists, "a CPU profile is already being taken; try again when it is done");
  }
  char path[] = "/tmp/gorego-cpu-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) {
    running = false;
    return error(Code::kUnavailable, "cannot create a temporary file for the CPU profile");
  }
  ::close(fd);
  if (ProfilerStart(path) == 0) {
    ::unlink(path);
    running = false;
    return error(Code::kUnavailable, "the CPU profiler did not start (is another profile running?)");
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  ProfilerStop();
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  ::unlink(path);
  running = false;
  return ss.str();
}

Result<std::string> heap_profile() {
  const char* rate = std::getenv("TCMALLOC_SAMPLE_PARAMETER");
  if (rate == nullptr || std::string_view(rate) == "0") {
    return error(Code::kUnavailable,
                 "heap sampling is off: start gorego with TCMALLOC_SAMPLE_PARAMETER set (e.g. 524288)");
  }
  std::string out;
  MallocExtension::instance()->GetHeapSample(&out);
  if (out.empty()) return error(Code::kUnavailable, "tcmalloc returned an empty heap sample");
  return out;
}

}  // namespace gorego
