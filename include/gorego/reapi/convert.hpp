#pragma once
/// Conversions between the wire (generated protobuf types, grpc::Status) and gorego's
/// vocabulary (Digest, Status). The only place where the two meet.

#include <grpcpp/support/status.h>

#include <span>
#include <string>
#include <vector>

#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

#include <gorego/core/digest.hpp>
#include <gorego/core/status.hpp>

namespace gorego::reapi {

namespace re = build::bazel::remote::execution::v2;

inline grpc::Status to_grpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return {static_cast<grpc::StatusCode>(s.code()), s.message()};
}

inline google::rpc::Status to_rpc_status(const Status& s) {
  google::rpc::Status out;
  out.set_code(static_cast<int>(s.code()));
  out.set_message(s.message());
  return out;
}

/// FAILED_PRECONDITION with a google.rpc.PreconditionFailure listing each blob as a
/// violation of type MISSING, subject "blobs/<hash>/<size>": the answer on which REAPI
/// clients (Bazel among them) upload those blobs and retry.
inline google::rpc::Status missing_blobs(std::span<const Digest> missing, std::string message) {
  google::rpc::Status out;
  out.set_code(static_cast<int>(Code::kFailedPrecondition));
  out.set_message(std::move(message));
  google::rpc::PreconditionFailure pf;
  for (const Digest& d : missing) {
    auto* v = pf.add_violations();
    v->set_type("MISSING");
    // REAPI: the function's segment only for functions a hash length cannot tell (BLAKE3).
    v->set_subject(fmt::format("blobs/{}{}/{}", d.function == DigestFunction::kBlake3 ? "blake3/" : "", d.hex(), d.size));
  }
  out.add_details()->PackFrom(pf);
  return out;
}

/// Validates a wire digest of function `f` (the request's `digest_function`); errors are
/// INVALID_ARGUMENT naming the value.
inline Result<Digest> from_proto(const re::Digest& d, DigestFunction f = DigestFunction::kSha256) {
  return Digest::parse(d.hash(), d.size_bytes(), f);
}

/// As `from_proto`, with the field named in the error ("blob_digests[3]: ...").
inline Result<Digest> from_proto(const re::Digest& d, DigestFunction f, std::string_view field) {
  auto r = from_proto(d, f);
  if (!r) return Status(r.error().code(), fmt::format("{}: {}", field, r.error().message()));
  return r;
}
inline Result<Digest> from_proto(const re::Digest& d, std::string_view field) {
  return from_proto(d, DigestFunction::kSha256, field);
}

/// As `from_proto`, for element `index` of a repeated field: the name ("digests[3]",
/// "requests[3].digest" with a `suffix`) is built only for an error, off the hot path of
/// every valid digest.
inline Result<Digest> from_proto(const re::Digest& d, DigestFunction f, std::string_view field, int index,
                                 std::string_view suffix = {}) {
  auto r = from_proto(d, f);
  if (!r) return Status(r.error().code(), fmt::format("{}[{}]{}: {}", field, index, suffix, r.error().message()));
  return r;
}
inline Result<Digest> from_proto(const re::Digest& d, std::string_view field, int index,
                                 std::string_view suffix = {}) {
  return from_proto(d, DigestFunction::kSha256, field, index, suffix);
}

/// Checks that every digest an ActionResult names (output files, output directory trees,
/// stdout and stderr) is well-formed, appending them to `out`; INVALID_ARGUMENT naming the
/// field otherwise ("action_result.output_files[2].digest: ...").
/// The digests are of function `f`, the action's.
inline Status result_digests(const re::ActionResult& r, std::vector<Digest>& out,
                             DigestFunction f = DigestFunction::kSha256) {
  auto add = [&](const re::Digest& d, std::string_view field, int i = -1, std::string_view suffix = {}) -> Status {
    auto v = i < 0 ? from_proto(d, f, field) : from_proto(d, f, field, i, suffix);
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

inline re::Digest to_proto(const Digest& d) {
  re::Digest out;
  out.set_hash(d.hex());
  out.set_size_bytes(d.size);
  return out;
}

/// The wire's name of digest function value `f` ("MD5"), or the number when it has none.
inline std::string digest_function_name(int f) {
  return re::DigestFunction::Value_IsValid(f)
             ? re::DigestFunction::Value_Name(static_cast<re::DigestFunction::Value>(f))
             : std::to_string(f);
}

/// A request's `digest_function`: SHA256 and UNKNOWN (which REAPI defines as "the server's
/// default", here SHA-256) or BLAKE3; INVALID_ARGUMENT naming any other.
inline Result<DigestFunction> digest_function_of(int f) {
  if (f == re::DigestFunction::UNKNOWN || f == re::DigestFunction::SHA256) return DigestFunction::kSha256;
  if (f == re::DigestFunction::BLAKE3) return DigestFunction::kBlake3;
  return error(Code::kInvalidArgument,
               "digest_function {} is not supported; this server supports SHA256 and BLAKE3",
               digest_function_name(f));
}

/// The wire's value of `f`.
inline re::DigestFunction::Value to_proto(DigestFunction f) {
  return f == DigestFunction::kBlake3 ? re::DigestFunction::BLAKE3 : re::DigestFunction::SHA256;
}

/// OK for SHA256 and UNKNOWN only: the check of calls that serve SHA-256 alone (execution;
/// `what` names them in the error).
inline Status check_digest_function(int f, std::string_view what = "this call") {
  if (f == re::DigestFunction::UNKNOWN || f == re::DigestFunction::SHA256) return {};
  return error(Code::kInvalidArgument, "digest_function {} is not supported for {}; it supports SHA256",
               digest_function_name(f), what);
}

}  // namespace gorego::reapi

/// Finishes a unary reactor with `status` and returns from the enclosing lambda if the
/// status is not OK.
#define GOREGO_FINISH_IF_ERROR(reactor, expr)                    \
  do {                                                           \
    ::gorego::Status gorego_s_ = (expr);                         \
    if (!gorego_s_.ok()) {                                       \
      (reactor)->Finish(::gorego::reapi::to_grpc(gorego_s_));    \
      return;                                                    \
    }                                                            \
  } while (0)
