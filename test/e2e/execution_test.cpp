// Remote execution with real processes: a gorego with execution enabled and gorego-worker
// processes connected to it, driven over real gRPC as a client like Bazel would.
#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <thread>

#include "google/longrunning/operations.grpc.pb.h"
#include "google/rpc/error_details.pb.h"

#include "harness.hpp"

using namespace gorego;
using namespace gorego::e2e;
namespace lr = google::longrunning;
using namespace std::chrono_literals;

namespace {

/// A gorego-worker process.
struct Worker {
  Worker(const TempDir& dir, const Server& s, const std::string& id, int slots = 2,
         std::vector<std::string> extra = {})
      : work(dir.path() / ("worker-" + id)), log(dir.path() / ("worker-" + id + ".log")) {
    std::vector<std::string> args{"--scheduler", s.url(), "--work-dir", work.string(),
                                  "--slots", std::to_string(slots), "--id", id,
                                  "--property", "OSFamily=linux", "--log-level", "debug"};
    args.insert(args.end(), extra.begin(), extra.end());
    proc = std::make_unique<Process>(GOREGO_WORKER_BINARY, args, log);
  }
  std::filesystem::path work, log;
  std::unique_ptr<Process> proc;
};

double metric(const Server& s, const std::string& name) {
  const auto m = parse_metrics(http_get(s.admin_port, "/metrics").body);
  const auto it = m.find(name);
  return it == m.end() ? -1 : it->second;
}

bool workers_connected(const Server& s, int n) {
  return eventually([&] { return metric(s, "gorego_execution_active_workers") == n; }, 30);
}

std::string serialize(const google::protobuf::Message& m) {
  std::string out;
  m.SerializeToString(&out);
  return out;
}

re::Digest put(const Server& s, const std::string& bytes) {
  REQUIRE(s.batch_upload(bytes).ok());
  return reapi::to_proto(Sha256::digest_of(bytes));
}

struct ActionSpec {
  std::vector<std::string> args;
  std::vector<std::string> output_paths;
  std::map<std::string, std::string> inputs;  ///< file name -> contents (one flat directory)
  std::vector<std::pair<std::string, re::Digest>> missing_inputs;  ///< listed but never uploaded
  int timeout_s = 0;
  bool do_not_cache = false;
  std::vector<std::pair<std::string, std::string>> platform;
};

/// Uploads the Command, input root and Action; returns the Action's digest.
re::Digest make_action(const Server& s, const ActionSpec& a) {
  re::Command cmd;
  for (const auto& arg : a.args) cmd.add_arguments(arg);
  auto* env = cmd.add_environment_variables();
  env->set_name("PATH");
  env->set_value("/bin:/usr/bin");
  for (const auto& p : a.output_paths) cmd.add_output_paths(p);
  re::Directory root;
  std::vector<std::pair<std::string, re::Digest>> files;
  for (const auto& [name, text] : a.inputs) files.emplace_back(name, put(s, text));
  files.insert(files.end(), a.missing_inputs.begin(), a.missing_inputs.end());
  std::sort(files.begin(), files.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  for (const auto& [name, d] : files) {
    auto* f = root.add_files();
    f->set_name(name);
    *f->mutable_digest() = d;
  }
  re::Action action;
  *action.mutable_command_digest() = put(s, serialize(cmd));
  *action.mutable_input_root_digest() = put(s, serialize(root));
  if (a.timeout_s > 0) action.mutable_timeout()->set_seconds(a.timeout_s);
  action.set_do_not_cache(a.do_not_cache);
  for (const auto& [k, v] : a.platform) {
    auto* p = action.mutable_platform()->add_properties();
    p->set_name(k);
    p->set_value(v);
  }
  return put(s, serialize(action));
}

struct Outcome {
  grpc::Status status;             ///< of the stream
  std::vector<lr::Operation> ops;  ///< every message received
  re::ExecuteResponse response;    ///< of the last, done, Operation
  [[nodiscard]] bool done() const { return !ops.empty() && ops.back().done(); }
  [[nodiscard]] std::set<int> stages() const {
    std::set<int> out;
    for (const auto& op : ops) {
      re::ExecuteOperationMetadata md;
      if (op.metadata().UnpackTo(&md)) out.insert(md.stage());
    }
    return out;
  }
};

/// Unpacks the final response (no assertions: also used on client threads).
Outcome finish(Outcome o) {
  if (o.done() && !o.ops.back().response().UnpackTo(&o.response)) o.ops.clear();
  return o;
}

Outcome execute(const Server& s, const re::Digest& action, bool skip_cache_lookup = false,
                const std::string& traceparent = "", const std::string& authorization = "") {
  auto stub = re::Execution::NewStub(s.channel);
  grpc::ClientContext ctx;
  if (!traceparent.empty()) ctx.AddMetadata("traceparent", traceparent);
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  ctx.set_deadline(std::chrono::system_clock::now() + 120s);
  re::ExecuteRequest req;
  *req.mutable_action_digest() = action;
  req.set_skip_cache_lookup(skip_cache_lookup);
  auto r = stub->Execute(&ctx, req);
  Outcome o;
  lr::Operation op;
  while (r->Read(&op)) o.ops.push_back(op);
  o.status = r->Finish();
  return finish(std::move(o));
}

std::string read_blob(const Server& s, const re::Digest& d) {
  std::string out;
  REQUIRE(s.read(d, out).ok());
  return out;
}

/// True once no process of `pids` is alive (zombies count as gone).
bool all_gone(const std::vector<pid_t>& pids) {
  return eventually(
      [&] {
        for (pid_t p : pids) {
          const std::string stat = slurp(fmt::format("/proc/{}/stat", p));
          if (!stat.empty() && stat.find(") Z") == std::string::npos) return false;
        }
        return true;
      },
      10);
}

}  // namespace

TEST_CASE("Execution: off by default, advertised only when enabled", "[process][execution]") {
  TempDir dir;
  Server plain(dir, {}, "plain");
  auto caps = re::Capabilities::NewStub(plain.channel);
  {
    grpc::ClientContext ctx;
    re::ServerCapabilities out;
    REQUIRE(caps->GetCapabilities(&ctx, {}, &out).ok());
    CHECK_FALSE(out.execution_capabilities().exec_enabled());
  }
  const Outcome o = execute(plain, reapi::to_proto(Sha256::digest_of("x")));
  CHECK(o.status.error_code() == grpc::StatusCode::UNIMPLEMENTED);

  Server exec(dir, {"--execution", "true"}, "exec");
  auto caps2 = re::Capabilities::NewStub(exec.channel);
  grpc::ClientContext ctx;
  re::ServerCapabilities out;
  REQUIRE(caps2->GetCapabilities(&ctx, {}, &out).ok());
  CHECK(out.execution_capabilities().exec_enabled());
  CHECK(out.execution_capabilities().digest_function() == re::DigestFunction::SHA256);
  REQUIRE(out.execution_capabilities().execution_priority_capabilities().priorities_size() == 1);
}

TEST_CASE("Execution: a command writing files and directories runs on a worker and is cached",
          "[process][execution]") {
  TempDir dir;
  Server s(dir, {"--execution", "true"});
  Worker w(dir, s, "w1");
  REQUIRE(workers_connected(s, 1));

  const re::Digest action = make_action(
      s, {.args = {"sh", "-c",
                   "mkdir -p out/d/e && printf hi > out/f.txt && printf deep > out/d/e/g && "
                   "cat in.txt > out/copy && chmod +x out/copy && printf said; printf warned >&2"},
          .output_paths = {"out/f.txt", "out/d", "out/copy"},
          .inputs = {{"in.txt", "input-bytes"}}});
  const Outcome o = execute(s, action);
  INFO(slurp(w.log));
  REQUIRE(o.status.ok());
  REQUIRE(o.done());
  CHECK(o.response.status().code() == 0);
  CHECK_FALSE(o.response.cached_result());
  CHECK(o.stages().count(re::ExecutionStage::COMPLETED) == 1);
  const re::ActionResult& r = o.response.result();
  CHECK(r.exit_code() == 0);
  CHECK(read_blob(s, r.stdout_digest()) == "said");
  CHECK(read_blob(s, r.stderr_digest()) == "warned");
  REQUIRE(r.output_files_size() == 2);
  std::map<std::string, re::OutputFile> files;
  for (const auto& f : r.output_files()) files[f.path()] = f;
  CHECK(read_blob(s, files.at("out/f.txt").digest()) == "hi");
  CHECK(read_blob(s, files.at("out/copy").digest()) == "input-bytes");
  CHECK(files.at("out/copy").is_executable());
  CHECK_FALSE(files.at("out/f.txt").is_executable());
  REQUIRE(r.output_directories_size() == 1);
  CHECK(r.output_directories(0).path() == "out/d");
  re::Tree tree;
  REQUIRE(tree.ParseFromString(read_blob(s, r.output_directories(0).tree_digest())));
  REQUIRE(tree.root().directories_size() == 1);
  CHECK(tree.root().directories(0).name() == "e");
  REQUIRE(tree.children_size() == 1);
  REQUIRE(tree.children(0).files_size() == 1);
  CHECK(read_blob(s, tree.children(0).files(0).digest()) == "deep");
  CHECK(r.execution_metadata().worker() == "w1");
  CHECK(r.execution_metadata().has_queued_timestamp());
  CHECK(r.execution_metadata().has_execution_completed_timestamp());

  // The result is in the ActionCache, and Execute answers from it.
  {
    grpc::ClientContext ctx;
    re::GetActionResultRequest req;
    *req.mutable_action_digest() = action;
    re::ActionResult cached;
    REQUIRE(s.ac->GetActionResult(&ctx, req, &cached).ok());
    CHECK(cached.exit_code() == 0);
  }
  const Outcome again = execute(s, action);
  REQUIRE(again.done());
  CHECK(again.response.cached_result());
  CHECK(again.response.result().output_files_size() == 2);
  // skip_cache_lookup runs it again.
  const Outcome rerun = execute(s, action, /*skip_cache_lookup=*/true);
  REQUIRE(rerun.done());
  CHECK_FALSE(rerun.response.cached_result());
  CHECK(metric(s, "gorego_execution_actions_total{outcome=\"success\"}") == 2);
  CHECK(metric(s, "gorego_execution_actions_total{outcome=\"cached\"}") == 1);
  // Nothing is left in the worker's action directories.
  CHECK(eventually([&] { return std::filesystem::is_empty(w.work / "actions"); }, 10));
}

TEST_CASE("Execution: a failing command reports exit code and stderr and is not cached", "[process][execution]") {
  TempDir dir;
  Server s(dir, {"--execution", "true"});
  Worker w(dir, s, "w1");
  REQUIRE(workers_connected(s, 1));
  const re::Digest action = make_action(s, {.args = {"sh", "-c", "echo oops >&2; exit 3"}});
  const Outcome o = execute(s, action);
  REQUIRE(o.done());
  CHECK(o.response.status().code() == 0);
  CHECK(o.response.result().exit_code() == 3);
  CHECK(read_blob(s, o.response.result().stderr_digest()) == "oops\n");
  CHECK_THAT(o.response.message(), Catch::Contains("exited with 3") && Catch::Contains("w1"));
  grpc::ClientContext ctx;
  re::GetActionResultRequest req;
  *req.mutable_action_digest() = action;
  re::ActionResult cached;
  CHECK(s.ac->GetActionResult(&ctx, req, &cached).error_code() == grpc::StatusCode::NOT_FOUND);
  const Outcome again = execute(s, action);
  REQUIRE(again.done());
  CHECK_FALSE(again.response.cached_result());
  CHECK(again.response.result().exit_code() == 3);
  CHECK(metric(s, "gorego_execution_actions_total{outcome=\"failure\"}") == 2);
}

TEST_CASE("Execution: a timeout kills the whole process group", "[process][execution]") {
  TempDir dir;
  Server s(dir, {"--execution", "true"});
  Worker w(dir, s, "w1");
  REQUIRE(workers_connected(s, 1));
  const std::string pids = (dir.path() / "pids").string();
  const re::Digest action = make_action(
      s, {.args = {"sh", "-c", fmt::format("echo $$ > {0}; sleep 100 & echo $! >> {0}; echo partial; sleep 100", pids)},
          .timeout_s = 1});
  const Outcome o = execute(s, action);
  REQUIRE(o.done());
  CHECK(o.response.status().code() == static_cast<int>(grpc::StatusCode::DEADLINE_EXCEEDED));
  CHECK(read_blob(s, o.response.result().stdout_digest()) == "partial\n");
  std::vector<pid_t> running;
  std::ifstream in(pids);
  for (pid_t p; in >> p;) running.push_back(p);
  REQUIRE(running.size() == 2);
  CHECK(all_gone(running));
  CHECK(metric(s, "gorego_execution_actions_total{outcome=\"timeout\"}") == 1);
}

TEST_CASE("Execution: missing inputs are FAILED_PRECONDITION with MISSING violations", "[process][execution]") {
  TempDir dir;
  Server s(dir, {"--execution", "true"});
  Worker w(dir, s, "w1");
  REQUIRE(workers_connected(s, 1));
  const std::string absent = "never uploaded";
  const re::Digest absent_digest = reapi::to_proto(Sha256::digest_of(absent));
  const re::Digest action =
      make_action(s, {.args = {"cat", "gone.txt"}, .missing_inputs = {{"gone.txt", absent_digest}}});
  const Outcome o = execute(s, action);
  REQUIRE(o.done());
  REQUIRE(o.response.status().code() == static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
  REQUIRE(o.response.status().details_size() == 1);
  google::rpc::PreconditionFailure pf;
  REQUIRE(o.response.status().details(0).UnpackTo(&pf));
  REQUIRE(pf.violations_size() == 1);
  CHECK(pf.violations(0).type() == "MISSING");
  CHECK(pf.violations(0).subject() ==
        fmt::format("blobs/{}/{}", absent_digest.hash(), absent_digest.size_bytes()));

  // A missing Action is answered the same way, before anything is queued.
  const re::Digest no_action = reapi::to_proto(Sha256::digest_of("not an action"));
  const Outcome o2 = execute(s, no_action);
  REQUIRE(o2.done());
  REQUIRE(o2.response.status().code() == static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
  google::rpc::PreconditionFailure pf2;
  REQUIRE(o2.response.status().details(0).UnpackTo(&pf2));
  CHECK(pf2.violations(0).subject() == fmt::format("blobs/{}/{}", no_action.hash(), no_action.size_bytes()));

  // A malformed action digest is the stream's own INVALID_ARGUMENT, naming the field.
  re::Digest bad_digest;
  bad_digest.set_hash("xyz");
  bad_digest.set_size_bytes(3);
  const Outcome malformed = execute(s, bad_digest);
  CHECK(malformed.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(malformed.status.error_message(), Catch::Contains("action_digest"));

  // A malformed Command names the field; an unsatisfiable platform fails at once.
  const Outcome bad = execute(s, make_action(s, {.args = {}}));
  REQUIRE(bad.done());
  CHECK(bad.response.status().code() == static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  CHECK_THAT(bad.response.status().message(), Catch::Contains("arguments"));
  const Outcome windows = execute(s, make_action(s, {.args = {"true"}, .platform = {{"OSFamily", "windows"}}}));
  REQUIRE(windows.done());
  CHECK(windows.response.status().code() == static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
  CHECK_THAT(windows.response.status().message(), Catch::Contains("OSFamily=windows"));
}

TEST_CASE("Execution: a worker killed mid-action loses nothing; the action finishes on another",
          "[process][execution]") {
  TempDir dir;
  Server s(dir, {"--execution", "true"});
  auto first = std::make_unique<Worker>(dir, s, "first", 1);
  REQUIRE(workers_connected(s, 1));
  const std::string runs = (dir.path() / "runs").string();
  const re::Digest action = make_action(
      s, {.args = {"sh", "-c", fmt::format("echo run >> {}; sleep 2; printf finished > out", runs)},
          .output_paths = {"out"}});
  Outcome o;
  std::thread client([&] { o = execute(s, action); });
  REQUIRE(eventually([&] { return metric(s, "gorego_execution_worker_slots_busy") == 1; }, 30));
  REQUIRE(eventually([&] { return std::filesystem::exists(runs); }, 30));
  Worker second(dir, s, "second", 1);
  REQUIRE(workers_connected(s, 2));
  first->proc->signal(SIGKILL);
  client.join();
  REQUIRE(o.done());
  CHECK(o.response.status().code() == 0);
  CHECK(o.response.result().exit_code() == 0);
  CHECK(o.response.result().execution_metadata().worker() == "second");
  REQUIRE(o.response.result().output_files_size() == 1);
  CHECK(read_blob(s, o.response.result().output_files(0).digest()) == "finished");
  CHECK(metric(s, "gorego_execution_requeued_total") == 1);
  // The killed worker's leftovers do not trouble its next start.
  CHECK_FALSE(std::filesystem::is_empty(first->work / "actions"));
  first.reset();
  Worker again(dir, s, "first", 1);
  REQUIRE(workers_connected(s, 2));
  CHECK(std::filesystem::is_empty(again.work / "actions"));
}

TEST_CASE("Execution: 20 concurrent Execute calls of one action run it once", "[process][execution]") {
  TempDir dir;
  Server s(dir, {"--execution", "true"});
  Worker w(dir, s, "w1", 4);
  REQUIRE(workers_connected(s, 1));
  const std::string runs = (dir.path() / "runs").string();
  const re::Digest action = make_action(
      s, {.args = {"sh", "-c", fmt::format("echo run >> {}; sleep 1; printf same > out", runs)}, .output_paths = {"out"}});
  std::vector<Outcome> outs(20);
  std::vector<std::thread> clients;
  for (auto& o : outs) clients.emplace_back([&] { o = execute(s, action); });
  for (auto& t : clients) t.join();
  for (const auto& o : outs) {
    REQUIRE(o.done());
    CHECK(o.response.status().code() == 0);
    REQUIRE(o.response.result().output_files_size() == 1);
    CHECK(o.response.result().output_files(0).digest().hash() == outs[0].response.result().output_files(0).digest().hash());
  }
  std::ifstream in(runs);
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  CHECK(lines == 1);
}

TEST_CASE("Execution: a broken stream resumes with WaitExecution; unknown names are NOT_FOUND",
          "[process][execution]") {
  TempDir dir;
  Server s(dir, {"--execution", "true"});
  Worker w(dir, s, "w1");
  REQUIRE(workers_connected(s, 1));
  const re::Digest action = make_action(s, {.args = {"sh", "-c", "sleep 1; printf late > out"}, .output_paths = {"out"}});
  auto stub = re::Execution::NewStub(s.channel);
  std::string name;
  {
    grpc::ClientContext ctx;
    re::ExecuteRequest req;
    *req.mutable_action_digest() = action;
    auto r = stub->Execute(&ctx, req);
    lr::Operation op;
    // The first message is the cache check; its name is provisional. Wait for the queued one.
    while (r->Read(&op)) {
      re::ExecuteOperationMetadata md;
      REQUIRE(op.metadata().UnpackTo(&md));
      if (md.stage() >= re::ExecutionStage::QUEUED) break;
    }
    name = op.name();
    ctx.TryCancel();
    r->Finish();
  }
  REQUIRE_FALSE(name.empty());
  grpc::ClientContext ctx;
  re::WaitExecutionRequest req;
  req.set_name(name);
  auto r = stub->WaitExecution(&ctx, req);
  Outcome o;
  lr::Operation op;
  while (r->Read(&op)) o.ops.push_back(op);
  o.status = r->Finish();
  o = finish(std::move(o));
  REQUIRE(o.done());
  CHECK(o.response.result().exit_code() == 0);
  CHECK(o.ops.back().name() == name);

  // Still resolvable after it finished (GetOperation too), unknown names are NOT_FOUND.
  auto ops = lr::Operations::NewStub(s.channel);
  {
    grpc::ClientContext c2;
    lr::GetOperationRequest g;
    g.set_name(name);
    lr::Operation got;
    REQUIRE(ops->GetOperation(&c2, g, &got).ok());
    CHECK(got.done());
  }
  grpc::ClientContext c3;
  re::WaitExecutionRequest unknown;
  unknown.set_name("operations/does-not-exist");
  auto r3 = stub->WaitExecution(&c3, unknown);
  while (r3->Read(&op)) {
  }
  CHECK(r3->Finish().error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("Execution: the stages of an executed action are spans in the client's trace", "[process][execution]") {
  TempDir dir;
  Server s(dir, {"--execution", "true", "--tracing-endpoint", "stdout"});
  Worker w(dir, s, "w1");
  REQUIRE(workers_connected(s, 1));
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const Outcome o = execute(s, make_action(s, {.args = {"true"}}), false, "00-" + trace + "-00f067aa0ba902b7-01");
  REQUIRE(o.done());
  CHECK(o.response.result().exit_code() == 0);
  for (const char* stage : {"execution queue", "execution input fetch", "execution run", "execution output upload"}) {
    INFO(stage);
    CHECK(eventually([&] {
      return slurp(s.log).find(fmt::format("\"name\":\"{}\",\"trace_id\":\"{}\"", stage, trace)) != std::string::npos;
    }));
  }
}

TEST_CASE("Execution: CancelOperation kills a running action", "[process][execution]") {
  TempDir dir;
  Server s(dir, {"--execution", "true"});
  Worker w(dir, s, "w1", 1);
  REQUIRE(workers_connected(s, 1));
  const std::string pids = (dir.path() / "pids").string();
  const re::Digest action = make_action(s, {.args = {"sh", "-c", fmt::format("echo $$ > {}; sleep 100", pids)}});
  Outcome o;
  std::thread client([&] { o = execute(s, action); });
  REQUIRE(eventually([&] { return std::filesystem::exists(pids) && std::filesystem::file_size(pids) > 0; }, 30));
  REQUIRE(eventually([&] { return metric(s, "gorego_execution_running") == 1; }));
  std::string name;
  auto ops = lr::Operations::NewStub(s.channel);
  // Find the name through a second Execute of the same action: it merges onto the running one.
  {
    auto stub = re::Execution::NewStub(s.channel);
    grpc::ClientContext ctx;
    re::ExecuteRequest req;
    *req.mutable_action_digest() = action;
    req.set_skip_cache_lookup(true);
    auto r = stub->Execute(&ctx, req);
    lr::Operation op;
    REQUIRE(r->Read(&op));
    name = op.name();
    ctx.TryCancel();
    r->Finish();
  }
  grpc::ClientContext cctx;
  lr::CancelOperationRequest cancel;
  cancel.set_name(name);
  google::protobuf::Empty empty;
  REQUIRE(ops->CancelOperation(&cctx, cancel, &empty).ok());
  client.join();
  REQUIRE(o.done());
  CHECK(o.response.status().code() == static_cast<int>(grpc::StatusCode::CANCELLED));
  std::ifstream in(pids);
  pid_t pid = 0;
  REQUIRE(in >> pid);
  CHECK(all_gone({pid}));
  // The slot is free again: the next action runs.
  const Outcome next = execute(s, make_action(s, {.args = {"true"}}));
  REQUIRE(next.done());
  CHECK(next.response.result().exit_code() == 0);
}

TEST_CASE("Execution: at shutdown idle workers are sent away and the server exits cleanly", "[process][execution]") {
  TempDir dir;
  Server s(dir, {"--execution", "true"});
  Worker w(dir, s, "w1");
  REQUIRE(workers_connected(s, 1));
  s.proc->signal(SIGTERM);
  CHECK(s.proc->wait() == 0);
  CHECK(eventually([&] { return slurp(w.log).find("shutting down") != std::string::npos; }, 10));
}

TEST_CASE("Execution: with authentication, Execute needs the execute right and workers the worker right",
          "[process][execution][security]") {
  TempDir dir;
  std::ofstream(dir.path() / "tokens") << "ci tok-ci-61f0a8\nw1 tok-worker-93c2d4\n";
  std::ofstream(dir.path() / "worker-token") << "tok-worker-93c2d4\n";
  std::ofstream(dir.path() / "wrong-token") << "tok-not-known\n";
  // Anonymous callers may upload the action's blobs and read /metrics (the helpers here do).
  std::ofstream(dir.path() / "auth.yaml") << fmt::format(
      "auth:\n  tokens_file: {}\n  rights:\n    anonymous: read+write-cas+admin\n    ci: read+write+execute\n"
      "    w1: worker+read+write-cas\n",
      (dir.path() / "tokens").string());
  Server s(dir, {"--execution", "true", "--config", (dir.path() / "auth.yaml").string()});
  // A worker with a token the server does not know is refused and never counted.
  Worker stranger(dir, s, "stranger", 1, {"--token-file", (dir.path() / "wrong-token").string()});
  CHECK(wait_for_log(stranger.log, "UNAUTHENTICATED", 20));
  Worker w(dir, s, "w1", 2, {"--token-file", (dir.path() / "worker-token").string()});
  REQUIRE(workers_connected(s, 1));

  const re::Digest action = make_action(s, {.args = {"sh", "-c", "printf ran > out"}, .output_paths = {"out"}});
  const Outcome anonymous = execute(s, action);
  CHECK(anonymous.status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK_THAT(anonymous.status.error_message(), Catch::Contains("execute"));
  const Outcome o = execute(s, action, false, "", "Bearer tok-ci-61f0a8");
  INFO(slurp(w.log));
  REQUIRE(o.status.ok());
  REQUIRE(o.done());
  CHECK(o.response.result().exit_code() == 0);
  REQUIRE(o.response.result().output_files_size() == 1);
  CHECK(read_blob(s, o.response.result().output_files(0).digest()) == "ran");
  CHECK(slurp(s.log).find("tok-ci-61f0a8") == std::string::npos);
  CHECK(slurp(s.log).find("tok-worker-93c2d4") == std::string::npos);
}

TEST_CASE("Execution: a worker connects over mTLS with its own client certificate", "[process][execution][security]") {
  TempDir dir;
  const auto certs = dir.path() / "certs";
  REQUIRE(std::system(fmt::format("bash {}/test/e2e/make_test_certs.sh {}", GOREGO_SOURCE_DIR, certs.string()).c_str()) ==
          0);
  grpc::SslCredentialsOptions client;
  client.pem_root_certs = slurp(certs / "ca.pem");
  client.pem_cert_chain = slurp(certs / "client.pem");
  client.pem_private_key = slurp(certs / "client.key");
  // The client certificate's principal may do everything a worker and a test client need.
  std::ofstream(dir.path() / "mtls.yaml") << fmt::format(
      "tls:\n  cert_file: {0}/server.pem\n  key_file: {0}/server.key\n  client_ca_file: {0}/ca.pem\n"
      "auth:\n  rights:\n    gorego test client: all\n",
      certs.string());
  Server s(dir, {"--execution", "true", "--config", (dir.path() / "mtls.yaml").string()}, "",
           grpc::SslCredentials(client));
  const auto wlog = dir.path() / "worker-tls.log";
  Process worker(GOREGO_WORKER_BINARY,
                 {"--scheduler", "grpcs://" + s.address(), "--work-dir", (dir.path() / "worker-tls").string(), "--slots",
                  "1", "--id", "tls", "--property", "OSFamily=linux", "--tls-ca", (certs / "ca.pem").string(),
                  "--tls-cert", (certs / "client.pem").string(), "--tls-key", (certs / "client.key").string()},
                 wlog);
  REQUIRE(wait_for_log(wlog, "connected to the scheduler", 30));
  const re::Digest action = make_action(s, {.args = {"sh", "-c", "printf tls > out"}, .output_paths = {"out"}});
  const Outcome o = execute(s, action);
  INFO(slurp(wlog));
  REQUIRE(o.status.ok());
  REQUIRE(o.done());
  REQUIRE(o.response.result().output_files_size() == 1);
  CHECK(read_blob(s, o.response.result().output_files(0).digest()) == "tls");
}
