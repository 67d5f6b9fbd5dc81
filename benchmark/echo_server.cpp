// gorego-echo: the floor under gorego's per-call cost. A REAPI server built on the same
// gRPC callback API and settings as gorego, doing as little as an answer allows:
// FindMissingBlobs reports nothing missing without reading the digests, and the
// ActionCache is a hash map without validation, disk or instrumentation. Driving it and
// gorego with the same gorego-load workload shows how much of gorego's CPU per call is
// gRPC itself (docs/performance.md). Not a cache: it stores no blobs.
//
//   gorego-echo --listen 127.0.0.1:50070 &
//   gorego-load --target 127.0.0.1:50070 --server-pid $! --workload find-missing --missing-fraction 0

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include <CLI/CLI.hpp>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"

namespace re = build::bazel::remote::execution::v2;

namespace {

class Capabilities final : public re::Capabilities::CallbackService {
  grpc::ServerUnaryReactor* GetCapabilities(grpc::CallbackServerContext* ctx, const re::GetCapabilitiesRequest*,
                                            re::ServerCapabilities* resp) override {
    auto* cache = resp->mutable_cache_capabilities();
    cache->add_digest_functions(re::DigestFunction::SHA256);
    cache->set_max_batch_total_size_bytes(4 << 20);
    cache->mutable_action_cache_update_capabilities()->set_update_enabled(true);
    resp->mutable_low_api_version()->set_major(2);
    resp->mutable_high_api_version()->set_major(2);
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

class Cas final : public re::ContentAddressableStorage::CallbackService {
  grpc::ServerUnaryReactor* FindMissingBlobs(grpc::CallbackServerContext* ctx, const re::FindMissingBlobsRequest*,
                                             re::FindMissingBlobsResponse*) override {
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);  // "nothing is missing"
    return r;
  }
};

class ActionCache final : public re::ActionCache::CallbackService {
  grpc::ServerUnaryReactor* GetActionResult(grpc::CallbackServerContext* ctx, const re::GetActionResultRequest* req,
                                            re::ActionResult* resp) override {
    auto* r = ctx->DefaultReactor();
    {
      std::lock_guard lock(mu_);
      auto it = results_.find(req->action_digest().hash());
      if (it == results_.end()) {
        r->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "not stored"));
        return r;
      }
      *resp = it->second;
    }
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerUnaryReactor* UpdateActionResult(grpc::CallbackServerContext* ctx,
                                               const re::UpdateActionResultRequest* req,
                                               re::ActionResult* resp) override {
    {
      std::lock_guard lock(mu_);
      results_[req->action_digest().hash()] = req->action_result();
    }
    *resp = req->action_result();
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }

  std::mutex mu_;
  std::unordered_map<std::string, re::ActionResult> results_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gorego-echo: a REAPI server that does as little as its answers allow (FindMissingBlobs, "
               "ActionCache), to measure gRPC's own cost per call next to gorego's"};
  std::string listen = "127.0.0.1:50070";
  app.add_option("--listen", listen, "HOST:PORT to serve on")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // SIGTERM and SIGINT go to the waiter below: block them before gRPC starts its threads.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);  // as gorego does
  Capabilities caps;
  Cas cas;
  ActionCache ac;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(5 << 20);  // gorego's default: 4 MiB batches + 1 MiB
  builder.SetMaxSendMessageSize(5 << 20);
  builder.RegisterService(&caps);
  builder.RegisterService(&cas);
  builder.RegisterService(&ac);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "gorego-echo: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::fprintf(stderr, "gorego-echo: serving on port %d\n", port);
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop, &sig);
    server->Shutdown();
  });
  server->Wait();
  waiter.join();
  return 0;
}
