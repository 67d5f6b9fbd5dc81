// The worker's action runner (runner.hpp): input layout, one command in its own process
// group, output collection. POSIX only (Linux: close_range, waitid WNOWAIT).
#include "worker/runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <csignal>
#include <deque>
#include <fstream>
#include <map>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <gorego/hash/sha256.hpp>
#include <gorego/store/detail/file.hpp>
#include <gorego/reapi/convert.hpp>

namespace gorego::worker {

namespace fs = std::filesystem;

namespace {

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

/// `root/rel`, or `root` itself for the empty path (`root / ""` would add a trailing '/').
fs::path join(const fs::path& root, std::string_view rel) {
  return rel.empty() ? root : root / fs::path(rel);
}

/// "a/b" + "c" -> "a/b/c"; "" + "c" -> "c".
std::string child_path(std::string_view parent, std::string_view name) {
  if (parent.empty()) return std::string(name);
  std::string out;
  out.reserve(parent.size() + 1 + name.size());
  out.append(parent).append("/").append(name);
  return out;
}

/// Deterministic wire bytes: the digest of a message is the digest of these bytes.
std::string serialize(const google::protobuf::MessageLite& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&cos);
  }
  return out;
}

/// Splits on `sep` (keeps empty components, so callers can reject them).
template <class F>
void for_each_component(std::string_view p, F&& f, char sep = '/') {
  std::size_t start = 0;
  while (true) {
    const std::size_t next = p.find(sep, start);
    f(p.substr(start, next == std::string_view::npos ? std::string_view::npos : next - start));
    if (next == std::string_view::npos) return;
    start = next + 1;
  }
}

/// Why `p` is not a clean relative path ("" when it is): no leading or trailing '/', no
/// empty, "." or ".." components. `root` names what a leading ".." would leave.
std::string path_problem(std::string_view p, bool allow_empty, std::string_view root) {
  if (p.empty()) return allow_empty ? std::string() : std::string("is empty");
  if (p.find('\0') != std::string_view::npos) return "contains a NUL byte";
  if (p.front() == '/') return "is absolute";
  if (p.back() == '/') return "ends with '/'";
  std::string problem;
  int depth = 0;
  for_each_component(p, [&](std::string_view c) {
    if (!problem.empty()) return;
    if (c.empty()) {
      problem = "has an empty component";
    } else if (c == ".") {
      problem = "has a \".\" component";
    } else if (c == "..") {
      problem = depth == 0 ? fmt::format("leaves the {}", root)
                           : std::string("is not normalized (has a \"..\" component)");
    } else {
      ++depth;
    }
  });
  return problem;
}

/// Why `name` cannot be one entry of a Directory ("" when it can).
std::string name_problem(std::string_view name) {
  if (name.empty()) return "is empty";
  if (name == "." || name == "..") return "is not a file name";
  if (name.find('/') != std::string_view::npos) return "contains '/'";
  if (name.find('\0') != std::string_view::npos) return "contains a NUL byte";
  return {};
}

/// Why the symlink `target`, in a directory `depth` levels below the input root, is not
/// allowed ("" when it is): absolute, or leaving the input root. Resolved lexically: a path
/// through another symlink of the tree is not followed (the action could read anything
/// anyway; this keeps the worker's own layout and collection inside the root).
std::string symlink_problem(std::string_view target, int depth) {
  if (target.empty()) return "has an empty target";
  if (target.find('\0') != std::string_view::npos) return "has a target with a NUL byte";
  if (target.front() == '/') return fmt::format("has the absolute target \"{}\"", target);
  bool escapes = false;
  for_each_component(target, [&](std::string_view c) {
    if (escapes || c.empty() || c == ".") return;
    if (c == "..") {
      if (depth == 0)
        escapes = true;
      else
        --depth;
    } else {
      ++depth;
    }
  });
  if (escapes) return fmt::format("has the target \"{}\", which leaves the input root", target);
  return {};
}

int depth_of(std::string_view rel) {
  if (rel.empty()) return 0;
  return 1 + static_cast<int>(std::count(rel.begin(), rel.end(), '/'));
}

using detail::Fd;

/// Moves `fd` to a number >= 3 (so the child's dup2 onto 0..2 cannot clobber it), CLOEXEC.
Fd above_stdio(int fd) {
  if (fd < 0 || fd >= 3) return Fd(fd);
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int saved = errno;
  ::close(fd);
  errno = saved;
  return Fd(moved);
}

/// Streams the file through SHA-256 (never holds it whole).
Result<Digest> digest_file(const fs::path& p, std::string_view shown) {
  Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    return error(Code::kInternal, "cannot open output \"{}\": {}", shown, errno_text(errno));
  }
  Sha256 h;
  std::int64_t size = 0;
  std::string buf(std::size_t{1} << 16, '\0');
  while (true) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return error(Code::kInternal, "cannot read output \"{}\": {}", shown, errno_text(errno));
    }
    if (n == 0) break;
    h.update(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    size += n;
  }
  return Digest{h.finish(), size};
}

void set_timestamp(google::protobuf::Timestamp* ts, std::chrono::system_clock::time_point tp) {
  const auto since = tp.time_since_epoch();
  const auto secs = std::chrono::floor<std::chrono::seconds>(since);
  ts->set_seconds(secs.count());
  ts->set_nanos(static_cast<std::int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs).count()));
}

// ---- validation -----------------------------------------------------------------------

Status check_output_list(const google::protobuf::RepeatedPtrField<std::string>& list,
                         std::string_view field, bool allow_empty) {
  for (int i = 0; i < list.size(); ++i) {
    if (const std::string pr = path_problem(list[i], allow_empty, "working directory");
        !pr.empty()) {
      return error(Code::kInvalidArgument, "command.{}[{}] \"{}\" {}", field, i, list[i], pr);
    }
  }
  return {};
}

/// The path fields only: working_directory and every output path.
Status validate_paths(const re::Command& cmd) {
  if (const std::string pr = path_problem(cmd.working_directory(), true, "input root");
      !pr.empty()) {
    return error(Code::kInvalidArgument, "command.working_directory \"{}\" {}",
                 cmd.working_directory(), pr);
  }
  GOREGO_RETURN_IF_ERROR(check_output_list(cmd.output_paths(), "output_paths", true));
  GOREGO_RETURN_IF_ERROR(check_output_list(cmd.output_files(), "output_files", false));
  // REAPI allows "" as an output directory: the whole working directory.
  GOREGO_RETURN_IF_ERROR(check_output_list(cmd.output_directories(), "output_directories", true));
  return {};
}

// ---- running --------------------------------------------------------------------------

/// Which step of the child's setup failed; sent through the CLOEXEC pipe with errno.
enum class ChildStep : int { kSetpgid = 1, kChdir, kStdin, kStdout, kStderr, kExec };
struct ChildError {
  ChildStep step;
  int err;
};

/// Everything the child needs, prepared before fork: after fork only async-signal-safe calls.
struct ChildSetup {
  const char* exe;
  char* const* argv;
  char* const* envp;
  const char* wd;
  int in, out, err, report;
  int max_fd;
};

[[noreturn]] void die_in_child(int report, ChildStep step) {
  const ChildError ce{step, errno};
  ssize_t ignored = ::write(report, &ce, sizeof ce);
  (void)ignored;
  ::_exit(127);
}

void close_from(int lo, int hi, int max_fd) {
  if (lo > hi) return;
  if (::close_range(static_cast<unsigned>(lo), static_cast<unsigned>(hi), 0) == 0) return;
  for (int fd = lo; fd <= std::min(hi, max_fd); ++fd) ::close(fd);
}

[[noreturn]] void run_child(const ChildSetup& s) {
  // The worker may block signals in this thread or ignore some (gRPC ignores SIGPIPE); an
  // ignored disposition survives exec, so reset all of them.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // fails for KILL/STOP

  if (::setpgid(0, 0) != 0) die_in_child(s.report, ChildStep::kSetpgid);
  // If the worker dies (SIGKILL, OOM), the command dies with it rather than running on
  // unwatched; what it started is killed by the next worker start (RunOptions::pgid_file).
  (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::chdir(s.wd) != 0) die_in_child(s.report, ChildStep::kChdir);
  if (::dup2(s.in, 0) < 0) die_in_child(s.report, ChildStep::kStdin);
  if (::dup2(s.out, 1) < 0) die_in_child(s.report, ChildStep::kStdout);
  if (::dup2(s.err, 2) < 0) die_in_child(s.report, ChildStep::kStderr);
  // Everything but 0..2 and the report pipe (CLOEXEC, closed by a successful exec).
  close_from(3, s.report - 1, s.max_fd);
  close_from(s.report + 1, INT_MAX, s.max_fd);
  ::execve(s.exe, s.argv, s.envp);
  die_in_child(s.report, ChildStep::kExec);
}

bool is_callers_fault(int e) {
  switch (e) {
    case ENOENT:
    case EACCES:
    case ENOEXEC:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case ENAMETOOLONG:
    case E2BIG:
    case ETXTBSY:
    case EPERM: return true;
    default: return false;
  }
}

/// execvp's search, done in the parent: the first regular, executable `dir/prog` of
/// `path_var` (relative entries, "" included, are relative to the working directory `wd`).
Result<std::string> search_path(const std::string& prog, std::string_view path_var,
                                const fs::path& wd) {
  bool not_executable = false;
  std::string found;
  for_each_component(
      path_var,
      [&](std::string_view entry) {
        if (!found.empty()) return;
        const fs::path dir = entry.empty() ? fs::path(".") : fs::path(entry);
        const fs::path cand = (dir.is_absolute() ? dir : wd / dir) / prog;
        struct stat st {};
        if (::stat(cand.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
        if (::access(cand.c_str(), X_OK) != 0) {
          not_executable = true;
          return;
        }
        found = cand.string();
      },
      ':');
  if (!found.empty()) return found;
  if (not_executable) {
    return error(Code::kInvalidArgument,
                 "cannot run \"{}\": {} (found in PATH \"{}\", not executable)", prog,
                 errno_text(EACCES), path_var);
  }
  return error(Code::kInvalidArgument, "cannot run \"{}\": {} (searched PATH \"{}\")", prog,
               errno_text(ENOENT), path_var);
}

Result<Fd> open_capture(const fs::path& p, std::string_view which) {
  const char* name = p.empty() ? "/dev/null" : p.c_str();
  Fd fd = above_stdio(::open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) {
    return error(Code::kInternal, "cannot open the {} file \"{}\": {}", which, name,
                 errno_text(errno));
  }
  return fd;
}

Status child_failure(const ChildError& ce, const re::Command& cmd) {
  const std::string text = errno_text(ce.err);
  const Code code = is_callers_fault(ce.err) ? Code::kInvalidArgument : Code::kInternal;
  switch (ce.step) {
    case ChildStep::kExec: return error(code, "cannot run \"{}\": {}", cmd.arguments(0), text);
    case ChildStep::kChdir:
      return error(code, "cannot enter the working directory \"{}\": {}", cmd.working_directory(),
                   text);
    case ChildStep::kSetpgid:
      return error(Code::kInternal, "cannot give the command its own process group: {}", text);
    case ChildStep::kStdin:
    case ChildStep::kStdout:
    case ChildStep::kStderr:
      return error(Code::kInternal, "cannot redirect the command's standard streams: {}", text);
  }
  return error(Code::kInternal, "the command's setup failed: {}", text);
}

// ---- collecting -----------------------------------------------------------------------

class Collector {
 public:
  explicit Collector(Collected& c) : c_(c) {}

  void add(Upload u) {
    if (seen_.insert(u.digest).second) c_.uploads.push_back(std::move(u));
  }

  Result<Digest> file(const fs::path& p, std::string_view shown) {
    auto d = digest_file(p, shown);
    if (d) add(Upload{*d, p, {}});
    return d;
  }

  /// The output directory `abs` (shown as `shown`) as a Tree and/or Directory blobs.
  Status directory(const fs::path& abs, const std::string& path, std::string_view shown,
                   re::Command::OutputDirectoryFormat format) {
    Walk w;
    Digest root_digest;
    GOREGO_RETURN_IF_ERROR(build(abs, std::string(shown), w, root_digest));
    re::OutputDirectory* od = c_.result.add_output_directories();
    od->set_path(path);
    // w.postorder ends with the root; every directory comes after all of its children, so
    // the rest reversed lists parents before children (topological), each digest once.
    if (format != re::Command::DIRECTORY_ONLY) {
      re::Tree tree;
      *tree.mutable_root() = w.postorder.back().dir;
      for (auto it = w.postorder.rbegin() + 1; it != w.postorder.rend(); ++it) {
        *tree.add_children() = it->dir;
      }
      std::string bytes = serialize(tree);
      const Digest td = Sha256::digest_of(bytes);
      add(Upload{td, {}, std::move(bytes)});
      *od->mutable_tree_digest() = reapi::to_proto(td);
      od->set_is_topologically_sorted(true);
    }
    if (format == re::Command::DIRECTORY_ONLY || format == re::Command::TREE_AND_DIRECTORY) {
      *od->mutable_root_directory_digest() = reapi::to_proto(root_digest);
      for (auto& n : w.postorder) add(Upload{n.digest, {}, std::move(n.bytes)});
    }
    return {};
  }

 private:
  struct Node {
    Digest digest;
    std::string bytes;
    re::Directory dir;
  };
  struct Walk {
    std::vector<Node> postorder;  // each distinct Directory once, children before parents
    std::unordered_set<Digest> seen;
  };

  Status build(const fs::path& abs, const std::string& shown, Walk& w, Digest& out) {
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(abs, ec), end; !ec && it != end; it.increment(ec)) {
      names.push_back(it->path().filename().string());
    }
    if (ec) {
      return error(Code::kInternal, "cannot list output directory \"{}\": {}", shown, ec.message());
    }
    std::sort(names.begin(), names.end());  // REAPI: entries sorted by name (bytewise)
    re::Directory dir;
    for (const std::string& name : names) {
      const fs::path p = abs / name;
      const std::string sub = child_path(shown, name);
      struct stat st {};
      if (::lstat(p.c_str(), &st) != 0) {
        return error(Code::kInternal, "cannot stat output \"{}\": {}", sub, errno_text(errno));
      }
      if (S_ISREG(st.st_mode)) {
        auto d = file(p, sub);
        if (!d) return d.status();
        re::FileNode* f = dir.add_files();
        f->set_name(name);
        *f->mutable_digest() = reapi::to_proto(*d);
        f->set_is_executable((st.st_mode & S_IXUSR) != 0);
      } else if (S_ISDIR(st.st_mode)) {
        Digest d;
        GOREGO_RETURN_IF_ERROR(build(p, sub, w, d));
        re::DirectoryNode* n = dir.add_directories();
        n->set_name(name);
        *n->mutable_digest() = reapi::to_proto(d);
      } else if (S_ISLNK(st.st_mode)) {
        auto target = read_link(p, sub);
        if (!target) return target.status();
        re::SymlinkNode* l = dir.add_symlinks();
        l->set_name(name);
        l->set_target(std::move(*target));
      } else {
        return error(Code::kInvalidArgument,
                     "output \"{}\" is not a regular file, directory or symlink (mode {:o})", sub,
                     st.st_mode);
      }
    }
    std::string bytes = serialize(dir);
    out = Sha256::digest_of(bytes);
    if (w.seen.insert(out).second)
      w.postorder.push_back(Node{out, std::move(bytes), std::move(dir)});
    return {};
  }

 public:
  static Result<std::string> read_link(const fs::path& p, std::string_view shown) {
    std::error_code ec;
    fs::path t = fs::read_symlink(p, ec);
    if (ec) return error(Code::kInternal, "cannot read symlink \"{}\": {}", shown, ec.message());
    return t.string();
  }

 private:
  Collected& c_;
  std::unordered_set<Digest> seen_;
};

/// lstat that tells "absent" (ENOENT, or a parent that is not a directory) from failure.
Result<std::optional<struct stat>> lstat_output(const fs::path& p, std::string_view shown) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) == 0) return std::optional<struct stat>(st);
  if (errno == ENOENT || errno == ENOTDIR) return std::optional<struct stat>();
  return error(Code::kInternal, "cannot stat output \"{}\": {}", shown, errno_text(errno));
}

Status capture_stream(Collector& c, const fs::path& p, std::string_view which, re::Digest* out) {
  if (p.empty()) return {};
  struct stat st {};
  Digest d;
  if (::lstat(p.c_str(), &st) != 0 && errno == ENOENT) {
    d = Sha256::digest_of("");
    c.add(Upload{d, {}, {}});
  } else {
    auto r = c.file(p, which);
    if (!r) return r.status();
    d = *r;
  }
  *out = reapi::to_proto(d);
  return {};
}

// ---- removing -------------------------------------------------------------------------

/// Gives every directory under `p` (not following symlinks) u+rwx, so its entries can go.
void make_removable(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;
  if ((st.st_mode & S_IRWXU) != S_IRWXU) ::chmod(p.c_str(), (st.st_mode & 07777) | S_IRWXU);
  std::error_code ec;
  for (fs::directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code tec;
    if (it->symlink_status(tec).type() == fs::file_type::directory) make_removable(it->path());
  }
}

}  // namespace

// ---- materialise_inputs ---------------------------------------------------------------

Status materialise_inputs(InputSource& src, const Digest& root, const fs::path& dir,
                          std::vector<Digest>& missing) {
  struct Pending {
    Digest digest;
    std::string rel;  // "" for the input root
  };
  struct FileEntry {
    Digest digest;
    std::string rel;
    bool executable;
  };
  struct LinkEntry {
    std::string rel, target;
  };
  std::unordered_map<Digest, re::Directory> parsed;  // node-based: references stay valid
  std::unordered_set<Digest> lost_set;
  std::vector<Digest> lost;
  std::vector<std::string> dirs;
  std::vector<FileEntry> files;
  std::vector<LinkEntry> links;

  auto shown = [](const std::string& rel) { return rel.empty() ? std::string(".") : rel; };

  // 1. Walk the Directory messages breadth-first (a shared subtree at each of its paths).
  std::deque<Pending> queue{{root, ""}};
  while (!queue.empty()) {
    Pending cur = std::move(queue.front());
    queue.pop_front();
    auto found = parsed.find(cur.digest);
    if (found == parsed.end()) {
      if (lost_set.contains(cur.digest)) continue;
      auto blob = src.get(cur.digest);
      if (!blob) {
        const Code c = blob.error().code();
        if (c == Code::kNotFound || c == Code::kFailedPrecondition) {
          lost_set.insert(cur.digest);
          lost.push_back(cur.digest);
          continue;
        }
        return Status(c, fmt::format("cannot read input directory \"{}\" ({}): {}", shown(cur.rel),
                                     cur.digest, blob.error().message()));
      }
      re::Directory msg;
      if (!msg.ParseFromString(*blob)) {
        return error(Code::kInvalidArgument,
                     "input directory \"{}\" ({}) is not a valid Directory message", shown(cur.rel),
                     cur.digest);
      }
      // Names are a property of the message: check them once, at its first path.
      std::unordered_set<std::string_view> names;
      auto check = [&](const std::string& name, std::string_view kind) -> Status {
        if (const std::string pr = name_problem(name); !pr.empty()) {
          return error(Code::kInvalidArgument, "input {} \"{}\" in directory {}: the name {}", kind,
                       child_path(cur.rel, name), cur.digest, pr);
        }
        if (!names.insert(name).second) {
          return error(Code::kInvalidArgument, "input path \"{}\" appears twice in directory {}",
                       child_path(cur.rel, name), cur.digest);
        }
        return {};
      };
      for (const auto& f : msg.files()) GOREGO_RETURN_IF_ERROR(check(f.name(), "file"));
      for (const auto& d : msg.directories()) GOREGO_RETURN_IF_ERROR(check(d.name(), "directory"));
      for (const auto& l : msg.symlinks()) GOREGO_RETURN_IF_ERROR(check(l.name(), "symlink"));
      found = parsed.emplace(cur.digest, std::move(msg)).first;
    }
    const re::Directory& msg = found->second;
    const int depth = depth_of(cur.rel);
    for (const auto& f : msg.files()) {
      std::string rel = child_path(cur.rel, f.name());
      auto d = reapi::from_proto(f.digest());
      if (!d) {
        return error(Code::kInvalidArgument, "input file \"{}\": {}", rel, d.error().message());
      }
      files.push_back(FileEntry{*d, std::move(rel), f.is_executable()});
    }
    for (const auto& l : msg.symlinks()) {
      std::string rel = child_path(cur.rel, l.name());
      if (const std::string pr = symlink_problem(l.target(), depth); !pr.empty()) {
        return error(Code::kInvalidArgument, "input symlink \"{}\" {}", rel, pr);
      }
      links.push_back(LinkEntry{std::move(rel), l.target()});
    }
    for (const auto& sd : msg.directories()) {
      std::string rel = child_path(cur.rel, sd.name());
      auto d = reapi::from_proto(sd.digest());
      if (!d) {
        return error(Code::kInvalidArgument, "input directory \"{}\": {}", rel,
                     d.error().message());
      }
      dirs.push_back(rel);
      queue.push_back(Pending{*d, std::move(rel)});
    }
  }

  // 2. One prefetch of every distinct file blob (the empty blob is made here, not fetched).
  std::vector<Digest> wanted;
  {
    std::unordered_set<Digest> seen;
    for (const auto& f : files) {
      if (!f.digest.empty_blob() && seen.insert(f.digest).second) wanted.push_back(f.digest);
    }
  }
  std::vector<Digest> absent;
  if (!wanted.empty()) {
    Status s = src.prefetch(wanted, absent);
    if (!s.ok() && s.code() != Code::kFailedPrecondition) return s;
    if (!s.ok() && absent.empty()) return s;  // FAILED_PRECONDITION without naming anything
  }
  for (const auto& d : absent) {
    if (lost_set.insert(d).second) lost.push_back(d);
  }
  if (!lost.empty()) {
    missing.insert(missing.end(), lost.begin(), lost.end());
    std::string names;
    const std::size_t shown_n = std::min<std::size_t>(lost.size(), 3);
    for (std::size_t i = 0; i < shown_n; ++i) {
      names += (i ? ", " : "") + fmt::format("{}", lost[i]);
    }
    if (lost.size() > shown_n) names += ", ...";
    return error(Code::kFailedPrecondition, "{} input blob{} missing: {}", lost.size(),
                 lost.size() == 1 ? " is" : "s are", names);
  }

  // 3. Lay it out: directories (breadth-first, so parents first), files, symlinks.
  for (const auto& rel : dirs) {
    if (::mkdir(join(dir, rel).c_str(), 0755) != 0) {
      return error(Code::kInternal, "cannot create input directory \"{}\": {}", rel,
                   errno_text(errno));
    }
  }
  for (const auto& f : files) {
    const fs::path p = join(dir, f.rel);
    const mode_t mode = f.executable ? 0555 : 0444;
    if (f.digest.empty_blob()) {
      Fd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
      if (!fd || ::fchmod(fd.get(), mode) != 0) {  // fchmod: independent of the umask
        return error(Code::kInternal, "cannot create input file \"{}\": {}", f.rel,
                     errno_text(errno));
      }
      continue;
    }
    Status s = src.place(f.digest, p, f.executable);
    if (!s.ok()) {
      return Status(s.code(),
                    fmt::format("cannot place input file \"{}\": {}", f.rel, s.message()));
    }
  }
  for (const auto& l : links) {
    if (::symlink(l.target.c_str(), join(dir, l.rel).c_str()) != 0) {
      return error(Code::kInternal, "cannot create input symlink \"{}\": {}", l.rel,
                   errno_text(errno));
    }
  }
  return {};
}

// ---- validate_command -----------------------------------------------------------------

Status validate_command(const re::Command& cmd) {
  if (cmd.arguments().empty()) return error(Code::kInvalidArgument, "command.arguments is empty");
  if (cmd.arguments(0).empty()) {
    return error(Code::kInvalidArgument, "command.arguments[0] is empty (no program to run)");
  }
  for (int i = 0; i < cmd.arguments_size(); ++i) {
    if (cmd.arguments(i).find('\0') != std::string::npos) {
      return error(Code::kInvalidArgument, "command.arguments[{}] contains a NUL byte", i);
    }
  }
  for (int i = 0; i < cmd.environment_variables_size(); ++i) {
    const auto& e = cmd.environment_variables(i);
    if (e.name().empty()) {
      return error(Code::kInvalidArgument, "command.environment_variables[{}].name is empty", i);
    }
    if (e.name().find('=') != std::string::npos) {
      return error(Code::kInvalidArgument,
                   "command.environment_variables[{}].name \"{}\" contains '='", i, e.name());
    }
    if (e.name().find('\0') != std::string::npos || e.value().find('\0') != std::string::npos) {
      return error(Code::kInvalidArgument,
                   "command.environment_variables[{}] \"{}\" contains a NUL byte", i, e.name());
    }
  }
  GOREGO_RETURN_IF_ERROR(validate_paths(cmd));

  // REAPI: outputs are not duplicated; an output file is no other output's parent and not
  // also an output directory.
  std::map<std::string_view, std::string>
      first;  // path -> "command.field[i]"; ordered: stable messages
  auto unique = [&](const google::protobuf::RepeatedPtrField<std::string>& list,
                    std::string_view field) -> Status {
    for (int i = 0; i < list.size(); ++i) {
      std::string label = fmt::format("command.{}[{}]", field, i);
      auto [it, inserted] = first.emplace(list[i], label);
      if (!inserted) {
        return error(Code::kInvalidArgument, "{} \"{}\" is already listed as {}", label, list[i],
                     it->second);
      }
    }
    return {};
  };
  GOREGO_RETURN_IF_ERROR(unique(cmd.output_paths(), "output_paths"));
  first.clear();
  GOREGO_RETURN_IF_ERROR(unique(cmd.output_files(), "output_files"));
  GOREGO_RETURN_IF_ERROR(unique(cmd.output_directories(), "output_directories"));
  std::unordered_map<std::string_view, int> files;
  for (int i = 0; i < cmd.output_files_size(); ++i) files.emplace(cmd.output_files(i), i);
  for (const auto& [path, label] : first) {
    for (std::size_t slash = path.find('/'); slash != std::string_view::npos;
         slash = path.find('/', slash + 1)) {
      if (auto f = files.find(path.substr(0, slash)); f != files.end()) {
        return error(Code::kInvalidArgument,
                     "command.output_files[{}] \"{}\" is the parent of {} \"{}\"", f->second,
                     f->first, label, path);
      }
    }
  }
  return {};
}

// ---- create_output_parents ------------------------------------------------------------

Status create_output_parents(const re::Command& cmd, const fs::path& exec_root) {
  GOREGO_RETURN_IF_ERROR(validate_paths(cmd));  // never create anything outside exec_root
  const fs::path wd = join(exec_root, cmd.working_directory());
  auto make = [&](const google::protobuf::RepeatedPtrField<std::string>& list,
                  std::string_view field) -> Status {
    for (int i = 0; i < list.size(); ++i) {
      const fs::path parent = fs::path(list[i]).parent_path();
      if (parent.empty()) continue;
      std::error_code ec;
      fs::create_directories(wd / parent, ec);
      if (ec) {
        const Code c = ec == std::errc::file_exists || ec == std::errc::not_a_directory
                           ? Code::kInvalidArgument  // an input is in the way
                           : Code::kInternal;
        return error(c, "cannot create the parent directory \"{}\" of command.{}[{}] \"{}\": {}",
                     parent.string(), field, i, list[i], ec.message());
      }
    }
    return {};
  };
  if (cmd.output_paths_size() > 0) return make(cmd.output_paths(), "output_paths");
  GOREGO_RETURN_IF_ERROR(make(cmd.output_files(), "output_files"));
  // Legacy output directories: the parent only (REAPI), the command creates the directory.
  return make(cmd.output_directories(), "output_directories");
}

// ---- run_command ----------------------------------------------------------------------

RunOutcome run_command(const re::Command& cmd, const fs::path& exec_root_in, const RunOptions& o) {
  using Clock = std::chrono::steady_clock;
  RunOutcome out;
  out.started = std::chrono::system_clock::now();
  auto fail = [&](Status s) {
    out.status = std::move(s);
    out.completed = std::chrono::system_clock::now();
    return out;
  };
  if (cmd.arguments().empty() || cmd.arguments(0).empty()) {
    return fail(error(Code::kInvalidArgument, "command.arguments has no program to run"));
  }
  std::error_code ec;
  const fs::path exec_root = fs::absolute(exec_root_in, ec);
  if (ec) {
    return fail(
        error(Code::kInternal, "exec root \"{}\": {}", exec_root_in.string(), ec.message()));
  }
  const fs::path wd = join(exec_root, cmd.working_directory());

  // Exactly the Command's environment; its PATH (if any) finds the program.
  std::vector<std::string> env;
  std::optional<std::string> path_var;
  env.reserve(static_cast<std::size_t>(cmd.environment_variables_size()));
  for (const auto& e : cmd.environment_variables()) {
    env.push_back(e.name() + "=" + e.value());
    if (e.name() == "PATH") path_var = e.value();
  }
  const std::string& prog = cmd.arguments(0);
  std::string exe =
      prog;  // with a '/': absolute, or relative to the working directory (chdir first)
  if (prog.find('/') == std::string::npos) {
    auto r = search_path(prog, path_var.value_or("/bin:/usr/bin"), wd);
    if (!r) {
      out.exit_code = 127;
      return fail(r.status());
    }
    exe = std::move(*r);
  }
  std::vector<char*> argv;
  argv.reserve(static_cast<std::size_t>(cmd.arguments_size()) + 1);
  for (const auto& a : cmd.arguments()) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  Fd in = above_stdio(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!in)
    return fail(error(Code::kInternal, "cannot open /dev/null: {}", errno_text(errno)));
  auto out_fd = open_capture(o.stdout_path, "stdout");
  if (!out_fd) return fail(out_fd.status());
  Fd err_fd;
  if (!o.stderr_path.empty() && o.stderr_path == o.stdout_path) {
    err_fd = above_stdio(::fcntl(out_fd->get(), F_DUPFD_CLOEXEC, 3));  // one offset: no clobbering
  } else {
    auto e = open_capture(o.stderr_path, "stderr");
    if (!e) return fail(e.status());
    err_fd = std::move(*e);
  }
  if (!err_fd)
    return fail(error(Code::kInternal, "cannot open stderr: {}", errno_text(errno)));
  std::array<int, 2> pipe_fds{};
  if (::pipe2(pipe_fds.data(), O_CLOEXEC) != 0) {
    return fail(error(Code::kInternal, "pipe2: {}", errno_text(errno)));
  }
  Fd report_r(pipe_fds[0]);
  Fd report_w = above_stdio(pipe_fds[1]);
  if (!report_w) return fail(error(Code::kInternal, "pipe2: {}", errno_text(errno)));
  struct rlimit rl {};
  int max_fd = 65535;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    max_fd = static_cast<int>(std::min<rlim_t>(rl.rlim_cur, 1 << 20)) - 1;
  }
  const ChildSetup setup{exe.c_str(),   argv.data(),  envp.data(),    wd.c_str(), in.get(),
                         out_fd->get(), err_fd.get(), report_w.get(), max_fd};

  out.started = std::chrono::system_clock::now();
  const auto start = Clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) return fail(error(Code::kInternal, "fork: {}", errno_text(errno)));
  if (pid == 0) run_child(setup);
  // Also here, so the group exists before any kill(-pid) below, whoever runs first.
  (void)::setpgid(pid, pid);
  if (!o.pgid_file.empty()) {
    // A worker killed now leaves this behind; its next start kills the group first.
    std::ofstream(o.pgid_file) << pid << '\n';
  }
  report_w.reset();
  in.reset();
  out_fd->reset();
  err_fd.reset();

  // The report pipe closes on exec (success) or carries why the child could not get there.
  ChildError ce{};
  ssize_t n = 0;
  do {
    n = ::read(report_r.get(), &ce, sizeof ce);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof ce)) {
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    out.exit_code = 127;
    return fail(child_failure(ce, cmd));
  }

  // Wait for the command without reaping it (WNOWAIT): while it is a zombie its process
  // group id cannot be reused, so the kill(-pid) after it is safe.
  const bool has_deadline = o.timeout.count() > 0;
  const auto deadline = start + o.timeout;
  bool killed = false;
  auto pause = std::chrono::milliseconds(1);
  // A pidfd turns readable when the command exits: the wait wakes at once instead of at the
  // next poll (a 1 ms sleep was a third of the per-action overhead of a short command).
  // Without pidfds (kernels before 5.3) the loop sleeps between checks.
  const Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  while (true) {
    siginfo_t info{};
    const int r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (r == 0 && info.si_pid == pid) break;
    if (r < 0 && errno != EINTR) {
      (void)::kill(-pid, SIGKILL);
      return fail(error(Code::kInternal, "waitid for the command: {}", errno_text(errno)));
    }
    if (!killed && o.cancel != nullptr && o.cancel->load(std::memory_order_relaxed)) {
      out.cancelled = true;
      killed = true;
      (void)::kill(-pid, SIGKILL);
    } else if (!killed && has_deadline && Clock::now() >= deadline) {
      out.timed_out = true;
      killed = true;
      (void)::kill(-pid, SIGKILL);
    }
    if (pidfd) {
      pollfd pfd{.fd = pidfd.get(), .events = POLLIN, .revents = 0};
      (void)::poll(&pfd, 1, 10);  // 10 ms: how often cancel and the deadline are looked at
    } else {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(10));
    }
  }
  (void)::kill(-pid, SIGKILL);  // background children left in the group
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return fail(error(Code::kInternal, "waitpid: {}", errno_text(errno)));
  }
  if (WIFEXITED(st)) {
    out.exit_code = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    out.exit_code = 128 + WTERMSIG(st);
  }
  out.completed = std::chrono::system_clock::now();
  return out;
}

// ---- collect_outputs ------------------------------------------------------------------

Result<Collected> collect_outputs(const re::Command& cmd, const fs::path& exec_root,
                                  const RunOutcome& run, const fs::path& stdout_path,
                                  const fs::path& stderr_path) {
  GOREGO_RETURN_IF_ERROR(validate_paths(cmd));  // never read outside exec_root
  Collected c;
  Collector col(c);
  re::ActionResult& res = c.result;
  const fs::path wd = join(exec_root, cmd.working_directory());
  const auto format = cmd.output_directory_format();

  auto add_file = [&](const std::string& path, const fs::path& abs,
                      const struct stat& st) -> Status {
    auto d = col.file(abs, path);
    if (!d) return d.status();
    re::OutputFile* f = res.add_output_files();
    f->set_path(path);
    *f->mutable_digest() = reapi::to_proto(*d);
    f->set_is_executable((st.st_mode & S_IXUSR) != 0);
    return {};
  };
  auto add_link = [&](google::protobuf::RepeatedPtrField<re::OutputSymlink>* list,
                      const std::string& path, const fs::path& abs) -> Status {
    auto t = Collector::read_link(abs, path);
    if (!t) return t.status();
    re::OutputSymlink* l = list->Add();
    l->set_path(path);
    l->set_target(std::move(*t));
    return {};
  };
  auto odd_type = [](std::string_view label, const std::string& path, const struct stat& st) {
    return error(Code::kInvalidArgument,
                 "{} \"{}\" is not a regular file, directory or symlink (mode {:o})", label, path,
                 st.st_mode);
  };

  if (cmd.output_paths_size() > 0) {
    for (int i = 0; i < cmd.output_paths_size(); ++i) {
      const std::string& path = cmd.output_paths(i);
      const fs::path abs = join(wd, path);
      auto st = lstat_output(abs, path);
      if (!st) return st.status();
      if (!st->has_value()) continue;
      const struct stat& s = **st;
      if (S_ISREG(s.st_mode)) {
        GOREGO_RETURN_IF_ERROR(add_file(path, abs, s));
      } else if (S_ISDIR(s.st_mode)) {
        GOREGO_RETURN_IF_ERROR(col.directory(abs, path, path, format));
      } else if (S_ISLNK(s.st_mode)) {
        GOREGO_RETURN_IF_ERROR(add_link(res.mutable_output_symlinks(), path, abs));
      } else {
        return odd_type(fmt::format("command.output_paths[{}]", i), path, s);
      }
    }
  } else {
    for (int i = 0; i < cmd.output_files_size(); ++i) {
      const std::string& path = cmd.output_files(i);
      const fs::path abs = join(wd, path);
      auto st = lstat_output(abs, path);
      if (!st) return st.status();
      if (!st->has_value()) continue;
      const struct stat& s = **st;
      if (S_ISREG(s.st_mode)) {
        GOREGO_RETURN_IF_ERROR(add_file(path, abs, s));
      } else if (S_ISLNK(s.st_mode)) {
        GOREGO_RETURN_IF_ERROR(add_link(res.mutable_output_file_symlinks(), path, abs));
      } else if (S_ISDIR(s.st_mode)) {
        return error(
            Code::kInvalidArgument,
            "command.output_files[{}] \"{}\" is a directory; declare it in output_directories", i,
            path);
      } else {
        return odd_type(fmt::format("command.output_files[{}]", i), path, s);
      }
    }
    for (int i = 0; i < cmd.output_directories_size(); ++i) {
      const std::string& path = cmd.output_directories(i);
      const fs::path abs = join(wd, path);
      auto st = lstat_output(abs, path);
      if (!st) return st.status();
      if (!st->has_value()) continue;
      const struct stat& s = **st;
      if (S_ISDIR(s.st_mode)) {
        GOREGO_RETURN_IF_ERROR(col.directory(abs, path, path, format));
      } else if (S_ISLNK(s.st_mode)) {
        GOREGO_RETURN_IF_ERROR(add_link(res.mutable_output_directory_symlinks(), path, abs));
      } else if (S_ISREG(s.st_mode)) {
        return error(
            Code::kInvalidArgument,
            "command.output_directories[{}] \"{}\" is a regular file; declare it in output_files",
            i, path);
      } else {
        return odd_type(fmt::format("command.output_directories[{}]", i), path, s);
      }
    }
  }

  GOREGO_RETURN_IF_ERROR(capture_stream(col, stdout_path, "stdout", res.mutable_stdout_digest()));
  GOREGO_RETURN_IF_ERROR(capture_stream(col, stderr_path, "stderr", res.mutable_stderr_digest()));
  res.set_exit_code(run.exit_code);
  auto* meta = res.mutable_execution_metadata();
  if (run.started.time_since_epoch().count() != 0) {
    set_timestamp(meta->mutable_execution_start_timestamp(), run.started);
  }
  if (run.completed.time_since_epoch().count() != 0) {
    set_timestamp(meta->mutable_execution_completed_timestamp(), run.completed);
  }
  return c;
}

// ---- remove_tree ----------------------------------------------------------------------

void remove_tree(const fs::path& p) {
  make_removable(p);
  std::error_code ec;
  fs::remove_all(p, ec);  // removes symlinks themselves, never what they point to
}

}  // namespace gorego::worker
