#pragma once
/// ContentAddressableStorage service over any BlobStore: FindMissingBlobs,
/// BatchUpdateBlobs, BatchReadBlobs and GetTree. Every handler returns to gRPC at once
/// and does its validation and store work on the Executor, except a FindMissingBlobs whose
/// presence check cannot block (`presence_never_blocks()`: the index is loaded, and an
/// upstream, if any, is asked asynchronously), which runs on the gRPC thread: the hand-off
/// would cost more than the lookups or the upstream call's start.
///
/// Batches may travel zstd-compressed: BatchUpdateBlobs entries with `compressor` ZSTD are
/// decompressed (bounded by the digest's size) and verified like plain ones, and
/// BatchReadBlobs answers ZSTD, when the client accepts it, for each blob it makes smaller.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <optional>
#include <vector>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"

#include <gorego/concepts/blob_store.hpp>
#include <gorego/core/executor.hpp>
#include <gorego/core/fastcdc.hpp>
#include <gorego/core/zstd.hpp>
#include <gorego/hash/content_hash.hpp>
#include <gorego/reapi/arena_allocator.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/reapi/rpc_context.hpp>
#include <gorego/reapi/service_options.hpp>
#include <gorego/reapi/tree.hpp>

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
    if (finish_if_refused(ctx, reactor)) return reactor;
    CallContext::Scope call(call_context(ctx, req->instance_name()));
    auto work = [this, reactor, req, resp] {
      const auto fn = digest_function_of(req->digest_function());
      if (!fn) return reactor->Finish(to_grpc(fn.error()));
      std::vector<Digest> digests;
      digests.reserve(static_cast<std::size_t>(req->blob_digests_size()));
      for (int i = 0; i < req->blob_digests_size(); ++i) {
        auto d = from_proto(req->blob_digests(i), *fn, "blob_digests", i);
        if (!d) return reactor->Finish(to_grpc(d.error()));
        digests.push_back(*d);
      }
      store_.find_missing(digests, [reactor, resp](std::vector<Digest> missing) {
        resp->mutable_missing_blob_digests()->Reserve(static_cast<int>(missing.size()));
        for (const Digest& d : missing) *resp->add_missing_blob_digests() = to_proto(d);
        reactor->Finish(grpc::Status::OK);
      });
    };
    if constexpr (requires { store_.presence_never_blocks(); }) {
      if (store_.presence_never_blocks()) {
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
    if (finish_if_refused(ctx, reactor)) return reactor;
    CallContext::Scope call(call_context(ctx, req->instance_name()));
    admit(pool_, incoming_context(ctx), reactor, [this, reactor, req, resp] {
      const auto fn = digest_function_of(req->digest_function());
      if (!fn) return reactor->Finish(to_grpc(fn.error()));
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
      // Decompressed entries, alive until the store is done with them (reserved: no moves).
      auto plain = std::make_shared<std::vector<std::string>>();
      plain->reserve(static_cast<std::size_t>(req->requests_size()));
      for (int i = 0; i < req->requests_size(); ++i) {
        const auto& r = req->requests(i);
        auto d = check_one(r, i, *fn);
        if (d && r.compressor() == re::Compressor::ZSTD) {
          auto data = zstd::decompress(r.data(), static_cast<std::uint64_t>(d->size));
          if (!data) {
            d = error(data.error().code(), "requests[{}] ({}): {}", i, *d, data.error().message());
          } else {
            plain->push_back(std::move(*data));
          }
        }
        if (!d) {
          (*results)[static_cast<std::size_t>(i)] = d.error();
          continue;
        }
        writes.push_back({*d, r.compressor() == re::Compressor::ZSTD ? std::string_view(plain->back()) : r.data()});
        where->push_back(static_cast<std::size_t>(i));
      }
      store_.put_batch(writes, [reactor, req, resp, results, where, plain](std::vector<Status> stored) {
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
    if (finish_if_refused(ctx, reactor)) return reactor;
    CallContext::Scope call(call_context(ctx, req->instance_name()));
    if constexpr (requires(std::span<const Digest> ds) { store_.get_all_in_memory(ds); }) {
      TraceContext::Scope scope(incoming_context(ctx));
      if (read_from_memory(*req, *resp)) {
        reactor->Finish(grpc::Status::OK);
        return reactor;
      }
    }
    admit(pool_, incoming_context(ctx), reactor, [this, reactor, req, resp] {
      const auto fn = digest_function_of(req->digest_function());
      if (!fn) return reactor->Finish(to_grpc(fn.error()));
      std::vector<Digest> digests;
      std::uint64_t total = 0;
      for (int i = 0; i < req->digests_size(); ++i) {
        auto d = from_proto(req->digests(i), *fn, "digests", i);
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
      const bool zstd_ok = accepts_zstd(*req);
      const int level = opt_.zstd_level;
      for (std::size_t i = 0; i < digests.size(); ++i) {
        store_.get(digests[i], [reactor, out = slots[i], left, zstd_ok, level](Result<std::string> data) {
          if (data) {
            set_data(*out, std::move(*data), zstd_ok, level);
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
    if (auto refused = refusal(ctx); !refused.ok()) {
      return new RefusedStream<grpc::ServerWriteReactor<re::GetTreeResponse>>(std::move(refused));
    }
    CallContext::Scope call(call_context(ctx, req->instance_name()));
    return new TreeReactor(this, req, incoming_context(ctx));
  }

  /// SplitBlob: cuts the stored blob with FastCDC 2020 (REAPI's recommended average), stores the chunks
  /// and answers their digests in order. NOT_FOUND when the blob is not stored.
  grpc::ServerUnaryReactor* SplitBlob(grpc::CallbackServerContext* ctx, const re::SplitBlobRequest* req,
                                      re::SplitBlobResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (finish_if_refused(ctx, reactor)) return reactor;
    CallContext::Scope call(call_context(ctx, req->instance_name()));
    admit(pool_, incoming_context(ctx), reactor, [this, reactor, req, resp] {
      const auto fn = digest_function_of(req->digest_function());
      if (!fn) return reactor->Finish(to_grpc(fn.error()));
      auto blob = from_proto(req->blob_digest(), *fn, "blob_digest");
      if (!blob) return reactor->Finish(to_grpc(blob.error()));
      if (static_cast<std::uint64_t>(blob->size) > kMaxSpliceBytes) return reactor->Finish(to_grpc(too_large(*blob)));
      store_.get(*blob, [this, reactor, resp, d = *blob](Result<std::string> data) {
        if (!data) return reactor->Finish(to_grpc(data.error()));
        auto bytes = std::make_shared<std::string>(std::move(*data));
        std::vector<BlobWrite> writes;
        std::size_t off = 0;
        for (const std::size_t n : splitter().split(*bytes)) {
          const std::string_view piece = std::string_view(*bytes).substr(off, n);
          writes.push_back({digest_of(d.function, piece), piece});
          *resp->add_chunk_digests() = to_proto(writes.back().digest);
          off += n;
        }
        resp->set_chunking_function(re::ChunkingFunction::FAST_CDC_2020);
        store_.put_batch(writes, [reactor, bytes](std::vector<Status> stored) {
          for (const Status& s : stored) {
            if (!s.ok()) return reactor->Finish(to_grpc(s));
          }
          reactor->Finish(grpc::Status::OK);
        });
      });
    });
    return reactor;
  }

  /// SpliceBlob: stores the concatenation of the chunks (all must be stored) as the blob,
  /// after checking it against the blob's digest. A blob already stored is answered at once.
  grpc::ServerUnaryReactor* SpliceBlob(grpc::CallbackServerContext* ctx, const re::SpliceBlobRequest* req,
                                       re::SpliceBlobResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (finish_if_refused(ctx, reactor)) return reactor;
    CallContext::Scope call(call_context(ctx, req->instance_name()));
    admit(pool_, incoming_context(ctx), reactor, [this, reactor, req, resp] {
      const auto fn = digest_function_of(req->digest_function());
      if (!fn) return reactor->Finish(to_grpc(fn.error()));
      if (!req->has_blob_digest()) {
        return reactor->Finish(to_grpc(error(Code::kInvalidArgument, "blob_digest is required")));
      }
      auto blob = from_proto(req->blob_digest(), *fn, "blob_digest");
      if (!blob) return reactor->Finish(to_grpc(blob.error()));
      if (static_cast<std::uint64_t>(blob->size) > kMaxSpliceBytes) return reactor->Finish(to_grpc(too_large(*blob)));
      auto chunks = std::make_shared<std::vector<Digest>>();
      std::uint64_t total = 0;
      for (int i = 0; i < req->chunk_digests_size(); ++i) {
        auto c = from_proto(req->chunk_digests(i), *fn, "chunk_digests", i);
        if (!c) return reactor->Finish(to_grpc(c.error()));
        total += static_cast<std::uint64_t>(c->size);
        chunks->push_back(*c);
      }
      if (total != static_cast<std::uint64_t>(blob->size)) {
        return reactor->Finish(to_grpc(error(Code::kInvalidArgument,
                                             "the {} chunks hold {} bytes, not the {} of blob {}",
                                             chunks->size(), total, blob->size, *blob)));
      }
      *resp->mutable_blob_digest() = req->blob_digest();
      if (store_.contains(*blob)) return reactor->Finish(grpc::Status::OK);
      auto out = std::make_shared<std::string>();
      out->reserve(static_cast<std::size_t>(total));
      gather(*blob, chunks, 0, out, reactor);
    });
    return reactor;
  }

  /// GetTree walks parked between pages (tests, metrics).
  TreeCursors<TreeWalk<Store>>& cursors() { return cursors_; }

 private:
  /// Answers a BatchReadBlobs on the calling thread when every blob asked for is held in
  /// memory (hot small blobs: no disk, no hand-off). Returns false, with `resp` untouched,
  /// when any is not, or anything is wrong with the request (the full path reports it).
  bool read_from_memory(const re::BatchReadBlobsRequest& req, re::BatchReadBlobsResponse& resp) {
    // Compressing is work for the pool, not for this gRPC thread.
    const auto fn = digest_function_of(req.digest_function());
    if (req.digests_size() == 0 || !fn || accepts_zstd(req)) return false;
    std::vector<Digest> digests;
    digests.reserve(static_cast<std::size_t>(req.digests_size()));
    std::uint64_t total = 0;
    for (const auto& p : req.digests()) {
      auto d = from_proto(p, *fn);
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

  /// Split and Splice hold the blob in memory: larger ones are refused.
  static constexpr std::uint64_t kMaxSpliceBytes = std::uint64_t{1} << 30;

  static const fastcdc::Chunker& splitter() {
    static const fastcdc::Chunker c = *fastcdc::Chunker::make(fastcdc::kRecommendedAverage);
    return c;
  }
  static Status too_large(const Digest& d) {
    return error(Code::kResourceExhausted, "blob {} is over the {} bytes Split and Splice handle here", d,
                 kMaxSpliceBytes);
  }

  /// Appends chunk `i` on of `chunks` to `out`, then stores `out` as `blob` (verified).
  void gather(Digest blob, std::shared_ptr<std::vector<Digest>> chunks, std::size_t i,
              std::shared_ptr<std::string> out, grpc::ServerUnaryReactor* reactor) {
    if (i == chunks->size()) {
      std::vector<BlobWrite> w{{blob, *out}};
      return store_.put_batch(w, [reactor, out](std::vector<Status> stored) {
        reactor->Finish(to_grpc(stored.front()));
      });
    }
    store_.get((*chunks)[i], [this, blob, chunks, i, out, reactor](Result<std::string> data) {
      if (!data) {
        return reactor->Finish(to_grpc(
            error(data.error().code(), "chunk_digests[{}] ({}): {}", i, (*chunks)[i], data.error().message())));
      }
      out->append(*data);
      gather(blob, chunks, i + 1, out, reactor);
    });
  }

  static bool accepts_zstd(const re::BatchReadBlobsRequest& req) {
    for (int c : req.acceptable_compressors()) {
      if (c == re::Compressor::ZSTD) return true;
    }
    return false;
  }

  /// A BatchReadBlobs answer's data: zstd when the client accepts it and it is smaller.
  static void set_data(re::BatchReadBlobsResponse::Response& out, std::string data, bool zstd_ok, int level) {
    if (zstd_ok && !data.empty()) {
      if (auto z = zstd::compress(data, level); z && z->size() < data.size()) {
        out.set_compressor(re::Compressor::ZSTD);
        out.set_data(std::move(*z));
        return;
      }
    }
    out.set_data(std::move(data));
  }

  /// The digest of one BatchUpdateBlobs entry, when the entry is acceptable.
  Result<Digest> check_one(const re::BatchUpdateBlobsRequest::Request& r, int i, DigestFunction fn) {
    if (r.compressor() != re::Compressor::IDENTITY && r.compressor() != re::Compressor::ZSTD) {
      return error(Code::kInvalidArgument, "requests[{}]: compressor {} is not supported (IDENTITY and ZSTD are)", i,
                   re::Compressor::Value_IsValid(r.compressor())
                       ? re::Compressor::Value_Name(static_cast<re::Compressor::Value>(r.compressor()))
                       : std::to_string(r.compressor()));
    }
    auto d = from_proto(r.digest(), fn, "requests", i, ".digest");
    if (!d) return d.error();
    if (Status s = opt_.check_blob_size(*d); !s.ok()) {
      return error(s.code(), "requests[{}]: {}", i, s.message());
    }
    return *d;
  }

  /// One GetTree page, breadth-first from the root (the tree layer's TreeWalk), each
  /// directory once. Messages are sent as they fill (2 MiB), not held for the whole page. A
  /// page that ends before the tree does parks its walk, and the next page's token finds it
  /// again; a token whose walk is gone (or a plain offset) walks again from the root.
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
      if (last_) return Finish(grpc::Status::OK);
      msg_.Clear();
      bytes_ = 0;
      if (carry_) {  // the directory that did not fit the message just sent
        add(std::move(*carry_));
        carry_.reset();
        if (emitted_ == page_ || walk_->finished()) return paused(Status{});
      }
      svc_->pool_.post([this] { walk(); });  // reads the disk: not on this thread
    }
    void OnDone() override { delete this; }

   private:
    static constexpr std::size_t kMessageBytes = std::size_t{2} << 20;

    Status start() {
      const re::GetTreeRequest& req = *req_;
      const auto fn = digest_function_of(req.digest_function());
      if (!fn) return fn.error();
      auto root = from_proto(req.root_digest(), *fn, "root_digest");
      if (!root) return root.error();
      root_ = *root;
      auto token = PageToken::parse(req.page_token());
      if (!token) return token.error();
      if (req.page_size() < 0) return error(Code::kInvalidArgument, "page_size {} is negative", req.page_size());
      const int max = svc_->opt_.max_tree_page_size;
      page_ = req.page_size() == 0 ? max : std::min(req.page_size(), max);
      offset_ = token->offset;
      if (token->cursor) walk_ = svc_->cursors_.take(*token->cursor, root_, offset_);
      if (!walk_) {
        walk_ = std::make_shared<Walk>(svc_->store_, root_);
        skip_ = offset_;
      }
      return {};
    }

    void walk() {
      walk_->run(
          &svc_->pool_, [this](const Digest&, re::Directory&& dir) { return visit(std::move(dir)); },
          [this](Status s) { paused(std::move(s)); });
    }

    /// Adds a directory to the message; false to pause (the page is complete, or the
    /// directory does not fit the message and waits in carry_ for the next one).
    bool visit(re::Directory&& dir) {
      if (skip_ > 0) {
        --skip_;
        return true;
      }
      if (msg_.directories_size() > 0 && bytes_ + dir.ByteSizeLong() > kMessageBytes) {
        carry_ = std::move(dir);
        return false;
      }
      add(std::move(dir));
      return emitted_ < page_;
    }
    void add(re::Directory&& dir) {
      bytes_ += dir.ByteSizeLong();
      *msg_.add_directories() = std::move(dir);
      ++emitted_;
    }

    /// The walk paused or ended: sends the message, the page's last one when the page is
    /// complete or the tree ended (with the next page's token if it did not).
    void paused(Status s) {
      if (!s.ok()) return Finish(to_grpc(s));
      last_ = !carry_ && (emitted_ == page_ || walk_->finished());
      if (last_ && !walk_->finished()) {
        msg_.set_next_page_token(svc_->cursors_.park(std::move(walk_), root_, offset_ + emitted_));
      }
      StartWrite(&msg_);
    }

    using Walk = TreeWalk<Store>;
    CasService* svc_;
    const re::GetTreeRequest* req_;
    Digest root_;
    std::shared_ptr<Walk> walk_;
    std::uint64_t offset_ = 0;  // directories the pages before returned
    std::uint64_t skip_ = 0;    // to pass over when the walk started again from the root
    std::uint64_t page_ = 0;
    std::uint64_t emitted_ = 0;
    std::size_t bytes_ = 0;
    bool last_ = false;
    re::GetTreeResponse msg_;
    std::optional<re::Directory> carry_;
  };

  Store& store_;
  Executor& pool_;
  ServiceOptions opt_;
  TreeCursors<TreeWalk<Store>> cursors_;
  ArenaMessageAllocator<re::FindMissingBlobsRequest, re::FindMissingBlobsResponse> find_missing_alloc_;
  ArenaMessageAllocator<re::BatchReadBlobsRequest, re::BatchReadBlobsResponse> batch_read_alloc_;
};

}  // namespace gorego::reapi
