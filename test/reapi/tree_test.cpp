// The tree layer: GetTree over real gRPC (a CasService over an in-memory store stack) on
// random directory DAGs, against a breadth-first walk computed here: the pages put together
// equal it for every page size, whether the next page resumes a parked walk, walks again
// from a plain offset, or finds its walk gone; messages stay under 2 MiB; tree_of builds
// complete Trees and refuses incomplete ones.
#include <catch2/catch.hpp>

#include <deque>
#include <random>
#include <set>

#include <grpcpp/grpcpp.h>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"

#include <gorego/eviction/lru.hpp>
#include <gorego/reapi/cas_service.hpp>
#include <gorego/reapi/tree.hpp>
#include <gorego/store/local.hpp>
#include <gorego/store/memory_store.hpp>
#include <gorego/store/proxy_store.hpp>

using namespace gorego;
namespace re = gorego::reapi::re;

namespace {

using Store = ProxyStore<Local<MemoryStore, Lru>, NoRemote>;

/// A CasService over an in-memory store, served on a loopback port.
struct TreeServer {
  TreeServer() : store(MemoryStore::Options{}, Local<MemoryStore, Lru>::Options{.max_bytes = 1 << 30}) {
    REQUIRE(store.start().ok());
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&cas);
    server = b.BuildAndStart();
    REQUIRE(server);
    stub = re::ContentAddressableStorage::NewStub(
        grpc::CreateChannel(fmt::format("127.0.0.1:{}", port), grpc::InsecureChannelCredentials()));
  }
  ~TreeServer() {
    server->Shutdown();
    pool.shutdown();
  }

  Store store;
  Executor pool{{.threads = 2, .max_queued = 1024}};
  reapi::CasService<Store> cas{store, pool, reapi::ServiceOptions{}};
  int port = 0;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<re::ContentAddressableStorage::Stub> stub;
};

/// A random DAG of `n` directories (later ones pick children among earlier ones, so
/// subtrees are shared), each with `file_bytes` of file names; the last one is the root.
/// Directories whose index is in `absent` are not stored.
struct Dag {
  std::vector<re::Directory> dirs;
  std::vector<Digest> digests;
  std::vector<std::string> bytes;

  Dag(std::size_t n, unsigned seed, std::size_t file_bytes = 0) {
    std::mt19937 rng(seed);
    for (std::size_t i = 0; i < n; ++i) {
      re::Directory d;
      auto* f = d.add_files();
      f->set_name(fmt::format("file{}-{}", i, std::string(file_bytes, 'x')));
      *f->mutable_digest() = reapi::to_proto(Sha256::digest_of(std::to_string(i)));
      std::set<std::size_t> kids;
      for (int k = 0; k < 3 && i > 0; ++k) kids.insert(rng() % i);
      for (std::size_t k : kids) {
        auto* sub = d.add_directories();
        sub->set_name(fmt::format("d{}", k));
        *sub->mutable_digest() = reapi::to_proto(digests[k]);
      }
      bytes.push_back(d.SerializeAsString());
      digests.push_back(Sha256::digest_of(bytes.back()));
      dirs.push_back(std::move(d));
    }
  }
  [[nodiscard]] const Digest& root() const { return digests.back(); }
  /// The index of the root's first subdirectory (reachable, by construction).
  [[nodiscard]] std::size_t first_child() const {
    const auto d = *reapi::from_proto(dirs.back().directories(0).digest());
    return static_cast<std::size_t>(std::find(digests.begin(), digests.end(), d) - digests.begin());
  }

  void store_in(Store& s, const std::set<std::size_t>& absent = {}) const {
    for (std::size_t i = 0; i < dirs.size(); ++i) {
      if (!absent.contains(i)) REQUIRE(s.put(digests[i], bytes[i]).ok());
    }
  }

  /// Breadth-first from the root, each directory once, leaving out absent ones (and what
  /// only they lead to): the serialized directories in order.
  [[nodiscard]] std::vector<std::string> bfs(const std::set<std::size_t>& absent = {}) const {
    std::vector<std::string> out;
    std::deque<std::size_t> queue{dirs.size() - 1};
    std::set<std::size_t> seen{dirs.size() - 1};
    while (!queue.empty()) {
      const std::size_t i = queue.front();
      queue.pop_front();
      if (absent.contains(i)) continue;
      out.push_back(bytes[i]);
      for (const auto& sub : dirs[i].directories()) {
        const auto d = *reapi::from_proto(sub.digest());
        const auto k = static_cast<std::size_t>(std::find(digests.begin(), digests.end(), d) - digests.begin());
        if (seen.insert(k).second) queue.push_back(k);
      }
    }
    return out;
  }
};

struct Page {
  grpc::Status status;
  std::vector<std::string> dirs;
  std::string token;
  std::size_t messages = 0;
  std::size_t largest = 0;
};

Page get_page(TreeServer& s, const Digest& root, int page_size, const std::string& token) {
  re::GetTreeRequest req;
  *req.mutable_root_digest() = reapi::to_proto(root);
  req.set_page_size(page_size);
  req.set_page_token(token);
  grpc::ClientContext ctx;
  auto r = s.stub->GetTree(&ctx, req);
  Page p;
  re::GetTreeResponse resp;
  while (r->Read(&resp)) {
    ++p.messages;
    p.largest = std::max(p.largest, resp.ByteSizeLong());
    for (const auto& d : resp.directories()) p.dirs.push_back(d.SerializeAsString());
    if (!resp.next_page_token().empty()) p.token = resp.next_page_token();
  }
  p.status = r->Finish();
  return p;
}

/// Every page from `token` on, put together; the number of pages.
std::pair<std::vector<std::string>, int> all_pages(TreeServer& s, const Digest& root, int page_size,
                                                   std::string token = "") {
  std::vector<std::string> out;
  int pages = 0;
  do {
    Page p = get_page(s, root, page_size, token);
    INFO("page " << pages << ": " << p.status.error_message());
    REQUIRE(p.status.ok());
    out.insert(out.end(), p.dirs.begin(), p.dirs.end());
    token = p.token;
    ++pages;
  } while (!token.empty() && pages < 1000);
  return {out, pages};
}

}  // namespace

TEST_CASE("Tree: GetTree pages put together are the breadth-first walk, for every page size", "[tree]") {
  TreeServer s;
  const Dag dag(80, 1);
  dag.store_in(s.store);
  const auto expected = dag.bfs();
  REQUIRE(expected.size() > 20);
  for (int page : {0, 1, 2, 7, 1000}) {
    INFO("page_size " << page);
    auto [got, pages] = all_pages(s, dag.root(), page);
    CHECK(got == expected);
    if (page > 0) CHECK(pages == static_cast<int>((expected.size() + page - 1) / page));
  }
  CHECK(s.cas.cursors().size() == 0);  // every parked walk was taken up again
}

TEST_CASE("Tree: a page token resumes its walk, or walks again when the walk is gone", "[tree]") {
  TreeServer s;
  const Dag dag(60, 2);
  dag.store_in(s.store);
  const auto expected = dag.bfs();
  Page first = get_page(s, dag.root(), 5, "");
  REQUIRE(first.status.ok());
  REQUIRE(first.token.starts_with("c"));
  CHECK(s.cas.cursors().size() == 1);
  // A token whose walk is not parked (another cursor id): the same pages, walked again.
  const std::string offset = first.token.substr(first.token.find('.') + 1);
  auto [lost, lost_pages] = all_pages(s, dag.root(), 5, "c999999." + offset);
  CHECK(std::vector<std::string>(expected.begin() + 5, expected.end()) == lost);
  // A plain offset, as older servers issued: the same again.
  auto [plain, plain_pages] = all_pages(s, dag.root(), 5, "5");
  CHECK(plain == lost);
  // The parked walk itself.
  auto [resumed, resumed_pages] = all_pages(s, dag.root(), 5, first.token);
  CHECK(resumed == lost);
  CHECK(s.cas.cursors().size() == 0);
  // A token is not a key for another tree.
  const Dag other(10, 3);
  other.store_in(s.store);
  Page second = get_page(s, dag.root(), 5, "");
  Page wrong_root = get_page(s, other.root(), 5, second.token);
  REQUIRE(wrong_root.status.ok());
  CHECK(s.cas.cursors().size() == 1);  // not taken by the other root's request
  for (const char* bad : {"c", "c1", "c1.", "cx.2", "-1", "3a"}) {
    Page p = get_page(s, dag.root(), 5, bad);
    INFO(bad);
    CHECK(p.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(p.status.error_message(), Catch::Matchers::Contains("page_token"));
  }
}

TEST_CASE("Tree: directories missing from the CAS are left out, a missing root is NOT_FOUND", "[tree]") {
  TreeServer s;
  const Dag dag(40, 4);
  const std::set<std::size_t> absent{dag.first_child(), 10, 20};
  dag.store_in(s.store, absent);
  auto [got, pages] = all_pages(s, dag.root(), 4);
  CHECK(got == dag.bfs(absent));
  CHECK(got.size() < dag.bfs().size());
  Page none = get_page(s, Sha256::digest_of("no such directory"), 0, "");
  CHECK(none.status.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK_THAT(none.status.error_message(), Catch::Matchers::Contains("root directory"));
}

TEST_CASE("Tree: large directories go in several messages of at most 2 MiB", "[tree]") {
  TreeServer s;
  const Dag dag(30, 5, 300000);  // about 300 KB per directory
  dag.store_in(s.store);
  Page p = get_page(s, dag.root(), 0, "");
  REQUIRE(p.status.ok());
  CHECK(p.dirs == dag.bfs());
  CHECK(p.messages > 1);
  CHECK(p.largest <= (std::size_t{2} << 20) + 1024);
  CHECK(p.token.empty());
}

TEST_CASE("Tree: tree_of builds the Tree of a directory, and refuses an incomplete one", "[tree]") {
  Store store(MemoryStore::Options{}, Local<MemoryStore, Lru>::Options{.max_bytes = 1 << 30});
  REQUIRE(store.start().ok());
  const Dag dag(50, 6);
  dag.store_in(store);
  const auto expected = dag.bfs();
  auto tree = detail::wait_for<Result<re::Tree>>(
      [&](auto cb) { reapi::tree_of(store, nullptr, dag.root(), std::move(cb)); });
  REQUIRE(tree.ok());
  CHECK(tree->root().SerializeAsString() == expected.front());
  REQUIRE(static_cast<std::size_t>(tree->children_size()) == expected.size() - 1);
  for (int i = 0; i < tree->children_size(); ++i) {
    CHECK(tree->children(i).SerializeAsString() == expected[static_cast<std::size_t>(i) + 1]);
  }

  Store partial(MemoryStore::Options{}, Local<MemoryStore, Lru>::Options{.max_bytes = 1 << 30});
  REQUIRE(partial.start().ok());
  dag.store_in(partial, {dag.first_child()});
  auto incomplete = detail::wait_for<Result<re::Tree>>(
      [&](auto cb) { reapi::tree_of(partial, nullptr, dag.root(), std::move(cb)); });
  REQUIRE_FALSE(incomplete.ok());
  CHECK(incomplete.error().code() == Code::kNotFound);
  CHECK_THAT(incomplete.error().message(), Catch::Matchers::Contains("incomplete"));
}
