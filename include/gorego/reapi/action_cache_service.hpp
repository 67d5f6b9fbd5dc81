#pragma once
/// ActionCache service over a store that is both a BlobStore and an ActionStore.
///
/// GetActionResult applies the completeness check: a result whose outputs (files,
/// stdout/stderr, output directory trees and the files inside them) are not all in the
/// CAS is answered NOT_FOUND, so a client never gets a hit it cannot download.
/// A lookup the store can answer from memory (`get_action_in_memory`) whose check needs no
/// tree reads is answered on the gRPC thread, saving the hand-off to the Executor.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"

#include <gorego/concepts/action_store.hpp>
#include <gorego/concepts/blob_store.hpp>
#include <gorego/concepts/remote_client.hpp>
#include <gorego/core/executor.hpp>
#include <gorego/reapi/arena_allocator.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/reapi/rpc_context.hpp>
#include <gorego/reapi/tree.hpp>

namespace gorego::reapi {

template <class Store>
  requires BlobStore<Store> && ActionStore<Store>
class ActionCacheService final : public re::ActionCache::CallbackService {
 public:
  ActionCacheService(Store& store, Executor& pool) : store_(store), pool_(pool) {
    SetMessageAllocatorFor_GetActionResult(&get_alloc_);
  }

  grpc::ServerUnaryReactor* GetActionResult(grpc::CallbackServerContext* ctx,
                                            const re::GetActionResultRequest* req,
                                            re::ActionResult* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (finish_if_refused(ctx, reactor)) return reactor;
    CallContext::Scope call(call_context(ctx, req->instance_name()));
    if constexpr (requires(const Digest& d) { store_.get_action_in_memory(d); }) {
      TraceContext::Scope scope(incoming_context(ctx));
      auto action = parse_request(*req);
      if (!action) {
        reactor->Finish(to_grpc(action.error()));
        return reactor;
      }
      if (auto bytes = store_.get_action_in_memory(*action)) {
        if (!*bytes) {
          reactor->Finish(to_grpc(bytes->error()));
        } else if (!resp->ParseFromString(**bytes)) {
          reactor->Finish(to_grpc(unreadable(*action)));
        } else if (resp->output_directories_size() == 0) {  // in memory: nothing to read
          check_complete(*action, *resp, [reactor](Status s) { reactor->Finish(to_grpc(s)); });
        } else {  // the trees must be read: not on this thread
          admit(pool_, incoming_context(ctx), reactor, [this, reactor, resp, d = *action] {
            check_complete(d, *resp, [reactor](Status s) { reactor->Finish(to_grpc(s)); });
          });
        }
        return reactor;
      }
    }
    admit(pool_, incoming_context(ctx), reactor, [this, reactor, req, resp] {
      auto action = parse_request(*req);
      if (!action) return reactor->Finish(to_grpc(action.error()));
      store_.get_action(*action, [this, reactor, resp, d = *action](Result<std::string> bytes) {
        if (!bytes) return reactor->Finish(to_grpc(bytes.error()));
        if (!resp->ParseFromString(*bytes)) return reactor->Finish(to_grpc(unreadable(d)));
        check_complete(d, *resp, [reactor](Status s) { reactor->Finish(to_grpc(s)); });
      });
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* UpdateActionResult(grpc::CallbackServerContext* ctx,
                                               const re::UpdateActionResultRequest* req,
                                               re::ActionResult* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (finish_if_refused(ctx, reactor)) return reactor;
    CallContext::Scope call(call_context(ctx, req->instance_name()));
    admit(pool_, incoming_context(ctx), reactor, [this, reactor, req, resp] { update(*req, *resp, reactor); });
    return reactor;
  }

  /// The cached result of `action` if every output it names can be downloaded (what
  /// GetActionResult answers); remote execution's cache check uses it.
  void lookup(const Digest& action, Callback<Result<re::ActionResult>> done) {
    store_.get_action(action, [this, action, done = std::move(done)](Result<std::string> bytes) mutable {
      if (!bytes) return done(bytes.error());
      auto result = std::make_shared<re::ActionResult>();
      if (!result->ParseFromString(*bytes)) return done(unreadable(action));
      check_complete(action, *result, [result, done = std::move(done)](Status s) {
        if (!s.ok()) return done(std::move(s));
        done(std::move(*result));
      });
    });
  }

 private:
  static Result<Digest> parse_request(const re::GetActionResultRequest& req) {
    auto fn = digest_function_of(req.digest_function());
    if (!fn) return fn.error();
    return from_proto(req.action_digest(), *fn, "action_digest");
  }
  static Status unreadable(const Digest& action) {
    return error(Code::kNotFound, "stored result of action {} is unreadable", action);
  }

  /// `done(status)`: NOT_FOUND unless every output of `out` can be downloaded. The output
  /// directory trees are read first (concurrently, through the store, so a proxy reads
  /// them through), then presence of everything is asked once.
  void check_complete(const Digest& action, const re::ActionResult& out, Callback<Status> done) {
    struct Check {
      Digest action;
      Callback<Status> done;
      std::vector<Digest> needed;
      std::mutex mu;
      std::size_t trees_left = 0;
      std::optional<Status> bad;  // a tree that is not a Tree: the result is unusable
    };
    auto c = std::make_shared<Check>();
    c->action = action;
    c->done = std::move(done);
    if (Status s = result_digests(out, c->needed, action.function); !s.ok()) {
      return c->done(error(Code::kNotFound, "stored action result is invalid: {}", s.message()));
    }
    c->trees_left = static_cast<std::size_t>(out.output_directories_size());
    if (c->trees_left == 0) return ask_presence(c);
    for (const auto& dir : out.output_directories()) {
      const Digest tree_digest = *from_proto(dir.tree_digest(), action.function);  // validated above
      store_.get(tree_digest, [this, c, tree_digest](Result<std::string> tree_bytes) {
        std::unique_lock lock(c->mu);
        // A tree that cannot be read is reported missing by the presence check.
        if (tree_bytes && !c->bad) {
          if (Status s = add_tree_files(tree_digest, *tree_bytes, c->needed); !s.ok()) c->bad = std::move(s);
        }
        if (--c->trees_left > 0) return;
        lock.unlock();
        if (c->bad) return c->done(std::move(*c->bad));
        ask_presence(c);
      });
    }
  }

  template <class Check>
  void ask_presence(const std::shared_ptr<Check>& c) {
    auto answer = [c](std::vector<Digest> missing) {
      if (!missing.empty()) {
        return c->done(error(Code::kNotFound, "result of action {} references {} missing blob(s), first {}",
                             c->action, missing.size(), missing.front()));
      }
      c->done(Status{});
    };
    // A proxy checks what either tier can serve; a plain store what it holds.
    if constexpr (requires { store_.find_unavailable(c->needed, answer); }) {
      store_.find_unavailable(c->needed, std::move(answer));
    } else {
      store_.find_missing(c->needed, std::move(answer));
    }
  }

  void update(const re::UpdateActionResultRequest& req, re::ActionResult& out, grpc::ServerUnaryReactor* reactor) {
    const auto fn = digest_function_of(req.digest_function());
    if (!fn) return reactor->Finish(to_grpc(fn.error()));
    auto action = from_proto(req.action_digest(), *fn, "action_digest");
    if (!action) return reactor->Finish(to_grpc(action.error()));
    std::vector<Digest> referenced;
    GOREGO_FINISH_IF_ERROR(reactor, result_digests(req.action_result(), referenced, *fn));
    std::string bytes;
    req.action_result().SerializeToString(&bytes);
    store_.put_action(*action, bytes, [&req, &out, reactor](Status s) {
      if (s.ok()) out = req.action_result();
      reactor->Finish(to_grpc(s));
    });
  }

  Store& store_;
  Executor& pool_;
  ArenaMessageAllocator<re::GetActionResultRequest, re::ActionResult> get_alloc_;
};

}  // namespace gorego::reapi
