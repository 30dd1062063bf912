#include "tests/common/test_util.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
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

std::string SharedPath(const std::string& rel) {
  auto shared = SharedDir();
  if (!shared || !std::filesystem::exists(*shared + "/" + rel)) return "";
  return *shared + "/" + rel;
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

Process::Process(const std::string& command) {
  char tmpl[] = "/tmp/splitlm-proc-XXXXXX";
  const int err_fd = mkstemp(tmpl);
  err_path_ = tmpl;
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    dup2(fds[1], 1);
    dup2(err_fd, 2);
    close(fds[0]);
    close(fds[1]);
    execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  close(err_fd);
  out_fd_ = fds[0];
}

Process::~Process() {
  if (!exited_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    Wait();
  }
  if (out_fd_ >= 0) close(out_fd_);
  unlink(err_path_.c_str());
}

std::optional<std::string> Process::ReadLine(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    const auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(out_fd_, buf, sizeof buf);
    if (n <= 0) {
      if (buffer_.empty()) return std::nullopt;
      std::string line;
      line.swap(buffer_);
      return line;
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

std::optional<std::string> Process::WaitFor(const std::string& prefix, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto line = ReadLine(static_cast<int>(left.count()));
    if (!line) return std::nullopt;
    if (line->rfind(prefix, 0) == 0) return line->substr(prefix.size());
  }
}

void Process::Signal(int sig) {
  if (!exited_) kill(pid_, sig);
}

int Process::Wait() {
  if (!exited_) {
    waitpid(pid_, &status_, 0);
    exited_ = true;
  }
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
}

std::string Process::Stderr() const {
  std::ifstream in(err_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

KillWhenFrozen::KillWhenFrozen(Process& worker, int timeout_ms)
    : worker_(worker), thread_([this, timeout_ms] {
        if (!worker_.WaitFor("frozen at forward ", timeout_ms)) return;
        worker_.Signal(SIGKILL);
        killed_ = true;
      }) {}

KillWhenFrozen::~KillWhenFrozen() {
  if (thread_.joinable()) thread_.join();
}

bool KillWhenFrozen::Killed() {
  if (thread_.joinable()) thread_.join();
  return killed_;
}

}  // namespace splitlm::testing
