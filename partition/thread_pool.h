// The threads a stage's kernels run on (kernels::ParallelFor).
//
// A loop is cut into pieces that the caller and the pool's threads take in
// turn; the caller waits only for pieces another thread has taken, never for
// a thread to arrive. On a busy device a thread may not be scheduled for
// milliseconds: a fork/join team (OpenMP's) makes every one of a token's ~85
// loops wait for it, where here the caller goes on with the pieces itself.
// Idle threads spin for a short while, for the next loop of the same token,
// then sleep.
#ifndef SPLITLM_PARTITION_THREAD_POOL_H_
#define SPLITLM_PARTITION_THREAD_POOL_H_

namespace splitlm::partition::kernels {

// Runs fn(ctx, p) for every piece p in [0, pieces) on the calling thread and
// up to `threads - 1` pool threads, and returns when all are done. Which
// thread runs a piece varies. A call made while another is running (from
// another thread, or from inside a piece) runs its pieces on its own thread.
// An exception from a piece reaches the caller once every piece has run.
// More than kMaxPieces pieces run on the caller alone; more than kMaxThreads
// threads count as kMaxThreads.
constexpr int kMaxPieces = 4095;
constexpr int kMaxThreads = 256;
void RunPieces(int threads, int pieces, void (*fn)(void* ctx, int piece), void* ctx);

}  // namespace splitlm::partition::kernels

#endif  // SPLITLM_PARTITION_THREAD_POOL_H_
