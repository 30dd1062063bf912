// splitlm::Exception: its codes, their names and exit codes, and what main()
// reports for exceptions that are not splitlm's.
#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <string>

#include "tests/common/test_util.h"
#include "transport/error.h"
#include "transport/text_file.h"

namespace splitlm {
namespace {

TEST(Exception, CarriesItsCodeAndMessage) {
  try {
    throw Exception(Exception::kCorrupt, "m.gguf: truncated");
  } catch (const std::runtime_error& e) {  // callers that know only the standard type still see it
    const auto* x = dynamic_cast<const Exception*>(&e);
    ASSERT_NE(nullptr, x);
    EXPECT_EQ(Exception::kCorrupt, x->code());
    EXPECT_STREQ("m.gguf: truncated", e.what());
  }
}

TEST(Exception, EveryCodeHasItsOwnNameAndExitCode) {
  std::set<std::string> names;
  std::set<int> exits;
  for (int c = 0; c < Exception::kCodes; ++c) {
    const auto code = static_cast<Exception::Code>(c);
    names.insert(CodeName(code));
    exits.insert(ExitCode(code));
    // Outside 0..63, which stay free for commands' own outcomes.
    EXPECT_GE(ExitCode(code), 64) << CodeName(code);
  }
  EXPECT_EQ(static_cast<size_t>(Exception::kCodes), names.size());
  EXPECT_EQ(static_cast<size_t>(Exception::kCodes), exits.size());
  EXPECT_STREQ("not found", CodeName(Exception::kNotFound));
  EXPECT_EQ(64, ExitCode(Exception::kInvalidArgument));  // sysexits.h EX_USAGE
  EXPECT_EQ(69, ExitCode(Exception::kUnavailable));      // EX_UNAVAILABLE
}

TEST(Exception, MainReportsForeignExceptionsAsInternal) {
  const Exception ours(Exception::kNotFound, "x: cannot open");
  EXPECT_EQ(ExitCode(Exception::kNotFound), ExitCodeOf(ours));
  EXPECT_EQ("x: cannot open", MessageOf(ours));
  const std::logic_error foreign("oops");
  EXPECT_EQ(ExitCode(Exception::kInternal), ExitCodeOf(foreign));
  EXPECT_EQ("internal error: oops", MessageOf(foreign));
}

Exception::Code ReadCode(const std::string& path) {
  try {
    transport::ReadTextFileOrThrow(path, 1 << 20);
  } catch (const Exception& e) {
    EXPECT_NE(std::string::npos, std::string(e.what()).find(path)) << e.what();
    return e.code();
  }
  ADD_FAILURE() << path << " was read";
  return Exception::kInternal;
}

TEST(Exception, ReadTextFileOrThrowSaysWhichKindOfProblem) {
  testing::TempDir dir;
  EXPECT_EQ(Exception::kNotFound, ReadCode(dir.Sub("missing.toml")));
  EXPECT_EQ(Exception::kInvalidArgument, ReadCode(dir.path()));  // a directory
}

}  // namespace
}  // namespace splitlm
