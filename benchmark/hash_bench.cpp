// The two digest functions on one core: SHA-256 (OpenSSL, SHA-NI where the CPU has it) and
// BLAKE3 (the official C implementation; its dispatcher picks SSE4.1/AVX2/AVX-512), one-shot
// over blob sizes from an ActionResult-sized 256 B to 64 MiB, and streaming in the 64 KiB
// pieces a ByteStream upload arrives in. BLAKE3's tree is hashed on one thread here: gorego
// hashes each blob on the thread that stores it.
#include <benchmark/benchmark.h>

#include <string>

#include <gorego/hash/blake3.hpp>
#include <gorego/hash/sha256.hpp>
#include <gorego/testing/temp_dir.hpp>

namespace {

const std::string& data(std::size_t n) {
  static const std::string all = gorego::testing::make_blob(1, std::size_t{64} << 20);
  static thread_local std::string view;
  view.assign(all, 0, n);
  return view;
}

template <class H>
void one_shot(benchmark::State& st) {
  const std::string d = data(static_cast<std::size_t>(st.range(0)));
  for (auto _ : st) benchmark::DoNotOptimize(H::of(d));
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * st.range(0));
}

template <class H>
void streaming(benchmark::State& st) {
  const std::string d = data(static_cast<std::size_t>(st.range(0)));
  constexpr std::size_t kPiece = 64 << 10;
  for (auto _ : st) {
    H h;
    for (std::size_t off = 0; off < d.size(); off += kPiece) h.update(std::string_view(d).substr(off, kPiece));
    benchmark::DoNotOptimize(h.finish());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * st.range(0));
}

void sizes(benchmark::internal::Benchmark* b) {
  for (const std::int64_t n : {256, 4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20}) b->Arg(n);
}

}  // namespace

BENCHMARK(one_shot<gorego::Sha256>)->Name("sha256/one_shot")->Apply(sizes);
BENCHMARK(one_shot<gorego::Blake3>)->Name("blake3/one_shot")->Apply(sizes);
BENCHMARK(streaming<gorego::Sha256>)->Name("sha256/64KiB_pieces")->Arg(16 << 20);
BENCHMARK(streaming<gorego::Blake3>)->Name("blake3/64KiB_pieces")->Arg(16 << 20);
