// TokenFile on a train.bin over 4 GiB (OpenWebText's is ~17 GB): a sparse 4.5 GiB file made with
// ftruncate, tokens written past the 4 GiB mark and at the very end, read back through the mmap.
// Reports "skipped" (77) when the filesystem refuses such a file.
#include <catch2/catch.hpp>

#include "skip.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "files/data.h"

namespace {

bool put(int fd, uint64_t token_index, uint16_t value) {
  const unsigned char b[2] = {uint8_t(value & 0xFF), uint8_t(value >> 8)};  // little-endian
  return ::pwrite(fd, b, 2, off_t(token_index * 2)) == 2;
}

}  // namespace

TEST_CASE("A sparse 4.5 GiB token file maps and reads to its last token", "[data]") {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string path = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/dgpt_big_XXXXXX.bin";
  const int fd = ::mkstemps(path.data(), 4);
  REQUIRE(fd >= 0);
  const uint64_t bytes = 4608ull << 20;  // 4.5 GiB
  const uint64_t n = bytes / 2;
  bool ok = ::ftruncate(fd, off_t(bytes)) == 0;
  const std::string why = ok ? "" : std::strerror(errno);
  const uint64_t past_4g = (uint64_t(1) << 32) / 2;  // token at byte offset 4 GiB
  ok = ok && put(fd, 0, 7) && put(fd, past_4g - 1, 40000) && put(fd, past_4g, 50256) && put(fd, past_4g + 1, 1) &&
       put(fd, n - 2, 12345) && put(fd, n - 1, 50255);
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    dgpt::test::skip_or_fail("the filesystem of " + path + " refuses a sparse 4.5 GiB file (" + why + ")");
  }
  {
    dgpt::TokenFile f(path);
    CHECK(f.size() == int64_t(n));
    CHECK(f.data()[0] == 7);
    CHECK(f.data()[n - 1] == 50255);
    CHECK(f.data()[past_4g] == 50256);
    const auto end = f.slice(int64_t(n) - 2, 2);
    CHECK(end[0].item<int64_t>() == 12345);
    CHECK(end[1].item<int64_t>() == 50255);
    const auto across = f.slice(int64_t(past_4g) - 1, 3);
    CHECK(across[0].item<int64_t>() == 40000);
    CHECK(across[1].item<int64_t>() == 50256);
    CHECK(across[2].item<int64_t>() == 1);
    CHECK(f.slice(int64_t(n) / 2, 1)[0].item<int64_t>() == 0);  // a hole reads as zeros
  }
  ::unlink(path.c_str());
}
