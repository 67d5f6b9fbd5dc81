#pragma once
/// The worker's part of running one action, independent of how the worker talks to the
/// scheduler: lay out the input root, run the command in its own process group, collect the
/// outputs into an ActionResult and the list of blobs to upload. Tested on an in-memory CAS
/// (test/worker/runner_test.cpp); `gorego-worker` supplies an InputSource over its local cache.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "build/bazel/remote/execution/v2/remote_execution.pb.h"

#include <gorego/core/digest.hpp>
#include <gorego/core/status.hpp>

namespace gorego::worker {

namespace re = build::bazel::remote::execution::v2;

/// Where input blobs come from.
class InputSource {
 public:
  virtual ~InputSource() = default;
  /// Makes every digest available to `place`, fetching what is not held yet. The digests
  /// nobody has are appended to `missing` and the status is FAILED_PRECONDITION.
  virtual Status prefetch(std::span<const Digest> ds, std::vector<Digest>& missing) = 0;
  /// The bytes of a (small) blob: Directory messages of the input tree.
  virtual Result<std::string> get(const Digest& d) = 0;
  /// Creates the file `path` (which does not exist) holding the blob: a hard link into the
  /// cache or a copy. An executable file gets mode 0555, others 0444. Never called for the
  /// empty blob: materialise_inputs creates empty files itself.
  virtual Status place(const Digest& d, const std::filesystem::path& path, bool executable) = 0;
};

/// Lays out the Directory tree `root` under `dir` (which exists and is empty): directories,
/// files (through `src.place`) and symlinks. Directory blobs are read with `src.get`, file
/// blobs are prefetched in one call first. Missing blobs (directories or files) are listed
/// in `missing` with FAILED_PRECONDITION; a malformed Directory (a name with '/', "." or
/// "..", duplicate names, an absolute or escaping symlink target) is INVALID_ARGUMENT naming it.
Status materialise_inputs(InputSource& src, const Digest& root, const std::filesystem::path& dir,
                          std::vector<Digest>& missing);

/// Checks a Command before anything runs: INVALID_ARGUMENT naming the field
/// ("command.arguments is empty", "command.output_paths[2] \"../x\" leaves the working directory", ...).
Status validate_command(const re::Command& cmd);

/// Creates the parent directories of every output path under the working directory (REAPI:
/// the server creates them, the command may expect them).
Status create_output_parents(const re::Command& cmd, const std::filesystem::path& exec_root);

struct RunOptions {
  std::chrono::milliseconds timeout{0};          ///< 0: none
  const std::atomic<bool>* cancel = nullptr;     ///< set to kill the action early
  std::filesystem::path stdout_path, stderr_path;  ///< files to capture into (outside exec_root)
  /// When set, the command's process group id is written there once it exists (so that a
  /// restarted worker can kill what a killed one left running).
  std::filesystem::path pgid_file;
};

struct RunOutcome {
  int exit_code = -1;
  bool timed_out = false;
  bool cancelled = false;
  Status status;  ///< not OK only when the command could not be started (e.g. no such program)
  std::chrono::system_clock::time_point started, completed;
};

/// Runs the command: fork, a new process group, the working directory under `exec_root`,
/// exactly the Command's environment, argv[0] looked up in the Command's PATH (or
/// /bin:/usr/bin) when it has no '/'. stdout/stderr go to the files of `o`. On timeout or
/// cancel the whole process group is killed (SIGKILL); after the command exits, whatever is
/// left in its process group is killed too, so no orphans outlive the action.
RunOutcome run_command(const re::Command& cmd, const std::filesystem::path& exec_root, const RunOptions& o);

/// A blob to upload: from a file (`file` not empty) or from memory.
struct Upload {
  Digest digest;
  std::filesystem::path file;
  std::string bytes;
};

struct Collected {
  re::ActionResult result;
  std::vector<Upload> uploads;  ///< every blob the result refers to, each digest once
};

/// Collects the outputs of a finished command. With `output_paths` (REAPI >= 2.1) each path
/// is reported by what it is (file, directory as a Tree, or symlink in `output_symlinks`);
/// otherwise `output_files`/`output_directories`, with symlinks in `output_file_symlinks` /
/// `output_directory_symlinks`. Paths are relative to the working directory; absent outputs
/// are skipped. Output directories follow `output_directory_format` (Tree by default; the
/// Tree's children each once). Executable bits come from the file mode. stdout and stderr
/// are uploaded as blobs and referenced by digest; the exit code is set from `run`.
Result<Collected> collect_outputs(const re::Command& cmd, const std::filesystem::path& exec_root,
                                  const RunOutcome& run, const std::filesystem::path& stdout_path,
                                  const std::filesystem::path& stderr_path);

/// Deletes a directory tree even where the action made parts of it read-only.
void remove_tree(const std::filesystem::path& p);

}  // namespace gorego::worker
