// Buffers streamed once per token (packed weights, the bandwidth probe's
// buffer) in transparent huge pages where the kernel allows them
// (MADV_HUGEPAGE: /sys/kernel/mm/transparent_hugepage/enabled is often
// "madvise"): a 2 MiB page covers what 512 small ones do, so a stream over
// ~100 MB of weights walks the page tables 512 times less often (2-7% of a
// 110M model's decode). Only the pages' size changes, never the values.
#pragma once

#include <cstddef>
#include <vector>

namespace splitlm::partition {

// Memory for `bytes`, 2 MiB-aligned and advised into huge pages when it spans
// at least one; freed with FreeHugePageMemory. Throws std::bad_alloc.
void* AllocateHugePageMemory(size_t bytes);
// What AllocateHugePageMemory(bytes) takes: `bytes` rounded up to whole
// 2 MiB pages when it spans one.
size_t HugePageAllocationSize(size_t bytes);
void FreeHugePageMemory(void* p) noexcept;

template <typename T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {
  }  // NOLINT(google-explicit-constructor): allocator rebinding
  T* allocate(size_t n) { return static_cast<T*>(AllocateHugePageMemory(n * sizeof(T))); }
  void deallocate(T* p, size_t) noexcept { FreeHugePageMemory(p); }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const {
    return false;
  }
};

template <typename T>
using HugePageVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace splitlm::partition
