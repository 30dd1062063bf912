#include "partition/huge_pages.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

namespace splitlm::partition {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

size_t HugePageAllocationSize(size_t bytes) {
  return bytes < kHugePage ? bytes : (bytes + kHugePage - 1) / kHugePage * kHugePage;
}

void* AllocateHugePageMemory(size_t bytes) {
  if (bytes < kHugePage) {
    void* p = std::malloc(bytes == 0 ? 1 : bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  const size_t rounded = HugePageAllocationSize(bytes);
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (p == nullptr) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
  madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without THP, small pages
#endif
  return p;
}

void FreeHugePageMemory(void* p) noexcept { std::free(p); }

}  // namespace splitlm::partition
