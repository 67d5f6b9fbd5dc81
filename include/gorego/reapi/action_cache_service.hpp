#pragma once
/// ActionCache service over a store that is both a BlobStore and an ActionStore.
///
/// GetActionResult applies the completeness check: a result whose outputs (files,
/// stdout/stderr, output directory trees and the files inside them) are not all in the
/// CAS is answered NOT_FOUND, so a client never gets a hit it cannot download.
/// A lookup the store can answer from memory (`get_action_in_memory`) whose check needs no
/// tree reads is answered on the gRPC thread, saving the hand-off to the Executor.

#include <grpcpp/grpcpp.h>

#include <vector>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"

#include <gorego/concepts/action_store.hpp>
#include <gorego/concepts/blob_store.hpp>
#include <gorego/core/executor.hpp>
#include <gorego/reapi/arena_allocator.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/reapi/rpc_context.hpp>

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
          reactor->Finish(to_grpc(check_complete(*action, *resp)));
        } else {  // the trees must be read: not on this thread
          pool_.post(incoming_context(ctx), [this, reactor, resp, d = *action] {
            reactor->Finish(to_grpc(check_complete(d, *resp)));
          });
        }
        return reactor;
      }
    }
    pool_.post(incoming_context(ctx), [this, reactor, req, resp] { reactor->Finish(to_grpc(get(*req, *resp))); });
    return reactor;
  }

  grpc::ServerUnaryReactor* UpdateActionResult(grpc::CallbackServerContext* ctx,
                                               const re::UpdateActionResultRequest* req,
                                               re::ActionResult* resp) override {
    auto* reactor = ctx->DefaultReactor();
    pool_.post(incoming_context(ctx), [this, reactor, req, resp] { reactor->Finish(to_grpc(update(*req, *resp))); });
    return reactor;
  }

 private:
  static Result<Digest> parse_request(const re::GetActionResultRequest& req) {
    GOREGO_RETURN_IF_ERROR(check_digest_function(req.digest_function()));
    return from_proto(req.action_digest(), "action_digest");
  }
  static Status unreadable(const Digest& action) {
    return error(Code::kNotFound, "stored result of action {} is unreadable", action);
  }

  Status get(const re::GetActionResultRequest& req, re::ActionResult& out) {
    auto action = parse_request(req);
    if (!action) return action.error();
    auto bytes = store_.get_action(*action);
    if (!bytes) return bytes.error();
    if (!out.ParseFromString(*bytes)) return unreadable(*action);
    return check_complete(*action, out);
  }

  /// NOT_FOUND unless every output of `out` can be downloaded.
  Status check_complete(const Digest& action, re::ActionResult& out) {
    std::vector<Digest> needed;
    GOREGO_RETURN_IF_ERROR(collect_outputs(out, needed));
    // A proxy checks what either tier can serve; a plain store what it holds.
    std::vector<Digest> missing;
    if constexpr (requires { store_.find_unavailable(needed); }) missing = store_.find_unavailable(needed);
    else missing = store_.find_missing(needed);
    if (!missing.empty()) {
      return error(Code::kNotFound, "result of action {} references {} missing blob(s), first {}",
                   action, missing.size(), missing.front());
    }
    return {};
  }

  Status update(const re::UpdateActionResultRequest& req, re::ActionResult& out) {
    GOREGO_RETURN_IF_ERROR(check_digest_function(req.digest_function()));
    auto action = from_proto(req.action_digest(), "action_digest");
    if (!action) return action.error();
    std::vector<Digest> referenced;
    GOREGO_RETURN_IF_ERROR(validate_result(req.action_result(), referenced));
    std::string bytes;
    req.action_result().SerializeToString(&bytes);
    GOREGO_RETURN_IF_ERROR(store_.put_action(*action, bytes));
    out = req.action_result();
    return {};
  }

  /// Checks every digest in a result is well-formed (collecting them).
  static Status validate_result(const re::ActionResult& r, std::vector<Digest>& out) {
    auto add = [&](const re::Digest& d, std::string_view field, int i = -1, std::string_view suffix = {}) -> Status {
      auto v = i < 0 ? from_proto(d, field) : from_proto(d, field, i, suffix);
      if (!v) return v.error();
      out.push_back(*v);
      return {};
    };
    for (int i = 0; i < r.output_files_size(); ++i) {
      GOREGO_RETURN_IF_ERROR(add(r.output_files(i).digest(), "action_result.output_files", i, ".digest"));
    }
    for (int i = 0; i < r.output_directories_size(); ++i) {
      GOREGO_RETURN_IF_ERROR(
          add(r.output_directories(i).tree_digest(), "action_result.output_directories", i, ".tree_digest"));
    }
    if (r.has_stdout_digest()) GOREGO_RETURN_IF_ERROR(add(r.stdout_digest(), "action_result.stdout_digest"));
    if (r.has_stderr_digest()) GOREGO_RETURN_IF_ERROR(add(r.stderr_digest(), "action_result.stderr_digest"));
    return {};
  }

  /// Everything a client must be able to download to use `r`, including the files inside
  /// output directory trees.
  Status collect_outputs(const re::ActionResult& r, std::vector<Digest>& out) {
    if (Status s = validate_result(r, out); !s.ok()) {
      return error(Code::kNotFound, "stored action result is invalid: {}", s.message());
    }
    for (const auto& dir : r.output_directories()) {
      auto tree_digest = from_proto(dir.tree_digest());
      auto tree_bytes = store_.get(*tree_digest);
      if (!tree_bytes) continue;  // reported missing by the caller's find_missing
      re::Tree tree;
      if (!tree.ParseFromString(*tree_bytes)) {
        return error(Code::kNotFound, "output directory tree {} is not a Tree", *tree_digest);
      }
      auto add_files = [&](const re::Directory& d) -> Status {
        for (const auto& f : d.files()) {
          auto fd = from_proto(f.digest());
          if (!fd) return error(Code::kNotFound, "tree {} has a bad file digest: {}", *tree_digest, fd.error().message());
          out.push_back(*fd);
        }
        return {};
      };
      GOREGO_RETURN_IF_ERROR(add_files(tree.root()));
      for (const auto& child : tree.children()) GOREGO_RETURN_IF_ERROR(add_files(child));
    }
    return {};
  }

  Store& store_;
  Executor& pool_;
  ArenaMessageAllocator<re::GetActionResultRequest, re::ActionResult> get_alloc_;
};

}  // namespace gorego::reapi
