#pragma once
/// The HTTP cache protocol listener (`http.addr`): what Bazel's `--remote_cache=http://...`
/// and bazel-remote's HTTP clients speak. GET, HEAD and PUT of `/cas/{sha256}` and
/// `/ac/{sha256}`, optionally below an instance prefix (`/{instance}/cas/...`), and
/// `GET /status` (JSON). Requests are parsed by Boost.Beast; each connection has a thread of
/// its own (at most `http.max_connections`) and is kept alive between requests. The store
/// is the server's one store stack, reached through HttpStore, so a blob put over HTTP is a
/// hit over gRPC and the other way round. See docs/architecture.md, "The HTTP cache
/// listener".

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <gorego/config/http.hpp>
#include <gorego/core/digest.hpp>
#include <gorego/core/status.hpp>

namespace gorego {
namespace auth {
class AccessControl;
class ServerTlsContext;
}

/// The store as the HTTP listener sees it: synchronous calls, made on its connection
/// threads. Implemented over the store stack by StoreStackImpl.
class HttpStore {
 public:
  class Reader {
   public:
    virtual ~Reader() = default;
    /// Up to `buf.size()` next bytes of the blob; 0 at its end.
    virtual Result<std::size_t> read(std::span<char> buf) = 0;
  };
  class Writer {
   public:
    virtual ~Writer() = default;
    virtual Status append(std::string_view data) = 0;
    /// Verifies the bytes against the digest, then publishes (and writes through).
    virtual Status commit() = 0;
  };

  virtual ~HttpStore() = default;
  /// The size of the CAS blob with SHA-256 `h`, if the local tier holds it (HTTP names
  /// blobs by hash alone).
  virtual std::optional<std::int64_t> size_of(const Hash256& h) = 0;
  virtual Result<std::unique_ptr<Reader>> open_read(const Digest& d) = 0;
  virtual Result<std::unique_ptr<Writer>> open_write(const Digest& d) = 0;
  /// The serialized ActionResult of `action` when every output it names is available
  /// (GetActionResult's completeness check); NOT_FOUND otherwise.
  virtual Result<std::string> get_action(const Digest& action) = 0;
  /// Stores `bytes` as the result of `action` after checking that they are an ActionResult
  /// with well-formed digests (INVALID_ARGUMENT otherwise).
  virtual Status put_action(const Digest& action, std::string_view bytes) = 0;
  /// For /status.
  virtual std::uint64_t usage_bytes() = 0;
  virtual bool loaded() = 0;
};

class HttpCacheServer {
 public:
  /// Listens on `s.addr` and serves until destroyed. UNAVAILABLE naming the address when
  /// it cannot be bound. With an enabled `access`, each request needs the right its method
  /// asks for (GET/HEAD: read; PUT /cas: write-cas; PUT /ac: write-ac): 401 (with a Basic
  /// challenge) for missing or wrong credentials, 403 for a principal without the right.
  /// With `tls`, every connection speaks TLS (https://) with the context current when it was
  /// accepted; with mTLS its verified certificate names are credentials too.
  static Result<std::unique_ptr<HttpCacheServer>> start(const HttpSettings& s, HttpStore& store,
                                                        std::shared_ptr<const auth::AccessControl> access = nullptr,
                                                        std::shared_ptr<auth::ServerTlsContext> tls = nullptr);
  HttpCacheServer(const HttpCacheServer&) = delete;
  HttpCacheServer& operator=(const HttpCacheServer&) = delete;
  /// Stops accepting, closes every connection and joins their threads.
  ~HttpCacheServer();

  [[nodiscard]] int port() const;

  struct Impl;

 private:
  explicit HttpCacheServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gorego
