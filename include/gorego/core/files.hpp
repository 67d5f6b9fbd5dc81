#pragma once
/// Small file helpers shared by the server, the worker and the tools: reading a whole
/// (small) file such as a PEM certificate or a credentials file, and the stamp that tells
/// whether a file changed since it was read (for the files gorego re-reads while it runs).

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include <gorego/core/status.hpp>

namespace gorego {

/// The whole contents of `path`; NOT_FOUND naming `what` ("auth.tokens_file") and the path
/// when it cannot be opened or read.
[[nodiscard]] inline Result<std::string> read_whole_file(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  if (in) out << in.rdbuf();
  if (!in || in.bad()) return error(Code::kNotFound, "{} \"{}\" cannot be read", what, path.string());
  return out.str();
}

/// What identifies a version of a file: a change of any of these means "read it again".
struct FileStamp {
  std::int64_t mtime_ns = -1;
  std::int64_t size = -1;
  std::uint64_t inode = 0;
  friend bool operator==(const FileStamp&, const FileStamp&) = default;
};

/// The stamp of `path`; nullopt when it cannot be stat'ed (gone).
[[nodiscard]] inline std::optional<FileStamp> stamp_of(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileStamp{static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                   static_cast<std::int64_t>(st.st_size), static_cast<std::uint64_t>(st.st_ino)};
}

}  // namespace gorego
