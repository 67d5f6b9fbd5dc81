#pragma once
/// gorego::Status and gorego::Result<T>: the error vocabulary of every layer below the wire.
///
/// Codes are numerically equal to google.rpc.Code, so the conversion to grpc::Status in
/// reapi/ is a cast. No exceptions for expected outcomes: a miss is NOT_FOUND, a bad digest
/// INVALID_ARGUMENT, a full disk RESOURCE_EXHAUSTED.

#include <cassert>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace gorego {

/// google.rpc.Code values (https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto).
enum class Code : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

/// Upper-case name as in google.rpc.Code ("NOT_FOUND").
constexpr std::string_view code_name(Code c) noexcept {
  switch (c) {
    case Code::kOk: return "OK";
    case Code::kCancelled: return "CANCELLED";
    case Code::kUnknown: return "UNKNOWN";
    case Code::kInvalidArgument: return "INVALID_ARGUMENT";
    case Code::kDeadlineExceeded: return "DEADLINE_EXCEEDED";
    case Code::kNotFound: return "NOT_FOUND";
    case Code::kAlreadyExists: return "ALREADY_EXISTS";
    case Code::kPermissionDenied: return "PERMISSION_DENIED";
    case Code::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case Code::kFailedPrecondition: return "FAILED_PRECONDITION";
    case Code::kAborted: return "ABORTED";
    case Code::kOutOfRange: return "OUT_OF_RANGE";
    case Code::kUnimplemented: return "UNIMPLEMENTED";
    case Code::kInternal: return "INTERNAL";
    case Code::kUnavailable: return "UNAVAILABLE";
    case Code::kDataLoss: return "DATA_LOSS";
    case Code::kUnauthenticated: return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

/// An outcome: OK, or a code with a message that names the bad value.
/// Cheap to copy when OK (empty message). Thread-compatible.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  [[nodiscard]] bool ok() const noexcept { return code_ == Code::kOk; }
  [[nodiscard]] Code code() const noexcept { return code_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }

  /// "NOT_FOUND: blob ab12.../5 not in the CAS"
  [[nodiscard]] std::string to_string() const {
    return ok() ? std::string("OK") : fmt::format("{}: {}", code_name(code_), message_);
  }

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status ok_status() { return {}; }

/// Builds a Status with a fmt-formatted message: `error(Code::kNotFound, "blob {} missing", d)`.
template <class... Args>
Status error(Code code, fmt::format_string<Args...> f, Args&&... args) {
  return Status(code, fmt::format(f, std::forward<Args>(args)...));
}

/// The std::expected<T, Status> subset gorego uses (GCC 12 has no <expected>).
/// Holds either a value or a non-OK Status.
template <class T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::remove_cvref_t<T>, Status>, "Result<Status> is meaningless");

 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::in_place_index<1>, std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<1>(v_).ok() && "a Result must not hold an OK status without a value");
  }

  [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }
  [[nodiscard]] bool ok() const noexcept { return has_value(); }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  /// The error; OK when a value is held.
  [[nodiscard]] Status status() const { return has_value() ? Status{} : std::get<1>(v_); }
  [[nodiscard]] const Status& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace gorego

/// Propagates a non-OK Status from an expression returning Status.
#define GOREGO_RETURN_IF_ERROR(expr)          \
  do {                                        \
    ::gorego::Status gorego_status_ = (expr); \
    if (!gorego_status_.ok()) return gorego_status_; \
  } while (0)

template <>
struct fmt::formatter<gorego::Status> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const gorego::Status& s, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(s.to_string(), ctx);
  }
};
