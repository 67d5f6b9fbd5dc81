// The wire's zstd codec (include/gorego/core/zstd.hpp) on one core: what a compressed-blobs
// read costs the server (Encoder, one frame flushed per 1 MiB chunk) and what a compressed
// upload costs it (Decoder over one frame per 64 KiB chunk, as Bazel sends), on build-like
// data (this machine's headers and a shared library) and on random bytes (the worst case:
// all CPU, no saving). Throughput counts uncompressed bytes; `ratio` is compressed/plain.
#include <benchmark/benchmark.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gorego/core/zstd.hpp>

namespace {

constexpr std::size_t kSize = 16 << 20;

/// 16 MiB of what caches hold: C++ headers from /usr/include and a shared library.
const std::string& build_like() {
  static const std::string data = [] {
    std::string out;
    auto add_file = [&](const std::filesystem::path& p) {
      std::ifstream in(p, std::ios::binary);
      out.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    };
    for (const char* lib : {"/usr/lib/x86_64-linux-gnu/libgrpc.so", "/usr/lib/x86_64-linux-gnu/libprotobuf.so"}) {
      if (std::filesystem::exists(lib)) add_file(std::filesystem::canonical(lib));
      if (out.size() > kSize / 2) break;
    }
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator("/usr/include/c++", ec);
         it != std::filesystem::recursive_directory_iterator() && out.size() < kSize; it.increment(ec)) {
      if (it->is_regular_file()) add_file(it->path());
    }
    while (out.size() < kSize) out += out;  // a machine without those files still runs
    out.resize(kSize);
    return out;
  }();
  return data;
}

const std::string& random_bytes() {
  static const std::string data = [] {
    std::string out(kSize, '\0');
    std::mt19937_64 rng(42);
    for (std::size_t i = 0; i + 8 <= out.size(); i += 8) {
      const std::uint64_t v = rng();
      std::memcpy(out.data() + i, &v, 8);
    }
    return out;
  }();
  return data;
}

const std::string& input(int which) { return which == 0 ? build_like() : random_bytes(); }

/// A compressed-blobs read: 1 MiB chunks into one frame, flushed per chunk.
void BM_EncodeRead(benchmark::State& state) {
  const std::string& data = input(static_cast<int>(state.range(0)));
  const int level = static_cast<int>(state.range(1));
  constexpr std::size_t kChunk = 1 << 20;
  std::vector<char> out(gorego::zstd::Encoder::bound(kChunk));
  std::size_t compressed = 0;
  for (auto _ : state) {
    gorego::zstd::Encoder enc(level);
    compressed = 0;
    for (std::size_t off = 0; off < data.size(); off += kChunk) {
      auto n = enc.add(std::string_view(data).substr(off, kChunk), out, off + kChunk >= data.size());
      compressed += *n;
    }
    benchmark::DoNotOptimize(compressed);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
  state.counters["ratio"] = static_cast<double>(compressed) / static_cast<double>(data.size());
  state.SetLabel(state.range(0) == 0 ? "build-like" : "random");
}

/// A compressed upload: one frame per 64 KiB chunk, decoded as it arrives.
void BM_DecodeUpload(benchmark::State& state) {
  const std::string& data = input(static_cast<int>(state.range(0)));
  constexpr std::size_t kChunk = 64 << 10;
  std::vector<std::string> frames;
  std::size_t compressed = 0;
  for (std::size_t off = 0; off < data.size(); off += kChunk) {
    frames.push_back(*gorego::zstd::compress(std::string_view(data).substr(off, kChunk)));
    compressed += frames.back().size();
  }
  for (auto _ : state) {
    auto dec = std::make_unique<gorego::zstd::Decoder>(data.size());
    std::size_t got = 0;
    for (const auto& f : frames) {
      (void)dec->add(f, [&](std::string_view part) {
        got += part.size();
        return gorego::Status{};
      });
    }
    if (got != data.size() || !dec->finish().ok()) state.SkipWithError("decoded the wrong number of bytes");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
  state.counters["ratio"] = static_cast<double>(compressed) / static_cast<double>(data.size());
  state.SetLabel(state.range(0) == 0 ? "build-like" : "random");
}

/// What the uncompressed path does per byte at least: one copy.
void BM_CopyBaseline(benchmark::State& state) {
  const std::string& data = input(0);
  std::string out(data.size(), '\0');
  for (auto _ : state) {
    std::memcpy(out.data(), data.data(), data.size());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}

}  // namespace

BENCHMARK(BM_EncodeRead)->ArgsProduct({{0, 1}, {1, 3}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeUpload)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CopyBaseline)->Unit(benchmark::kMillisecond);
