#pragma once
/// WriteBackJournal: the durable record of a write-back queue (upstream mode `back`), so
/// that an upload acknowledged to a client but not yet sent upstream survives a crash.
///
/// An append-only text file. `record` writes `A <seq> <c|a> <function> <hash> <size>` for a
/// queued upload of a CAS blob or an ActionResult; `sync` (with `fsync`) makes it durable
/// (the caller acknowledges its client after that); `done` writes
/// `D <seq>` once the upload landed or was given up, without a sync (a lost `D` costs one
/// repeated, idempotent upload). `open` replays the file: entries without a `D` are
/// `pending()`, in queue order; lines that do not parse (the unsynced tail a crash can
/// leave) are skipped and counted, and a file that is not a journal fails `open`. It then
/// rewrites the file with only the pending entries, so the file holds O(queue) lines
/// after every start. `reset_if_idle` truncates it when the queue is empty.
/// Thread safety: every member may be called concurrently.
///
///   auto j = WriteBackJournal::open(dir / "write-back.journal", {.fsync = true});
///   for (const auto& p : (*j)->pending()) requeue(p.key, p.seq);
///   auto seq = (*j)->record({d, Tree::kCas});
///   (*j)->sync();  // durable now: acknowledge
///   ... upload ...; (*j)->done(*seq);

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <gorego/core/digest.hpp>
#include <gorego/core/files.hpp>
#include <gorego/core/status.hpp>

namespace gorego {

class WriteBackJournal {
 public:
  static constexpr std::string_view kHeader = "gorego write-back journal 1\n";

  struct Options {
    bool fsync = true;  ///< `add` returns once the entry is on stable storage
  };
  struct Pending {
    std::uint64_t seq;
    ObjectKey key;
  };

  static Result<std::unique_ptr<WriteBackJournal>> open(const std::filesystem::path& path, Options o) {
    std::unique_ptr<WriteBackJournal> j(new WriteBackJournal(path, o));
    std::error_code ec;
    if (!path.parent_path().empty()) std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) return error(Code::kInternal, "cannot create {}: {}", path.parent_path().string(), ec.message());
    if (std::filesystem::exists(path, ec)) {
      auto text = read_whole_file(path, "write-back journal");
      if (!text) return text.error();
      GOREGO_RETURN_IF_ERROR(j->replay(*text));
    }
    GOREGO_RETURN_IF_ERROR(j->rewrite());
    return j;
  }

  WriteBackJournal(const WriteBackJournal&) = delete;
  WriteBackJournal& operator=(const WriteBackJournal&) = delete;
  ~WriteBackJournal() {
    if (fd_ >= 0) ::close(fd_);
  }

  /// What `open` found still to upload, oldest first.
  [[nodiscard]] const std::vector<Pending>& pending() const { return pending_; }

  /// Records a queued upload of `k`; durable once `sync` returned (`fsync` set).
  Result<std::uint64_t> record(const ObjectKey& k) {
    std::lock_guard lock(mu_);
    const std::uint64_t seq = next_++;
    GOREGO_RETURN_IF_ERROR(append(entry_line(seq, k)));
    return seq;
  }
  /// Makes what `record` wrote durable (nothing without `fsync`). Not under the caller's
  /// locks: concurrent callers share the device flushes instead of queueing behind them.
  Status sync() {
    if (opt_.fsync && ::fdatasync(fd_) != 0) return errno_error("cannot sync the write-back journal {}", path_.string());
    return {};
  }

  /// Records that the upload `seq` needs no more attempts (it landed, or was given up).
  Status done(std::uint64_t seq) {
    std::lock_guard lock(mu_);
    return append(fmt::format("D {}\n", seq));
  }

  /// Empties the file when nothing is pending (`idle`: the queue is empty and no upload
  /// runs; the caller holds the lock that makes that true) and it has grown past `bytes`.
  Status reset_if_idle(std::uint64_t bytes = std::uint64_t{1} << 20) {
    std::lock_guard lock(mu_);
    if (size_ < bytes) return {};
    if (::ftruncate(fd_, 0) != 0) return errno_error("cannot truncate the write-back journal {}", path_.string());
    size_ = 0;
    return append(std::string(kHeader));
  }

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  /// Lines `open` could not parse and skipped (the unsynced tail of a crash).
  [[nodiscard]] std::size_t skipped() const { return skipped_; }

 private:
  WriteBackJournal(std::filesystem::path p, Options o) : path_(std::move(p)), opt_(o) {}

  template <class... A>
  Status errno_error(fmt::format_string<A...> f, A&&... a) {
    const int e = errno;
    return error(Code::kInternal, "{}: {}", fmt::format(f, std::forward<A>(a)...), std::strerror(e));
  }

  Status append(std::string_view line) {
    const std::size_t n = line.size();
    while (!line.empty()) {
      const ssize_t w = ::write(fd_, line.data(), line.size());
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOSPC) return error(Code::kResourceExhausted, "write-back journal {}: no space left", path_.string());
        return errno_error("cannot write the write-back journal {}", path_.string());
      }
      line.remove_prefix(static_cast<std::size_t>(w));
    }
    size_ += n;
    return {};
  }

  static std::string entry_line(std::uint64_t seq, const ObjectKey& k) {
    return fmt::format("A {} {} {} {} {}\n", seq, k.tree == Tree::kAc ? 'a' : 'c', static_cast<int>(k.digest.function),
                       to_hex(k.digest.hash), k.digest.size);
  }

  static bool number(std::string_view s, std::uint64_t& out) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size() && !s.empty();
  }

  /// One line of the file without its newline into `added` or `finished`; false when it
  /// does not parse.
  static bool parse_line(std::string_view line, std::map<std::uint64_t, ObjectKey>& added) {
    std::vector<std::string_view> f;
    while (!line.empty()) {
      const std::size_t sp = line.find(' ');
      f.push_back(line.substr(0, sp));
      if (sp == std::string_view::npos) break;
      line.remove_prefix(sp + 1);
    }
    std::uint64_t seq = 0;
    if (f.size() == 2 && f[0] == "D" && number(f[1], seq)) {
      added.erase(seq);
      return true;
    }
    std::uint64_t fn = 0;
    std::uint64_t size = 0;
    if (f.size() != 6 || f[0] != "A" || !number(f[1], seq) || (f[2] != "a" && f[2] != "c") || !number(f[3], fn) ||
        fn > static_cast<std::uint64_t>(kLastDigestFunction) || !number(f[5], size)) {
      return false;
    }
    auto d = Digest::parse(f[4], static_cast<std::int64_t>(size), static_cast<DigestFunction>(fn));
    if (!d) return false;
    added[seq] = ObjectKey{*d, f[2] == "a" ? Tree::kAc : Tree::kCas};
    return true;
  }

  Status replay(std::string_view text) {
    if (!text.starts_with(kHeader)) {
      if (text.empty() || std::string_view(kHeader).starts_with(text)) return {};  // torn at birth
      return error(Code::kDataLoss, "{} is not a gorego write-back journal (first line {:?})", path_.string(),
                   text.substr(0, std::min<std::size_t>(text.find('\n'), 80)));
    }
    text.remove_prefix(kHeader.size());
    std::map<std::uint64_t, ObjectKey> added;
    std::uint64_t max_seq = 0;
    while (!text.empty()) {
      const std::size_t nl = text.find('\n');
      if (nl == std::string_view::npos) break;  // the last line, torn by a crash: never acknowledged
      const std::string_view line = text.substr(0, nl);
      text.remove_prefix(nl + 1);
      if (!parse_line(line, added)) {
        // Only lines never synced can be damaged (an `A` line is synced before its upload
        // is acknowledged; a `D` line is not): the tail of a crash. Skipped, counted.
        ++skipped_;
        continue;
      }
      std::uint64_t seq = 0;
      if (const std::size_t sp = line.find(' ', 2); number(line.substr(2, sp - 2), seq)) max_seq = std::max(max_seq, seq);
    }
    for (const auto& [seq, key] : added) pending_.push_back({seq, key});
    next_ = max_seq + 1;
    return {};
  }

  /// Writes a fresh file holding the pending entries (a temporary renamed into place), and
  /// keeps it open for appending.
  Status rewrite() {
    const std::filesystem::path tmp = path_.string() + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return errno_error("cannot create {}", tmp.string());
    fd_ = fd;
    size_ = 0;
    GOREGO_RETURN_IF_ERROR(append(kHeader));
    for (const Pending& p : pending_) {
      GOREGO_RETURN_IF_ERROR(append(entry_line(p.seq, p.key)));
    }
    if (opt_.fsync && ::fsync(fd_) != 0) return errno_error("cannot sync {}", tmp.string());
    std::error_code ec;
    std::filesystem::rename(tmp, path_, ec);
    if (ec) return error(Code::kInternal, "cannot rename {} to {}: {}", tmp.string(), path_.string(), ec.message());
    if (opt_.fsync) {
      const int dir = ::open(path_.parent_path().empty() ? "." : path_.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
      }
    }
    return {};
  }

  std::filesystem::path path_;
  Options opt_;
  std::mutex mu_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::uint64_t next_ = 1;
  std::vector<Pending> pending_;
  std::size_t skipped_ = 0;
};

}  // namespace gorego
