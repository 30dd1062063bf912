#include "tests/common/test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace splitlm::testing {
namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "splitlm-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string MakeModel(const std::string& dir, partition::RandomModelOptions options) {
  partition::WriteRandomModel(options, dir);
  return dir;
}

std::optional<std::string> SharedDir() {
  if (const char* env = std::getenv("SPLITLM_SHARED")) return std::string(env);
  if (fs::is_directory(SPLITLM_SHARED_DIR)) return fs::canonical(SPLITLM_SHARED_DIR).string();
  return std::nullopt;
}

std::string BinPath(const std::string& name) { return std::string(SPLITLM_BIN_DIR) + "/" + name; }

CommandResult RunCommand(const std::string& command) {
  TempDir tmp;
  const std::string out = tmp.Sub("out"), err = tmp.Sub("err");
  const std::string full = command + " >" + out + " 2>" + err + " </dev/null";
  int status = std::system(full.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

}  // namespace splitlm::testing
