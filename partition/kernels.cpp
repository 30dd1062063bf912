#include "partition/kernels.h"
#include "partition/kernels_quant.h"

#include <ATen/Parallel.h>

#include <cstdint>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

namespace splitlm::partition::kernels {

#define SPLITLM_DECLARE_ISA(ns)                                                           \
  namespace ns {                                                                         \
  void MatMulEntry(const float* packed, int m, int k, const float* x, int n, float* y,   \
                   const float* bias, int p0, int p1);                                   \
  float DotEntry(const float* a, const float* b, int k);                                 \
  float ReadSumEntry(const float* p, size_t n);                                          \
  int TileInputsEntry();                                                                 \
  void AttendEntry(const float* const* q, int nq, const float* kt, int stride,           \
                   const float* v, const int* t, int hd, float scale,                    \
                   float* const* scores, float* const* out);                             \
  bool QuantMatMulEntry(uint32_t type, const uint8_t* packed, int m, int k, const float* x, \
                        int n, float* y, int ldy, const float* bias, int p0, int p1);     \
  }
SPLITLM_DECLARE_ISA(portable)
#if defined(SPLITLM_HAVE_AVX2)
SPLITLM_DECLARE_ISA(avx2)
SPLITLM_DECLARE_ISA(avx512)
#endif
#if defined(SPLITLM_HAVE_NEON)
SPLITLM_DECLARE_ISA(neon)
#endif

namespace {

struct Isa {
  const char* name;
  decltype(&portable::MatMulEntry) matmul;
  decltype(&portable::DotEntry) dot;
  decltype(&portable::ReadSumEntry) read_sum;
  decltype(&portable::TileInputsEntry) tile_inputs;
  decltype(&portable::AttendEntry) attend;
  decltype(&portable::QuantMatMulEntry) quant_matmul;
};

const Isa kPortable{"portable", portable::MatMulEntry, portable::DotEntry, portable::ReadSumEntry, portable::TileInputsEntry,
                    portable::AttendEntry, portable::QuantMatMulEntry};
#if defined(SPLITLM_HAVE_AVX2)
const Isa kAvx2{"avx2+fma", avx2::MatMulEntry, avx2::DotEntry, avx2::ReadSumEntry, avx2::TileInputsEntry, avx2::AttendEntry,
                avx2::QuantMatMulEntry};
const Isa kAvx512{"avx512f", avx512::MatMulEntry, avx512::DotEntry, avx512::ReadSumEntry, avx512::TileInputsEntry,
                  avx512::AttendEntry, avx512::QuantMatMulEntry};
#endif
#if defined(SPLITLM_HAVE_NEON)
const Isa kNeon{"neon", neon::MatMulEntry, neon::DotEntry, neon::ReadSumEntry, neon::TileInputsEntry, neon::AttendEntry,
                neon::QuantMatMulEntry};
#endif

const Isa* Detect() {
#if defined(SPLITLM_HAVE_AVX2)
  if (const char* env = std::getenv("SPLITLM_KERNELS")) {
    if (std::string(env) == "portable") return &kPortable;
    if (std::string(env) == "avx2") return &kAvx2;
  }
  if (__builtin_cpu_supports("avx512f")) return &kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &kAvx2;
#endif
#if defined(SPLITLM_HAVE_NEON)
  // Advanced SIMD is mandatory on ARMv8-A: no run-time probe needed.
  if (const char* env = std::getenv("SPLITLM_KERNELS")) {
    if (std::string(env) == "portable") return &kPortable;
  }
  return &kNeon;
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

bool ForceIsa(const char* name) {
  const std::string n = name;
  if (n.empty()) {
    g_isa.store(Detect());
    return true;
  }
  if (n == kPortable.name) {
    g_isa.store(&kPortable);
    return true;
  }
#if defined(SPLITLM_HAVE_AVX2)
  if (n == kAvx2.name && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    g_isa.store(&kAvx2);
    return true;
  }
  if (n == kAvx512.name && __builtin_cpu_supports("avx512f")) {
    g_isa.store(&kAvx512);
    return true;
  }
#endif
#if defined(SPLITLM_HAVE_NEON)
  if (n == kNeon.name) {
    g_isa.store(&kNeon);
    return true;
  }
#endif
  return false;
}

void ParallelFor(int n, int grain, void (*fn)(void*, int, int), void* ctx) {
  if (n <= 0) return;
  if (n <= grain) {
    fn(ctx, 0, n);
    return;
  }
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) { fn(ctx, static_cast<int>(b), static_cast<int>(e)); });
}

size_t PackedSize(int m, int k) { return static_cast<size_t>((m + 15) / 16) * 16 * k; }

void Pack(const float* w, int m, int k, float* dst) {
  const int panels = (m + 15) / 16;
  for (int p = 0; p < panels; ++p) {
    float* panel = dst + static_cast<size_t>(p) * k * 16;
    for (int j = 0; j < k; ++j) {
      for (int l = 0; l < 16; ++l) {
        const int r = p * 16 + l;
        panel[static_cast<size_t>(j) * 16 + l] = r < m ? w[static_cast<size_t>(r) * k + j] : 0.0f;
      }
    }
  }
}

void UnpackRow(const float* packed, int k, int r, float* out) {
  const float* panel = packed + static_cast<size_t>(r / 16) * k * 16 + r % 16;
  for (int j = 0; j < k; ++j) out[j] = panel[static_cast<size_t>(j) * 16];
}

namespace {

// Inputs packed group by group ([k][group size], groups of the tile's width)
// so that the tile's broadcasts read one sequential stream; x itself for one.
const float* PackInputs(const Isa* isa, const float* x, int n, int k) {
  if (n <= 1) return x;
  thread_local std::vector<float> packed_inputs;
  const int tile = isa->tile_inputs();
  packed_inputs.resize(static_cast<size_t>(n) * k);
  float* dst = packed_inputs.data();
  const int groups = (n + tile - 1) / tile;
  ParallelFor(groups, 4, [&](int b, int e) {
    for (int grp = b; grp < e; ++grp) {
      const int i0 = grp * tile, g = std::min(tile, n - i0);
      float* out = dst + static_cast<size_t>(i0) * k;
      for (int j = 0; j < k; ++j)
        for (int ii = 0; ii < g; ++ii) out[static_cast<size_t>(j) * g + ii] = x[static_cast<size_t>(i0 + ii) * k + j];
    }
  });
  return dst;
}

}  // namespace

void MatMul(const float* packed, int m, int k, const float* x, int n, float* y, const float* bias) {
  const Isa* isa = g_isa.load(std::memory_order_relaxed);
  const float* xp = PackInputs(isa, x, n, k);
  // Threads take whole panels; a matrix under ~256 KiB stays on one thread.
  const int panels = (m + 15) / 16;
  const int grain = std::max(1, 65536 / (16 * k));
  ParallelFor(panels, grain, [&](int b, int e) { isa->matmul(packed, m, k, xp, n, y, bias, b, e); });
}

void QuantMatMul(uint32_t type, const uint8_t* packed, int m, int k, const float* x, int n, float* y, int ldy,
                 const float* bias) {
  const Isa* isa = g_isa.load(std::memory_order_relaxed);
  const float* xp = PackInputs(isa, x, n, k);
  // As MatMul: panels of ~64K weights or more per task.
  const int panels = (m + 15) / 16;
  const int grain = std::max(1, 65536 / (16 * k));
  ParallelFor(panels, grain, [&](int b, int e) { isa->quant_matmul(type, packed, m, k, xp, n, y, ldy, bias, b, e); });
}

float ReadSum(const float* p, size_t n) { return g_isa.load(std::memory_order_relaxed)->read_sum(p, n); }

float Dot(const float* a, const float* b, int k) { return g_isa.load(std::memory_order_relaxed)->dot(a, b, k); }

void Attend(const float* const* q, int nq, const float* kt, int stride, const float* v,
            const int* t, int hd, float scale, float* const* scores, float* const* out) {
  g_isa.load(std::memory_order_relaxed)->attend(q, nq, kt, stride, v, t, hd, scale, scores, out);
}

}  // namespace splitlm::partition::kernels
