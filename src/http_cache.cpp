// The HTTP cache protocol listener: Boost.Beast parses and writes the messages, one thread
// per connection (bounded), bodies streamed in 64 KiB pieces to and from the store.
#include "http_cache.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include <gorego/core/log.hpp>
#include <gorego/core/zstd.hpp>

#include "auth/access_control.hpp"
#include "auth/tls_context.hpp"

namespace gorego {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

/// Bodies move in pieces of this size (one buffer per connection): large enough that an
/// upload costs few appends, as a ByteStream upload's 1 MiB messages do.
constexpr std::size_t kPiece = 1 << 20;
constexpr std::size_t kHeaderLimit = 16 << 10;
constexpr std::size_t kReadBuffer = 256 << 10;
/// A client that sends or takes nothing for this long is disconnected.
constexpr int kIdleSeconds = 120;

/// A connected socket as Beast's SyncReadStream and SyncWriteStream, with a deadline on
/// every wait: each read or write waits at most kIdleSeconds for the peer (Asio's own
/// synchronous calls wait for ever), and writes never raise SIGPIPE.
class TimedStream {
 public:
  explicit TimedStream(int fd) : fd_(fd) {}

  /// From now on every byte goes through `ssl` (set up on this stream's socket, which is
  /// made non-blocking); the TLS handshake runs under the same deadlines.
  bool start_tls(SSL* ssl, beast::error_code& ec) {
    ssl_ = ssl;
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    while (true) {
      const int r = SSL_accept(ssl_);
      if (r == 1) return true;
      if (!retry(SSL_get_error(ssl_, r), ec)) return false;
    }
  }
  /// Sends TLS's close_notify (without waiting for the peer's).
  void close_tls() {
    if (ssl_ != nullptr && !fatal_) SSL_shutdown(ssl_);  // not after a fatal error (OpenSSL's rule)
    ERR_clear_error();
  }

  template <class Buffers>
  std::size_t read_some(const Buffers& bufs, beast::error_code& ec) {
    const auto b = first<asio::mutable_buffer>(bufs);
    if (b.size() == 0) return ec = {}, 0;
    if (ssl_ != nullptr) {
      while (true) {
        const int n = SSL_read(ssl_, b.data(), static_cast<int>(std::min<std::size_t>(b.size(), 1 << 30)));
        if (n > 0) return ec = {}, static_cast<std::size_t>(n);
        if (!retry(SSL_get_error(ssl_, n), ec)) return 0;
      }
    }
    // Try first, wait only when nothing is there: one syscall per piece on a busy upload.
    ssize_t n = ::recv(fd_, b.data(), b.size(), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait(POLLIN, ec)) return 0;
      n = ::recv(fd_, b.data(), b.size(), MSG_DONTWAIT);
    }
    return done(n, ec, asio::error::make_error_code(asio::error::eof));
  }
  template <class Buffers>
  std::size_t write_some(const Buffers& bufs, beast::error_code& ec) {
    const auto b = first<asio::const_buffer>(bufs);
    if (b.size() == 0) return ec = {}, 0;
    if (ssl_ != nullptr) {
      while (true) {
        const int n = SSL_write(ssl_, b.data(), static_cast<int>(std::min<std::size_t>(b.size(), 1 << 30)));
        if (n > 0) return ec = {}, static_cast<std::size_t>(n);
        if (!retry(SSL_get_error(ssl_, n), ec)) return 0;
      }
    }
    ssize_t n = ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait(POLLOUT, ec)) return 0;
      n = ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    return done(n, ec, asio::error::make_error_code(asio::error::connection_reset));
  }
  template <class Buffers>
  std::size_t read_some(const Buffers& bufs) {
    return or_throw([&](beast::error_code& ec) { return read_some(bufs, ec); });
  }
  template <class Buffers>
  std::size_t write_some(const Buffers& bufs) {
    return or_throw([&](beast::error_code& ec) { return write_some(bufs, ec); });
  }

 private:
  template <class F>
  static std::size_t or_throw(F&& f) {
    beast::error_code ec;
    const std::size_t n = f(ec);
    if (ec) throw beast::system_error(ec);
    return n;
  }
  /// The first non-empty buffer of a sequence (Beast hands one or a few).
  template <class Buffer, class Buffers>
  static Buffer first(const Buffers& bufs) {
    for (auto it = asio::buffer_sequence_begin(bufs); it != asio::buffer_sequence_end(bufs); ++it) {
      if (Buffer(*it).size() > 0) return *it;
    }
    return {};
  }
  bool wait(short events, beast::error_code& ec) const {
    pollfd p{fd_, events, 0};
    while (true) {
      const int r = ::poll(&p, 1, kIdleSeconds * 1000);
      if (r > 0) return true;
      if (r == 0) return ec = asio::error::timed_out, false;
      if (errno != EINTR) return ec = beast::error_code(errno, boost::system::system_category()), false;
    }
  }
  static std::size_t done(ssize_t n, beast::error_code& ec, beast::error_code at_zero) {
    if (n > 0) return ec = {}, static_cast<std::size_t>(n);
    ec = n == 0 ? at_zero : beast::error_code(errno, boost::system::system_category());
    return 0;
  }
  /// After an SSL call returned `e`: waits when TLS needs the socket (true: call again), or
  /// sets `ec` (a clean close is eof).
  bool retry(int e, beast::error_code& ec) {
    if (e == SSL_ERROR_WANT_READ) return wait(POLLIN, ec);
    if (e == SSL_ERROR_WANT_WRITE) return wait(POLLOUT, ec);
    ERR_clear_error();
    fatal_ = e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL;
    ec = e == SSL_ERROR_ZERO_RETURN ? asio::error::make_error_code(asio::error::eof)
                                    : asio::error::make_error_code(asio::error::connection_reset);
    return false;
  }
  int fd_;
  SSL* ssl_ = nullptr;
  bool fatal_ = false;  // the TLS session failed: no close_notify may be sent
};

/// What a request names: the tree (`cas` or `ac`), the hash and the instance prefix.
struct Target {
  std::string instance;
  bool ac = false;
  Digest digest;  ///< size unknown (0) until looked up or given by Content-Length
};

/// `/[instance/]{cas,ac}/{64 hex}`; an error message naming the problem otherwise.
Result<Target> parse_target(std::string_view path) {
  const auto q = path.find('?');
  if (q != std::string_view::npos) path = path.substr(0, q);
  if (!path.starts_with('/')) return error(Code::kInvalidArgument, "path \"{}\" does not start with /", path);
  const auto last = path.rfind('/');
  const auto kind_at = path.rfind('/', last - 1);
  if (last == 0 || kind_at == std::string_view::npos) {
    return error(Code::kInvalidArgument, "path \"{}\" is not /cas/HASH or /ac/HASH", path);
  }
  const std::string_view kind = path.substr(kind_at + 1, last - kind_at - 1);
  if (kind != "cas" && kind != "ac") {
    return error(Code::kInvalidArgument, "path \"{}\" is not /cas/HASH or /ac/HASH", path);
  }
  auto d = Digest::parse(path.substr(last + 1), 0);
  if (!d) return error(Code::kInvalidArgument, "path \"{}\": {}", path, d.error().message());
  Target t;
  t.instance = std::string(path.substr(1, kind_at == 0 ? 0 : kind_at - 1));
  t.ac = kind == "ac";
  t.digest = *d;
  return t;
}

bool accepts_zstd(const http::request_header<>& req) {
  const auto it = req.find(http::field::accept_encoding);
  return it != req.end() && std::string_view(it->value().data(), it->value().size()).find("zstd") != std::string_view::npos;
}

http::status status_of(Code c) {
  switch (c) {
    case Code::kNotFound: return http::status::not_found;
    case Code::kInvalidArgument: return http::status::bad_request;
    case Code::kResourceExhausted: return http::status::insufficient_storage;
    case Code::kUnavailable: return http::status::service_unavailable;
    case Code::kFailedPrecondition: return http::status::conflict;
    case Code::kUnauthenticated: return http::status::unauthorized;
    case Code::kPermissionDenied: return http::status::forbidden;
    default: return http::status::internal_server_error;
  }
}

/// One connection: reads requests until the client closes, an error, or `Connection: close`.
class Connection {
 public:
  Connection(tcp::socket sock, const HttpSettings& s, HttpStore& store, const auth::AccessControl* access,
             std::shared_ptr<SSL_CTX> tls, bool mtls)
      : socket_(std::move(sock)),
        sock_(socket_.native_handle()),
        settings_(s),
        store_(store),
        access_(access),
        tls_(std::move(tls)),
        mtls_(mtls) {
    // Beast reads at most the buffer's free capacity per call: without room, a body
    // arrives a few hundred bytes per recv.
    buf_.reserve(kReadBuffer);
  }

  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
  }

  void run() {
    if (tls_) {
      ssl_ = SSL_new(tls_.get());
      beast::error_code ec;
      if (ssl_ == nullptr || SSL_set_fd(ssl_, socket_.native_handle()) != 1 || !sock_.start_tls(ssl_, ec)) {
        log::debug("HTTP TLS handshake failed", {{"error", ec ? ec.message() : std::string("no TLS session")}});
        return;  // a plaintext client, a certificate the CA did not sign, or gone
      }
      if (mtls_) certificate_names_ = auth::peer_certificate_names(ssl_);
    }
    while (serve_one()) {
    }
    sock_.close_tls();
    // A lingering close: the answer is sent, then what the client still sends (the body of
    // a refused upload) is read and dropped for a moment, so that closing with unread bytes
    // does not reset the connection before the client has read the answer.
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    pollfd p{socket_.native_handle(), POLLIN, 0};
    while (!ec && std::chrono::steady_clock::now() < until && ::poll(&p, 1, 200) > 0) {
      if (::recv(p.fd, piece_, kPiece, 0) <= 0) break;
    }
  }
  void close() {
    beast::error_code ec;
    socket_.close(ec);
  }

 private:
  /// Serves one request; whether the connection can carry another.
  bool serve_one() {
    http::request_parser<http::empty_body> head;
    head.header_limit(kHeaderLimit);
    head.body_limit(settings_.max_body_bytes);
    beast::error_code ec;
    http::read_header(sock_, buf_, head, ec);
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset) return false;
    if (ec == http::error::body_limit) {  // Content-Length over the limit: the body stays unread
      const auto length = head.content_length();
      reply(http::status::payload_too_large,
            fmt::format("body of {} bytes is over http.max_body ({} bytes)", length ? *length : 0,
                        settings_.max_body_bytes),
            head.get().version(), false);
      return false;
    }
    if (ec) {
      if (ec == asio::error::timed_out || buf_.size() == 0) return false;  // idle, or gone
      reply(http::status::bad_request, fmt::format("malformed request: {}", ec.message()), 11, false);
      return false;
    }
    const auto& req = head.get();
    keep_ = req.keep_alive();
    version_ = req.version();
    const std::string_view path(req.target().data(), req.target().size());
    if (path == "/status" && req.method() == http::verb::get) return reply(http::status::ok, status(), version_, keep_, "application/json");
    auto target = parse_target(path);
    if (!target) return reply_error(head, http::status::bad_request, target.error().message());
    if (access_ != nullptr && access_->enabled()) {
      const bool put = req.method() == http::verb::put;
      const Right right = !put ? Right::kRead : target->ac ? Right::kWriteAc : Right::kWriteCas;
      const auto header = req[http::field::authorization];
      auto p = access_->admit({.authorization = std::string_view(header.data(), header.size()),
                               .certificate_names = certificate_names_,
                               .over_mtls = mtls_},
                              right,
                              fmt::format("HTTP {} /{}", std::string(req.method_string()), target->ac ? "ac" : "cas"));
      if (!p) {
        challenge_ = p.error().code() == Code::kUnauthenticated;
        const http::status st = status_of(p.error().code());  // 401, 403, or 503 (too many password checks)
        // A refused upload's body is not read: the lingering close takes care of it.
        if (put) keep_ = false;
        return put ? reply(st, p.error().message(), version_, false) : reply_error(head, st, p.error().message());
      }
    }
    switch (req.method()) {
      case http::verb::get:
      case http::verb::head:
        return get(head, *target, req.method() == http::verb::head);
      case http::verb::put:
        return put(head, *target);
      default:
        return reply_error(head, http::status::method_not_allowed,
                           fmt::format("method {} is not served; use GET, HEAD or PUT", std::string(req.method_string())),
                           "GET, HEAD, PUT");
    }
  }

  std::string status() {
    return fmt::format(R"({{"status":"ok","loaded":{},"usage_bytes":{},"max_body_bytes":{}}})",
                       store_.loaded() ? "true" : "false", store_.usage_bytes(), settings_.max_body_bytes);
  }

  bool get(http::request_parser<http::empty_body>& head, Target& t, bool head_only) {
    if (!drain(head)) return false;  // a GET with a body: read and ignored
    if (t.ac) {
      auto bytes = store_.get_action(t.digest);
      if (!bytes) return reply(status_of(bytes.error().code()), bytes.error().message(), version_, keep_);
      if (head_only) return reply(http::status::ok, {}, version_, keep_, "application/octet-stream", bytes->size());
      return reply(http::status::ok, std::move(*bytes), version_, keep_, "application/octet-stream");
    }
    const auto size = store_.size_of(t.digest.hash);
    if (!size) return reply(http::status::not_found, fmt::format("blob {} not found", t.digest.hex()), version_, keep_);
    t.digest.size = *size;
    if (head_only) return reply(http::status::ok, {}, version_, keep_, "application/octet-stream", static_cast<std::size_t>(*size));
    auto reader = store_.open_read(t.digest);
    if (!reader) return reply(status_of(reader.error().code()), reader.error().message(), version_, keep_);
    return send_blob(**reader, t.digest, accepts_zstd(head.get()));
  }

  /// Streams blob `d` from `r`: plain with its Content-Length, or with `compress` as one
  /// zstd frame flushed per piece (Content-Encoding: zstd, chunked).
  bool send_blob(HttpStore::Reader& r, const Digest& d, bool compress) {
    http::response<http::buffer_body> res{http::status::ok, version_};
    res.set(http::field::content_type, "application/octet-stream");
    if (compress) {
      res.set(http::field::content_encoding, "zstd");
      res.chunked(true);
    } else {
      res.content_length(static_cast<std::uint64_t>(d.size));
    }
    res.keep_alive(keep_);
    res.body().data = nullptr;
    res.body().more = true;
    http::response_serializer<http::buffer_body> sr{res};
    beast::error_code ec;
    http::write_header(sock_, sr, ec);
    if (ec) return false;
    auto put = [&](char* data, std::size_t n, bool more) {
      res.body().data = data;
      res.body().size = n;
      res.body().more = more;
      http::write(sock_, sr, ec);
      if (ec == http::error::need_buffer) ec = {};
      return !ec;
    };
    std::optional<zstd::Encoder> enc;
    std::string out;
    if (compress) {
      enc.emplace();
      out.resize(zstd::Encoder::bound(kPiece));
    }
    std::uint64_t left = static_cast<std::uint64_t>(d.size);
    do {
      std::size_t n = 0;
      if (left > 0) {
        auto got = r.read({piece_, kPiece});
        if (!got || *got == 0) {
          // The headers are gone: a body short of its length (or without its last chunk)
          // tells the client.
          log::warn("HTTP read of a blob failed mid-stream; connection closed",
                    {{"blob", fmt::format("{}", d)}, {"error", got ? "short blob" : got.error().message()}});
          return false;
        }
        n = *got;
        left -= n;
      }
      if (!compress) {
        if (!put(piece_, n, true)) return false;
        continue;
      }
      auto z = enc->add({piece_, n}, out, left == 0);
      if (!z || (*z > 0 && !put(out.data(), *z, true))) return false;
    } while (left > 0);
    return put(nullptr, 0, false) && keep_;
  }

  bool put(http::request_parser<http::empty_body>& head, Target& t) {
    const auto& req = head.get();
    const auto length = head.content_length();
    const auto enc = req.find(http::field::content_encoding);
    const bool zstd_body = enc != req.end() && beast::iequals(enc->value(), "zstd");
    if (enc != req.end() && !zstd_body && !beast::iequals(enc->value(), "identity")) {
      return reply_error(head, http::status::unsupported_media_type,
                         fmt::format("Content-Encoding \"{}\" is not supported (identity and zstd are)",
                                     std::string(enc->value())));
    }
    if (!length && !head.chunked()) {
      return reply_error(head, http::status::length_required, "a PUT needs Content-Length or a chunked body");
    }
    if (t.ac || zstd_body || !length) {
      // Whole bodies: an ActionResult, or a blob whose size is known only once read.
      std::string body;
      if (!read_body(head, [&](std::string_view p) { body.append(p); })) {
        return false;
      }
      if (zstd_body) {
        auto plain = zstd::decompress(body, settings_.max_body_bytes);
        if (!plain) return reply(http::status::bad_request, plain.error().message(), version_, keep_);
        body = std::move(*plain);
      }
      if (t.ac) {
        t.digest.size = 0;  // see docs: HTTP names an action by its hash alone
        const Status s = store_.put_action(t.digest, body);
        return s.ok() ? reply(http::status::ok, {}, version_, keep_) : reply(status_of(s.code()), s.message(), version_, keep_);
      }
      t.digest.size = static_cast<std::int64_t>(body.size());
      auto w = store_.open_write(t.digest);
      Status s = w ? (*w)->append(body) : w.error();
      if (s.ok()) s = (*w)->commit();
      return s.ok() ? reply(http::status::ok, {}, version_, keep_) : reply(status_of(s.code()), s.message(), version_, keep_);
    }
    t.digest.size = static_cast<std::int64_t>(*length);
    auto w = store_.open_write(t.digest);
    if (!w) {
      if (!drain(head)) return false;
      return reply(status_of(w.error().code()), w.error().message(), version_, keep_);
    }
    Status s;
    if (!read_body(head, [&](std::string_view p) {
          if (s.ok()) s = (*w)->append(p);  // after a failure the rest is read and dropped
        })) {
      return false;
    }
    if (s.ok()) s = (*w)->commit();
    if (!s.ok()) return reply(status_of(s.code()), s.message(), version_, keep_);
    return reply(http::status::ok, {}, version_, keep_);
  }

  /// Reads the body of the request whose header `head` holds, handing each piece to `fn`.
  /// False when the connection failed (nothing more can be answered on it).
  template <class F>
  bool read_body(http::request_parser<http::empty_body>& head, F&& fn) {
    http::request_parser<http::buffer_body> p{std::move(head)};
    beast::error_code ec;
    while (!p.is_done()) {
      p.get().body().data = piece_;
      p.get().body().size = kPiece;
      http::read(sock_, buf_, p, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec == http::error::body_limit) {
        reply(http::status::payload_too_large,
              fmt::format("body is over http.max_body ({} bytes)", settings_.max_body_bytes), version_, false);
        return false;
      }
      if (ec) return false;
      fn(std::string_view(piece_, kPiece - p.get().body().size));
    }
    return true;
  }

  bool drain(http::request_parser<http::empty_body>& head) {
    if (head.is_done()) return true;
    return read_body(head, [](std::string_view) {});
  }

  /// An error answer to a request whose body may be unread: reads (and drops) it first so
  /// the connection stays usable.
  bool reply_error(http::request_parser<http::empty_body>& head, http::status st, std::string message,
                   std::string_view allow = {}) {
    if (!drain(head)) return false;
    return reply(st, std::move(message), version_, keep_, "text/plain", std::nullopt, allow);
  }

  bool reply(http::status st, std::string body, unsigned version, bool keep, std::string_view type = "text/plain",
             std::optional<std::size_t> head_length = std::nullopt, std::string_view allow = {}) {
    http::response<http::string_body> res{st, version};
    res.set(http::field::server, "gorego");
    res.set(http::field::content_type, beast::string_view(type.data(), type.size()));
    if (!allow.empty()) res.set(http::field::allow, beast::string_view(allow.data(), allow.size()));
    if (st == http::status::unauthorized && challenge_) res.set(http::field::www_authenticate, "Basic realm=\"gorego\"");
    res.keep_alive(keep);
    if (st != http::status::ok && !body.empty()) body += '\n';
    res.body() = std::move(body);
    res.prepare_payload();
    if (head_length) res.content_length(*head_length);  // HEAD: the length of what GET sends
    beast::error_code ec;
    if (head_length) {
      http::response_serializer<http::string_body> sr{res};
      http::write_header(sock_, sr, ec);
    } else {
      http::write(sock_, res, ec);
    }
    return !ec && keep;
  }

  tcp::socket socket_;
  TimedStream sock_;
  const HttpSettings& settings_;
  HttpStore& store_;
  const auth::AccessControl* access_;  // null: no authentication
  std::shared_ptr<SSL_CTX> tls_;        // null: plaintext
  bool mtls_ = false;
  SSL* ssl_ = nullptr;
  std::vector<std::string> certificate_names_;  // of a verified client certificate
  beast::flat_buffer buf_;
  bool keep_ = true;
  bool challenge_ = false;  // a 401 asks for basic credentials
  unsigned version_ = 11;
  std::unique_ptr<char[]> buffer_ = std::make_unique<char[]>(kPiece);
  char* piece_ = buffer_.get();
};

}  // namespace

struct HttpCacheServer::Impl {
  HttpSettings settings;
  HttpStore& store;
  std::shared_ptr<const auth::AccessControl> access;
  std::shared_ptr<auth::ServerTlsContext> tls;  // null: plaintext
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread accept_thread;
  std::mutex mu;
  std::condition_variable idle;
  std::multiset<int> open;  // sockets of running connections, shut down at stop
  std::size_t active = 0;   // connection threads not yet finished
  bool stopping = false;
  int port = 0;

  Impl(const HttpSettings& s, HttpStore& st, std::shared_ptr<const auth::AccessControl> a,
       std::shared_ptr<auth::ServerTlsContext> t)
      : settings(s), store(st), access(std::move(a)), tls(std::move(t)) {}

  void accept_loop() {
    while (true) {
      tcp::socket sock(io);
      beast::error_code ec;
      acceptor.accept(sock, ec);
      std::unique_lock lock(mu);
      if (stopping) return;
      if (ec) continue;
      if (active >= settings.max_connections) {
        lock.unlock();
        const std::string_view busy =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";
        asio::write(sock, asio::buffer(busy.data(), busy.size()), ec);
        continue;
      }
      const int fd = sock.native_handle();
      open.insert(fd);
      ++active;
      lock.unlock();
      std::thread([this, fd, s = std::move(sock)]() mutable {
        auto c = std::make_unique<Connection>(std::move(s), settings, store, access.get(),
                                              tls ? tls->current() : nullptr, tls && tls->mtls());
        c->run();
        {
          std::lock_guard g(mu);
          open.erase(open.find(fd));
          c->close();  // under the lock: a stop never shuts down a number reused since
        }
        c.reset();
        std::lock_guard g(mu);
        --active;
        idle.notify_all();  // under the lock: the stopping thread cannot free `idle` first
      }).detach();
    }
  }
};

Result<std::unique_ptr<HttpCacheServer>> HttpCacheServer::start(const HttpSettings& s, HttpStore& store,
                                                                 std::shared_ptr<const auth::AccessControl> access,
                                                                 std::shared_ptr<auth::ServerTlsContext> tls) {
  auto impl = std::make_unique<Impl>(s, store, std::move(access), std::move(tls));
  const auto colon = s.addr.rfind(':');
  std::string host = s.addr.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return error(Code::kInvalidArgument, "HTTP address \"{}\": host \"{}\" is not an IP address", s.addr, host);
  const auto port = static_cast<unsigned short>(std::stoi(s.addr.substr(colon + 1)));
  const tcp::endpoint ep(address, port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return error(Code::kUnavailable, "cannot listen for HTTP on {}: {}", s.addr, ec.message());
  impl->port = impl->acceptor.local_endpoint().port();
  Impl* raw = impl.get();
  impl->accept_thread = std::thread([raw] { raw->accept_loop(); });
  log::info("HTTP cache listening",
            {{"address", fmt::format("{}:{}", host, impl->port)}, {"tls", !impl->tls ? "off" : impl->tls->mtls() ? "mtls" : "on"}});
  return std::unique_ptr<HttpCacheServer>(new HttpCacheServer(std::move(impl)));
}

HttpCacheServer::HttpCacheServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpCacheServer::~HttpCacheServer() {
  {
    std::lock_guard g(impl_->mu);
    impl_->stopping = true;
    // Wakes the blocked accept() and every connection blocked in a read or a write.
    ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);
    for (const int fd : impl_->open) ::shutdown(fd, SHUT_RDWR);
  }
  impl_->accept_thread.join();
  std::unique_lock lock(impl_->mu);
  impl_->idle.wait(lock, [&] { return impl_->active == 0; });
}

int HttpCacheServer::port() const { return impl_->port; }

}  // namespace gorego
