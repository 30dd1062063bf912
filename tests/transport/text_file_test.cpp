// Reading small text files: what is not a regular file, or is too large, is
// refused with a phrase saying so, and nothing blocks.
#include "transport/text_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::transport {
namespace {

using testing::TempDir;

std::string Problem(const std::string& path, size_t max_bytes) {
  std::string error;
  EXPECT_FALSE(ReadTextFile(path, max_bytes, &error).has_value()) << path;
  return error;
}

TEST(TextFileTest, ReadsARegularFileWhole) {
  TempDir dir;
  std::ofstream(dir.Sub("a.toml")) << "x = 1\n";
  std::string error;
  EXPECT_EQ("x = 1\n", ReadTextFile(dir.Sub("a.toml"), 6, &error).value_or("(failed) " + error));
  EXPECT_EQ(std::nullopt, ProblemWithFile(dir.Sub("a.toml")));
}

TEST(TextFileTest, RefusesWhatIsNotARegularFile) {
  TempDir dir;
  ASSERT_EQ(0, ::mkfifo(dir.Sub("fifo").c_str(), 0600));  // no writer: open() would block
  EXPECT_EQ("not a regular file (a FIFO)", Problem(dir.Sub("fifo"), 1 << 20));
  EXPECT_EQ("not a regular file (a character device)", Problem("/dev/zero", 1 << 20));
  EXPECT_EQ("not a regular file (a directory)", Problem(dir.path(), 1 << 20));
  EXPECT_EQ("cannot open: No such file or directory", Problem(dir.Sub("missing"), 1 << 20));
  EXPECT_EQ("not a regular file (a FIFO)", ProblemWithFile(dir.Sub("fifo")).value_or(""));
  EXPECT_EQ("not a regular file (a directory)", ProblemWithFile(dir.path()).value_or(""));
}

TEST(TextFileTest, RefusesAFileOverItsLimit) {
  TempDir dir;
  std::ofstream(dir.Sub("big")) << std::string(size_t{3} << 20, 'x');
  EXPECT_EQ("larger than the 2 MiB limit for this kind of file (3145728 bytes)",
            Problem(dir.Sub("big"), size_t{2} << 20));
  EXPECT_EQ("larger than the 100 bytes limit for this kind of file (3145728 bytes)",
            Problem(dir.Sub("big"), 100));
}

TEST(TextFileTest, TheThrowingFormNamesThePath) {
  try {
    ReadTextFileOrThrow("/dev/zero", kMaxConfigBytes);
    ADD_FAILURE() << "expected an error";
  } catch (const Exception& e) {
    EXPECT_STREQ("/dev/zero: not a regular file (a character device)", e.what());
  }
}

}  // namespace
}  // namespace splitlm::transport
