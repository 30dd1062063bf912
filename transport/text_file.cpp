#include "transport/text_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "transport/error.h"

namespace splitlm::transport {
namespace {

const char* KindOf(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

std::string SizePhrase(size_t bytes) {
  if (bytes >= (size_t{1} << 20) && bytes % (size_t{1} << 20) == 0) {
    return std::to_string(bytes >> 20) + " MiB";
  }
  return std::to_string(bytes) + " bytes";
}

// Opens `path` for reading without blocking (O_NONBLOCK: a FIFO with no writer
// would otherwise block open() forever) and checks it is a regular file.
// Returns the descriptor, or -1 with `*error` set.
int OpenRegular(const std::string& path, struct stat* st, std::string* error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    *error = std::string("cannot open: ") + std::strerror(errno);
    return -1;
  }
  if (::fstat(fd, st) != 0) {
    *error = std::string("cannot stat: ") + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  if (!S_ISREG(st->st_mode)) {
    *error = std::string("not a regular file (") + KindOf(st->st_mode) + ")";
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

std::string ReadTextFileOrThrow(const std::string& path, size_t max_bytes) {
  std::string problem;
  std::optional<std::string> text = ReadTextFile(path, max_bytes, &problem);
  if (text) return std::move(*text);
  Exception::Code code = Exception::kInvalidArgument;
  if (problem.rfind("cannot open", 0) == 0 || problem.rfind("cannot stat", 0) == 0)
    code = Exception::kNotFound;
  if (problem.rfind("read failed", 0) == 0) code = Exception::kUnavailable;
  throw Exception(code, path + ": " + problem);
}

std::optional<std::string> ReadTextFile(const std::string& path, size_t max_bytes,
                                        std::string* error) {
  struct stat st;
  const int fd = OpenRegular(path, &st, error);
  if (fd < 0) return std::nullopt;
  const std::string too_large =
      "larger than the " + SizePhrase(max_bytes) + " limit for this kind of file";
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    *error = too_large + " (" + std::to_string(st.st_size) + " bytes)";
    ::close(fd);
    return std::nullopt;
  }
  std::string text;
  text.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = std::string("read failed: ") + std::strerror(errno);
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > max_bytes) {  // the file grew while read
      *error = too_large;
      ::close(fd);
      return std::nullopt;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

std::optional<std::string> ProblemWithFile(const std::string& path) {
  struct stat st;
  std::string error;
  const int fd = OpenRegular(path, &st, &error);
  if (fd < 0) return error;
  ::close(fd);
  return std::nullopt;
}

}  // namespace splitlm::transport
