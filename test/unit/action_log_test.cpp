// ActionLog: the ActionCache of the disk backend, kept as appended records in segment files.
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include <gorego/store/action_log.hpp>
#include <gorego/testing/temp_dir.hpp>

#include "stacks.hpp"

namespace gorego {
namespace {

using testing::TempDir;

Digest action(int i) { return Sha256::digest_of("action " + std::to_string(i)); }
std::string result(int i, int version, std::size_t size = 200) {
  std::string r = testing::make_blob(static_cast<std::uint64_t>(i * 1000 + version), size);
  r[0] = static_cast<char>(version);
  return r;
}

std::vector<std::filesystem::path> segments(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

/// Options for a log under `dir` with tiny segments, so that tests roll and compact.
ActionLog::Options small(const std::filesystem::path& dir, bool fsync = false) {
  return {
      .dir = dir, .fsync = fsync, .segment_bytes = 4096, .block_size = 512, .slack_bytes = 4096};
}

TEST_CASE("ActionLog: entries survive a reopen; the last write wins and deletions stay deleted",
          "[actionlog]") {
  TempDir dir;
  for (const bool fsync : {false, true}) {
    INFO("fsync " << fsync);
    const auto where = dir.path() / (fsync ? "synced" : "plain");
    {
      ActionLog log(small(where, fsync));
      REQUIRE(log.open().ok());
      for (int i = 0; i < 40; ++i) REQUIRE(log.put(action(i), result(i, 1)).ok());
      for (int i = 0; i < 40; i += 2) REQUIRE(log.put(action(i), result(i, 2, 300)).ok());
      for (int i = 0; i < 40; i += 5) log.remove(action(i));
      CHECK(log.stats().segments > 1);  // 4 KiB segments: it rolled
    }
    ActionLog log(small(where, fsync));
    REQUIRE(log.open().ok());
    for (int i = 0; i < 40; ++i) {
      INFO("action " << i);
      auto got = log.get(action(i));
      if (i % 5 == 0) {
        CHECK(got.error().code() == Code::kNotFound);
        CHECK_FALSE(log.stat(action(i)));
      } else {
        REQUIRE(got.ok());
        CHECK(*got == (i % 2 == 0 ? result(i, 2, 300) : result(i, 1)));
        CHECK(*log.stat(action(i)) == got->size());
      }
    }
    CHECK(log.stats().entries == 32);
  }
}

TEST_CASE("ActionLog: replay reads records that straddle its read pieces or exceed them",
          "[actionlog]") {
  TempDir dir;
  const std::vector<std::size_t> sizes = {300'000, 700'000, 2'500'000, 10, 999'999, 1'048'576};
  {
    ActionLog log({.dir = dir.path(), .fsync = false});
    REQUIRE(log.open().ok());
    for (std::size_t i = 0; i < sizes.size(); ++i)
      REQUIRE(log.put(action(static_cast<int>(i)), result(static_cast<int>(i), 1, sizes[i])).ok());
  }
  ActionLog log({.dir = dir.path(), .fsync = false});
  REQUIRE(log.open().ok());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    INFO("entry of " << sizes[i] << " bytes");
    auto got = log.get(action(static_cast<int>(i)));
    REQUIRE(got.ok());
    CHECK(*got == result(static_cast<int>(i), 1, sizes[i]));
  }
  CHECK(log.stats().file_bytes == std::filesystem::file_size(segments(dir.path()).back()));
}

TEST_CASE(
    "ActionLog: a torn tail is cut off at open, and appends continue after the last whole record",
    "[actionlog]") {
  TempDir dir;
  std::uintmax_t whole_size = 0;
  {
    ActionLog log({.dir = dir.path()});
    REQUIRE(log.open().ok());
    for (int i = 0; i < 5; ++i) REQUIRE(log.put(action(i), result(i, 1)).ok());
  }
  const auto seg = segments(dir.path()).back();
  whole_size = std::filesystem::file_size(seg);
  {  // a crash in the middle of an append: half a header, then half a record
    std::ofstream(seg, std::ios::app | std::ios::binary) << std::string(30, '\x47');
  }
  {
    ActionLog log({.dir = dir.path()});
    REQUIRE(log.open().ok());
    CHECK(std::filesystem::file_size(seg) == whole_size);
    for (int i = 0; i < 5; ++i) CHECK(*log.get(action(i)) == result(i, 1));
    REQUIRE(log.put(action(5), result(5, 1)).ok());
  }
  ActionLog log({.dir = dir.path()});
  REQUIRE(log.open().ok());
  for (int i = 0; i < 6; ++i) CHECK(*log.get(action(i)) == result(i, 1));
}

TEST_CASE("ActionLog: replay goes on past a damaged record in the middle of a segment",
          "[actionlog]") {
  TempDir dir;
  {
    ActionLog log({.dir = dir.path(), .fsync = false});
    REQUIRE(log.open().ok());
    for (int i = 0; i < 10; ++i) REQUIRE(log.put(action(i), result(i, 1)).ok());
  }
  const auto seg = segments(dir.path()).back();
  const auto size = std::filesystem::file_size(seg);
  {  // one flipped byte in the payload of entry 5
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto at = all.find(result(5, 1));
    REQUIRE(at != std::string::npos);
    f.seekp(static_cast<std::streamoff>(at + 100));
    f.put(static_cast<char>(all[at + 100] ^ 1));
  }
  for (int reopen = 0; reopen < 2; ++reopen) {
    ActionLog log({.dir = dir.path(), .fsync = false});
    REQUIRE(log.open().ok());
    CHECK(std::filesystem::file_size(seg) == size);  // not cut off as if it were a torn tail
    for (int i = 0; i < 10; ++i) {
      INFO("action " << i);
      if (i == 5) {
        CHECK(log.get(action(i)).error().code() == Code::kNotFound);
      } else {
        CHECK(*log.get(action(i)) == result(i, 1));
      }
    }
    CHECK(log.stats().file_bytes == size);
  }
}

TEST_CASE("ActionLog: a damaged record is DATA_LOSS, never its bytes; Local drops it as a miss",
          "[actionlog][disk]") {
  TempDir dir;
  auto flip_byte_of = [&](const std::string& needle) {
    const auto seg = segments(dir.path() / "ac-log").back();
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto at = all.find(needle);
    REQUIRE(at != std::string::npos);
    f.seekp(static_cast<std::streamoff>(at + needle.size() / 2));
    f.put(static_cast<char>(all[at + needle.size() / 2] ^ 0x20));
  };
  // No ActionCache memory: every get reads the log.
  test::DiskLru store(ShardedDisk::Options{.root = dir.path(), .fsync = false},
                      test::DiskLru::Options{.max_bytes = 1 << 30, .ac_memory_bytes = 0});
  REQUIRE(store.start().ok());
  store.wait_loaded();
  const std::string good = result(1, 1);
  const std::string bad = result(2, 1);
  REQUIRE(store.put_action(action(1), good).ok());
  REQUIRE(store.put_action(action(2), bad).ok());
  flip_byte_of(bad);
  CHECK(store.backend().action_log().get(action(2)).error().code() == Code::kDataLoss);
  const auto got = store.get_action(action(2));
  CHECK(got.error().code() == Code::kNotFound);
  CHECK_FALSE(store.backend().stat({action(2), Tree::kAc}));  // dropped
  CHECK(*store.get_action(action(1)) == good);
  CHECK(store.get_action(action(2)).error().code() == Code::kNotFound);
}

TEST_CASE("ActionLog: compaction frees dead records and loses no entry", "[actionlog]") {
  TempDir dir;
  std::map<int, std::string> want;
  {
    ActionLog log(small(dir.path()));
    REQUIRE(log.open().ok());
    for (int round = 0; round < 30; ++round) {
      for (int i = 0; i < 20; ++i) {
        want[i] = result(i, round, 100 + static_cast<std::size_t>(round));
        REQUIRE(log.put(action(i), want[i]).ok());
      }
    }
    log.remove(action(3));
    want.erase(3);
    log.compact();  // whatever the background thread has not done yet
    const auto st = log.stats();
    INFO("file bytes " << st.file_bytes << ", live bytes " << st.live_bytes << ", segments "
                       << st.segments);
    CHECK(st.compactions > 0);
    // Each live entry is charged one 512-byte block; the files may exceed that by the slack
    // (plus the record that closes the active segment).
    CHECK(st.file_bytes <= 19 * 512 + 4096 + 4096);
    CHECK(st.entries == 19);
    for (const auto& [i, r] : want) CHECK(*log.get(action(i)) == r);
  }
  ActionLog log(small(dir.path()));
  REQUIRE(log.open().ok());
  CHECK(log.stats().entries == 19);
  CHECK(log.get(action(3)).error().code() == Code::kNotFound);  // its deletion outlived compaction
  for (const auto& [i, r] : want) CHECK(*log.get(action(i)) == r);
}

TEST_CASE("ActionLog: concurrent puts, removes and reads while it compacts agree with a model",
          "[actionlog]") {
  TempDir dir;
  constexpr int kThreads = 4;
  constexpr int kKeysPerThread = 25;
  std::vector<std::map<int, std::string>> want(kThreads);
  {
    ActionLog log(small(dir.path(), /*fsync=*/true));
    REQUIRE(log.open().ok());
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 rng(static_cast<unsigned>(t));
        for (int op = 0; op < 400; ++op) {
          const int key = t * kKeysPerThread + static_cast<int>(rng() % kKeysPerThread);
          if (rng() % 7 == 0) {
            log.remove(action(key));
            want[t].erase(key);
          } else if (rng() % 3 == 0) {
            auto got = log.get(action(key));
            const auto it = want[t].find(key);
            if (it == want[t].end() ? got.ok() : (!got.ok() || *got != it->second)) ++failures;
          } else {
            std::string r = result(key, op, 50 + rng() % 400);
            if (!log.put(action(key), r).ok()) ++failures;
            want[t][key] = std::move(r);
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
    // The compactor runs on its own thread when woken: on a loaded machine the writers may
    // finish first. It must have run (or run now) over what they left.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (log.stats().compactions == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(log.stats().compactions > 0);
  }
  ActionLog log(small(dir.path()));
  REQUIRE(log.open().ok());
  std::size_t entries = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int k = t * kKeysPerThread; k < (t + 1) * kKeysPerThread; ++k) {
      INFO("key " << k);
      const auto it = want[t].find(k);
      auto got = log.get(action(k));
      if (it == want[t].end()) {
        CHECK(got.error().code() == Code::kNotFound);
      } else {
        REQUIRE(got.ok());
        CHECK(*got == it->second);
        ++entries;
      }
    }
  }
  CHECK(log.stats().entries == entries);
}

TEST_CASE("ShardedDisk: the per-file ActionCache of an older version moves into the log",
          "[actionlog][disk]") {
  TempDir dir;
  const Digest a = action(1);
  const std::string bytes = result(1, 1);
  const std::string hex = a.hex();
  const auto leaf = dir.path() / "ac" / hex.substr(0, 2) / hex.substr(2, 2);
  std::filesystem::create_directories(leaf);
  std::ofstream(leaf / fmt::format("{}-{}", hex, a.size), std::ios::binary) << bytes;
  std::ofstream(leaf / ".tmp-0123456789abcdef-3") << "half an update";
  {
    auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);
    CHECK_FALSE(std::filesystem::exists(dir.path() / "ac"));
    CHECK(*store->get_action(a) == bytes);
    CHECK(store->index_size() == 1);
  }
  auto store = test::make_store<test::DiskLru>(dir.path(), 1 << 30);  // and it stays
  CHECK(*store->get_action(a) == bytes);
}

}  // namespace
}  // namespace gorego
