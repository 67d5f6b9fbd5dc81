// Consumer smoke test: gorego's public headers and gorego::core's usage requirements (fmt).
#include <gorego/core/status.hpp>

#include <fmt/format.h>

int main() {
  const gorego::Status status =
      gorego::error(gorego::Code::kNotFound, "blob {}/{} not in the CAS", "ab12", 5);
  fmt::print("{}\n", status);
  return status.code() == gorego::Code::kNotFound && !status.ok() ? 0 : 1;
}
