#pragma once
/// TraceContext: the W3C trace context of the work a thread is doing now.
///
/// A context names a trace (16 bytes), the span that is the parent of whatever starts
/// next (8 bytes), the trace flags (bit 0: sampled) and the opaque `tracestate` list.
/// `current()` is per thread; `Scope` sets it for a block; the Executor carries it from
/// the thread that posts a task to the thread that runs it, so spans opened in a store
/// operation find the RPC's span as their parent. Without tracing the context stays
/// empty and costs one thread-local read per check.
///
///   auto tc = TraceContext::parse(traceparent_header, tracestate_header);
///   TraceContext::Scope scope(*tc);
///   log::info("inside");  // carries trace_id and span_id

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace gorego {

struct TraceContext {
  using TraceId = std::array<std::uint8_t, 16>;
  using SpanId = std::array<std::uint8_t, 8>;

  TraceId trace_id{};
  SpanId span_id{};
  std::uint8_t flags = 0;
  std::shared_ptr<const std::string> tracestate;  ///< null when absent

  [[nodiscard]] bool valid() const { return trace_id != TraceId{} && span_id != SpanId{}; }
  [[nodiscard]] bool sampled() const { return (flags & 1U) != 0; }

  /// The thread's current context (empty when the thread does no traced work).
  static TraceContext& current() {
    thread_local TraceContext tc;
    return tc;
  }

  /// Sets the thread's context for a block and restores the previous one after it.
  class Scope;

  /// Parses a W3C `traceparent` ("00-<32 hex>-<16 hex>-<2 hex>"); nullopt when malformed,
  /// all-zero, or of version ff. Versions above 00 are read by their first four fields,
  /// as the recommendation asks. `tracestate` is kept as received (at most 512 bytes).
  static std::optional<TraceContext> parse(std::string_view traceparent, std::string_view tracestate = {}) {
    if (traceparent.size() < 55) return std::nullopt;
    TraceContext tc;
    std::uint8_t version = 0;
    if (!hex_to(traceparent.substr(0, 2), &version, 1) || version == 0xff) return std::nullopt;
    if (version == 0 && traceparent.size() != 55) return std::nullopt;
    if (version != 0 && traceparent.size() > 55 && traceparent[55] != '-') return std::nullopt;
    if (traceparent[2] != '-' || traceparent[35] != '-' || traceparent[52] != '-') return std::nullopt;
    if (!hex_to(traceparent.substr(3, 32), tc.trace_id.data(), 16) ||
        !hex_to(traceparent.substr(36, 16), tc.span_id.data(), 8) ||
        !hex_to(traceparent.substr(53, 2), &tc.flags, 1) || !tc.valid()) {
      return std::nullopt;
    }
    if (!tracestate.empty() && tracestate.size() <= 512) {
      tc.tracestate = std::make_shared<const std::string>(tracestate);
    }
    return tc;
  }

  /// "00-<trace id>-<span id>-<flags>", the form sent upstream.
  [[nodiscard]] std::string traceparent() const {
    std::string out = "00-";
    append_hex(out, trace_id.data(), trace_id.size());
    out += '-';
    append_hex(out, span_id.data(), span_id.size());
    out += '-';
    append_hex(out, &flags, 1);
    return out;
  }
  [[nodiscard]] std::string trace_id_hex() const {
    std::string out;
    append_hex(out, trace_id.data(), trace_id.size());
    return out;
  }
  [[nodiscard]] std::string span_id_hex() const {
    std::string out;
    append_hex(out, span_id.data(), span_id.size());
    return out;
  }

  /// Fresh random ids (never all zero), from a per-thread generator.
  static TraceId new_trace_id() {
    TraceId id{};
    do {
      fill(id.data(), id.size());
    } while (id == TraceId{});
    return id;
  }
  static SpanId new_span_id() {
    SpanId id{};
    do {
      fill(id.data(), id.size());
    } while (id == SpanId{});
    return id;
  }

  static void append_hex(std::string& out, const std::uint8_t* p, std::size_t n) {
    static constexpr char kDigits[] = "0123456789abcdef";
    for (std::size_t i = 0; i < n; ++i) {
      out += kDigits[p[i] >> 4];
      out += kDigits[p[i] & 0xf];
    }
  }

 private:
  static bool hex_to(std::string_view hex, std::uint8_t* out, std::size_t n) {
    if (hex.size() != 2 * n) return false;
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;  // W3C allows lowercase only
    };
    for (std::size_t i = 0; i < n; ++i) {
      const int hi = nibble(hex[2 * i]);
      const int lo = nibble(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) return false;
      out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return true;
  }

  static void fill(std::uint8_t* p, std::size_t n) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    for (std::size_t i = 0; i < n; i += 8) {
      std::uint64_t r = rng();
      for (std::size_t j = i; j < n && j < i + 8; ++j, r >>= 8) p[j] = static_cast<std::uint8_t>(r);
    }
  }
};

class TraceContext::Scope {
 public:
  explicit Scope(TraceContext tc) : saved_(std::move(current())) { current() = std::move(tc); }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  ~Scope() { current() = std::move(saved_); }

 private:
  TraceContext saved_;
};

}  // namespace gorego
