// What of a process's memory is resident, read from Linux's /proc: the
// measure behind "a stage touches only its own layers" (a device at cut K
// neither reads nor keeps the pages of layers >= K of a memory-mapped model
// file). Page presence is this process's own page tables, not the page
// cache: a file another process (or an earlier digest read) brought into the
// cache counts only where this process has touched its mapping.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace splitlm::partition {

// Bytes of [begin, begin + bytes) whose pages are mapped present in this
// process (/proc/self/pagemap's present bit, readable without privileges),
// counting only pages wholly inside the range. nullopt where pagemap cannot
// be read (not Linux, or /proc not mounted).
std::optional<size_t> PresentBytes(const void* begin, size_t bytes);

// Resident bytes of every mapping of the file `path` in this process (the sum
// of /proc/self/smaps "Rss" over the mappings whose pathname is the file's
// canonical path); nullopt where smaps cannot be read.
std::optional<size_t> FileMappedRss(const std::string& path);

// This process's resident set (/proc/self/statm); nullopt where unreadable.
std::optional<size_t> ProcessRss();

}  // namespace splitlm::partition
