#pragma once
/// ContentAddressableStorage service over any BlobStore: FindMissingBlobs,
/// BatchUpdateBlobs, BatchReadBlobs and GetTree. Every handler returns to gRPC at once
/// and does its validation and store work on the Executor, except a FindMissingBlobs the
/// store can answer from memory alone (`answers_from_memory()`: no upstream to ask, index
/// loaded), which runs on the gRPC thread: it never blocks, and the hand-off would cost
/// more than the lookups.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <charconv>
#include <deque>
#include <optional>
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
      store_.find_missing(digests, [reactor, resp](std::vector<Digest> missing) {
        resp->mutable_missing_blob_digests()->Reserve(static_cast<int>(missing.size()));
        for (const Digest& d : missing) *resp->add_missing_blob_digests() = to_proto(d);
        reactor->Finish(grpc::Status::OK);
      });
    };
    if constexpr (requires { store_.answers_from_memory(); }) {
      if (store_.answers_from_memory()) {
        TraceContext::Scope scope(incoming_context(ctx));
        work();
        return reactor;
      }
    }
    admit(pool_, incoming_context(ctx), reactor, std::move(work));
    return reactor;
  }

  grpc::ServerUnaryReactor* BatchUpdateBlobs(grpc::CallbackServerContext* ctx,
                                             const re::BatchUpdateBlobsRequest* req,
                                             re::BatchUpdateBlobsResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    admit(pool_, incoming_context(ctx), reactor, [this, reactor, req, resp] {
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
      auto results = std::make_shared<std::vector<Status>>(static_cast<std::size_t>(req->requests_size()));
      std::vector<BlobWrite> writes;
      auto where = std::make_shared<std::vector<std::size_t>>();
      for (int i = 0; i < req->requests_size(); ++i) {
        auto d = check_one(req->requests(i), i);
        if (!d) {
          (*results)[static_cast<std::size_t>(i)] = d.error();
          continue;
        }
        writes.push_back({*d, req->requests(i).data()});
        where->push_back(static_cast<std::size_t>(i));
      }
      store_.put_batch(writes, [reactor, req, resp, results, where](std::vector<Status> stored) {
        for (std::size_t j = 0; j < where->size(); ++j) (*results)[(*where)[j]] = std::move(stored[j]);
        for (int i = 0; i < req->requests_size(); ++i) {
          auto* out = resp->add_responses();
          *out->mutable_digest() = req->requests(i).digest();
          *out->mutable_status() = to_rpc_status((*results)[static_cast<std::size_t>(i)]);
        }
        reactor->Finish(grpc::Status::OK);
      });
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
    admit(pool_, incoming_context(ctx), reactor, [this, reactor, req, resp] {
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
      if (digests.empty()) return reactor->Finish(grpc::Status::OK);
      // Every response slot exists before any read starts: reads that go upstream finish
      // on other threads, each filling its own slot; the last one finishes the call.
      std::vector<re::BatchReadBlobsResponse::Response*> slots;
      slots.reserve(digests.size());
      for (const Digest& d : digests) {
        auto* out = resp->add_responses();
        *out->mutable_digest() = to_proto(d);
        out->set_compressor(re::Compressor::IDENTITY);
        slots.push_back(out);
      }
      auto left = std::make_shared<std::atomic<std::size_t>>(digests.size());
      for (std::size_t i = 0; i < digests.size(); ++i) {
        store_.get(digests[i], [reactor, out = slots[i], left](Result<std::string> data) {
          if (data) {
            out->set_data(std::move(*data));
          } else {
            *out->mutable_status() = to_rpc_status(data.error());
          }
          if (left->fetch_sub(1, std::memory_order_acq_rel) == 1) reactor->Finish(grpc::Status::OK);
        });
      }
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
  /// the page token is the number of directories returned before. Directory reads that go
  /// upstream continue the walk on the executor when they land; local ones go on in a loop.
  class TreeReactor final : public grpc::ServerWriteReactor<re::GetTreeResponse> {
   public:
    TreeReactor(CasService* svc, const re::GetTreeRequest* req, TraceContext tc) : svc_(svc), req_(req) {
      if (!svc_->pool_.try_post(std::move(tc), [this] {
            if (Status s = start(); !s.ok()) return Finish(to_grpc(s));
            walk();
          })) {
        Finish(busy(svc_->pool_));
      }
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

    Status start() {
      const re::GetTreeRequest& req = *req_;
      GOREGO_RETURN_IF_ERROR(check_digest_function(req.digest_function()));
      auto root = from_proto(req.root_digest(), "root_digest");
      if (!root) return root.error();
      if (!req.page_token().empty()) {
        const auto& t = req.page_token();
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), offset_);
        if (ec != std::errc() || p != t.data() + t.size()) {
          return error(Code::kInvalidArgument, "page_token \"{}\" was not issued by this server", t);
        }
      }
      if (req.page_size() < 0) return error(Code::kInvalidArgument, "page_size {} is negative", req.page_size());
      const int max = svc_->opt_.max_tree_page_size;
      page_ = req.page_size() == 0 ? max : std::min(req.page_size(), max);
      queue_.push_back(*root);
      seen_.insert(*root);
      pages_.emplace_back();
      return {};
    }

    /// Reads directories until the walk ends or a read has to wait; a read that lands
    /// later calls walk() again. `turn_` decides who goes on when a read completes: the
    /// loop (it completed before get returned) or the callback (it landed afterwards).
    void walk() {
      while (true) {
        if (done_ || queue_.empty()) return send();
        const Digest d = queue_.front();
        queue_.pop_front();
        turn_.store(0, std::memory_order_relaxed);
        svc_->store_.get(d, [this, d](Result<std::string> blob) {
          blob_ = std::move(blob);
          if (turn_.exchange(2, std::memory_order_acq_rel) == 1) {  // the loop has left
            svc_->pool_.post([this, d] {
              if (visit(d)) walk();
            });
          }
        });
        if (turn_.exchange(1, std::memory_order_acq_rel) != 2) return;  // the callback goes on
        if (!visit(d)) return;
      }
    }

    /// Adds the directory read for `d` (in blob_) to the page; false when the call ended.
    bool visit(const Digest& d) {
      Result<std::string> blob = std::move(*blob_);
      blob_.reset();
      if (!blob) {
        if (index_ == 0) {
          Finish(to_grpc(error(Code::kNotFound, "root directory {} not found", d)));
          return false;
        }
        return true;  // REAPI: return the part of the tree that is present
      }
      re::Directory dir;
      if (!dir.ParseFromString(*blob)) {
        Finish(to_grpc(error(Code::kInvalidArgument, "blob {} in the tree is not a Directory", d)));
        return false;
      }
      for (const auto& sub : dir.directories()) {
        auto sd = from_proto(sub.digest(), fmt::format("directory {} entry \"{}\"", d.hex(), sub.name()));
        if (!sd) {
          Finish(to_grpc(sd.error()));
          return false;
        }
        if (seen_.insert(*sd).second) queue_.push_back(*sd);
      }
      if (index_++ < offset_) return true;
      if (emitted_ == page_) {
        pages_.back().set_next_page_token(std::to_string(offset_ + emitted_));
        done_ = true;
        return true;
      }
      if (bytes_ + blob->size() > (std::size_t{2} << 20) && pages_.back().directories_size() > 0) {
        pages_.emplace_back();
        bytes_ = 0;
      }
      bytes_ += blob->size();
      *pages_.back().add_directories() = std::move(dir);
      ++emitted_;
      return true;
    }

    void send() { next(); }

    CasService* svc_;
    const re::GetTreeRequest* req_;
    std::deque<Digest> queue_;
    std::unordered_set<Digest> seen_;
    std::uint64_t offset_ = 0;
    std::uint64_t page_ = 0;
    std::uint64_t index_ = 0;
    std::uint64_t emitted_ = 0;
    std::size_t bytes_ = 0;
    bool done_ = false;
    std::atomic<int> turn_{0};
    std::optional<Result<std::string>> blob_;
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
