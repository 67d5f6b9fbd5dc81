#pragma once
/// ShardedDisk: a StorageBackend on a local filesystem.
///
/// Layout under `root`:
///   cas/ab/cd/<hash>          CAS blobs, named by their lower-case hex SHA-256
///   cas/ab/cd/<hash>.b3       CAS blobs of the BLAKE3 keyspace, named by their BLAKE3
///   cas/ab/cd/.tmp-<run>-<n>  an upload replacing an existing name, or any upload in progress
///                             on a filesystem without O_TMPFILE
///   ac-log/<seq>.log          the ActionCache: serialized ActionResults keyed by the Action
///                             digest, appended to segment files (see ActionLog)
///   LOCK                      flock()ed by the one process that owns the directory
///   index.snapshot            the index as of the last clean stop (read and deleted at start)
/// The per-file ActionCache of older versions (`ac/ab/cd/<hash>-<size>`) is moved into the
/// log at `init`. CAS writes go to a file in the object's own shard directory while
/// hashing; `commit` verifies the digest, optionally fsyncs file and directory, and puts the
/// file in place. The file is unnamed (O_TMPFILE) and commit links it under its final name:
/// one directory update instead of a create and a rename, and nothing left behind by a
/// crash. Where the name exists (a concurrent upload of the same blob, a damaged leftover),
/// the file is linked under a temporary name and renamed over it. Filesystems
/// without O_TMPFILE get a named temporary file renamed into place (a rename within one
/// directory). A crash at any point leaves either no file or a complete, verified one at
/// the final name; temporary files of earlier runs (another `<run>` tag) are deleted by
/// the walk at start, and a `tmp/` of older versions at init.
/// `put_batch` writes several blobs and makes them durable with one `syncfs`, shared by
/// concurrent batches (group commit). Reads from offset 0 can re-hash what they return and
/// fail with DATA_LOSS rather than complete on bytes that do not match (per call, or
/// `verify_reads` by default). The 256 first-level directories of `cas/` are created at
/// `init` and kept open: every file operation resolves two path components from one of them
/// (`openat` and friends), not the whole path from `/` (the path walk was a sixth of the
/// CPU of a small-blob read).
/// Thread safety: every member may be called concurrently.

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <random>
#include <vector>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <gorego/concepts/blob_store.hpp>
#include <gorego/concepts/storage_backend.hpp>
#include <gorego/hash/content_hash.hpp>
#include <gorego/hash/sha256.hpp>
#include <gorego/store/action_log.hpp>
#include <gorego/store/detail/file.hpp>
#include <gorego/store/detail/group_sync.hpp>

namespace gorego {

class ShardedDisk {
 public:
  static constexpr std::string_view kName = "disk";

  struct Options {
    std::filesystem::path root = "gorego-data";
    bool fsync = true;               ///< fsync file and directory before acknowledging a write
    bool verify_reads = true;        ///< default of the two-argument reads: re-hash full reads
    std::uint64_t block_size = 4096; ///< accounting granularity of `footprint`
  };

  explicit ShardedDisk(Options o)
      : opt_(std::move(o)),
        root_(opt_.root.string()),
        run_(fmt::format("{:016x}", std::random_device{}() * 0x100000001ull ^ ::getpid())),
        actions_(ActionLog::Options{.dir = opt_.root / "ac-log", .fsync = opt_.fsync, .block_size = opt_.block_size}) {}
  ShardedDisk(const ShardedDisk&) = delete;
  ShardedDisk& operator=(const ShardedDisk&) = delete;

  /// Creates the layout, takes the directory lock, deletes leftovers of interrupted
  /// uploads, replays the ActionCache log and moves an older version's per-file
  /// ActionCache into it. Errors name the directory and the system error.
  Status init() {
    std::error_code ec;
    std::filesystem::create_directories(opt_.root / "cas", ec);
    if (ec) {
      return error(Code::kFailedPrecondition, "cannot create data directory {}: {}",
                   (opt_.root / "cas").string(), ec.message());
    }
    lock_ = detail::Fd(::open((opt_.root / "LOCK").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    if (!lock_) {
      return error(Code::kFailedPrecondition, "data directory {} is not writable: {}",
                   opt_.root.string(), detail::errno_text(errno));
    }
    if (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0) {
      return error(Code::kFailedPrecondition,
                   "data directory {} is in use by another gorego process", opt_.root.string());
    }
    std::filesystem::remove_all(opt_.root / "tmp", ec);  // uploads in progress, older versions
    GOREGO_RETURN_IF_ERROR(open_top_dirs());
    root_fd_ = detail::Fd(::open(opt_.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    // Probe that we can really write there (a read-only mount passes the checks above).
    detail::Fd probe(::open((opt_.root / "cas").c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644));
    if (!root_fd_ || (!probe && errno != EOPNOTSUPP && errno != EISDIR)) {
      return error(Code::kFailedPrecondition, "data directory {} is not writable: {}",
                   opt_.root.string(), detail::errno_text(errno));
    }
    if (probe) {  // can unnamed files be given a name (needs /proc)? A fixed name: the
                  // directory is ours alone, and a crash here leaves no second file.
      const int dir = top_[0].get();
      const char* name = ".tmp-probe";
      ::unlinkat(dir, name, 0);
      anonymous_ = ::linkat(AT_FDCWD, fd_link(probe.get()).c_str(), dir, name, AT_SYMLINK_FOLLOW) == 0;
      ::unlinkat(dir, name, 0);
    }
    GOREGO_RETURN_IF_ERROR(actions_.open());
    return import_legacy_actions();
  }

  [[nodiscard]] const Options& options() const { return opt_; }

  class Reader {
   public:
    Reader(detail::Fd fd, Digest d, std::uint64_t offset, bool verify)
        : fd_(std::move(fd)), digest_(d), pos_(offset), verify_(verify && offset == 0), hasher_(d.function) {}
    Result<std::size_t> read(std::span<char> buf) {
      const std::size_t want = std::min<std::uint64_t>(buf.size(), remaining());
      if (want == 0) return finish();
      std::size_t got = 0;
      while (got < want) {
        const ssize_t n = ::pread(fd_.get(), buf.data() + got, want - got,
                                  static_cast<off_t>(pos_ + got));
        if (n < 0) {
          if (errno == EINTR) continue;
          return error(Code::kInternal, "reading blob {}: {}", digest_, detail::errno_text(errno));
        }
        if (n == 0) {
          return error(Code::kDataLoss, "blob {} is shorter on disk than its digest", digest_);
        }
        got += static_cast<std::size_t>(n);
      }
      if (verify_) hasher_.update({buf.data(), got});
      pos_ += got;
      if (remaining() == 0) GOREGO_RETURN_IF_ERROR(finish().status());
      return got;
    }
    [[nodiscard]] std::uint64_t remaining() const {
      return static_cast<std::uint64_t>(digest_.size) - pos_;
    }
    /// `read` that never waits for the disk: nullopt, with nothing consumed, unless all of the
    /// next `buf.size()` bytes (or all that remain) are in the page cache (and the reader is
    /// not hashing), so the caller can do the blocking read on a thread meant for it.
    std::optional<Result<std::size_t>> read_cached(std::span<char> buf) {
      const std::size_t want = std::min<std::uint64_t>(buf.size(), remaining());
      static std::atomic<bool> unsupported{false};  // a kernel or filesystem without RWF_NOWAIT
      if (verify_ || want == 0 || unsupported.load(std::memory_order_relaxed)) return std::nullopt;
      iovec iov{buf.data(), want};
      const ssize_t n = ::preadv2(fd_.get(), &iov, 1, static_cast<off_t>(pos_), RWF_NOWAIT);
      if (n < 0 && errno == EOPNOTSUPP) unsupported.store(true, std::memory_order_relaxed);
      // EAGAIN: not cached; 0: a short file, for read() to report; a part: all or nothing, so
      // that chunks stay whole (the pool's read copies it again).
      if (n <= 0 || static_cast<std::size_t>(n) < want) return std::nullopt;
      pos_ += static_cast<std::uint64_t>(n);
      return static_cast<std::size_t>(n);
    }

   private:
    Result<std::size_t> finish() {
      if (verify_) {
        verify_ = false;
        if (const Hash256 h = hasher_.finish(); h != digest_.hash) {
          return error(Code::kDataLoss, "blob {} on disk hashes to {}", digest_, to_hex(h));
        }
      }
      return std::size_t{0};
    }

    detail::Fd fd_;
    Digest digest_;
    std::uint64_t pos_;
    bool verify_;
    ContentHasher hasher_;
  };

  class Writer {
   public:
    /// `tmp` is the temporary file's full path (for messages; the file operations use its
    /// part below the first-level directory), or with `anonymous` the path of the directory
    /// where an unnamed (O_TMPFILE) file will be linked.
    Writer(ShardedDisk* owner, ObjectKey key, detail::Fd fd, std::string tmp, bool created_dirs, bool anonymous)
        : owner_(owner), key_(key), fd_(std::move(fd)), tmp_(std::move(tmp)), hasher_(key.digest.function),
          created_dirs_(created_dirs), anonymous_(anonymous) {}
    Writer(Writer&& o) noexcept
        : owner_(o.owner_),
          key_(o.key_),
          fd_(std::move(o.fd_)),
          tmp_(std::exchange(o.tmp_, {})),
          hasher_(std::move(o.hasher_)),
          written_(o.written_),
          created_dirs_(o.created_dirs_),
          anonymous_(o.anonymous_) {}
    Writer& operator=(Writer&& o) noexcept {
      if (this != &o) {
        abort();
        owner_ = o.owner_;
        key_ = o.key_;
        fd_ = std::move(o.fd_);
        tmp_ = std::exchange(o.tmp_, {});
        hasher_ = std::move(o.hasher_);
        written_ = o.written_;
        created_dirs_ = o.created_dirs_;
        anonymous_ = o.anonymous_;
      }
      return *this;
    }
    ~Writer() { abort(); }

    Status append(std::string_view data) {
      if (tmp_.empty()) return error(Code::kFailedPrecondition, "write of {} already finished", key_.digest);
      const auto size = static_cast<std::uint64_t>(key_.digest.size);
      if (written_ + data.size() > size) {
        return error(Code::kInvalidArgument, "{} bytes written exceed the size of blob {}",
                     written_ + data.size(), key_.digest);
      }
      GOREGO_RETURN_IF_ERROR(detail::write_all(fd_.get(), data, tmp_));
      hasher_.update(data);
      written_ += data.size();
      return {};
    }

    Status commit() { return commit(owner_->opt_.fsync); }

    /// Verifies and publishes; with `sync` the file and its directory are durable first.
    Status commit(bool sync) {
      if (tmp_.empty()) return error(Code::kFailedPrecondition, "write of {} already finished", key_.digest);
      if (written_ != static_cast<std::uint64_t>(key_.digest.size)) {
        return error(Code::kInvalidArgument, "blob {} received {} bytes, expected {}",
                     key_.digest, written_, key_.digest.size);
      }
      if (const Hash256 h = hasher_.finish(); h != key_.digest.hash) {
        return error(Code::kInvalidArgument, "data hashes to {}, not to the digest's {}",
                     to_hex(h), key_.digest.hex());
      }
      if (sync && ::fdatasync(fd_.get()) != 0) {
        const Code c = detail::write_error_code(errno);
        return error(c, "fsync of {}: {}", tmp_, detail::errno_text(errno));
      }
      if (anonymous_) {
        GOREGO_RETURN_IF_ERROR(owner_->publish_anonymous(fd_.get(), key_, sync, created_dirs_));
        fd_.reset();
      } else {
        fd_.reset();
        GOREGO_RETURN_IF_ERROR(owner_->publish(tmp_, key_, sync, created_dirs_));
      }
      tmp_.clear();
      return {};
    }

    [[nodiscard]] std::uint64_t written() const { return written_; }

   private:
    void abort() {
      fd_.reset();
      if (!tmp_.empty() && !anonymous_) ::unlinkat(owner_->top_fd(key_), owner_->below_top(tmp_), 0);
      tmp_.clear();
    }

    ShardedDisk* owner_;
    ObjectKey key_;
    detail::Fd fd_;
    std::string tmp_;
    ContentHasher hasher_;
    std::uint64_t written_ = 0;
    bool created_dirs_ = false;
    bool anonymous_ = false;
  };

  /// Stores each blob as `put` does; with `fsync` they become durable together through one
  /// group `syncfs` of the data directory, shared with concurrent batches. `out[i]` is the
  /// result for `in[i]`; a failed sync fails every blob that was written.
  void put_batch(std::span<const BlobWrite> in, std::span<Status> out) {
    bool any = false;
    for (std::size_t i = 0; i < in.size(); ++i) {
      out[i] = write_object({in[i].digest, Tree::kCas}, in[i].data, /*sync=*/false);
      any = any || out[i].ok();
    }
    if (!opt_.fsync || !any) return;
    if (const Status s = sync_all(); !s.ok()) {
      for (Status& o : out) {
        if (o.ok()) o = s;
      }
    }
  }

  Result<std::string> get(const Digest& d) { return get(d, opt_.verify_reads); }
  /// As `get`, re-hashing the bytes when `verify` (DATA_LOSS when they do not match).
  Result<std::string> get(const Digest& d, bool verify) {
    auto r = open_read(d, 0, verify);
    if (!r) return r.error();
    std::string out(static_cast<std::size_t>(d.size), '\0');
    std::size_t off = 0;
    while (true) {
      auto n = r->read({out.data() + off, out.size() - off});
      if (!n) return n.error();
      if (*n == 0) break;
      off += *n;
    }
    return out;
  }

  Status put(const Digest& d, std::string_view data) { return write_object({d, Tree::kCas}, data); }

  Result<Reader> open_read(const Digest& d, std::uint64_t offset) {
    return open_read(d, offset, opt_.verify_reads);
  }
  /// As `open_read`; a read from offset 0 re-hashes the blob when `verify`.
  Result<Reader> open_read(const Digest& d, std::uint64_t offset, bool verify) {
    const ObjectKey k{d, Tree::kCas};
    const std::string p = path(k);
    detail::Fd fd(::openat(top_fd(k), below_top(p), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) return error(Code::kNotFound, "blob {} not found", d);
      return error(Code::kInternal, "opening {}: {}", p, detail::errno_text(errno));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      return error(Code::kInternal, "stat of {}: {}", p, detail::errno_text(errno));
    }
    if (st.st_size != d.size) {
      return error(Code::kDataLoss, "blob {} has {} bytes on disk", d, st.st_size);
    }
    if (offset > static_cast<std::uint64_t>(d.size)) {
      return error(Code::kOutOfRange, "read offset {} is past the end of blob {}", offset, d);
    }
    return Reader(std::move(fd), d, offset, verify);
  }

  Result<Writer> open_write(const Digest& d) { return open_writer({d, Tree::kCas}); }

  Result<std::string> get_action(const Digest& d) { return actions_.get(d); }
  Status put_action(const Digest& d, std::string_view bytes) { return actions_.put(d, bytes); }

  std::optional<std::uint64_t> stat(const ObjectKey& k) {
    if (k.tree == Tree::kAc) return actions_.stat(k.digest);
    struct stat st {};
    if (::fstatat(top_fd(k), below_top(path(k)), &st, 0) != 0) return std::nullopt;
    if (st.st_size != k.digest.size) return std::nullopt;
    return static_cast<std::uint64_t>(st.st_size);
  }

  /// Deletes the object. A CAS file whose size is not the key's is left alone: it is a
  /// different (damaged or since rewritten) file at the same path.
  void remove(const ObjectKey& k) {
    if (k.tree == Tree::kAc) return actions_.remove(k.digest);
    const std::string p = path(k);
    const char* rel = below_top(p);
    struct stat st {};
    if (::fstatat(top_fd(k), rel, &st, 0) != 0 || st.st_size != k.digest.size) return;
    ::unlinkat(top_fd(k), rel, 0);
  }

  /// Marks an object as just used, for the atime janitor on noatime/relatime mounts.
  void touch(const ObjectKey& k) {
    if (k.tree == Tree::kAc) return actions_.touch(k.digest);
    const struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    ::utimensat(top_fd(k), below_top(path(k)), times, 0);
  }

  /// Walks cas/, then lists the ActionCache log's entries; safe to run while the store is
  /// in use (entries that appear or vanish during the walk may or may not be reported).
  template <class F>
  void for_each_entry(F&& fn) {
    for_each_dir(opt_.root / "cas", [&](const std::filesystem::path& l1) {
      for_each_dir(l1, [&](const std::filesystem::path& l2) { scan_leaf(l2, fn); });
    });
    actions_.for_each([&](const Digest& d, std::uint64_t bytes, std::int64_t atime) {
      fn(ObjectKey{d, Tree::kAc}, bytes, atime);
    });
  }

  /// The ActionCache log (statistics, compaction; tests).
  ActionLog& action_log() { return actions_; }

  /// Where Local keeps its index snapshot between a clean stop and the next start.
  [[nodiscard]] std::filesystem::path snapshot_path() const { return opt_.root / "index.snapshot"; }

  [[nodiscard]] std::uint64_t footprint(std::uint64_t bytes) const {
    return detail::block_footprint(bytes, opt_.block_size);
  }

  /// The file of a CAS blob (ActionCache entries have none: they live in the log).
  [[nodiscard]] std::string path(const ObjectKey& k) const {
    const std::string hex = k.digest.hex();
    std::string p;
    p.reserve(root_.size() + 80);
    p += root_;
    p += "/cas/";
    p.append(hex, 0, 2).append("/").append(hex, 2, 2).append("/").append(hex);
    if (k.digest.function == DigestFunction::kBlake3) p += kBlake3Suffix;
    return p;
  }

 private:
  static constexpr std::string_view kTempPrefix = ".tmp-";
  /// A BLAKE3 blob's file is its hex hash and this suffix (a SHA-256 blob's is the bare
  /// hash), so the two keyspaces never share a file.
  static constexpr std::string_view kBlake3Suffix = ".b3";

  /// A writer for `k`: an unnamed file in the leaf directory (`anonymous_`), or a named
  /// temporary file there; the leaf directory is created if this is its first object.
  Result<Writer> open_writer(const ObjectKey& k) {
    std::string tmp = path(k);
    tmp.resize(tmp.rfind('/') + 1);  // the leaf directory, for an unnamed file
    if (!anonymous_) append_temp_name(tmp);
    const int top = top_fd(k);
    const char* rel = below_top(tmp);
    const std::string leaf(rel, 2);
    const char* target = anonymous_ ? leaf.c_str() : rel;
    const int flags = O_WRONLY | O_CLOEXEC | (anonymous_ ? O_TMPFILE : O_CREAT | O_EXCL);
    detail::Fd fd(::openat(top, target, flags, 0644));
    bool created_dirs = false;
    if (!fd && errno == ENOENT) {  // first object of this leaf directory
      if (::mkdirat(top, leaf.c_str(), 0755) != 0 && errno != EEXIST) {
        return error(Code::kInternal, "creating directory for {}: {}", tmp, detail::errno_text(errno));
      }
      created_dirs = true;
      fd = detail::Fd(::openat(top, target, flags, 0644));
    }
    if (!fd) {
      const Code c = detail::write_error_code(errno);
      return error(c, "creating {}{}: {}", tmp, anonymous_ ? " (an unnamed file)" : "", detail::errno_text(errno));
    }
    return Writer(this, k, std::move(fd), std::move(tmp), created_dirs, anonymous_);
  }

  /// Appends a temporary file name unique to this run (`.tmp-<run>-<n>`) to `dir`.
  void append_temp_name(std::string& dir) {
    fmt::format_to(std::back_inserter(dir), "{}{}-{}", kTempPrefix, run_, counter_.fetch_add(1, std::memory_order_relaxed));
  }

  Status write_object(const ObjectKey& k, std::string_view data) { return write_object(k, data, opt_.fsync); }
  Status write_object(const ObjectKey& k, std::string_view data, bool sync) {
    if (static_cast<std::uint64_t>(k.digest.size) != data.size()) {
      return error(Code::kInvalidArgument, "blob {} has {} bytes, not the {} of its digest",
                   k.digest, data.size(), k.digest.size);
    }
    auto w = open_writer(k);
    if (!w) return w.error();
    GOREGO_RETURN_IF_ERROR(w->append(data));
    return w->commit(sync);
  }

  static std::string fd_link(int fd) { return fmt::format("/proc/self/fd/{}", fd); }

  /// Gives the unnamed file `fd` its final name. If the name exists (a concurrent upload of
  /// the same blob, or a damaged leftover), the new, verified file replaces it through a
  /// temporary name, as `publish` does.
  Status publish_anonymous(int fd, const ObjectKey& k, bool sync, bool created_dirs) {
    const std::string final_path = path(k);
    const int top = top_fd(k);
    const std::string link = fd_link(fd);
    if (::linkat(AT_FDCWD, link.c_str(), top, below_top(final_path), AT_SYMLINK_FOLLOW) == 0) {
      return sync ? sync_leaf(final_path, k, created_dirs) : Status{};
    }
    if (errno != EEXIST) {
      return error(Code::kInternal, "publishing {}: {}", final_path, detail::errno_text(errno));
    }
    std::string tmp = final_path.substr(0, final_path.rfind('/') + 1);
    append_temp_name(tmp);
    if (::linkat(AT_FDCWD, link.c_str(), top, below_top(tmp), AT_SYMLINK_FOLLOW) != 0) {
      return error(Code::kInternal, "publishing {}: {}", tmp, detail::errno_text(errno));
    }
    Status s = publish(tmp, k, sync, created_dirs);
    if (!s.ok()) ::unlinkat(top, below_top(tmp), 0);
    return s;
  }

  /// Makes the directory entry of `final_path` durable (and a new leaf directory's own entry).
  Status sync_leaf(const std::string& final_path, const ObjectKey& k, bool created_dirs) {
    const int top = top_fd(k);
    const std::string leaf(below_top(final_path), 2);
    detail::Fd dir(::openat(top, leaf.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir || ::fsync(dir.get()) != 0 || (created_dirs && ::fsync(top) != 0)) {
      return error(Code::kInternal, "fsync of the directory of {}: {}", final_path, detail::errno_text(errno));
    }
    return {};
  }

  Status publish(const std::string& tmp, const ObjectKey& k, bool sync, bool created_dirs) {
    const std::string final_path = path(k);
    const int top = top_fd(k);
    const char* rel = below_top(final_path);
    if (::renameat(top, below_top(tmp), top, rel) != 0) {
      return error(Code::kInternal, "publishing {}: {}", final_path, detail::errno_text(errno));
    }
    // The rename is durable once the leaf directory is; a new leaf directory needs its
    // parent synced too (the first-level ones were made durable at init).
    return sync ? sync_leaf(final_path, k, created_dirs) : Status{};
  }

  /// Creates (when new) and opens cas/XX for every XX; with `fsync`, makes the new ones
  /// durable.
  Status open_top_dirs() {
    bool created = false;
    const std::filesystem::path base = opt_.root / "cas";
    for (std::size_t i = 0; i < 256; ++i) {
      const std::string p = fmt::format("{}/{:02x}", base.string(), i);
      if (::mkdir(p.c_str(), 0755) == 0) created = true;
      else if (errno != EEXIST) return error(Code::kFailedPrecondition, "cannot create {}: {}", p, detail::errno_text(errno));
      top_[i] = detail::Fd(::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!top_[i]) return error(Code::kFailedPrecondition, "cannot open {}: {}", p, detail::errno_text(errno));
    }
    if (created && opt_.fsync) GOREGO_RETURN_IF_ERROR(sync_dir(base));
    return {};
  }

  /// The open first-level directory that holds CAS blob `k`.
  [[nodiscard]] int top_fd(const ObjectKey& k) const { return top_[k.digest.hash[0]].get(); }
  /// The part of `full` (a path made by `path`) below its first-level directory.
  [[nodiscard]] const char* below_top(const std::string& full) const {
    return full.c_str() + root_.size() + 8;  // "/cas/ab/"
  }

  /// Moves the per-file ActionCache of older versions (`ac/ab/cd/<hash>-<size>`) into the
  /// log and deletes it. An interrupted move is redone whole at the next start: the files
  /// go only after the log holds (with `fsync`: durably) all of them.
  Status import_legacy_actions() {
    const std::filesystem::path legacy = opt_.root / "ac";
    std::error_code ec;
    if (!std::filesystem::is_directory(legacy, ec)) return {};
    std::size_t moved = 0;
    bool keep = false;  // an entry that could be read was not stored: try again next start
    for (auto it = std::filesystem::recursive_directory_iterator(legacy, ec); !ec && it != decltype(it)(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      std::error_code type_ec;
      if (!it->is_regular_file(type_ec) || name.size() < 66 || name[64] != '-') continue;  // and .tmp- leftovers
      auto digest = Digest::parse(std::string_view(name).substr(0, 64), std::strtoll(name.c_str() + 65, nullptr, 10));
      if (!digest) continue;
      std::string bytes;
      Status s = read_legacy_file(it->path(), bytes);
      if (s.ok()) {
        s = actions_.put_deferred(*digest, bytes);
        keep = keep || !s.ok();
      }
      if (!s.ok()) {
        log::warn("an action cache entry of an older version was not moved",
                  {{"file", it->path().string()}, {"error", s.message()}});
        continue;
      }
      ++moved;
    }
    if (ec) return error(Code::kFailedPrecondition, "cannot list {}: {}", legacy.string(), ec.message());
    if (opt_.fsync) GOREGO_RETURN_IF_ERROR(actions_.flush_all());
    if (!keep) std::filesystem::remove_all(legacy, ec);
    if (keep || ec) {  // the next start moves what is left again (the same bytes: harmless)
      log::warn("the action cache directory of an older version stays until all of it is moved",
                {{"dir", legacy.string()}, {"error", ec ? ec.message() : "entries not stored"}});
    }
    log::info("moved the action cache of an older version into ac-log/", {{"entries", std::to_string(moved)}});
    return {};
  }

  /// The bytes of one file of the old per-file ActionCache (at most a log record's payload).
  static Status read_legacy_file(const std::filesystem::path& p, std::string& out) {
    detail::Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0) return error(Code::kInternal, "opening it: {}", detail::errno_text(errno));
    if (static_cast<std::uint64_t>(st.st_size) > ActionLog::kMaxPayload) {
      return error(Code::kInvalidArgument, "{} bytes is more than an action result may have", st.st_size);
    }
    out.resize(static_cast<std::size_t>(st.st_size));
    if (!detail::pread_exact(fd.get(), out, 0)) return error(Code::kInternal, "reading it: {}", detail::errno_text(errno));
    return {};
  }

  /// Waits for a `syncfs` of the data directory's filesystem that started after this call,
  /// shared with concurrent callers (group commit, see GroupSync).
  Status sync_all() {
    return sync_.run([this]() -> Status {
      if (::syncfs(root_fd_.get()) == 0) return {};
      return error(detail::write_error_code(errno), "sync of data directory {}: {}", opt_.root.string(),
                   detail::errno_text(errno));
    });
  }

  static Status sync_dir(const std::filesystem::path& dir) {
    detail::Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd || ::fsync(fd.get()) != 0) {
      return error(Code::kInternal, "fsync of directory {}: {}", dir.string(), detail::errno_text(errno));
    }
    return {};
  }

  struct CloseDir {
    void operator()(DIR* d) const noexcept { ::closedir(d); }
  };
  using DirPtr = std::unique_ptr<DIR, CloseDir>;

  template <class F>
  static void for_each_dir(const std::filesystem::path& dir, F&& fn) {
    const DirPtr d(::opendir(dir.c_str()));
    if (!d) return;
    while (const dirent* e = ::readdir(d.get())) {
      if (e->d_name[0] == '.' || std::strlen(e->d_name) != 2) continue;
      fn(dir / e->d_name);
    }
  }

  template <class F>
  void scan_leaf(const std::filesystem::path& dir, F& fn) {
    const DirPtr d(::opendir(dir.c_str()));
    if (!d) return;
    const int dfd = ::dirfd(d.get());
    while (const dirent* e = ::readdir(d.get())) {
      const std::string_view name = e->d_name;
      if (name.starts_with(kTempPrefix) && name.substr(kTempPrefix.size(), run_.size()) != run_) {
        ::unlinkat(dfd, e->d_name, 0);  // an upload of an earlier run that never finished
        continue;
      }
      DigestFunction function = DigestFunction::kSha256;
      if (name.size() == 64 + kBlake3Suffix.size() && name.ends_with(kBlake3Suffix)) {
        function = DigestFunction::kBlake3;
      } else if (name.size() != 64) {
        continue;
      }
      struct stat st {};
      if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
        continue;
      }
      auto digest = Digest::parse(name.substr(0, 64), st.st_size, function);
      if (!digest) continue;
      const std::int64_t atime = std::int64_t{st.st_atim.tv_sec} * 1'000'000'000 + st.st_atim.tv_nsec;
      fn(ObjectKey{*digest, Tree::kCas}, static_cast<std::uint64_t>(st.st_size), atime);
    }
  }

  Options opt_;
  std::string root_;  // opt_.root as a string: `path` prefixes it
  std::string run_;  // tags this run's temporary files
  detail::Fd lock_;
  detail::Fd root_fd_;
  bool anonymous_ = false;  // writes use O_TMPFILE files, linked at commit
  std::array<detail::Fd, 256> top_;  // by first hash byte: cas/XX
  std::atomic<std::uint64_t> counter_{0};
  detail::GroupSync sync_;  // the group syncfs of put_batch
  ActionLog actions_;
};
static_assert(StorageBackend<ShardedDisk>);

}  // namespace gorego
