// The threads the kernels run on: one process-wide pool of persistent workers
// that the calling thread joins. A decoded token runs ~60 short parallel
// regions (each matrix product, the attention, the row work); LibTorch's
// at::parallel_for forks and joins an OpenMP team for each, which cost ~20%
// of a 110M model's decode. Here a region costs a store, a few cache-line
// transfers and a counter: idle workers spin briefly (~200 us) on the next
// region's ticket, then sleep on a futex, so a busy machine loses no CPU to a
// pool between bursts of work.
//
// The pool is process-wide like LibTorch's own (the kernels are free
// functions called from every stage and session); it is created on first use
// and never destroyed (its workers sleep until the process exits).
#pragma once

namespace splitlm::partition {

// Runs fn(ctx, begin, end) over [0, n) in chunks of at least `grain`
// (chunks are taken dynamically: which thread runs a chunk varies, so fn must
// compute each index the same way whichever thread runs it) on up to
// `threads` threads, the caller included, and returns when all are done.
// Runs inline when threads <= 1, n <= grain, or when called from inside a
// region (nested). Callers on different threads take turns. The first
// exception a chunk throws is rethrown here after every chunk has finished or
// been skipped.
void PoolParallelFor(int n, int grain, int threads, void (*fn)(void* ctx, int begin, int end), void* ctx);

}  // namespace splitlm::partition
