// The worker's runner on an in-memory InputSource: input trees laid out (modes, symlinks,
// shared subdirectories, the empty blob), missing and malformed inputs refused, Commands
// validated, commands run in their own process group (exit codes, stderr, timeout, cancel,
// no orphans), outputs collected into Trees whose digests verify.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include <gorego/hash/content_hash.hpp>
#include <gorego/reapi/convert.hpp>
#include <gorego/testing/temp_dir.hpp>

#include "worker/runner.hpp"

using namespace gorego;
using namespace gorego::worker;
namespace fs = std::filesystem;
using gorego::testing::TempDir;

/// REQUIRE that a Status is OK, showing it when it is not.
#define REQUIRE_OK(expr)                         \
  do {                                           \
    const ::gorego::Status require_ok_ = (expr); \
    INFO(require_ok_.to_string());               \
    REQUIRE(require_ok_.ok());                   \
  } while (0)

namespace {

struct DigestLess {
  bool operator()(const Digest& a, const Digest& b) const {
    return std::tie(a.hash, a.size) < std::tie(b.hash, b.size);
  }
};

/// A CAS in a map; `place` writes a copy with the mode the contract names.
class MemorySource : public InputSource {
 public:
  std::map<Digest, std::string, DigestLess> blobs;
  int prefetch_calls = 0;
  std::vector<Digest> prefetched;

  Digest add(const std::string& bytes) {
    const Digest d = Sha256::digest_of(bytes);
    blobs[d] = bytes;
    return d;
  }
  Digest add(const re::Directory& dir) { return add(dir.SerializeAsString()); }

  Status prefetch(std::span<const Digest> ds, std::vector<Digest>& missing) override {
    ++prefetch_calls;
    prefetched.assign(ds.begin(), ds.end());
    bool any = false;
    for (const auto& d : ds) {
      if (!blobs.contains(d)) {
        missing.push_back(d);
        any = true;
      }
    }
    return any ? error(Code::kFailedPrecondition, "some blobs are missing") : Status{};
  }
  Result<std::string> get(const Digest& d) override {
    auto it = blobs.find(d);
    if (it == blobs.end()) return error(Code::kNotFound, "blob {} not found", d);
    return it->second;
  }
  Status place(const Digest& d, const fs::path& path, bool executable) override {
    auto it = blobs.find(d);
    if (it == blobs.end()) return error(Code::kNotFound, "blob {} not found", d);
    {
      std::ofstream f(path, std::ios::binary);
      f << it->second;
    }
    ::chmod(path.c_str(), executable ? 0555 : 0444);
    return {};
  }
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_file(const fs::path& p, const std::string& bytes, mode_t mode = 0644) {
  {
    std::ofstream f(p, std::ios::binary);
    f << bytes;
  }
  ::chmod(p.c_str(), mode);
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode;
}

re::FileNode* add_file(re::Directory& dir, const std::string& name, const Digest& d,
                       bool exec = false) {
  re::FileNode* f = dir.add_files();
  f->set_name(name);
  *f->mutable_digest() = reapi::to_proto(d);
  f->set_is_executable(exec);
  return f;
}
void add_dir(re::Directory& dir, const std::string& name, const Digest& d) {
  re::DirectoryNode* n = dir.add_directories();
  n->set_name(name);
  *n->mutable_digest() = reapi::to_proto(d);
}
void add_link(re::Directory& dir, const std::string& name, const std::string& target) {
  re::SymlinkNode* l = dir.add_symlinks();
  l->set_name(name);
  l->set_target(target);
}

re::Command shell(const std::string& script) {
  re::Command c;
  c.add_arguments("sh");
  c.add_arguments("-c");
  c.add_arguments(script);
  auto* e = c.add_environment_variables();
  e->set_name("PATH");
  e->set_value("/bin:/usr/bin");
  return c;
}

/// Every upload's bytes (read from its file, or held), checked against its digest.
std::map<Digest, std::string, DigestLess> upload_bytes(const Collected& c) {
  std::map<Digest, std::string, DigestLess> out;
  for (const auto& u : c.uploads) {
    INFO("upload " << fmt::format("{}", u.digest) << " file " << u.file.string());
    REQUIRE_FALSE(out.contains(u.digest));  // each digest once
    std::string bytes = u.file.empty() ? u.bytes : read_file(u.file);
    REQUIRE(verify_blob(u.digest, bytes).ok());
    out.emplace(u.digest, std::move(bytes));
  }
  return out;
}

Digest digest_of(const re::Digest& d) {
  auto r = reapi::from_proto(d);
  REQUIRE(r.ok());
  return *r;
}

bool sorted_names(const re::Directory& d) {
  auto by_name = [](const auto& a, const auto& b) { return a.name() < b.name(); };
  return std::is_sorted(d.files().begin(), d.files().end(), by_name) &&
         std::is_sorted(d.directories().begin(), d.directories().end(), by_name) &&
         std::is_sorted(d.symlinks().begin(), d.symlinks().end(), by_name);
}

/// True once `pid` is gone or a zombie (a reparented orphan may wait for init to reap it).
bool dead(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  if (!f) return true;
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  return close == std::string::npos || (close + 2 < stat.size() && stat[close + 2] == 'Z');
}

/// Polls (not sleeps-as-synchronisation: a deadline on an asynchronous kernel event).
bool eventually_dead(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (dead(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return dead(pid);
}

pid_t read_pid(const fs::path& p) {
  const std::string s = read_file(p);
  INFO("pid file " << p.string() << " holds \"" << s << "\"");
  REQUIRE_FALSE(s.empty());
  return static_cast<pid_t>(std::stol(s));
}

struct Env {
  TempDir root{"runner-root"};
  TempDir io{"runner-io"};
  RunOptions opts() const {
    RunOptions o;
    o.stdout_path = io.path() / "stdout";
    o.stderr_path = io.path() / "stderr";
    return o;
  }
  RunOutcome run(const re::Command& c, const RunOptions& o) const {
    return run_command(c, root.path(), o);
  }
  RunOutcome run(const re::Command& c) const { return run(c, opts()); }
  Result<Collected> collect(const re::Command& c, const RunOutcome& r) const {
    return collect_outputs(c, root.path(), r, io.path() / "stdout", io.path() / "stderr");
  }
};

}  // namespace

// ---- materialise_inputs ---------------------------------------------------------------

TEST_CASE(
    "Runner: a nested input tree is laid out with modes and symlinks and shared subdirectories") {
  MemorySource src;
  const Digest hello = src.add("hello\n");
  const Digest tool = src.add("#!/bin/sh\necho tool\n");
  const Digest empty = Sha256::digest_of("");
  REQUIRE_FALSE(src.blobs.contains(empty));

  re::Directory leaf;
  add_file(leaf, "data", hello);
  const Digest leaf_d = src.add(leaf);
  re::Directory shared;  // appears at "a" and at "b/shared"
  add_file(shared, "f", hello);
  add_dir(shared, "leaf", leaf_d);
  add_link(shared, "up", "../top.txt");
  const Digest shared_d = src.add(shared);
  re::Directory b;
  add_dir(b, "shared", shared_d);
  const Digest b_d = src.add(b);
  re::Directory root;
  add_file(root, "empty", empty);
  add_file(root, "tool", tool, true);
  add_file(root, "top.txt", hello);
  add_dir(root, "a", shared_d);
  add_dir(root, "b", b_d);
  add_link(root, "link", "a/f");
  const Digest root_d = src.add(root);

  TempDir out("runner-in");
  std::vector<Digest> missing;
  const Status s = materialise_inputs(src, root_d, out.path(), missing);
  INFO(s.to_string());
  REQUIRE(s.ok());
  CHECK(missing.empty());

  const fs::path& p = out.path();
  CHECK(read_file(p / "top.txt") == "hello\n");
  CHECK((mode_of(p / "top.txt") & 07777) == 0444);
  CHECK(read_file(p / "tool") == "#!/bin/sh\necho tool\n");
  CHECK((mode_of(p / "tool") & 07777) == 0555);
  CHECK(S_ISREG(mode_of(p / "empty")));
  CHECK(fs::file_size(p / "empty") == 0);
  CHECK(S_ISLNK(mode_of(p / "link")));
  CHECK(fs::read_symlink(p / "link") == "a/f");
  CHECK(read_file(p / "link") == "hello\n");
  for (const fs::path& at : {p / "a", p / "b" / "shared"}) {
    INFO(at.string());
    CHECK(S_ISDIR(mode_of(at)));
    CHECK(read_file(at / "f") == "hello\n");
    CHECK(read_file(at / "leaf" / "data") == "hello\n");
    CHECK(fs::read_symlink(at / "up") == "../top.txt");
  }
  CHECK(read_file(p / "a" / "up") == "hello\n");
  CHECK(S_ISLNK(mode_of(p / "b" / "shared" / "up")));

  // One prefetch, each distinct file blob once, the empty blob not asked for.
  CHECK(src.prefetch_calls == 1);
  std::set<Digest, DigestLess> asked(src.prefetched.begin(), src.prefetched.end());
  CHECK(asked.size() == src.prefetched.size());
  CHECK(asked == std::set<Digest, DigestLess>{hello, tool});
}

TEST_CASE("Runner: missing file and directory blobs are listed once with FAILED_PRECONDITION") {
  MemorySource src;
  const Digest present = src.add("here");
  const Digest gone = Sha256::digest_of("never uploaded");
  re::Directory lost_dir;
  add_file(lost_dir, "x", present);
  const Digest lost = Sha256::digest_of(lost_dir.SerializeAsString());  // not in src
  re::Directory sub;
  add_file(sub, "again", gone);
  const Digest sub_d = src.add(sub);
  re::Directory root;
  add_file(root, "present", present);
  add_file(root, "gone", gone);
  add_dir(root, "lost", lost);
  add_dir(root, "lost2", lost);
  add_dir(root, "sub", sub_d);
  const Digest root_d = src.add(root);

  TempDir out("runner-in");
  std::vector<Digest> missing;
  const Status s = materialise_inputs(src, root_d, out.path(), missing);
  CHECK(s.code() == Code::kFailedPrecondition);
  CHECK_THAT(s.message(), Catch::Contains(gone.hex()) && Catch::Contains(lost.hex()));
  REQUIRE(missing.size() == 2);
  CHECK(std::set<Digest, DigestLess>(missing.begin(), missing.end()) ==
        std::set<Digest, DigestLess>{gone, lost});
  CHECK(src.prefetch_calls == 1);

  SECTION("a missing root directory") {
    std::vector<Digest> m2;
    const Status s2 = materialise_inputs(src, lost, out.path(), m2);
    CHECK(s2.code() == Code::kFailedPrecondition);
    CHECK(m2 == std::vector<Digest>{lost});
  }
}

TEST_CASE("Runner: malformed input directories are INVALID_ARGUMENT naming the path") {
  MemorySource src;
  const Digest blob = src.add("x");
  re::Directory root;
  auto check = [&](const std::string& expect) {
    TempDir out("runner-in");
    std::vector<Digest> missing;
    const Status s = materialise_inputs(src, src.add(root), out.path(), missing);
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK_THAT(s.message(), Catch::Contains(expect));
    CHECK(missing.empty());
  };

  SECTION("a name with '/'") {
    re::Directory sub;
    add_file(sub, "x/y", blob);
    add_dir(root, "sub", src.add(sub));
    check("\"sub/x/y\"");
  }
  SECTION("a \".\" name") {
    add_file(root, ".", blob);
    check("the name is not a file name");
  }
  SECTION("a \"..\" directory name") {
    re::Directory empty;
    add_dir(root, "..", src.add(empty));
    check("input directory \"..\"");
  }
  SECTION("an empty name") {
    add_link(root, "", "x");
    check("is empty");
  }
  SECTION("a name used by a file and a directory") {
    re::Directory empty;
    add_file(root, "dup", blob);
    add_dir(root, "dup", src.add(empty));
    check("\"dup\" appears twice");
  }
  SECTION("an absolute symlink target") {
    add_link(root, "abs", "/etc/passwd");
    check("\"abs\" has the absolute target \"/etc/passwd\"");
  }
  SECTION("a symlink leaving the input root") {
    re::Directory sub;
    add_link(sub, "ok", "../x");  // stays inside: fine
    add_link(sub, "out", "a/../../../x");
    add_dir(root, "sub", src.add(sub));
    check("\"sub/out\" has the target \"a/../../../x\", which leaves the input root");
  }
  SECTION("an unparsable Directory blob") {
    const Digest junk = src.add("not a directory message");
    add_dir(root, "junk", junk);
    check(junk.hex());
  }
}

// ---- validate_command / create_output_parents -----------------------------------------

TEST_CASE("Runner: validate_command names the bad field") {
  re::Command c = shell("true");
  c.add_output_files("out/a");
  c.add_output_directories("dir");
  c.add_output_directories("");  // REAPI: the whole working directory
  c.set_working_directory("w/x");
  REQUIRE(validate_command(c).ok());

  auto check = [&](const std::string& expect) {
    const Status s = validate_command(c);
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(s.message() == expect);
  };
  SECTION("no arguments") {
    c.clear_arguments();
    check("command.arguments is empty");
  }
  SECTION("an absolute output file") {
    c.add_output_files("/abs");
    check("command.output_files[1] \"/abs\" is absolute");
  }
  SECTION("an output path leaving the working directory") {
    c.add_output_paths("a");
    c.add_output_paths("../x");
    check("command.output_paths[1] \"../x\" leaves the working directory");
  }
  SECTION("an empty component") {
    c.add_output_directories("a//b");
    check("command.output_directories[2] \"a//b\" has an empty component");
  }
  SECTION("a trailing slash") {
    c.add_output_files("f/");
    check("command.output_files[1] \"f/\" ends with '/'");
  }
  SECTION("an empty output file") {
    c.add_output_files("");
    check("command.output_files[1] \"\" is empty");
  }
  SECTION("an absolute working directory") {
    c.set_working_directory("/w");
    check("command.working_directory \"/w\" is absolute");
  }
  SECTION("a working directory outside the input root") {
    c.set_working_directory("../w");
    check("command.working_directory \"../w\" leaves the input root");
  }
  SECTION("an empty variable name") {
    c.add_environment_variables()->set_value("v");
    check("command.environment_variables[1].name is empty");
  }
  SECTION("a variable name with '='") {
    c.mutable_environment_variables(0)->set_name("A=B");
    check("command.environment_variables[0].name \"A=B\" contains '='");
  }
  SECTION("an output listed as file and directory") {
    c.add_output_directories("out/a");
    check("command.output_directories[2] \"out/a\" is already listed as command.output_files[0]");
  }
  SECTION("an output file that is another output's parent") {
    c.add_output_directories("out/a/sub");
    check(
        "command.output_files[0] \"out/a\" is the parent of command.output_directories[2] "
        "\"out/a/sub\"");
  }
}

TEST_CASE("Runner: create_output_parents makes the parents but not the outputs") {
  TempDir root("runner-root");
  re::Command c = shell("true");
  c.set_working_directory("wd");

  SECTION("legacy outputs") {
    c.add_output_files("a/b/f");
    c.add_output_files("top");
    c.add_output_directories("x/y");
    REQUIRE(create_output_parents(c, root.path()).ok());
    CHECK(fs::is_directory(root.path() / "wd" / "a" / "b"));
    CHECK_FALSE(fs::exists(root.path() / "wd" / "a" / "b" / "f"));
    CHECK(fs::is_directory(root.path() / "wd" / "x"));
    CHECK_FALSE(fs::exists(root.path() / "wd" / "x" / "y"));
  }
  SECTION("output_paths win over the legacy fields") {
    c.add_output_paths("p/q");
    c.add_output_files("legacy/f");
    REQUIRE(create_output_parents(c, root.path()).ok());
    CHECK(fs::is_directory(root.path() / "wd" / "p"));
    CHECK_FALSE(fs::exists(root.path() / "wd" / "p" / "q"));
    CHECK_FALSE(fs::exists(root.path() / "wd" / "legacy"));
  }
  SECTION("an input file in the way") {
    fs::create_directories(root.path() / "wd");
    write_file(root.path() / "wd" / "a", "file");
    c.add_output_files("a/f");
    const Status s = create_output_parents(c, root.path());
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK_THAT(s.message(), Catch::Contains("command.output_files[0] \"a/f\""));
  }
  SECTION("an absolute path is refused, nothing created") {
    c.add_output_files("/tmp/gorego-runner-never/f");
    CHECK(create_output_parents(c, root.path()).code() == Code::kInvalidArgument);
    CHECK_FALSE(fs::exists("/tmp/gorego-runner-never"));
  }
}

// ---- run_command ----------------------------------------------------------------------

TEST_CASE("Runner: exit code and stderr of a failing command are captured") {
  Env env;
  const re::Command c = shell("echo oops >&2; exit 3");
  const RunOutcome r = env.run(c);
  REQUIRE_OK(r.status);
  CHECK(r.exit_code == 3);
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.cancelled);
  CHECK(r.started <= r.completed);

  auto col = env.collect(c, r);
  REQUIRE(col.ok());
  const auto bytes = upload_bytes(*col);
  CHECK(col->result.exit_code() == 3);
  REQUIRE(col->result.has_stderr_digest());
  REQUIRE(col->result.has_stdout_digest());
  CHECK(digest_of(col->result.stderr_digest()) == Sha256::digest_of("oops\n"));
  CHECK(bytes.at(digest_of(col->result.stderr_digest())) == "oops\n");
  CHECK(digest_of(col->result.stdout_digest()) == Sha256::digest_of(""));
  CHECK(bytes.contains(Sha256::digest_of("")));
}

TEST_CASE("Runner: the command gets exactly its environment and working directory and PATH") {
  Env env;
  SECTION("environment and PATH lookup") {
    re::Command c;
    c.add_arguments("env");
    auto* a = c.add_environment_variables();
    a->set_name("A");
    a->set_value("1 2");
    auto* p = c.add_environment_variables();
    p->set_name("PATH");
    p->set_value("/nonexistent:/usr/bin:/bin");
    const RunOutcome r = env.run(c);
    REQUIRE_OK(r.status);
    CHECK(r.exit_code == 0);
    CHECK(read_file(env.io.path() / "stdout") == "A=1 2\nPATH=/nonexistent:/usr/bin:/bin\n");
  }
  SECTION("the working directory and a relative program") {
    fs::create_directories(env.root.path() / "sub" / "bin");
    write_file(env.root.path() / "sub" / "bin" / "tool", "#!/bin/sh\npwd\necho \"$0\"\n", 0755);
    re::Command c;
    c.add_arguments("bin/tool");
    c.set_working_directory("sub");
    const RunOutcome r = env.run(c);
    REQUIRE_OK(r.status);
    CHECK(r.exit_code == 0);
    CHECK(read_file(env.io.path() / "stdout") ==
          fs::canonical(env.root.path() / "sub").string() + "\nbin/tool\n");
  }
  SECTION("stdin is empty") {
    const RunOutcome r = env.run(shell("wc -c"));
    REQUIRE_OK(r.status);
    CHECK(read_file(env.io.path() / "stdout") == "0\n");
  }
}

TEST_CASE("Runner: a program that cannot be started is a not-OK status naming it") {
  Env env;
  SECTION("not in PATH") {
    re::Command c;
    c.add_arguments("gorego-no-such-program");
    const RunOutcome r = env.run(c);
    CHECK_FALSE(r.status.ok());
    CHECK_THAT(r.status.message(), Catch::Contains("\"gorego-no-such-program\"") &&
                                       Catch::Contains("No such file or directory"));
  }
  SECTION("a relative path that does not exist (exec fails in the child)") {
    re::Command c;
    c.add_arguments("./missing.sh");
    const RunOutcome r = env.run(c);
    CHECK(r.status.code() == Code::kInvalidArgument);
    CHECK(r.status.message() == "cannot run \"./missing.sh\": No such file or directory");
  }
  SECTION("a missing working directory") {
    re::Command c = shell("true");
    c.set_working_directory("nowhere");
    const RunOutcome r = env.run(c);
    CHECK_FALSE(r.status.ok());
    CHECK_THAT(r.status.message(), Catch::Contains("\"nowhere\""));
  }
}

TEST_CASE("Runner: a timeout kills the whole process group") {
  Env env;
  RunOptions o = env.opts();
  o.timeout = std::chrono::milliseconds(500);
  const RunOutcome r = env.run(shell("sleep 100 & echo $! > bg.pid; sleep 100"), o);
  REQUIRE_OK(r.status);
  CHECK(r.timed_out);
  CHECK_FALSE(r.cancelled);
  CHECK(r.exit_code == 128 + SIGKILL);
  const pid_t bg = read_pid(env.root.path() / "bg.pid");
  CHECK(eventually_dead(bg));
}

TEST_CASE("Runner: background children left after a normal exit are killed") {
  Env env;
  const RunOutcome r = env.run(shell("sleep 100 & echo $! > bg.pid; exit 0"));
  REQUIRE_OK(r.status);
  CHECK(r.exit_code == 0);
  CHECK_FALSE(r.timed_out);
  const pid_t bg = read_pid(env.root.path() / "bg.pid");
  CHECK(eventually_dead(bg));
}

TEST_CASE("Runner: the cancel flag kills a running command") {
  Env env;
  std::atomic<bool> cancel{false};
  RunOptions o = env.opts();
  o.cancel = &cancel;
  RunOutcome r;
  std::thread t([&] { r = env.run(shell("echo $$ > started; sleep 100"), o); });
  const fs::path started = env.root.path() / "started";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (read_file(started).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  cancel = true;
  t.join();
  REQUIRE_OK(r.status);
  CHECK(r.cancelled);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 128 + SIGKILL);
}

// ---- collect_outputs ------------------------------------------------------------------

TEST_CASE("Runner: outputs are collected into a Tree whose digests verify with each child once") {
  Env env;
  re::Command c = shell(
      "mkdir -p out/b/e out/a/e out/c && echo hi > out/b/f && echo hi > out/a/f && "
      "ln -s a/f out/l && printf x > file1 && chmod 755 file1 && printf y > out/z");
  c.add_output_files("file1");
  c.add_output_files("absent");
  c.add_output_directories("out");
  c.add_output_directories("absent_dir");
  c.set_output_directory_format(GENERATE(re::Command::TREE_ONLY, re::Command::TREE_AND_DIRECTORY));
  REQUIRE(validate_command(c).ok());
  REQUIRE(create_output_parents(c, env.root.path()).ok());
  const RunOutcome r = env.run(c);
  REQUIRE_OK(r.status);
  REQUIRE(r.exit_code == 0);
  auto col = env.collect(c, r);
  INFO(col.status().to_string());
  REQUIRE(col.ok());
  const auto bytes = upload_bytes(*col);
  const re::ActionResult& res = col->result;

  REQUIRE(res.output_files_size() == 1);
  CHECK(res.output_files(0).path() == "file1");
  CHECK(res.output_files(0).is_executable());
  CHECK(digest_of(res.output_files(0).digest()) == Sha256::digest_of("x"));
  CHECK(bytes.contains(Sha256::digest_of("x")));

  REQUIRE(res.output_directories_size() == 1);
  const re::OutputDirectory& od = res.output_directories(0);
  CHECK(od.path() == "out");
  re::Tree tree;
  REQUIRE(tree.ParseFromString(bytes.at(digest_of(od.tree_digest()))));

  // out: directories a, b (identical), c (empty); file z; symlink l.
  const re::Directory& root = tree.root();
  CHECK(sorted_names(root));
  REQUIRE(root.directories_size() == 3);
  CHECK(root.directories(0).name() == "a");
  CHECK(root.directories(1).name() == "b");
  CHECK(root.directories(2).name() == "c");
  CHECK(root.directories(0).digest().hash() == root.directories(1).digest().hash());
  REQUIRE(root.files_size() == 1);
  CHECK(root.files(0).name() == "z");
  CHECK_FALSE(root.files(0).is_executable());
  CHECK(bytes.at(digest_of(root.files(0).digest())) == "y");
  REQUIRE(root.symlinks_size() == 1);
  CHECK(root.symlinks(0).name() == "l");
  CHECK(root.symlinks(0).target() == "a/f");

  // Children: {a = b} and {e = c}, each once, parents first; every reference resolves.
  REQUIRE(tree.children_size() == 2);
  std::map<Digest, int, DigestLess> index;
  for (int i = 0; i < tree.children_size(); ++i) {
    CHECK(sorted_names(tree.children(i)));
    const Digest d = Sha256::digest_of(tree.children(i).SerializeAsString());
    CHECK(index.emplace(d, i).second);
  }
  CHECK(od.is_topologically_sorted());
  auto check_refs = [&](const re::Directory& d, int at) {
    for (const auto& sub : d.directories()) {
      auto it = index.find(digest_of(sub.digest()));
      REQUIRE(it != index.end());
      CHECK(it->second > at);
    }
    for (const auto& f : d.files()) CHECK(bytes.contains(digest_of(f.digest())));
  };
  check_refs(root, -1);
  for (int i = 0; i < tree.children_size(); ++i) check_refs(tree.children(i), i);
  const re::Directory& a = tree.children(index.at(digest_of(root.directories(0).digest())));
  REQUIRE(a.files_size() == 1);
  CHECK(bytes.at(digest_of(a.files(0).digest())) == "hi\n");

  if (c.output_directory_format() == re::Command::TREE_AND_DIRECTORY) {
    REQUIRE(od.has_root_directory_digest());
    const Digest rd = digest_of(od.root_directory_digest());
    CHECK(rd == Sha256::digest_of(root.SerializeAsString()));
    re::Directory again;
    REQUIRE(again.ParseFromString(bytes.at(rd)));
    for (const auto& [d, i] : index) CHECK(bytes.contains(d));
  } else {
    CHECK_FALSE(od.has_root_directory_digest());
  }
}

TEST_CASE("Runner: DIRECTORY_ONLY reports separate Directory blobs and no Tree") {
  Env env;
  re::Command c = shell("mkdir -p out/sub && echo hi > out/sub/f");
  c.add_output_paths("out");
  c.set_output_directory_format(re::Command::DIRECTORY_ONLY);
  const RunOutcome r = env.run(c);
  REQUIRE_OK(r.status);
  auto col = env.collect(c, r);
  REQUIRE(col.ok());
  const auto bytes = upload_bytes(*col);
  REQUIRE(col->result.output_directories_size() == 1);
  const auto& od = col->result.output_directories(0);
  CHECK_FALSE(od.has_tree_digest());
  re::Directory root;
  REQUIRE(root.ParseFromString(bytes.at(digest_of(od.root_directory_digest()))));
  REQUIRE(root.directories_size() == 1);
  re::Directory sub;
  REQUIRE(sub.ParseFromString(bytes.at(digest_of(root.directories(0).digest()))));
  REQUIRE(sub.files_size() == 1);
  CHECK(bytes.at(digest_of(sub.files(0).digest())) == "hi\n");
}

TEST_CASE("Runner: symlink outputs in output_paths mode and in legacy mode") {
  Env env;
  const std::string script = "echo t > target.txt && ln -s target.txt lnk && mkdir d && ln -s d dl";
  SECTION("output_paths: every symlink in output_symlinks") {
    re::Command c = shell(script);
    c.add_output_paths("d");
    c.add_output_paths("dl");
    c.add_output_paths("lnk");
    c.add_output_paths("target.txt");
    const RunOutcome r = env.run(c);
    REQUIRE_OK(r.status);
    auto col = env.collect(c, r);
    REQUIRE(col.ok());
    const auto& res = col->result;
    REQUIRE(res.output_symlinks_size() == 2);
    CHECK(res.output_symlinks(0).path() == "dl");
    CHECK(res.output_symlinks(0).target() == "d");
    CHECK(res.output_symlinks(1).path() == "lnk");
    CHECK(res.output_symlinks(1).target() == "target.txt");
    CHECK(res.output_file_symlinks_size() == 0);
    CHECK(res.output_directory_symlinks_size() == 0);
    REQUIRE(res.output_files_size() == 1);
    CHECK(res.output_files(0).path() == "target.txt");
    REQUIRE(res.output_directories_size() == 1);
    CHECK(res.output_directories(0).path() == "d");
  }
  SECTION("legacy: file symlinks and directory symlinks apart") {
    re::Command c = shell(script);
    c.add_output_files("lnk");
    c.add_output_directories("dl");
    const RunOutcome r = env.run(c);
    REQUIRE_OK(r.status);
    auto col = env.collect(c, r);
    REQUIRE(col.ok());
    const auto& res = col->result;
    CHECK(res.output_symlinks_size() == 0);
    REQUIRE(res.output_file_symlinks_size() == 1);
    CHECK(res.output_file_symlinks(0).path() == "lnk");
    CHECK(res.output_file_symlinks(0).target() == "target.txt");
    REQUIRE(res.output_directory_symlinks_size() == 1);
    CHECK(res.output_directory_symlinks(0).path() == "dl");
    CHECK(res.output_directory_symlinks(0).target() == "d");
    CHECK(res.output_files_size() == 0);
    CHECK(res.output_directories_size() == 0);
  }
  SECTION("legacy: an output file that is a directory is INVALID_ARGUMENT") {
    re::Command c = shell(script);
    c.add_output_files("d");
    const RunOutcome r = env.run(c);
    REQUIRE_OK(r.status);
    auto col = env.collect(c, r);
    REQUIRE_FALSE(col.ok());
    CHECK(col.error().code() == Code::kInvalidArgument);
    CHECK_THAT(col.error().message(),
               Catch::Contains("command.output_files[0] \"d\" is a directory"));
  }
  SECTION("a fifo among the outputs is INVALID_ARGUMENT naming it") {
    re::Command c = shell("mkdir -p out && mkfifo out/pipe");
    c.add_output_paths("out");
    const RunOutcome r = env.run(c);
    REQUIRE_OK(r.status);
    REQUIRE(r.exit_code == 0);
    auto col = env.collect(c, r);
    REQUIRE_FALSE(col.ok());
    CHECK(col.error().code() == Code::kInvalidArgument);
    CHECK_THAT(col.error().message(), Catch::Contains("\"out/pipe\""));
  }
}

// ---- remove_tree ----------------------------------------------------------------------

TEST_CASE("Runner: remove_tree removes read-only trees and leaves symlink targets alone") {
  TempDir base("runner-rm");
  const fs::path outside = base.path() / "outside";
  fs::create_directories(outside);
  write_file(outside / "keep", "keep", 0444);
  ::chmod(outside.c_str(), 0500);

  const fs::path tree = base.path() / "tree";
  fs::create_directories(tree / "ro" / "deeper");
  write_file(tree / "ro" / "deeper" / "f", "f", 0444);
  fs::create_symlink(outside, tree / "ro" / "out");
  fs::create_symlink(outside / "keep", tree / "keep-link");
  ::chmod((tree / "ro" / "deeper").c_str(), 0500);
  ::chmod((tree / "ro").c_str(), 0500);

  remove_tree(tree);
  CHECK_FALSE(fs::exists(fs::symlink_status(tree)));
  CHECK(read_file(outside / "keep") == "keep");
  CHECK((mode_of(outside) & 07777) == 0500);  // not chmod'ed through the symlink
  CHECK((mode_of(outside / "keep") & 07777) == 0444);
  ::chmod(outside.c_str(), 0700);

  remove_tree(base.path() / "does-not-exist");  // no-op, no crash
}
