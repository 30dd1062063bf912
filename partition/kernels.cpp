#include "partition/kernels.h"

#include <ATen/Parallel.h>

#include <atomic>

namespace splitlm::partition::kernels {

#define SPLITLM_DECLARE_ISA(ns)                                                           \
  namespace ns {                                                                         \
  void MatMulRowsEntry(const float* w, int m, int k, const float* x, int n, float* y,    \
                       const float* bias, int r0, int r1);                               \
  float DotEntry(const float* a, const float* b, int k);                                 \
  void AttendEntry(const float* q, const float* k, const float* v, int t, int hd,        \
                   float scale, float* scores, float* out);                              \
  }
SPLITLM_DECLARE_ISA(portable)
#if defined(SPLITLM_HAVE_AVX2)
SPLITLM_DECLARE_ISA(avx2)
#endif

namespace {

struct Isa {
  const char* name;
  decltype(&portable::MatMulRowsEntry) matmul_rows;
  decltype(&portable::DotEntry) dot;
  decltype(&portable::AttendEntry) attend;
};

const Isa kPortable{"portable", portable::MatMulRowsEntry, portable::DotEntry,
                    portable::AttendEntry};
#if defined(SPLITLM_HAVE_AVX2)
const Isa kAvx2{"avx2+fma", avx2::MatMulRowsEntry, avx2::DotEntry, avx2::AttendEntry};
#endif

const Isa* Detect() {
#if defined(SPLITLM_HAVE_AVX2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &kAvx2;
#endif
  return &kPortable;
}

std::atomic<const Isa*> g_isa{Detect()};

}  // namespace

const char* ActiveIsa() { return g_isa.load()->name; }

bool ForcePortable(bool on) {
  const Isa* prev = g_isa.exchange(on ? &kPortable : Detect());
  return prev == &kPortable;
}

void ParallelFor(int n, int grain, void (*fn)(void*, int, int), void* ctx) {
  if (n <= 0) return;
  if (n <= grain) {
    fn(ctx, 0, n);
    return;
  }
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) { fn(ctx, static_cast<int>(b), static_cast<int>(e)); });
}

void MatMul(const float* w, int m, int k, const float* x, int n, float* y, const float* bias) {
  const Isa* isa = g_isa.load(std::memory_order_relaxed);
  // Split rows in multiples of 8 so every thread uses the widest tile; aim
  // for chunks of at least ~64 KiB of weights so a tiny matrix stays on one
  // thread.
  const int rows_per_64k = (16384 + k - 1) / k;
  const int grain_rows = ((rows_per_64k + 7) / 8) * 8;
  const int blocks = (m + 7) / 8;
  ParallelFor(blocks, (grain_rows + 7) / 8, [&](int b, int e) {
    const int r0 = b * 8;
    const int r1 = e * 8 < m ? e * 8 : m;
    isa->matmul_rows(w, m, k, x, n, y, bias, r0, r1);
  });
}

float Dot(const float* a, const float* b, int k) { return g_isa.load(std::memory_order_relaxed)->dot(a, b, k); }

void Attend(const float* q, const float* k, const float* v, int t, int hd, float scale,
            float* scores, float* out) {
  g_isa.load(std::memory_order_relaxed)->attend(q, k, v, t, hd, scale, scores, out);
}

}  // namespace splitlm::partition::kernels
