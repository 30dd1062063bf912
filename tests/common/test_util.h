// Helpers for the GoogleTest suites.
#pragma once

#include <optional>
#include <string>
#include <thread>
#include <vector>

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

// `rel` inside SharedDir(), or "" when ../shared or that file is absent.
std::string SharedPath(const std::string& rel);

// In a test body: declares `var` as the path of ../shared/`rel` (a string
// literal), or skips the test with a message saying how to provide it.
#define REQUIRE_SHARED(var, rel)                                          \
  const std::string var = ::splitlm::testing::SharedPath(rel);            \
  if (var.empty()) {                                                      \
    GTEST_SKIP() << "../shared/" rel                                      \
                    " is absent (it sits beside the checkout in CI; "     \
                    "set SPLITLM_SHARED to its folder to run this test)"; \
  }

// The built binary `name` in build/bin.
std::string BinPath(const std::string& name);

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `command` with /bin/sh, capturing stdout and stderr.
CommandResult RunCommand(const std::string& command);

// A child process whose stdout is read line by line (stderr goes to a file).
// Killed with SIGKILL on destruction if still running.
class Process {
 public:
  explicit Process(const std::string& command);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // The next line of stdout, or nullopt at EOF or after `timeout_ms`.
  std::optional<std::string> ReadLine(int timeout_ms);
  // Reads lines until one starts with `prefix`; returns the rest of it.
  std::optional<std::string> WaitFor(const std::string& prefix, int timeout_ms);
  void Signal(int sig);
  // Waits for exit; the exit code, or 128 + signal.
  int Wait();
  std::string Stderr() const;
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
  std::string err_path_;
  bool exited_ = false;
  int status_ = 0;
};

// Fault injection from the test: watches `worker`, a splitlm-fault-worker
// started with --freeze-at N (tests/cloud/fault_worker.cpp), on a thread,
// and kills it with SIGKILL as soon as it reports that it stopped itself at
// its Nth step. The worker's stdout is this watcher's until Killed()
// returns; `worker` must outlive this.
class KillWhenFrozen {
 public:
  explicit KillWhenFrozen(Process& worker, int timeout_ms = 120000);
  ~KillWhenFrozen();  // joins
  KillWhenFrozen(const KillWhenFrozen&) = delete;
  KillWhenFrozen& operator=(const KillWhenFrozen&) = delete;
  // Waits for the watcher: true when the worker froze and was killed, false
  // when its stdout ended or `timeout_ms` passed first.
  bool Killed();

 private:
  Process& worker_;
  bool killed_ = false;
  std::thread thread_;
};

}  // namespace splitlm::testing
