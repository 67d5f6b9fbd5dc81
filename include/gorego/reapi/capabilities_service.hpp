#pragma once
/// Capabilities service: tells clients truthfully what this server supports.

#include <grpcpp/grpcpp.h>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"

#include <gorego/core/fastcdc.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/reapi/rpc_context.hpp>
#include <gorego/reapi/service_options.hpp>

namespace gorego::reapi {

class CapabilitiesService final : public re::Capabilities::CallbackService {
 public:
  explicit CapabilitiesService(ServiceOptions opt) : opt_(opt) {}

  /// What GetCapabilities answers, for any instance name.
  [[nodiscard]] re::ServerCapabilities capabilities() const {
    re::ServerCapabilities caps;
    auto* cache = caps.mutable_cache_capabilities();
    cache->add_digest_functions(re::DigestFunction::SHA256);
    cache->add_digest_functions(re::DigestFunction::BLAKE3);
    cache->mutable_action_cache_update_capabilities()->set_update_enabled(true);
    cache->set_max_batch_total_size_bytes(static_cast<std::int64_t>(opt_.max_batch_total_size_bytes));
    cache->set_symlink_absolute_path_strategy(re::SymlinkAbsolutePathStrategy::ALLOWED);
    cache->add_supported_compressors(re::Compressor::IDENTITY);
    cache->add_supported_compressors(re::Compressor::ZSTD);
    cache->add_supported_batch_update_compressors(re::Compressor::IDENTITY);
    cache->add_supported_batch_update_compressors(re::Compressor::ZSTD);
    cache->set_max_cas_blob_size_bytes(static_cast<std::int64_t>(opt_.max_cas_blob_size_bytes));
    // SplitBlob cuts with FastCDC 2020 at REAPI's recommended average; SpliceBlob takes
    // chunks cut any way.
    cache->set_split_blob_support(true);
    cache->set_splice_blob_support(true);
    cache->mutable_fast_cdc_2020_params()->set_avg_chunk_size_bytes(fastcdc::kRecommendedAverage);
    cache->mutable_fast_cdc_2020_params()->set_seed(0);
    if (opt_.exec_enabled) {
      auto* exec = caps.mutable_execution_capabilities();
      // Execution hashes with SHA-256 only (the workers' outputs): BLAKE3 is a cache feature.
      exec->set_digest_function(re::DigestFunction::SHA256);
      exec->add_digest_functions(re::DigestFunction::SHA256);
      exec->set_exec_enabled(true);
      auto* range = exec->mutable_execution_priority_capabilities()->add_priorities();
      range->set_min_priority(opt_.min_priority);
      range->set_max_priority(opt_.max_priority);
    }
    caps.mutable_low_api_version()->set_major(2);
    caps.mutable_high_api_version()->set_major(2);
    caps.mutable_high_api_version()->set_minor(3);
    return caps;
  }

  grpc::ServerUnaryReactor* GetCapabilities(grpc::CallbackServerContext* ctx,
                                            const re::GetCapabilitiesRequest* /*req*/,
                                            re::ServerCapabilities* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (finish_if_refused(ctx, reactor)) return reactor;
    *resp = capabilities();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  ServiceOptions opt_;
};

}  // namespace gorego::reapi
