#include "partition/thread_pool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>

namespace splitlm::partition {
namespace {

using Clock = std::chrono::steady_clock;

// How long an idle thread spins before it sleeps: far longer than the gap
// between two regions of one token, far shorter than a scheduler tick.
constexpr auto kSpin = std::chrono::microseconds(200);

// A region's ticket: its sequence number above, its thread count (the caller
// included) in the low 8 bits, published in one 32-bit word so that a worker
// decides from one load whether it takes part.
constexpr uint32_t kThreadBits = 8;
constexpr int kMaxThreads = (1 << kThreadBits) - 1;

thread_local bool t_in_region = false;

void FutexWait(std::atomic<uint32_t>* word, uint32_t value) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Waits until *word != old (spinning for kSpin, then sleeping on the futex
// with *sleepers counting the sleepers) and returns the new value.
uint32_t WaitWhileEqual(std::atomic<uint32_t>* word, uint32_t old, std::atomic<int>* sleepers) {
  const Clock::time_point start = Clock::now();
  for (int i = 1;; ++i) {
    const uint32_t v = word->load(std::memory_order_acquire);
    if (v != old) return v;
    if (i % 64 == 0 && Clock::now() - start > kSpin) break;
    CpuRelax();
  }
  sleepers->fetch_add(1);  // seq_cst: pairs with the waker's store then load
  uint32_t v;
  while ((v = word->load()) == old) FutexWait(word, old);
  sleepers->fetch_sub(1);
  return v;
}

class Pool {
 public:
  void Run(int n, int grain, int threads, void (*fn)(void*, int, int), void* ctx) {
    std::lock_guard<std::mutex> turn(run_mutex_);
    threads = std::min({threads, kMaxThreads, (n + grain - 1) / grain});
    StartWorkers(threads - 1);
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    // A few chunks per thread: a thread slowed by another process leaves its
    // share to the others.
    chunk_ = std::max(grain, (n + 4 * threads - 1) / (4 * threads));
    next_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    pending_.store(static_cast<uint32_t>(threads - 1), std::memory_order_relaxed);
    sequence_ += 1u << kThreadBits;
    ticket_.store(sequence_ | static_cast<uint32_t>(threads));  // seq_cst: before reading the sleepers
    if (worker_sleepers_.load() > 0) FutexWakeAll(&ticket_);

    t_in_region = true;
    RunChunks();
    t_in_region = false;
    uint32_t p;
    while ((p = pending_.load(std::memory_order_acquire)) != 0) WaitWhileEqual(&pending_, p, &caller_sleepers_);
    if (error_) std::rethrow_exception(error_);
  }

  // After fork() the child has only the forking thread: a fresh pool.
  static Pool*& Instance() {
    static Pool* pool = [] {
      pthread_atfork(nullptr, nullptr, [] { Instance() = new Pool(); });  // the old one leaks, by design
      return new Pool();
    }();
    return pool;
  }

 private:
  // A new worker starts from the current ticket (read here, before the
  // caller publishes the next one): the region it is started for is new to it.
  void StartWorkers(int count) {
    const uint32_t current = ticket_.load();
    for (; workers_ < count; ++workers_) {
      std::thread([this, index = workers_, current] { Work(index, current); }).detach();
    }
  }

  void RunChunks() {
    for (;;) {
      const int b = next_.fetch_add(chunk_, std::memory_order_relaxed);
      if (b >= n_) return;
      try {
        fn_(ctx_, b, std::min(n_, b + chunk_));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(n_, std::memory_order_relaxed);  // skip the rest
      }
    }
  }

  // Worker `index` takes part in a region iff index + 1 < its thread count.
  void Work(int index, uint32_t seen) {
    t_in_region = true;  // anything a chunk calls runs inline
    for (;;) {
      seen = WaitWhileEqual(&ticket_, seen, &worker_sleepers_);
      if (static_cast<int>(seen & kMaxThreads) <= index + 1) continue;
      RunChunks();
      if (pending_.fetch_sub(1) == 1 && caller_sleepers_.load() > 0) FutexWakeAll(&pending_);
    }
  }

  std::mutex run_mutex_;  // one region at a time
  int workers_ = 0;
  uint32_t sequence_ = 0;
  // The region being run: written by the caller before it publishes the
  // ticket, read by the workers that take part; unchanged until they are done.
  void (*fn_)(void*, int, int) = nullptr;
  void* ctx_ = nullptr;
  int n_ = 0, chunk_ = 1;
  std::exception_ptr error_;
  std::mutex error_mutex_;
  alignas(64) std::atomic<uint32_t> ticket_{0};
  alignas(64) std::atomic<int> next_{0};
  alignas(64) std::atomic<uint32_t> pending_{0};  // workers still in the region
  alignas(64) std::atomic<int> worker_sleepers_{0};
  std::atomic<int> caller_sleepers_{0};
};

}  // namespace

void PoolParallelFor(int n, int grain, int threads, void (*fn)(void* ctx, int begin, int end), void* ctx) {
  if (n <= 0) return;
  grain = std::max(1, grain);
  if (threads <= 1 || n <= grain || t_in_region) {
    fn(ctx, 0, n);
    return;
  }
  Pool::Instance()->Run(n, grain, threads, fn, ctx);
}

}  // namespace splitlm::partition
