// The metadata the Reapi client sends with its upstream calls, seen by an in-process server.
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"

#include <gorego/reapi/reapi_client.hpp>

namespace {

namespace re = gorego::reapi::re;
using Metadata = std::multimap<std::string, std::string>;

/// A Capabilities service that keeps the client metadata of the first call it gets (the
/// client's capabilities probe, which starts as soon as it connects).
class RecordingCapabilities final : public re::Capabilities::Service {
 public:
  grpc::Status GetCapabilities(grpc::ServerContext* ctx, const re::GetCapabilitiesRequest*,
                               re::ServerCapabilities*) override {
    std::lock_guard lock(mu_);
    if (!first_) {
      Metadata metadata;
      for (const auto& [key, value] : ctx->client_metadata()) {
        metadata.emplace(std::string(key.data(), key.size()),
                         std::string(value.data(), value.size()));
      }
      first_ = std::move(metadata);
      called_.notify_all();
    }
    return grpc::Status::OK;
  }

  /// The metadata of the first call; nullopt when none came within `timeout`.
  std::optional<Metadata> first_call(std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    called_.wait_for(lock, timeout, [&] { return first_.has_value(); });
    return first_;
  }

 private:
  std::mutex mu_;
  std::condition_variable called_;
  std::optional<Metadata> first_;
};

/// The metadata of the first call a client made with `options` (target filled in).
std::optional<Metadata> metadata_of(gorego::reapi::Reapi::Options options) {
  RecordingCapabilities service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  const std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  REQUIRE(server);
  options.target = fmt::format("grpc://127.0.0.1:{}", port);
  auto client = gorego::reapi::Reapi::connect(std::move(options));
  REQUIRE(client.ok());
  std::optional<Metadata> metadata = service.first_call(std::chrono::seconds(30));
  client->reset();
  server->Shutdown(std::chrono::system_clock::now());
  return metadata;
}

std::vector<std::string> values(const Metadata& metadata, const std::string& key) {
  std::vector<std::string> out;
  for (auto [it, end] = metadata.equal_range(key); it != end; ++it) out.push_back(it->second);
  return out;
}

}  // namespace

TEST_CASE("Reapi: the header and every one of the headers go with an upstream call") {
  const std::optional<Metadata> metadata =
      metadata_of({.bearer_token = "t0ken",
                   .header = "X-One: 1",
                   .headers = {"x-two:2", "X-Three: \tthree 3", "x-two: again"}});
  REQUIRE(metadata.has_value());
  // Names are sent lower-cased, the spaces after ':' are dropped, a repeated name sends both.
  CHECK(values(*metadata, "x-one") == std::vector<std::string>{"1"});
  CHECK(values(*metadata, "x-two") == std::vector<std::string>{"2", "again"});
  CHECK(values(*metadata, "x-three") == std::vector<std::string>{"three 3"});
  CHECK(values(*metadata, "authorization") == std::vector<std::string>{"Bearer t0ken"});
}

TEST_CASE("Reapi: the headers are sent without the single header, and nothing without either") {
  const std::optional<Metadata> only_list = metadata_of({.headers = {"x-list: 1"}});
  REQUIRE(only_list.has_value());
  CHECK(values(*only_list, "x-list") == std::vector<std::string>{"1"});

  const std::optional<Metadata> none = metadata_of({});
  REQUIRE(none.has_value());
  for (const auto& [key, value] : *none) {
    INFO(key << ": " << value);
    CHECK((key.starts_with("grpc-") || key == "user-agent" || key == ":authority" || key == "te" ||
           key == "content-type"));
  }
}
