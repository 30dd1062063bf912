#include "partition/resident_memory.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace splitlm::partition {

std::optional<size_t> PresentBytes(const void* begin, size_t bytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t start = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(begin) + bytes) / page * page;
  if (end <= start) return size_t{0};
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  const size_t pages = (end - start) / page;
  std::vector<uint64_t> entries(pages);
  const off_t at = static_cast<off_t>(start / page * sizeof(uint64_t));
  const ssize_t want = static_cast<ssize_t>(pages * sizeof(uint64_t));
  const ssize_t got = ::pread(fd, entries.data(), static_cast<size_t>(want), at);
  ::close(fd);
  if (got != want) return std::nullopt;
  size_t present = 0;
  for (uint64_t e : entries) present += (e >> 63) & 1;  // bit 63: page present
  return present * page;
}

std::optional<size_t> FileMappedRss(const std::string& path) {
  std::error_code ec;
  const std::string canonical = std::filesystem::canonical(path, ec).string();
  if (ec) return std::nullopt;
  std::ifstream smaps("/proc/self/smaps");
  if (!smaps) return std::nullopt;
  size_t total = 0;
  bool ours = false;
  std::string line;
  while (std::getline(smaps, line)) {
    // A mapping's header: "start-end perms offset dev inode [pathname]"; its
    // fields follow as "Name:   value kB".
    const size_t colon = line.find(':');
    const bool field =
        colon != std::string::npos && colon < line.find(' ') && line.find('-') > colon;
    if (!field) {
      std::istringstream in(line);
      std::string range, perms, offset, dev, inode, name;
      in >> range >> perms >> offset >> dev >> inode;
      std::getline(in >> std::ws, name);
      ours = name == canonical;
    } else if (ours && line.compare(0, 4, "Rss:") == 0) {
      total += std::stoull(line.substr(4)) * 1024;
    }
  }
  return total;
}

std::optional<size_t> ProcessRss() {
  std::ifstream statm("/proc/self/statm");
  size_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return std::nullopt;
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace splitlm::partition
