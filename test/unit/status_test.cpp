#include <catch2/catch.hpp>

#include <gorego/core/status.hpp>

using namespace gorego;

TEST_CASE("Status: codes equal google.rpc.Code and format with their names", "[core]") {
  STATIC_REQUIRE(static_cast<int>(Code::kNotFound) == 5);
  STATIC_REQUIRE(static_cast<int>(Code::kResourceExhausted) == 8);
  STATIC_REQUIRE(static_cast<int>(Code::kUnauthenticated) == 16);
  const Status s = error(Code::kOutOfRange, "offset {} past {}", 10, 5);
  CHECK_FALSE(s.ok());
  CHECK(s.to_string() == "OUT_OF_RANGE: offset 10 past 5");
  CHECK(Status().ok());
  CHECK(fmt::format("{}", Status()) == "OK");
}

TEST_CASE("Result: holds a value or an error", "[core]") {
  Result<int> v = 7;
  REQUIRE(v.ok());
  CHECK(*v == 7);
  CHECK(v.status().ok());
  Result<int> e = error(Code::kNotFound, "nope");
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().code() == Code::kNotFound);
  CHECK(e.status().message() == "nope");
}
