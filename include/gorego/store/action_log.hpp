#pragma once
/// ActionLog: ActionCache entries appended to segment files, with an in-memory map from
/// action digest to record. ShardedDisk keeps its ActionCache here instead of one file per
/// entry: an update is one `pwrite` (plus, with `fsync`, a shared `fdatasync`) where a file
/// cost an inode, a directory entry and four system calls (about a third of the server's CPU
/// per UpdateActionResult; see docs/performance.md).
///
/// Layout: `dir/<seq>.log`, `<seq>` 16 hex digits, appended in order; the last one is active.
/// A record is a 72-byte header (magic, kind, payload length, a 64-bit checksum of the whole
/// record, the time it was written, the action digest) and the payload. Kinds: an entry, or
/// a deletion (eviction or a dropped entry). Integers are in host byte order; a log moved to
/// a host of the other order fails the magic check and is set aside as damaged.
///
/// Crash safety: a record counts only when it is whole and its checksum matches. `open`
/// replays the segments in order (the last record of a key wins) and cuts a torn tail off
/// the active segment. With `fsync`, `put` returns once the record is on disk (group commit:
/// concurrent puts share one `fdatasync`); a failed flush makes every later put fail until
/// restart, because the kernel may have dropped the pages it could not write.
///
/// Space: a replaced or deleted entry leaves dead bytes behind. A background thread compacts
/// the oldest segment (copies its live records to the active one, then deletes it) whenever
/// dead bytes exceed `slack_bytes` and the files exceed what the live entries are charged
/// (their size rounded up to `block_size`, as ShardedDisk::footprint charges them) by more
/// than `slack_bytes`. Compacting oldest first keeps deletions correct: no older segment is
/// left whose entries a dropped deletion record would have hidden.
/// Thread safety: every member may be called concurrently.
///
///   ActionLog log({.dir = root / "ac-log", .fsync = true});
///   GOREGO_RETURN_IF_ERROR(log.open());
///   GOREGO_RETURN_IF_ERROR(log.put(action, result_bytes));

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <gorego/core/digest.hpp>
#include <gorego/core/log.hpp>
#include <gorego/core/status.hpp>
#include <gorego/store/detail/file.hpp>
#include <gorego/store/detail/group_sync.hpp>

namespace gorego {

namespace detail {

/// 64-bit checksum for detecting torn and damaged records (not an adversarial hash). The
/// 8 bytes at `skip` (a multiple of 8: where the checksum itself is stored) count as zero.
inline std::uint64_t check64(std::uint64_t h, std::string_view s, std::size_t skip) {
  constexpr std::uint64_t kMul = 0x9e3779b97f4a7c15ULL;
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w = 0;
    if (i != skip) std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
  }
  std::uint64_t w = 0;
  std::memcpy(&w, s.data() + i, s.size() - i);
  h = (h ^ w ^ (static_cast<std::uint64_t>(s.size()) << 56)) * kMul;
  return h ^ (h >> 32);
}

}  // namespace detail

class ActionLog {
 public:
  struct Options {
    std::filesystem::path dir;
    /// `put` returns once the record is on disk.
    bool fsync = true;
    /// A segment is closed once it holds this much.
    std::uint64_t segment_bytes = std::uint64_t{64} << 20;
    /// What an entry is charged against the size limit: its size rounded up to this.
    std::uint64_t block_size = 4096;
    /// Dead bytes tolerated before compaction (see the file comment).
    std::uint64_t slack_bytes = std::uint64_t{8} << 20;
  };

  struct Stats {
    std::size_t entries = 0;
    std::size_t segments = 0;
    std::uint64_t file_bytes = 0;  ///< all segments
    std::uint64_t live_bytes = 0;  ///< records of current entries, headers included
    std::uint64_t compactions = 0;
  };

  static constexpr std::size_t kHeaderBytes = 72;
  /// Largest payload a record holds (the ActionCache service sees far smaller results).
  static constexpr std::uint64_t kMaxPayload = std::uint64_t{1} << 30;

  explicit ActionLog(Options o) : opt_(std::move(o)) {}
  ActionLog(const ActionLog&) = delete;
  ActionLog& operator=(const ActionLog&) = delete;
  ~ActionLog() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    compact_cv_.notify_all();
    if (compactor_.joinable()) compactor_.join();
  }

  /// Creates the directory, replays every segment and starts the compactor. Damaged
  /// records are logged and skipped (see the file comment); only I/O errors fail.
  Status open() {
    std::error_code ec;
    std::filesystem::create_directories(opt_.dir, ec);
    if (ec)
      return error(Code::kFailedPrecondition, "cannot create {}: {}", opt_.dir.string(),
                   ec.message());
    dir_ = detail::Fd(::open(opt_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_)
      return error(Code::kFailedPrecondition, "cannot open {}: {}", opt_.dir.string(),
                   detail::errno_text(errno));
    std::vector<std::uint64_t> seqs;
    for (auto it = std::filesystem::directory_iterator(opt_.dir, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      const std::uint64_t seq = std::strtoull(name.c_str(), nullptr, 16);
      // Only names this class writes: 16 lower-case hex digits, then ".log".
      if (seq > 0 && name == segment_file(seq)) seqs.push_back(seq);
    }
    if (ec)
      return error(Code::kFailedPrecondition, "cannot list {}: {}", opt_.dir.string(),
                   ec.message());
    std::sort(seqs.begin(), seqs.end());
    const auto started = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      GOREGO_RETURN_IF_ERROR(replay_locked(seqs[i], /*last=*/i + 1 == seqs.size()));
    }
    if (segments_.empty()) GOREGO_RETURN_IF_ERROR(add_segment_locked(1));
    log::info(
        "action cache log loaded",
        {{"dir", opt_.dir.string()},
         {"entries", std::to_string(map_.size())},
         {"segments", std::to_string(segments_.size())},
         {"bytes", std::to_string(file_bytes_)},
         {"seconds",
          fmt::format(
              "{:.3f}",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count())}});
    compactor_ = std::thread([this] { compact_loop(); });
    return {};
  }

  /// Stores `bytes` as the entry of `action`, replacing any earlier one.
  Status put(const Digest& action, std::string_view bytes) {
    return put(action, bytes, opt_.fsync);
  }
  /// `put` without the flush: durable only after a later `flush_all` (bulk loads).
  Status put_deferred(const Digest& action, std::string_view bytes) {
    return put(action, bytes, /*sync=*/false);
  }

  /// Makes every record appended so far durable (after `put_deferred`). Closed segments were
  /// flushed when they were closed; without `Options::fsync` nothing is flushed at a close,
  /// so only the active segment is.
  Status flush_all() {
    return sync_.run([this] { return flush(); });
  }

  /// The entry of `action`: NOT_FOUND when there is none, DATA_LOSS when its record no
  /// longer matches its checksum.
  Result<std::string> get(const Digest& action) {
    Loc loc;
    std::shared_ptr<detail::Fd> fd;
    {
      std::lock_guard lock(mu_);
      const auto it = map_.find(action);
      if (it == map_.end())
        return error(Code::kNotFound, "action {} not in the action cache", action);
      loc = it->second;
      fd = segments_.at(loc.seq).fd;
    }
    std::string rec(kHeaderBytes + loc.length, '\0');
    if (!detail::pread_exact(fd->get(), rec, loc.offset)) {
      return error(Code::kDataLoss, "action {}: record at {} of {} cannot be read whole", action,
                   loc.offset, segment_name(loc.seq));
    }
    const auto h = decode(rec);
    if (!h || h->kind != kPut || h->action != action || rec.size() != kHeaderBytes + h->length) {
      return error(Code::kDataLoss, "action {}: record at {} of {} does not match its checksum",
                   action, loc.offset, segment_name(loc.seq));
    }
    rec.erase(0, kHeaderBytes);
    return rec;
  }

  /// Payload bytes of the entry of `action`, or nullopt.
  std::optional<std::uint64_t> stat(const Digest& action) {
    std::lock_guard lock(mu_);
    const auto it = map_.find(action);
    if (it == map_.end()) return std::nullopt;
    return it->second.length;
  }

  /// Deletes the entry of `action` (absent is fine); a deletion record keeps it deleted
  /// across a restart.
  void remove(const Digest& action) {
    bool compact = false;
    {
      std::lock_guard lock(mu_);
      const auto it = map_.find(action);
      if (it == map_.end()) return;
      erase_locked(it);
      if (failed_.ok()) {
        const std::string rec = encode(kDelete, action, {}, now_ns());
        (void)append_locked(rec);  // if this fails, the entry may come back after a restart
      }
      compact = needs_compaction_locked();
    }
    if (compact) compact_cv_.notify_one();
  }

  /// Records a use of the entry (the access time `for_each` reports).
  void touch(const Digest& action) {
    std::lock_guard lock(mu_);
    if (const auto it = map_.find(action); it != map_.end()) it->second.atime = now_ns();
  }

  /// Calls `fn(action, payload_bytes, access_time_ns)` for every entry, outside the lock.
  template <class F>
  void for_each(F&& fn) {
    std::vector<std::tuple<Digest, std::uint64_t, std::int64_t>> all;
    {
      std::lock_guard lock(mu_);
      all.reserve(map_.size());
      for (const auto& [d, loc] : map_) all.emplace_back(d, loc.length, loc.atime);
    }
    for (const auto& [d, n, t] : all) fn(d, n, t);
  }

  Stats stats() {
    std::lock_guard lock(mu_);
    return {.entries = map_.size(),
            .segments = segments_.size(),
            .file_bytes = file_bytes_,
            .live_bytes = live_bytes_,
            .compactions = compactions_};
  }

  /// Runs compaction passes until none is needed (the background thread does the same).
  /// Returns the number of segments compacted.
  std::size_t compact() {
    std::size_t n = 0;
    while (compact_once()) ++n;
    return n;
  }

 private:
  static constexpr std::uint32_t kMagic = 0x43417247;  // "GrAC" read as little-endian bytes
  static constexpr std::uint8_t kPut = 1;
  static constexpr std::uint8_t kDelete = 2;

  Status put(const Digest& action, std::string_view bytes, bool sync) {
    if (bytes.size() > kMaxPayload) {
      return error(Code::kInvalidArgument,
                   "action result of {} bytes exceeds the {} bytes a record holds", bytes.size(),
                   kMaxPayload);
    }
    const std::string rec = encode(kPut, action, bytes, now_ns());
    Loc loc;
    bool compact = false;
    {
      std::lock_guard lock(mu_);
      GOREGO_RETURN_IF_ERROR(failed_);
      auto at = append_locked(rec);
      if (!at) return at.error();
      loc = *at;
      set_locked(action, loc);
      compact = needs_compaction_locked();
    }
    // Only then: waking the thread for nothing was a tenth of the server's CPU per update.
    if (compact) compact_cv_.notify_one();
    if (!sync) return {};
    Status s = flush_all();
    if (!s.ok()) {  // not acknowledged: do not keep it either
      std::lock_guard lock(mu_);
      if (auto it = map_.find(action); it != map_.end() && it->second.same_record(loc))
        erase_locked(it);
    }
    return s;
  }

  static constexpr std::size_t kCheckAt = 16;  // offset of the checksum in the header

  struct Loc {
    std::uint64_t seq = 0;
    std::uint64_t offset = 0;
    std::uint32_t length = 0;  // payload bytes
    std::int64_t atime = 0;
    [[nodiscard]] bool same_record(const Loc& o) const {
      return seq == o.seq && offset == o.offset;
    }
    [[nodiscard]] std::uint64_t record_bytes() const { return kHeaderBytes + length; }
  };
  struct Segment {
    std::shared_ptr<detail::Fd> fd;
    std::uint64_t size = 0;  // bytes of whole records; appends go here
  };
  struct Header {
    std::uint8_t kind;
    std::uint32_t length;
    std::int64_t written;
    Digest action;
  };

  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // Header layout: magic u32 | kind u8 | digest function u8 | 2 zero | length u32 | 4 zero |
  // check u64 | written i64 | digest size i64 | digest hash 32 bytes. The function byte was
  // zero (SHA-256) before BLAKE3, so older logs replay unchanged.
  static std::string encode(std::uint8_t kind, const Digest& d, std::string_view payload,
                            std::int64_t written) {
    std::string rec(kHeaderBytes + payload.size(), '\0');
    char* p = rec.data();
    const auto length = static_cast<std::uint32_t>(payload.size());
    std::memcpy(p, &kMagic, 4);
    p[4] = static_cast<char>(kind);
    p[5] = static_cast<char>(d.function);
    std::memcpy(p + 8, &length, 4);
    std::memcpy(p + 24, &written, 8);
    std::memcpy(p + 32, &d.size, 8);
    std::memcpy(p + 40, d.hash.data(), 32);
    std::memcpy(p + kHeaderBytes, payload.data(), payload.size());
    const std::uint64_t check = detail::check64(kMagic, rec, kCheckAt);
    std::memcpy(p + 16, &check, 8);
    return rec;
  }

  /// Whether the header at the start of `rec` (at least kHeaderBytes) can begin a record.
  static bool plausible(std::string_view rec) {
    std::uint32_t magic;
    std::uint32_t length;
    std::memcpy(&magic, rec.data(), 4);
    std::memcpy(&length, rec.data() + 8, 4);
    const auto kind = static_cast<std::uint8_t>(rec[4]);
    const auto function = static_cast<std::uint8_t>(rec[5]);
    return magic == kMagic && (kind == kPut || kind == kDelete) && length <= kMaxPayload &&
           function <= static_cast<std::uint8_t>(kLastDigestFunction);
  }

  /// The header of the record at the start of `rec`, if `rec` holds all of it and the
  /// checksum matches; nullopt for anything damaged, torn or foreign.
  static std::optional<Header> decode(std::string_view rec) {
    if (rec.size() < kHeaderBytes) return std::nullopt;
    Header h{};
    h.kind = static_cast<std::uint8_t>(rec[4]);
    std::memcpy(&h.length, rec.data() + 8, 4);
    if (!plausible(rec) || rec.size() - kHeaderBytes < h.length) return std::nullopt;
    std::uint64_t check;
    std::memcpy(&check, rec.data() + kCheckAt, 8);
    if (detail::check64(kMagic, rec.substr(0, kHeaderBytes + h.length), kCheckAt) != check)
      return std::nullopt;
    std::memcpy(&h.written, rec.data() + 24, 8);
    std::memcpy(&h.action.size, rec.data() + 32, 8);
    std::memcpy(h.action.hash.data(), rec.data() + 40, 32);
    h.action.function = static_cast<DigestFunction>(rec[5]);
    return h;
  }

  /// A segment's file name within the directory: 16 lower-case hex digits and ".log".
  static std::string segment_file(std::uint64_t seq) { return fmt::format("{:016x}.log", seq); }
  [[nodiscard]] std::string segment_name(std::uint64_t seq) const {
    return (opt_.dir / segment_file(seq)).string();
  }
  [[nodiscard]] std::uint64_t charge(std::uint64_t length) const {
    return detail::block_footprint(length, opt_.block_size);
  }

  /// Reads segment `seq` and applies its records. After a record that does not check, replay
  /// goes on at the next record that does; the bytes between are dead space. If none follows,
  /// the active (last) segment is cut back there (a torn tail); an older one keeps those bytes
  /// as dead space until compaction removes it. Reads in pieces through one buffer: fresh
  /// memory for a whole segment cost more than reading it.
  Status replay_locked(std::uint64_t seq, bool last) {
    const std::string name = segment_name(seq);
    auto fd = std::make_shared<detail::Fd>(::open(name.c_str(), O_RDWR | O_CLOEXEC));
    struct stat st {};
    if (!*fd || ::fstat(fd->get(), &st) != 0) {
      return error(Code::kFailedPrecondition, "cannot open {}: {}", name,
                   detail::errno_text(errno));
    }
    const auto file_size = static_cast<std::uint64_t>(st.st_size);
    segments_[seq] = Segment{fd, 0};
    constexpr std::uint64_t kPiece = std::uint64_t{1} << 20;
    std::string buf;
    std::uint64_t off = 0;   // start of the next record
    std::uint64_t need = 0;  // bytes the record at `off` needs, when one piece was too short
    while (off < file_size) {
      buf.resize(std::min(std::max(kPiece, need), file_size - off));
      if (!detail::pread_exact(fd->get(), buf, off)) {
        return error(Code::kFailedPrecondition, "cannot read {}: {}", name,
                     detail::errno_text(errno));
      }
      std::size_t at = 0;
      bool damaged = false;
      need = 0;
      while (at < buf.size()) {
        const std::string_view rest = std::string_view(buf).substr(at);
        std::uint32_t length = 0;
        if (rest.size() >= kHeaderBytes) {
          std::memcpy(&length, rest.data() + 8, 4);
          if (!plausible(rest)) {  // not worth reading on for
            damaged = true;
            break;
          }
        }
        if (rest.size() < kHeaderBytes || rest.size() - kHeaderBytes < length) {
          need = kHeaderBytes + (rest.size() >= kHeaderBytes ? length : 0);  // read on from here
          break;
        }
        const auto h = decode(rest);
        if (!h) {
          damaged = true;
          break;
        }
        const std::uint64_t n = kHeaderBytes + h->length;
        const std::uint64_t where = off + at;
        file_bytes_ += n;
        segments_[seq].size = where + n;
        if (h->kind == kPut) {
          set_locked(h->action, Loc{seq, where, h->length, h->written});
        } else if (const auto it = map_.find(h->action); it != map_.end()) {
          erase_locked(it);
        }
        at += n;
      }
      off += at;
      if (damaged) {  // damage in the middle (media, power loss): go on after it if anything checks
        const auto next = next_record(fd->get(), off, file_size);
        if (!next) break;
        log::warn("action cache log: damaged records skipped; entries written there are lost",
                  {{"file", name},
                   {"offset", std::to_string(off)},
                   {"bytes", std::to_string(*next - off)}});
        file_bytes_ += *next - off;  // dead space until compaction
        segments_[seq].size = *next;
        off = *next;
        need = 0;
        continue;
      }
      if (at == 0 && need > file_size - off) break;  // the file ends mid-record: a torn tail
    }
    if (off == file_size) return {};
    const std::uint64_t bad = file_size - off;
    if (last && ::ftruncate(fd->get(), static_cast<off_t>(off)) == 0) {
      log::warn("action cache log: cut off a torn tail",
                {{"file", name}, {"offset", std::to_string(off)}, {"bytes", std::to_string(bad)}});
      return {};
    }
    log::warn("action cache log: damaged end of a segment skipped; entries written there are lost",
              {{"file", name}, {"offset", std::to_string(off)}, {"bytes", std::to_string(bad)}});
    file_bytes_ += bad;
    segments_[seq].size = file_size;
    if (last) GOREGO_RETURN_IF_ERROR(add_segment_locked(seq + 1));  // never append after garbage
    return {};
  }

  /// Where the first whole, checking record after the damaged one at `from` starts, if any
  /// does. Reads the rest of the segment at once: this runs only on damage.
  static std::optional<std::uint64_t> next_record(int fd, std::uint64_t from,
                                                  std::uint64_t file_size) {
    std::string rest(file_size - from, '\0');
    if (!detail::pread_exact(fd, rest, from)) return std::nullopt;
    const std::string_view magic(reinterpret_cast<const char*>(&kMagic), 4);
    for (auto at = rest.find(magic, 1); at != std::string::npos; at = rest.find(magic, at + 1)) {
      if (decode(std::string_view(rest).substr(at))) return from + at;
    }
    return std::nullopt;
  }

  Status add_segment_locked(std::uint64_t seq) {
    const std::string name = segment_name(seq);
    auto fd = std::make_shared<detail::Fd>(
        ::open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!*fd) {
      return error(detail::write_error_code(errno), "creating {}: {}", name,
                   detail::errno_text(errno));
    }
    segments_[seq] = Segment{std::move(fd), 0};
    if (opt_.fsync && ::fsync(dir_.get()) != 0) {  // its records could vanish with its name
      failed_ = error(Code::kInternal, "fsync of directory {}: {}", opt_.dir.string(),
                      detail::errno_text(errno));
      return failed_;
    }
    return {};
  }

  /// Closes the active segment and opens the next. With `fsync` the closed one is flushed
  /// first: puts waiting for the group commit flush only the active segment.
  Status roll_locked() {
    const auto active = std::prev(segments_.end());
    if (opt_.fsync && ::fdatasync(active->second.fd->get()) != 0) {
      failed_ = error(detail::write_error_code(errno), "fsync of {}: {}",
                      segment_name(active->first), detail::errno_text(errno));
      return failed_;
    }
    return add_segment_locked(active->first + 1);
  }

  /// Appends a whole record to the active segment (closing it first when full).
  Result<Loc> append_locked(std::string_view rec) {
    auto active = std::prev(segments_.end());
    if (active->second.size > 0 && active->second.size + rec.size() > opt_.segment_bytes) {
      GOREGO_RETURN_IF_ERROR(roll_locked());
      active = std::prev(segments_.end());
    }
    Segment& seg = active->second;
    // A failed write leaves `size` where it was: the next record overwrites the torn bytes.
    GOREGO_RETURN_IF_ERROR(
        detail::pwrite_all(seg.fd->get(), rec, seg.size, segment_name(active->first)));
    Loc loc{active->first, seg.size, static_cast<std::uint32_t>(rec.size() - kHeaderBytes), 0};
    std::memcpy(&loc.atime, rec.data() + 24, 8);
    seg.size += rec.size();
    file_bytes_ += rec.size();
    return loc;
  }

  /// Makes `loc` the entry of `action`; what it replaces becomes dead space.
  void set_locked(const Digest& action, const Loc& loc) {
    auto [it, fresh] = map_.try_emplace(action, loc);
    if (!fresh) {
      live_bytes_ -= it->second.record_bytes();
      charged_ -= charge(it->second.length);
      it->second = loc;
    }
    live_bytes_ += loc.record_bytes();
    charged_ += charge(loc.length);
  }

  void erase_locked(std::unordered_map<Digest, Loc>::iterator it) {
    live_bytes_ -= it->second.record_bytes();
    charged_ -= charge(it->second.length);
    map_.erase(it);
  }

  /// Flushes the active segment (the group commit's operation). Closed segments were
  /// flushed when they were closed.
  Status flush() {
    std::shared_ptr<detail::Fd> fd;
    std::uint64_t seq;
    {
      std::lock_guard lock(mu_);
      GOREGO_RETURN_IF_ERROR(failed_);
      seq = std::prev(segments_.end())->first;
      fd = std::prev(segments_.end())->second.fd;
    }
    if (::fdatasync(fd->get()) == 0) return {};
    const int err = errno;
    std::lock_guard lock(mu_);
    failed_ = error(detail::write_error_code(err), "fsync of {}: {}", segment_name(seq),
                    detail::errno_text(err));
    return failed_;
  }

  [[nodiscard]] bool needs_compaction_locked() const {
    const std::uint64_t dead = file_bytes_ - live_bytes_;
    return failed_.ok() && dead > opt_.slack_bytes && file_bytes_ > charged_ + opt_.slack_bytes;
  }

  /// One pass: the oldest segment's live records move to the active one, then the oldest
  /// segment is deleted. False when no pass was needed (or possible).
  bool compact_once() {
    std::lock_guard one_at_a_time(compact_mu_);
    std::uint64_t seq;
    std::shared_ptr<detail::Fd> fd;
    std::vector<std::pair<Digest, Loc>> live;
    {
      std::lock_guard lock(mu_);
      if (!needs_compaction_locked()) return false;
      if (segments_.size() == 1 && !roll_locked().ok()) return false;
      seq = segments_.begin()->first;
      fd = segments_.begin()->second.fd;
      for (const auto& [d, loc] : map_) {
        if (loc.seq == seq) live.emplace_back(d, loc);
      }
    }
    std::sort(live.begin(), live.end(),
              [](const auto& a, const auto& b) { return a.second.offset < b.second.offset; });
    std::string rec;
    for (const auto& [d, loc] : live) {
      rec.resize(loc.record_bytes());
      const bool whole = detail::pread_exact(fd->get(), rec, loc.offset);
      std::lock_guard lock(mu_);
      const auto it = map_.find(d);
      if (it == map_.end() || !it->second.same_record(loc))
        continue;  // replaced or deleted meanwhile
      const auto h = whole ? decode(rec) : std::nullopt;
      if (!h || h->kind != kPut || h->action != d) {
        log::warn("action cache log: a damaged entry was dropped while compacting",
                  {{"digest", fmt::format("{}", d)}, {"file", segment_name(seq)}});
        erase_locked(it);
        continue;
      }
      auto at = append_locked(rec);
      if (!at) return false;  // the segment stays; a later pass tries again
      at->atime = it->second.atime;
      it->second = *at;
    }
    if (opt_.fsync && !flush_all().ok()) return false;
    {
      std::lock_guard lock(mu_);
      for (const auto& [d, loc] : map_) {
        if (loc.seq == seq) return false;  // cannot happen: nothing appends to a closed segment
      }
    }
    // Deleted before it is forgotten: a segment left on disk would be replayed at the next
    // start, deletions that compaction dropped with it and all.
    if (::unlinkat(dir_.get(), segment_file(seq).c_str(), 0) != 0) {
      log::warn("action cache log: cannot delete a compacted segment",
                {{"file", segment_name(seq)}, {"error", detail::errno_text(errno)}});
      return false;
    }
    std::lock_guard lock(mu_);
    file_bytes_ -= segments_.at(seq).size;
    segments_.erase(seq);
    ++compactions_;
    return true;
  }

  void compact_loop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      compact_cv_.wait(lock, [&] { return stopping_ || needs_compaction_locked(); });
      if (stopping_) break;
      lock.unlock();
      const bool progressed = compact_once();
      lock.lock();
      // A pass that could not finish (a failed write) waits for the next change.
      if (!progressed)
        compact_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
    }
  }

  Options opt_;
  detail::Fd dir_;
  detail::GroupSync sync_;
  std::mutex compact_mu_;  // one compaction pass at a time (the thread, or compact())
  std::mutex mu_;  // guards everything below; appends happen under it, so log order is map order
  std::map<std::uint64_t, Segment> segments_;  // by sequence number; the last is active
  std::unordered_map<Digest, Loc> map_;
  std::uint64_t file_bytes_ = 0;
  std::uint64_t live_bytes_ = 0;
  std::uint64_t charged_ = 0;  // sum of charge(length) over the entries
  std::uint64_t compactions_ = 0;
  Status failed_;  // a failed flush: every later put fails with it
  bool stopping_ = false;
  std::condition_variable compact_cv_;
  std::thread compactor_;
};

}  // namespace gorego
