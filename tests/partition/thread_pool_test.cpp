// The kernels' own threads (partition/thread_pool.h): every piece runs once,
// whatever the thread count, from any number of callers at once; a call made
// while the pool is taken (from another thread or from inside a piece) runs
// on its own thread instead of waiting; exceptions reach the caller.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "partition/thread_pool.h"

namespace splitlm::partition::kernels {
namespace {

// Runs `f(piece)` for `pieces` pieces on `threads` threads.
template <typename F>
void RunAll(int threads, int pieces, F&& f) {
  RunPieces(
      threads, pieces, [](void* ctx, int p) { (*static_cast<F*>(ctx))(p); }, &f);
}

TEST(ThreadPool, EveryPieceRunsExactlyOnceForEveryThreadAndPieceCount) {
  for (int threads : {1, 2, 3, 8, kMaxThreads + 5}) {
    for (int pieces : {0, 1, 2, 7, 64, kMaxPieces, kMaxPieces + 1}) {
      for (int round = 0; round < 20; ++round) {
        std::vector<std::atomic<int>> runs(static_cast<size_t>(pieces));
        RunAll(threads, pieces, [&](int p) { runs[static_cast<size_t>(p)].fetch_add(1); });
        for (int p = 0; p < pieces; ++p) {
          ASSERT_EQ(1, runs[static_cast<size_t>(p)].load())
              << "piece " << p << " of " << pieces << ", " << threads << " threads";
        }
      }
    }
  }
}

TEST(ThreadPool, CallersOnSeveralThreadsAtOnceEachGetAllTheirPieces) {
  constexpr int kCallers = 4, kCalls = 300, kPieces = 37;
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int call = 0; call < kCalls; ++call) {
        std::vector<int> seen(kPieces, 0);  // each piece writes its own slot
        RunAll(2, kPieces, [&](int p) { seen[static_cast<size_t>(p)] += p + c; });
        for (int p = 0; p < kPieces; ++p) {
          if (seen[static_cast<size_t>(p)] != p + c) wrong.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(0, wrong.load());
}

TEST(ThreadPool, ALoopInsideAPieceRunsOnItsOwnThread) {
  std::vector<std::atomic<int>> runs(8 * 8);
  RunAll(2, 8, [&](int outer) {
    const auto self = std::this_thread::get_id();
    RunAll(2, 8, [&](int inner) {
      EXPECT_EQ(self, std::this_thread::get_id());
      runs[static_cast<size_t>(outer * 8 + inner)].fetch_add(1);
    });
  });
  for (auto& r : runs) EXPECT_EQ(1, r.load());
}

// A call made while another caller's loop is running (one of its pieces is
// held) finishes on its own thread: it does not wait for the pool (were it
// to, the held piece, released only after it returns, would never finish).
TEST(ThreadPool, ACallWhileThePoolIsTakenDoesNotWaitForIt) {
  std::mutex mu;
  std::condition_variable cv;
  bool inside = false, release = false;
  std::thread first([&] {
    RunAll(2, 2, [&](int) {
      std::unique_lock<std::mutex> lock(mu);
      if (inside) return;  // only one piece holds
      inside = true;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
    });
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return inside; });
  }
  std::mutex ran_mu;
  std::set<std::thread::id> ran_on;
  RunAll(2, 16, [&](int) {
    std::lock_guard<std::mutex> lock(ran_mu);
    ran_on.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(std::set<std::thread::id>{std::this_thread::get_id()}, ran_on);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  first.join();
}

TEST(ThreadPool, AnExceptionInAnyPieceReachesTheCallerAfterEveryPieceRan) {
  for (int thrower : {0, 5, 15}) {
    std::vector<std::atomic<int>> runs(16);
    try {
      RunAll(2, 16, [&](int p) {
        runs[static_cast<size_t>(p)].fetch_add(1);
        if (p == thrower) throw std::runtime_error("piece " + std::to_string(p));
      });
      ADD_FAILURE() << "no exception from piece " << thrower;
    } catch (const std::runtime_error& e) {
      EXPECT_EQ("piece " + std::to_string(thrower), e.what());
    }
    for (auto& r : runs) EXPECT_EQ(1, r.load());
    // The pool still works.
    std::atomic<int> n{0};
    RunAll(2, 16, [&](int) { n.fetch_add(1); });
    EXPECT_EQ(16, n.load());
  }
}

}  // namespace
}  // namespace splitlm::partition::kernels
