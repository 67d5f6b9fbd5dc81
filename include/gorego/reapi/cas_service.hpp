#pragma once
/// ContentAddressableStorage service over any BlobStore: FindMissingBlobs,
/// BatchUpdateBlobs, BatchReadBlobs and GetTree. Every handler returns to gRPC at once
/// and does its validation and store work on the Executor, except a FindMissingBlobs the
/// store can answer from memory alone (`answers_from_memory()`: no upstream to ask, index
/// loaded), which runs on the gRPC thread: it never blocks, and the hand-off would cost
/// more than the lookups.

#include <grpcpp/grpcpp.h>

#include <charconv>
#include <deque>
#include <unordered_set>
#include <vector>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"

#include <gorego/concepts/blob_store.hpp>
#include <gorego/core/executor.hpp>
#include <gorego/reapi/arena_allocator.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/reapi/rpc_context.hpp>
#include <gorego/reapi/service_options.hpp>

namespace gorego::reapi {

template <BlobStore Store>
class CasService final : public re::ContentAddressableStorage::CallbackService {
 public:
  CasService(Store& store, Executor& pool, ServiceOptions opt)
      : store_(store), pool_(pool), opt_(opt) {
    SetMessageAllocatorFor_FindMissingBlobs(&find_missing_alloc_);
    SetMessageAllocatorFor_BatchReadBlobs(&batch_read_alloc_);
  }

  grpc::ServerUnaryReactor* FindMissingBlobs(grpc::CallbackServerContext* ctx,
                                             const re::FindMissingBlobsRequest* req,
                                             re::FindMissingBlobsResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    auto work = [this, reactor, req, resp] {
      GOREGO_FINISH_IF_ERROR(reactor, check_digest_function(req->digest_function()));
      std::vector<Digest> digests;
      digests.reserve(static_cast<std::size_t>(req->blob_digests_size()));
      for (int i = 0; i < req->blob_digests_size(); ++i) {
        auto d = from_proto(req->blob_digests(i), "blob_digests", i);
        if (!d) return reactor->Finish(to_grpc(d.error()));
        digests.push_back(*d);
      }
      const std::vector<Digest> missing = store_.find_missing(digests);
      resp->mutable_missing_blob_digests()->Reserve(static_cast<int>(missing.size()));
      for (const Digest& d : missing) *resp->add_missing_blob_digests() = to_proto(d);
      reactor->Finish(grpc::Status::OK);
    };
    if constexpr (requires { store_.answers_from_memory(); }) {
      if (store_.answers_from_memory()) {
        TraceContext::Scope scope(incoming_context(ctx));
        work();
        return reactor;
      }
    }
    pool_.post(incoming_context(ctx), std::move(work));
    return reactor;
  }

  grpc::ServerUnaryReactor* BatchUpdateBlobs(grpc::CallbackServerContext* ctx,
                                             const re::BatchUpdateBlobsRequest* req,
                                             re::BatchUpdateBlobsResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    pool_.post(incoming_context(ctx), [this, reactor, req, resp] {
      GOREGO_FINISH_IF_ERROR(reactor, check_digest_function(req->digest_function()));
      std::uint64_t total = 0;
      for (const auto& r : req->requests()) total += r.data().size();
      if (total > opt_.max_batch_total_size_bytes) {
        return reactor->Finish(to_grpc(error(
            Code::kInvalidArgument,
            "BatchUpdateBlobs carries {} bytes, over max_batch_total_size_bytes {}; use ByteStream",
            total, opt_.max_batch_total_size_bytes)));
      }
      // Validate each blob, then store the valid ones together (one durability barrier).
      std::vector<Status> results(static_cast<std::size_t>(req->requests_size()));
      std::vector<BlobWrite> writes;
      std::vector<std::size_t> where;
      for (int i = 0; i < req->requests_size(); ++i) {
        auto d = check_one(req->requests(i), i);
        if (!d) {
          results[static_cast<std::size_t>(i)] = d.error();
          continue;
        }
        writes.push_back({*d, req->requests(i).data()});
        where.push_back(static_cast<std::size_t>(i));
      }
      if constexpr (requires(std::span<const BlobWrite> w) { store_.put_batch(w); }) {
        std::vector<Status> stored = store_.put_batch(writes);
        for (std::size_t j = 0; j < where.size(); ++j) results[where[j]] = std::move(stored[j]);
      } else {
        for (std::size_t j = 0; j < where.size(); ++j) results[where[j]] = store_.put(writes[j].digest, writes[j].data);
      }
      for (int i = 0; i < req->requests_size(); ++i) {
        auto* out = resp->add_responses();
        *out->mutable_digest() = req->requests(i).digest();
        *out->mutable_status() = to_rpc_status(results[static_cast<std::size_t>(i)]);
      }
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* BatchReadBlobs(grpc::CallbackServerContext* ctx,
                                           const re::BatchReadBlobsRequest* req,
                                           re::BatchReadBlobsResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if constexpr (requires(std::span<const Digest> ds) { store_.get_all_in_memory(ds); }) {
      TraceContext::Scope scope(incoming_context(ctx));
      if (read_from_memory(*req, *resp)) {
        reactor->Finish(grpc::Status::OK);
        return reactor;
      }
    }
    pool_.post(incoming_context(ctx), [this, reactor, req, resp] {
      GOREGO_FINISH_IF_ERROR(reactor, check_digest_function(req->digest_function()));
      std::vector<Digest> digests;
      std::uint64_t total = 0;
      for (int i = 0; i < req->digests_size(); ++i) {
        auto d = from_proto(req->digests(i), "digests", i);
        if (!d) return reactor->Finish(to_grpc(d.error()));
        total += static_cast<std::uint64_t>(d->size);
        digests.push_back(*d);
      }
      if (total > opt_.max_batch_total_size_bytes) {
        return reactor->Finish(to_grpc(error(
            Code::kInvalidArgument,
            "BatchReadBlobs asks for {} bytes, over max_batch_total_size_bytes {}; use ByteStream",
            total, opt_.max_batch_total_size_bytes)));
      }
      for (const Digest& d : digests) {
        auto* out = resp->add_responses();
        *out->mutable_digest() = to_proto(d);
        out->set_compressor(re::Compressor::IDENTITY);
        auto data = store_.get(d);
        if (data) {
          out->set_data(std::move(*data));
        } else {
          *out->mutable_status() = to_rpc_status(data.error());
        }
      }
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerWriteReactor<re::GetTreeResponse>* GetTree(grpc::CallbackServerContext* ctx,
                                                         const re::GetTreeRequest* req) override {
    return new TreeReactor(this, req, incoming_context(ctx));
  }

 private:
  /// Answers a BatchReadBlobs on the calling thread when every blob asked for is held in
  /// memory (hot small blobs: no disk, no hand-off). Returns false, with `resp` untouched,
  /// when any is not, or anything is wrong with the request (the full path reports it).
  bool read_from_memory(const re::BatchReadBlobsRequest& req, re::BatchReadBlobsResponse& resp) {
    if (req.digests_size() == 0 || !check_digest_function(req.digest_function()).ok()) return false;
    std::vector<Digest> digests;
    digests.reserve(static_cast<std::size_t>(req.digests_size()));
    std::uint64_t total = 0;
    for (const auto& p : req.digests()) {
      auto d = from_proto(p);
      if (!d) return false;
      total += static_cast<std::uint64_t>(d->size);
      digests.push_back(*d);
    }
    if (total > opt_.max_batch_total_size_bytes) return false;
    auto data = store_.get_all_in_memory(digests);
    if (!data) return false;
    for (int i = 0; i < req.digests_size(); ++i) {
      auto* out = resp.add_responses();
      *out->mutable_digest() = req.digests(i);
      out->set_compressor(re::Compressor::IDENTITY);
      out->set_data(std::move((*data)[static_cast<std::size_t>(i)]));
    }
    return true;
  }

  /// The digest of one BatchUpdateBlobs entry, when the entry is acceptable.
  Result<Digest> check_one(const re::BatchUpdateBlobsRequest::Request& r, int i) {
    if (r.compressor() != re::Compressor::IDENTITY) {
      return error(Code::kInvalidArgument, "requests[{}]: compressor {} is not supported", i,
                   re::Compressor::Value_Name(r.compressor()));
    }
    auto d = from_proto(r.digest(), "requests", i, ".digest");
    if (!d) return d.error();
    if (Status s = opt_.check_blob_size(*d); !s.ok()) {
      return error(s.code(), "requests[{}]: {}", i, s.message());
    }
    return *d;
  }

  /// One GetTree page: breadth-first from the root, skipping directories already seen;
  /// the page token is the number of directories returned before.
  class TreeReactor final : public grpc::ServerWriteReactor<re::GetTreeResponse> {
   public:
    TreeReactor(CasService* svc, const re::GetTreeRequest* req, TraceContext tc) : svc_(svc) {
      svc_->pool_.post(std::move(tc), [this, req] {
        const Status s = build(*req);
        if (!s.ok()) return Finish(to_grpc(s));
        next();
      });
    }
    void OnWriteDone(bool ok) override {
      if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      next();
    }
    void OnDone() override { delete this; }

   private:
    void next() {
      if (sent_ == pages_.size()) return Finish(grpc::Status::OK);
      StartWrite(&pages_[sent_++]);
    }

    Status build(const re::GetTreeRequest& req) {
      GOREGO_RETURN_IF_ERROR(check_digest_function(req.digest_function()));
      auto root = from_proto(req.root_digest(), "root_digest");
      if (!root) return root.error();
      std::uint64_t offset = 0;
      if (!req.page_token().empty()) {
        const auto& t = req.page_token();
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), offset);
        if (ec != std::errc() || p != t.data() + t.size()) {
          return error(Code::kInvalidArgument, "page_token \"{}\" was not issued by this server", t);
        }
      }
      if (req.page_size() < 0) return error(Code::kInvalidArgument, "page_size {} is negative", req.page_size());
      const int max = svc_->opt_.max_tree_page_size;
      const std::uint64_t page = req.page_size() == 0 ? max : std::min(req.page_size(), max);

      std::deque<Digest> queue{*root};
      std::unordered_set<Digest> seen{*root};
      std::uint64_t index = 0;
      std::uint64_t emitted = 0;
      std::size_t bytes = 0;
      pages_.emplace_back();
      while (!queue.empty()) {
        const Digest d = queue.front();
        queue.pop_front();
        auto blob = svc_->store_.get(d);
        if (!blob) {
          if (index == 0) return error(Code::kNotFound, "root directory {} not found", d);
          continue;  // REAPI: return the part of the tree that is present
        }
        re::Directory dir;
        if (!dir.ParseFromString(*blob)) {
          return error(Code::kInvalidArgument, "blob {} in the tree is not a Directory", d);
        }
        for (const auto& sub : dir.directories()) {
          auto sd = from_proto(sub.digest(), fmt::format("directory {} entry \"{}\"", d.hex(), sub.name()));
          if (!sd) return sd.error();
          if (seen.insert(*sd).second) queue.push_back(*sd);
        }
        if (index++ < offset) continue;
        if (emitted == page) {
          pages_.back().set_next_page_token(std::to_string(offset + emitted));
          return {};
        }
        if (bytes + blob->size() > (std::size_t{2} << 20) && pages_.back().directories_size() > 0) {
          pages_.emplace_back();
          bytes = 0;
        }
        bytes += blob->size();
        *pages_.back().add_directories() = std::move(dir);
        ++emitted;
      }
      return {};
    }

    CasService* svc_;
    std::vector<re::GetTreeResponse> pages_;
    std::size_t sent_ = 0;
  };

  Store& store_;
  Executor& pool_;
  ServiceOptions opt_;
  ArenaMessageAllocator<re::FindMissingBlobsRequest, re::FindMissingBlobsResponse> find_missing_alloc_;
  ArenaMessageAllocator<re::BatchReadBlobsRequest, re::BatchReadBlobsResponse> batch_read_alloc_;
};

}  // namespace gorego::reapi
