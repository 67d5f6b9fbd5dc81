// gorego-load's HTTP cache protocol workloads (http-put, http-get): the same blobs and
// timing as bytestream-write and bytestream-read, over keep-alive HTTP/1.1 connections made
// with Boost.Beast, one per worker, to --http-target.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <map>
#include <mutex>

#include "harness.hpp"

namespace gorego::load {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

/// One keep-alive connection.
class HttpConn {
 public:
  static Result<std::unique_ptr<HttpConn>> open(const std::string& target) {
    auto c = std::unique_ptr<HttpConn>(new HttpConn());
    const auto colon = target.rfind(':');
    if (colon == std::string::npos) return error(Code::kInvalidArgument, "--http-target \"{}\" is not HOST:PORT", target);
    beast::error_code ec;
    tcp::resolver resolver(c->io_);
    auto eps = resolver.resolve(target.substr(0, colon), target.substr(colon + 1), ec);
    if (!ec) asio::connect(c->sock_, eps, ec);
    if (ec) return error(Code::kUnavailable, "cannot connect to {}: {}", target, ec.message());
    return c;
  }

  /// PUT of `body` to `path`; OK on 200.
  Status put(const std::string& path, std::string body) {
    http::request<http::string_body> req{http::verb::put, path, 11};
    req.set(http::field::host, "gorego-load");
    req.body() = std::move(body);
    req.prepare_payload();
    http::response<http::string_body> res;
    return exchange(req, res);
  }
  /// GET of `path`; the body's length in `n`.
  Status get(const std::string& path, std::uint64_t& n) {
    http::request<http::empty_body> req{http::verb::get, path, 11};
    req.set(http::field::host, "gorego-load");
    http::response<http::string_body> res;
    GOREGO_RETURN_IF_ERROR(exchange(req, res));
    n = res.body().size();
    return {};
  }

 private:
  HttpConn() : sock_(io_) {}

  template <class Req>
  Status exchange(Req& req, http::response<http::string_body>& res) {
    beast::error_code ec;
    http::write(sock_, req, ec);
    http::response_parser<http::string_body> p;
    p.body_limit(std::uint64_t{1} << 34);
    if (!ec) http::read(sock_, buf_, p, ec);
    if (ec) return error(Code::kUnavailable, "HTTP {} {}: {}", std::string(req.method_string()), std::string(req.target()), ec.message());
    res = p.release();
    if (res.result() != http::status::ok) {
      return error(Code::kInternal, "HTTP {} {}: {} {}", std::string(req.method_string()), std::string(req.target()),
                   res.result_int(), res.body());
    }
    return {};
  }

  asio::io_context io_;
  tcp::socket sock_;
  beast::flat_buffer buf_;
};

/// Each worker's connection, opened on its first request.
class Conns {
 public:
  explicit Conns(std::string target) : target_(std::move(target)) {}
  Result<HttpConn*> of(const Worker& w) {
    std::lock_guard g(mu_);
    auto& c = conns_[w.index];
    if (!c) {
      auto made = HttpConn::open(target_);
      if (!made) return made.error();
      c = std::move(*made);
    }
    return c.get();
  }

 private:
  std::string target_;
  std::mutex mu_;
  std::map<unsigned, std::unique_ptr<HttpConn>> conns_;
};

std::string cas_path(const Digest& d) { return "/cas/" + d.hex(); }

}  // namespace

Result<Report> http_put(const Options& o, Env& env) {
  const FreshBlobs fresh(o.size, o.population.seed);
  Conns conns(o.http_target);
  Op op = [&](Worker& w, std::uint64_t) -> Status {
    auto c = conns.of(w);
    if (!c) return c.error();
    const auto b = fresh.make(w.rng);
    std::string body;
    fresh.copy(b, 0, o.size, body);
    GOREGO_RETURN_IF_ERROR(w.timed([&] { return (*c)->put(cas_path(b.digest), std::move(body)); }));
    ++w.items;
    w.bytes += o.size;
    return {};
  };
  return run_timed(o, env, "http-put", "blobs", true, o.duration, o.requests, op);
}

Result<Report> http_get(const Options& o, Env& env) {
  Population large(
      {.seed = mix64(o.population.seed ^ 0x4c41524745ULL), .blobs = o.distinct, .size = o.size});
  large.reserve_digests();
  {
    auto c = HttpConn::open(o.http_target);
    if (!c) return c.error();
    for (std::uint64_t i = 0; i < o.distinct; ++i) {
      std::string data = large.content(i);
      const Digest d = Sha256::digest_of(data);
      large.set_digest(i, d);
      GOREGO_RETURN_IF_ERROR((*c)->put(cas_path(d), std::move(data)));
    }
  }
  Conns conns(o.http_target);
  Op op = [&](Worker& w, std::uint64_t) -> Status {
    auto c = conns.of(w);
    if (!c) return c.error();
    const Digest& d = large.digest(w.rng.below(large.count()));
    std::uint64_t n = 0;
    GOREGO_RETURN_IF_ERROR(w.timed([&] { return (*c)->get(cas_path(d), n); }));
    if (n != static_cast<std::uint64_t>(d.size)) {
      return error(Code::kDataLoss, "GET {} returned {} bytes, not {}", cas_path(d), n, d.size);
    }
    ++w.items;
    w.bytes += n;
    return {};
  };
  return run_timed(o, env, "http-get", "blobs", true, o.duration, o.requests, op);
}

}  // namespace gorego::load
