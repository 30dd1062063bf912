#include "partition/thread_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace splitlm::partition::kernels {
namespace {

using Clock = std::chrono::steady_clock;

inline void Relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// How long an idle pool thread looks for the next loop before it sleeps:
// longer than the gaps between one token's loops, short enough that a
// thread between requests does not hold a core.
constexpr auto kIdleSpin = std::chrono::microseconds(200);
// How long the caller spins on pieces others hold before it sleeps: longer
// than a piece takes (up to ~0.1 ms), so that it sleeps only when the
// holder was preempted, and then gives its core away.
constexpr auto kWaitSpin = std::chrono::microseconds(1000);

// True on pool threads and on a caller while it runs pieces: a loop started
// there runs on its own thread.
thread_local bool in_pieces = false;

// The job word: generation (32 bits), helpers allowed (8), pieces (12), the
// next piece to take (12). One word, so that a piece is taken only of the
// job its taker knows.
constexpr uint64_t Word(uint32_t gen, int helpers, int pieces) {
  return static_cast<uint64_t>(gen) << 32 | static_cast<uint64_t>(helpers) << 24 |
         static_cast<uint64_t>(pieces) << 12;
}
constexpr uint32_t Gen(uint64_t w) { return static_cast<uint32_t>(w >> 32); }
constexpr int Helpers(uint64_t w) { return static_cast<int>(w >> 24 & 0xff); }
constexpr int Pieces(uint64_t w) { return static_cast<int>(w >> 12 & 0xfff); }
constexpr int Next(uint64_t w) { return static_cast<int>(w & 0xfff); }

class Pool {
 public:
  // Never destroyed: its threads sleep through exit.
  static Pool& Get() {
    static Pool* pool = new Pool;
    return *pool;
  }

  void Run(int threads, int pieces, void (*fn)(void*, int), void* ctx) {
    std::unique_lock<std::mutex> running(run_mu_, std::try_to_lock);
    if (!running.owns_lock()) return Inline(pieces, fn, ctx);
    const int helpers = std::min(threads, kMaxThreads) - 1;
    Grow(helpers);
    fn_ = fn;
    ctx_ = ctx;
    error_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    const uint32_t gen = ++gen_;  // wraps: only equality is asked
    // seq_cst, with the sleepers' count: a thread going to sleep either sees
    // this job or is counted here (and woken).
    word_.store(Word(gen, helpers, pieces));
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lock(sleep_mu_);
      wake_.notify_all();
    }
    int mine = 0;
    std::exception_ptr error;
    in_pieces = true;
    for (int p; (p = Take(gen)) >= 0; ++mine) {
      try {
        fn(ctx, p);
      } catch (...) {
        if (!error) error = std::current_exception();
      }
    }
    in_pieces = false;
    // Only pieces another thread took are waited for.
    const int others = pieces - mine;
    const auto spin_end = Clock::now() + kWaitSpin;
    while (done_.load(std::memory_order_acquire) < others) {
      if (Clock::now() < spin_end) {
        for (int i = 0; i < 16; ++i) Relax();
        continue;
      }
      // Sleep, giving the core to whoever holds a piece.
      waiting_.store(true);
      std::unique_lock<std::mutex> lock(sleep_mu_);
      done_cv_.wait(lock, [&] { return done_.load() >= others; });
      waiting_.store(false);
    }
    if (!error) error = error_;
    if (error) std::rethrow_exception(error);
  }

  // Every piece on this thread (the first exception rethrown after the last
  // piece, as from Run).
  static void Inline(int pieces, void (*fn)(void*, int), void* ctx) {
    std::exception_ptr error;
    for (int p = 0; p < pieces; ++p) {
      try {
        fn(ctx, p);
      } catch (...) {
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  }

 private:
  // The next piece of job `gen`, or -1 when it has none left.
  int Take(uint32_t gen) {
    uint64_t w = word_.load(std::memory_order_acquire);
    while (Gen(w) == gen && Next(w) < Pieces(w)) {
      if (word_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return Next(w);
      }
    }
    return -1;
  }

  void Grow(int helpers) {
    for (; started_ < helpers; ++started_) {
      std::thread t([this, index = started_] { Loop(index); });
      pthread_setname_np(t.native_handle(), "splitlm-kernels");
      t.detach();
    }
  }

  // A pool thread: waits for a job it may help with, takes its pieces until
  // none is left.
  void Loop(int index) {
    in_pieces = true;
    uint32_t seen = 0;  // the generation last looked at
    while (true) {
      const uint64_t w = WaitForJob(seen);
      seen = Gen(w);
      if (index >= Helpers(w)) continue;
      // A piece taken is of job `seen`, whose caller waits for it: fn_ and
      // ctx_ stay that job's until it is done.
      for (int p; (p = Take(seen)) >= 0;) {
        try {
          fn_(ctx_, p);
        } catch (...) {
          std::lock_guard<std::mutex> lock(sleep_mu_);
          if (!error_) error_ = std::current_exception();
        }
        done_.fetch_add(1);  // seq_cst, with waiting_: the caller sees it or is woken
        if (waiting_.load()) {
          std::lock_guard<std::mutex> lock(sleep_mu_);
          done_cv_.notify_one();
        }
      }
    }
  }

  // The job word once its generation is not `seen`: spins a while, then sleeps.
  uint64_t WaitForJob(uint32_t seen) {
    const auto spin_end = Clock::now() + kIdleSpin;
    do {
      for (int i = 0; i < 64; ++i) {
        const uint64_t w = word_.load(std::memory_order_acquire);
        if (Gen(w) != seen) return w;
        Relax();
      }
    } while (Clock::now() < spin_end);
    sleepers_.fetch_add(1);
    std::unique_lock<std::mutex> lock(sleep_mu_);
    wake_.wait(lock, [&] { return Gen(word_.load()) != seen; });
    sleepers_.fetch_sub(1);
    return word_.load(std::memory_order_acquire);
  }

  std::mutex run_mu_;  // one job at a time
  uint32_t gen_ = 0;
  std::atomic<uint64_t> word_{0};
  std::atomic<int> done_{0};  // pieces finished by pool threads
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  std::exception_ptr error_;  // a pool thread's first exception (under sleep_mu_)
  int started_ = 0;           // pool threads (detached), under run_mu_
  std::mutex sleep_mu_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  std::condition_variable done_cv_;  // the caller sleeps here on pieces others hold
  std::atomic<bool> waiting_{false};
};

}  // namespace

void RunPieces(int threads, int pieces, void (*fn)(void* ctx, int piece), void* ctx) {
  if (pieces <= 0) return;
  if (in_pieces || threads <= 1 || pieces == 1 || pieces > kMaxPieces) {
    return Pool::Inline(pieces, fn, ctx);
  }
  Pool::Get().Run(threads, pieces, fn, ctx);
}

}  // namespace splitlm::partition::kernels
