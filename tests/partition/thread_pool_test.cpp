// The kernels' thread pool (partition/thread_pool.h): every index of a region
// runs exactly once whatever the thread count and grain, nested regions run
// inline, a chunk's exception reaches the caller and the pool stays usable,
// and callers on several threads take turns.
#include "partition/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace splitlm::partition {
namespace {

template <typename F>
void PoolRun(int n, int grain, int threads, F&& f) {
  PoolParallelFor(n, grain, threads, [](void* ctx, int b, int e) { (*static_cast<F*>(ctx))(b, e); }, &f);
}

std::vector<int> Counts(int n, int grain, int threads) {
  std::vector<std::atomic<int>> hits(n);
  PoolRun(n, grain, threads, [&](int b, int e) {
    for (int i = b; i < e; ++i) hits[i].fetch_add(1);
  });
  std::vector<int> out;
  for (auto& h : hits) out.push_back(h.load());
  return out;
}

TEST(ThreadPool, EveryIndexRunsOnceForAnyThreadsAndGrain) {
  for (int threads : {1, 2, 3, 5}) {
    for (int grain : {1, 3, 64}) {
      for (int n : {1, 7, 64, 1000}) {
        EXPECT_EQ(Counts(n, grain, threads), std::vector<int>(n, 1))
            << "n " << n << " grain " << grain << " threads " << threads;
      }
    }
  }
}

TEST(ThreadPool, ChunksRespectTheGrainAndNestedRegionsRunInline) {
  std::atomic<int> smallest{1 << 30}, nested_chunks{0};
  PoolRun(100, 10, 3, [&](int b, int e) {
    if (e < 100) smallest = std::min(smallest.load(), e - b);
    PoolRun(50, 1, 3, [&](int nb, int ne) {
      EXPECT_EQ(nb, 0);
      EXPECT_EQ(ne, 50);
      nested_chunks.fetch_add(1);
    });
  });
  EXPECT_GE(smallest.load(), 10);
  EXPECT_GE(nested_chunks.load(), 1);
}

TEST(ThreadPool, AChunksExceptionReachesTheCallerAndThePoolStaysUsable) {
  EXPECT_THROW(PoolRun(1000, 1, 2, [&](int b, int e) {
                 if (b <= 500 && 500 < e) throw std::runtime_error("chunk failed");
               }),
               std::runtime_error);
  EXPECT_EQ(Counts(1000, 1, 2), std::vector<int>(1000, 1));
}

TEST(ThreadPool, CallersOnSeveralThreadsTakeTurns) {
  std::vector<std::vector<int>> results(4);
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) results[t] = Counts(300, 2, 2);
    });
  }
  for (auto& c : callers) c.join();
  for (const auto& r : results) EXPECT_EQ(r, std::vector<int>(300, 1));
}

}  // namespace
}  // namespace splitlm::partition
