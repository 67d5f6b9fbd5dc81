#pragma once
/// ByteStream service over any BlobStore: streamed reads with offset and limit, streamed
/// uploads verified at `finish_write`, and QueryWriteStatus.
///
/// Each call keeps one read or one write in flight; disk and hashing work for each chunk
/// runs on the Executor, and the reactor resumes from there, except a download chunk that
/// the store can hand over without waiting or hashing (`read_cached`: page cache, verified
/// blob), which is read on the gRPC thread. An upload of a blob that is
/// already present finishes at once with `committed_size` = size (REAPI early return).
/// Uploads are not resumable across calls: QueryWriteStatus reports progress of an upload
/// in flight, completion for a stored blob, and NOT_FOUND otherwise, so clients restart
/// from offset 0.
///
/// `compressed-blobs/zstd/` names (REAPI "compressed-blobs"): a read compresses each chunk as
/// it goes (one frame, flushed per message; `read_offset` counts uncompressed bytes, and
/// `read_limit` must be 0); a write decompresses as it goes, accepting any number of
/// concatenated frames, into the same verified writer as a plain upload, so nothing is
/// published before the uncompressed bytes match the digest. A compressed upload of a blob
/// already present ends at once with `committed_size` -1; `write_offset` of later messages
/// counts the compressed bytes sent before, as the spec has it.

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "google/bytestream/bytestream.grpc.pb.h"

#include <gorego/concepts/blob_store.hpp>
#include <gorego/core/executor.hpp>
#include <gorego/core/log.hpp>
#include <gorego/core/zstd.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/reapi/rpc_context.hpp>
#include <gorego/reapi/resource_name.hpp>
#include <gorego/reapi/service_options.hpp>

namespace gorego::reapi {

namespace bs = google::bytestream;

/// Read is a raw method: responses are built by hand as one slice holding the encoded
/// `ReadResponse` field header followed by the bytes read from the store, so a chunk is
/// copied once (store to slice) instead of three times (store to string, string to the
/// serialized slice, and zero-filling the string first).
template <BlobStore Store>
class ByteStreamService final
    : public bs::ByteStream::WithRawCallbackMethod_Read<bs::ByteStream::CallbackService> {
 public:
  ByteStreamService(Store& store, Executor& pool, ServiceOptions opt)
      : store_(store), pool_(pool), opt_(opt) {
    // A chunk's length must fit the 5-byte varint of the hand-built header (and be > 0).
    opt_.read_chunk_bytes = std::clamp<std::size_t>(opt_.read_chunk_bytes, 1, std::size_t{1} << 30);
  }

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Read(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* req) override {
    if (auto refused = refusal(ctx); !refused.ok()) {
      return new RefusedStream<grpc::ServerWriteReactor<grpc::ByteBuffer>>(std::move(refused));
    }
    CallContext::Scope call(call_context(ctx));  // the instance is in the resource name
    return new ReadReactor(this, req, incoming_context(ctx));
  }

  grpc::ServerReadReactor<bs::WriteRequest>* Write(grpc::CallbackServerContext* ctx,
                                                   bs::WriteResponse* resp) override {
    if (auto refused = refusal(ctx); !refused.ok()) {
      return new RefusedStream<grpc::ServerReadReactor<bs::WriteRequest>>(std::move(refused));
    }
    CallContext::Scope call(call_context(ctx));
    return new WriteReactor(this, resp, incoming_context(ctx), opt_.upload_budget ? ctx->peer() : std::string());
  }

  grpc::ServerUnaryReactor* QueryWriteStatus(grpc::CallbackServerContext* ctx,
                                             const bs::QueryWriteStatusRequest* req,
                                             bs::QueryWriteStatusResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (finish_if_refused(ctx, reactor)) return reactor;
    CallContext::Scope call(call_context(ctx));
    admit(pool_, incoming_context(ctx), reactor, [this, reactor, req, resp] {
      {
        std::lock_guard lock(uploads_mu_);
        if (auto it = uploads_.find(req->resource_name()); it != uploads_.end()) {
          resp->set_committed_size(it->second->load());
          resp->set_complete(false);
          return reactor->Finish(grpc::Status::OK);
        }
      }
      auto name = parse_write_resource(req->resource_name());
      if (!name) return reactor->Finish(to_grpc(name.error()));
      store_.contains(name->digest, [reactor, req, resp, d = name->digest](bool present) {
        if (present) {
          resp->set_committed_size(d.size);
          resp->set_complete(true);
          return reactor->Finish(grpc::Status::OK);
        }
        reactor->Finish(to_grpc(error(Code::kNotFound, "no upload in progress for \"{}\"", req->resource_name())));
      });
    });
    return reactor;
  }

 private:
  class ReadReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
   public:
    ReadReactor(ByteStreamService* svc, const grpc::ByteBuffer* raw, TraceContext tc) : svc_(svc) {
      bs::ReadRequest req;
      grpc::ByteBuffer copy(*raw);  // shares the slices; Deserialize consumes its argument
      if (!grpc::SerializationTraits<bs::ReadRequest>::Deserialize(&copy, &req).ok()) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            fmt::format("ReadRequest of {} bytes does not parse", raw->Length())));
        return;
      }
      if (!svc_->pool_.try_post(std::move(tc), [this, req = std::move(req)] { open(req); })) {
        Finish(busy(svc_->pool_));
      }
    }
    void OnWriteDone(bool ok) override {
      if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      // Bytes already in memory go out from this gRPC thread; a read that would wait for
      // the disk (or hash) goes to the pool.
      if constexpr (requires(typename Store::Reader& r, std::span<char> b) { r.read_cached(b); }) {
        if (!encoder_ && send_next([this](std::span<char> b) { return reader_->read_cached(b); })) return;
      }
      svc_->pool_.post([this] { next(); });
    }
    void OnDone() override { delete this; }

   private:
    /// `ReadResponse.data` is field 10, length-delimited: tag byte 0x52, then the length as
    /// a varint of at most 5 bytes for a chunk below 4 GiB.
    static constexpr std::uint8_t kDataTag = (10 << 3) | 2;
    static constexpr std::size_t kHeaderRoom = 6;

    /// Validates the request and opens the blob; then sends the first chunk (from where
    /// the open finished: this executor thread, or the one that fetched the blob).
    void open(const bs::ReadRequest& req) {
      auto name = parse_read_resource(req.resource_name());
      log::debug("ByteStream.Read", {{"resource", req.resource_name()}, {"offset", std::to_string(req.read_offset())}});
      if (!name) return Finish(to_grpc(name.error()));
      if (req.read_offset() < 0) {
        return Finish(to_grpc(error(Code::kOutOfRange, "read_offset {} is negative", req.read_offset())));
      }
      if (req.read_limit() < 0) {
        return Finish(to_grpc(error(Code::kInvalidArgument, "read_limit {} is negative", req.read_limit())));
      }
      if (name->zstd() && req.read_limit() != 0) {
        return Finish(to_grpc(error(Code::kInvalidArgument,
                                    "read_limit {} must be 0 when reading compressed-blobs (REAPI)", req.read_limit())));
      }
      if (req.read_offset() > name->digest.size) {
        return Finish(to_grpc(error(Code::kOutOfRange, "read_offset {} is past the end of blob {}",
                                    req.read_offset(), name->digest)));
      }
      const std::int64_t limit = req.read_limit();
      if (name->zstd()) {
        encoder_.emplace(svc_->opt_.zstd_level);
        plain_ = std::make_unique<char[]>(svc_->opt_.read_chunk_bytes);
      }
      svc_->store_.open_read(name->digest, static_cast<std::uint64_t>(req.read_offset()),
                             [this, limit](Result<typename Store::Reader> r) {
                               if (!r) return Finish(to_grpc(r.error()));
                               reader_.emplace(std::move(*r));
                               left_ = reader_->remaining();
                               if (limit > 0) left_ = std::min<std::uint64_t>(left_, limit);
                               next();
                             });
    }

    void next() {
      send_next([this](std::span<char> b) -> std::optional<Result<std::size_t>> { return reader_->read(b); });
    }

    /// Sends the next chunk (or finishes) with `read` filling the buffer; false, with nothing
    /// sent, when `read` returns nullopt.
    template <class ReadFn>
    bool send_next(ReadFn&& read) {
      if (encoder_) return send_compressed(read);
      if (left_ == 0) {
        Finish(grpc::Status::OK);
        return true;
      }
      const std::size_t want = std::min<std::uint64_t>(left_, svc_->opt_.read_chunk_bytes);
      // Read straight into the slice that gRPC will send, past room for the field header.
      // (Always refcounted: an inlined small slice would live inside the struct itself.) A
      // slice left by a declined read_cached is reused by the read on the pool.
      grpc::Slice chunk;
      if (spare_.size() == kHeaderRoom + want) {
        chunk = std::exchange(spare_, grpc::Slice());
      } else {
        chunk = grpc::Slice(grpc_slice_malloc_large(kHeaderRoom + want), grpc::Slice::STEAL_REF);
      }
      char* base = reinterpret_cast<char*>(const_cast<std::uint8_t*>(chunk.begin()));  // ours alone
      std::optional<Result<std::size_t>> n = read(std::span<char>(base + kHeaderRoom, want));
      if (!n) {
        spare_ = std::move(chunk);
        return false;
      }
      if (!*n) {
        Finish(to_grpc(n->error()));
        return true;
      }
      const std::size_t got = **n;
      if (got == 0) {
        Finish(grpc::Status::OK);
        return true;
      }
      left_ -= got;
      send_chunk(chunk, got);
      return true;
    }

    /// Reads the next chunk into plain_, compresses it into the message (the last one ends
    /// the frame; a read with nothing left sends an empty frame), and sends it. On the pool.
    template <class ReadFn>
    bool send_compressed(ReadFn& read) {
      if (ended_) {
        Finish(grpc::Status::OK);
        return true;
      }
      std::size_t got = 0;
      if (left_ > 0) {
        const std::size_t want = std::min<std::uint64_t>(left_, svc_->opt_.read_chunk_bytes);
        std::optional<Result<std::size_t>> n = read(std::span<char>(plain_.get(), want));
        if (!n) return false;
        if (!*n) {
          Finish(to_grpc(n->error()));
          return true;
        }
        got = **n;
        if (got == 0) {
          Finish(to_grpc(error(Code::kDataLoss, "blob ended {} bytes early", left_)));
          return true;
        }
        left_ -= got;
      }
      ended_ = left_ == 0;
      const std::size_t room = zstd::Encoder::bound(got);
      grpc::Slice chunk(grpc_slice_malloc_large(kHeaderRoom + room), grpc::Slice::STEAL_REF);
      char* base = reinterpret_cast<char*>(const_cast<std::uint8_t*>(chunk.begin()));  // ours alone
      auto n = encoder_->add(std::string_view(plain_.get(), got), std::span<char>(base + kHeaderRoom, room), ended_);
      if (!n) {
        Finish(to_grpc(n.error()));
        return true;
      }
      send_chunk(chunk, *n);
      return true;
    }

    /// Writes the field header in front of the `len` bytes at kHeaderRoom and sends them.
    void send_chunk(const grpc::Slice& chunk, std::size_t len) {
      char* base = reinterpret_cast<char*>(const_cast<std::uint8_t*>(chunk.begin()));
      std::uint8_t header[kHeaderRoom];
      std::size_t n = 0;
      header[n++] = kDataTag;
      for (std::uint64_t v = len;; v >>= 7) {
        if (v < 0x80) {
          header[n++] = static_cast<std::uint8_t>(v);
          break;
        }
        header[n++] = static_cast<std::uint8_t>(v | 0x80);
      }
      const std::size_t start = kHeaderRoom - n;
      std::memcpy(base + start, header, n);
      grpc::Slice message = chunk.sub(start, kHeaderRoom + len);
      out_ = grpc::ByteBuffer(&message, 1);
      StartWrite(&out_);
    }

    ByteStreamService* svc_;
    std::optional<typename Store::Reader> reader_;
    std::uint64_t left_ = 0;
    grpc::ByteBuffer out_;
    grpc::Slice spare_;
    std::optional<zstd::Encoder> encoder_;  // a compressed-blobs read
    std::unique_ptr<char[]> plain_;         // its uncompressed chunk
    bool ended_ = false;                    // its frame is complete
  };

  class WriteReactor final : public grpc::ServerReadReactor<bs::WriteRequest> {
   public:
    WriteReactor(ByteStreamService* svc, bs::WriteResponse* resp, TraceContext tc, std::string peer)
        : svc_(svc), resp_(resp), trace_(std::move(tc)), call_(CallContext::current()), peer_(std::move(peer)) {
      StartRead(&req_);
    }
    ~WriteReactor() override {
      if (reserved_ > 0) svc_->opt_.upload_budget->release(peer_, reserved_);
      if (!name_.empty()) {
        std::lock_guard lock(svc_->uploads_mu_);
        svc_->uploads_.erase(name_);
      }
    }
    void OnReadDone(bool ok) override {
      if (!ok) {
        return Finish(to_grpc(error(Code::kInvalidArgument,
                                    "upload \"{}\" ended after {} bytes without finish_write",
                                    name_, writer_ ? writer_->written() : 0)));
      }
      auto work = [this] {
        handle([this](Result<Step> step) {
          if (!step) return Finish(to_grpc(step.error()));
          if (*step == Step::kDone) {
            resp_->set_committed_size(committed_);
            return Finish(grpc::Status::OK);
          }
          StartRead(&req_);
        });
      };
      // The first message admits the upload; later ones continue admitted work. Each
      // carries the call's context (its deadline bounds the write-through at commit).
      CallContext::Scope call(call_);
      if (writer_ || finished_) return svc_->pool_.post(trace_, std::move(work));
      if (!svc_->pool_.try_post(trace_, std::move(work))) Finish(busy(svc_->pool_));
    }
    void OnDone() override { delete this; }

   private:
    enum class Step { kMore, kDone };

    /// Takes the message in req_; `done(step)` when it is handled (after the presence
    /// check of the first message and the commit of the last, which may ask the upstream).
    template <class Done>
    void handle(Done done) {
      if (!writer_) {
        auto name = parse_write_resource(req_.resource_name());
        if (!name) return done(name.error());
        digest_ = name->digest;
        if (Status s = svc_->opt_.check_blob_size(digest_); !s.ok()) return done(s);
        if (const auto& budget = svc_->opt_.upload_budget; budget && digest_.size > 0) {
          if (Status s = budget->reserve(peer_, static_cast<std::uint64_t>(digest_.size)); !s.ok()) return done(s);
          reserved_ = static_cast<std::uint64_t>(digest_.size);
        }
        if (name->zstd()) decoder_ = std::make_unique<zstd::Decoder>(static_cast<std::uint64_t>(digest_.size));
        // An upstream's answer must not open and write the file on its own thread.
        then_on<bool>(svc_->pool_,
                      [this](auto cb) {
                        if constexpr (requires { store().present_for_upload(digest_, std::move(cb)); }) {
                          store().present_for_upload(digest_, std::move(cb));
                        } else {
                          store().contains(digest_, std::move(cb));
                        }
                      },
                      [this, done](bool present) mutable {
          if (present) {
            // Early return: the blob is already here. The spec's answer is the blob's size
            // for a plain upload and -1 for a compressed one.
            committed_ = decoder_ ? -1 : digest_.size;
            return done(Step::kDone);
          }
          auto w = store().open_write(digest_);
          if (!w) return done(w.error());
          writer_.emplace(std::move(*w));
          name_ = req_.resource_name();
          progress_ = std::make_shared<std::atomic<std::int64_t>>(0);
          {
            std::lock_guard lock(svc_->uploads_mu_);
            svc_->uploads_[name_] = progress_;
          }
          take(std::move(done));
        });
        return;
      }
      if (!req_.resource_name().empty() && req_.resource_name() != name_) {
        return done(error(Code::kInvalidArgument, "resource_name \"{}\" changed mid-upload from \"{}\"",
                          req_.resource_name(), name_));
      }
      take(std::move(done));
    }

    /// Appends req_'s data (decompressed first for a compressed upload) to the open writer,
    /// and commits at finish_write.
    template <class Done>
    void take(Done done) {
      // A compressed upload's offsets count the compressed bytes sent so far.
      const auto received = static_cast<std::int64_t>(decoder_ ? decoder_->consumed() : writer_->written());
      if (req_.write_offset() != received) {
        return done(error(Code::kInvalidArgument, "write_offset {} does not match the {} bytes received so far for {}",
                          req_.write_offset(), received, digest_));
      }
      if (decoder_) {
        Status s = decoder_->add(req_.data(), [this](std::string_view part) { return writer_->append(part); });
        if (!s.ok()) return done(error(s.code(), "upload of {}: {}", digest_, s.message()));
        progress_->store(static_cast<std::int64_t>(decoder_->consumed()));
      } else {
        if (Status s = writer_->append(req_.data()); !s.ok()) return done(s);
        progress_->store(static_cast<std::int64_t>(writer_->written()));
      }
      if (!req_.finish_write()) return done(Step::kMore);
      if (decoder_) {
        if (Status s = decoder_->finish(); !s.ok()) return done(error(s.code(), "upload of {}: {}", digest_, s.message()));
      }
      finished_ = true;
      writer_->commit([this, done](Status s) mutable {
        if (!s.ok()) return done(s);
        committed_ = static_cast<std::int64_t>(decoder_ ? decoder_->consumed() : writer_->written());
        done(Step::kDone);
      });
    }

    Store& store() { return svc_->store_; }

    ByteStreamService* svc_;
    bs::WriteResponse* resp_;
    TraceContext trace_;
    CallContext call_;
    std::string peer_;            // the client connection, for the upload budget
    std::uint64_t reserved_ = 0;  // bytes reserved in the upload budget
    bs::WriteRequest req_;
    std::string name_;
    Digest digest_;
    std::optional<typename Store::Writer> writer_;
    std::unique_ptr<zstd::Decoder> decoder_;  // a compressed upload
    std::shared_ptr<std::atomic<std::int64_t>> progress_;
    std::int64_t committed_ = 0;
    bool finished_ = false;  // finish_write seen
  };

  Store& store_;
  Executor& pool_;
  ServiceOptions opt_;
  std::mutex uploads_mu_;
  std::unordered_map<std::string, std::shared_ptr<std::atomic<std::int64_t>>> uploads_;
};

}  // namespace gorego::reapi
