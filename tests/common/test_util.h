// Helpers for the GoogleTest suites.
#pragma once

#include <optional>
#include <string>

#include "partition/random_model.h"

namespace splitlm::testing {

// A fresh directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes a generated model (default: the tiny preset) into `dir`.
std::string MakeModel(const std::string& dir, partition::RandomModelOptions options = {});

// ../shared beside the checkout (or $SPLITLM_SHARED), if present.
std::optional<std::string> SharedDir();

// The built binary `name` in build/bin.
std::string BinPath(const std::string& name);

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `command` with /bin/sh, capturing stdout and stderr.
CommandResult RunCommand(const std::string& command);

}  // namespace splitlm::testing
