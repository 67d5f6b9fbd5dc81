#include "listener.hpp"

#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <limits>

namespace gorego {

Listener::Listener(Options o) : opt_(std::move(o)) {}

Listener::~Listener() {
  if (server_) shutdown(std::chrono::system_clock::now());
}

void Listener::add(grpc::Service* s) { services_.push_back(s); }

Status Listener::start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.experimental().SetInterceptorCreators(std::move(opt_.interceptors));
  std::shared_ptr<grpc::ServerCredentials> creds =
      opt_.credentials ? opt_.credentials : grpc::InsecureServerCredentials();
  builder.AddListeningPort(opt_.address, creds, &port_);
  // gRPC binds with SO_REUSEPORT by default: a second server on the same port would start
  // and take half the connections. A port in use must stop the start instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Clients that keep long streams open (Execute, gorego-worker) ping every 20 s or so to
  // notice a dead peer; gRPC's default would answer pings closer than 5 minutes with GOAWAY.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, opt_.max_metadata_bytes);
  const auto ms = [](std::chrono::milliseconds d) {
    return static_cast<int>(std::min<std::int64_t>(d.count(), std::numeric_limits<int>::max()));
  };
  if (opt_.idle_timeout.count() > 0) builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, ms(opt_.idle_timeout));
  if (opt_.max_connection_age.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ms(opt_.max_connection_age));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, ms(opt_.max_connection_age_grace));
  }
  if (opt_.keepalive.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ms(opt_.keepalive));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  }
  builder.SetMaxReceiveMessageSize(opt_.max_message_bytes);
  builder.SetMaxSendMessageSize(opt_.max_message_bytes);
  for (grpc::Service* s : services_) builder.RegisterService(s);
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) {
    server_.reset();
    return error(Code::kUnavailable, "cannot listen on {}", opt_.address);
  }
  set_serving(false);
  return {};
}

void Listener::set_serving(bool serving) {
  if (server_) server_->GetHealthCheckService()->SetServingStatus(serving);
}

void Listener::shutdown(std::chrono::system_clock::time_point deadline) {
  if (!server_) return;
  set_serving(false);
  server_->Shutdown(deadline);
  server_->Wait();
  server_.reset();
}

}  // namespace gorego
