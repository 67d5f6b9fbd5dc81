#include "auth/admission.hpp"

#include <array>
#include <utility>

#include <fmt/format.h>

#include <gorego/core/status.hpp>
#include <gorego/reapi/rpc_context.hpp>

namespace gorego::auth {

namespace {

namespace gx = grpc::experimental;

constexpr std::string_view kRe = "/build.bazel.remote.execution.v2.";

struct MethodRight {
  std::string_view service;  // after kRe, or a full "/pkg.Service/" prefix
  std::string_view method;
  Right right;
};

constexpr std::array<MethodRight, 19> kTable{{
    {"Capabilities", "GetCapabilities", Right::kRead},
    {"ContentAddressableStorage", "FindMissingBlobs", Right::kRead},
    {"ContentAddressableStorage", "BatchReadBlobs", Right::kRead},
    {"ContentAddressableStorage", "GetTree", Right::kRead},
    {"ContentAddressableStorage", "SplitBlob", Right::kRead},
    {"ContentAddressableStorage", "BatchUpdateBlobs", Right::kWriteCas},
    {"ContentAddressableStorage", "SpliceBlob", Right::kWriteCas},
    {"ActionCache", "GetActionResult", Right::kRead},
    {"ActionCache", "UpdateActionResult", Right::kWriteAc},
    {"Execution", "Execute", Right::kExecute},
    {"Execution", "WaitExecution", Right::kExecute},
    {"/google.bytestream.ByteStream/", "Read", Right::kRead},
    {"/google.bytestream.ByteStream/", "QueryWriteStatus", Right::kRead},
    {"/google.bytestream.ByteStream/", "Write", Right::kWriteCas},
    {"/google.longrunning.Operations/", "GetOperation", Right::kExecute},
    {"/google.longrunning.Operations/", "ListOperations", Right::kExecute},
    {"/google.longrunning.Operations/", "CancelOperation", Right::kExecute},
    {"/google.longrunning.Operations/", "DeleteOperation", Right::kExecute},
    {"/gorego.worker.v1.Workers/", "Connect", Right::kWorker},
}};

std::string_view sv(const grpc::string_ref& r) { return {r.data(), r.size()}; }

class Interceptor final : public gx::Interceptor {
 public:
  Interceptor(gx::ServerRpcInfo* info, Admission* adm) : info_(info), adm_(adm) {}
  ~Interceptor() override {
    if (entered_) adm_->leave(peer_);
  }

  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      on_metadata(methods->GetRecvInitialMetadata());
    }
    methods->Proceed();
  }

 private:
  void refuse(std::multimap<grpc::string_ref, grpc::string_ref>* md, const Status& s) {
    refused_ = fmt::format("{}:{}", static_cast<int>(s.code()), s.message());
    md->emplace(grpc::string_ref(reapi::kRefusedKey.data(), reapi::kRefusedKey.size()), grpc::string_ref(refused_));
  }

  void on_metadata(std::multimap<grpc::string_ref, grpc::string_ref>* md) {
    if (md == nullptr) return;
    md->erase(grpc::string_ref(reapi::kRefusedKey.data(), reapi::kRefusedKey.size()));
    md->erase(grpc::string_ref(reapi::kPrincipalKey.data(), reapi::kPrincipalKey.size()));
    const std::string_view method = info_->method() != nullptr ? std::string_view(info_->method()) : std::string_view();
    const std::optional<Right> right = Admission::right_of(method);
    grpc::ServerContextBase* ctx = info_->server_context();
    if (ctx != nullptr && right) {  // health checks are not counted: probes must get through
      if (adm_->draining()) {
        return refuse(md, error(Code::kUnavailable, "the server is shutting down; retry (another replica or the "
                                                    "restarted server answers)"));
      }
      peer_ = ctx->peer();
      std::string why;
      if (!adm_->enter(peer_, &why)) return refuse(md, error(Code::kResourceExhausted, "{}", why));
      entered_ = true;
    }
    const AccessControl* access = adm_->options().access.get();
    if (access == nullptr || !access->enabled() || !right) return;
    Credentials c;
    if (const auto it = md->find("authorization"); it != md->end()) c.authorization = sv(it->second);
    std::vector<std::string> names;
    if (adm_->options().mtls && ctx != nullptr) {
      if (const auto auth = ctx->auth_context(); auth && auth->IsPeerAuthenticated()) {
        for (const auto& v : auth->FindPropertyValues("x509_common_name")) names.emplace_back(v.data(), v.size());
        for (const auto& v : auth->FindPropertyValues("x509_subject_alternative_name")) {
          names.emplace_back(v.data(), v.size());
        }
      }
    }
    c.certificate_names = names;
    c.over_mtls = adm_->options().mtls;
    std::string_view what = method;
    if (what.starts_with(kRe)) what.remove_prefix(kRe.size());
    if (what.starts_with('/')) what.remove_prefix(1);
    auto p = access->admit(c, *right, what);
    if (!p) return refuse(md, p.error());
    principal_ = (*p)->name;
    md->emplace(grpc::string_ref(reapi::kPrincipalKey.data(), reapi::kPrincipalKey.size()),
                grpc::string_ref(principal_));
  }

  gx::ServerRpcInfo* info_;
  Admission* adm_;
  std::string peer_, refused_, principal_;
  bool entered_ = false;
};

class Factory final : public gx::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(Admission* adm) : adm_(adm) {}
  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override { return new Interceptor(info, adm_); }

 private:
  Admission* adm_;
};

}  // namespace

std::unique_ptr<gx::ServerInterceptorFactoryInterface> Admission::factory() { return std::make_unique<Factory>(this); }

std::optional<Right> Admission::right_of(std::string_view method) {
  if (method.starts_with("/grpc.health.v1.Health/")) return std::nullopt;
  for (const MethodRight& m : kTable) {
    std::string_view rest = method;
    if (m.service.starts_with('/')) {
      if (!rest.starts_with(m.service)) continue;
      rest.remove_prefix(m.service.size());
    } else {
      if (!rest.starts_with(kRe)) continue;
      rest.remove_prefix(kRe.size());
      if (!rest.starts_with(m.service) || rest.size() <= m.service.size() || rest[m.service.size()] != '/') continue;
      rest.remove_prefix(m.service.size() + 1);
    }
    if (rest == m.method) return m.right;
  }
  return Right::kAdmin;
}

bool Admission::enter(const std::string& peer, std::string* why) {
  if (calls_.fetch_add(1, std::memory_order_relaxed) >= opt_.max_calls) {
    calls_.fetch_sub(1, std::memory_order_relaxed);
    ++stats_.over_listener_limit;
    *why = fmt::format("the server has {} calls in flight, its limit (server.max_calls); retry with backoff",
                       opt_.max_calls);
    return false;
  }
  std::lock_guard lock(mu_);
  std::uint32_t& n = per_peer_[peer];
  if (n >= opt_.max_calls_per_connection) {
    if (n == 0) per_peer_.erase(peer);
    calls_.fetch_sub(1, std::memory_order_relaxed);
    ++stats_.over_connection_limit;
    *why = fmt::format("connection {} has {} calls in flight, its limit (server.max_calls_per_connection)", peer, n);
    return false;
  }
  ++n;
  return true;
}

void Admission::leave(const std::string& peer) {
  calls_.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  const auto it = per_peer_.find(peer);
  if (it == per_peer_.end()) return;
  if (--it->second == 0) per_peer_.erase(it);
}

}  // namespace gorego::auth
