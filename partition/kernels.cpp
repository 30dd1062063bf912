#include "partition/kernels.h"
#include "partition/kernels_quant.h"
#include "partition/thread_pool.h"

#include <ATen/Parallel.h>

#if defined(SPLITLM_HAVE_NEON)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

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
  bool Quant8MatMulEntry(uint32_t type, const uint8_t* packed, int m, int k, const int8_t* xq, \
                         const float* xd, const int32_t* xs, int n, float* y, int ldy,    \
                         const float* bias, int p0, int p1);                              \
  }
SPLITLM_DECLARE_ISA(portable)
#if defined(SPLITLM_HAVE_AVX2)
SPLITLM_DECLARE_ISA(avx2)
SPLITLM_DECLARE_ISA(avx512)
SPLITLM_DECLARE_ISA(avx512vnni)
#endif
#if defined(SPLITLM_HAVE_NEON)
SPLITLM_DECLARE_ISA(neon)
SPLITLM_DECLARE_ISA(neondot)
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
  decltype(&portable::Quant8MatMulEntry) quant8_matmul;
};

const Isa kPortable{"portable", portable::MatMulEntry, portable::DotEntry, portable::ReadSumEntry, portable::TileInputsEntry,
                    portable::AttendEntry, portable::QuantMatMulEntry, portable::Quant8MatMulEntry};
#if defined(SPLITLM_HAVE_AVX2)
const Isa kAvx2{"avx2+fma", avx2::MatMulEntry, avx2::DotEntry, avx2::ReadSumEntry, avx2::TileInputsEntry, avx2::AttendEntry,
                avx2::QuantMatMulEntry, avx2::Quant8MatMulEntry};
// The int8-activation kernels of an AVX-512 CPU: vpdpbusd where the CPU has
// VNNI (and BW), else the AVX2 ones at 256 bits (bit-identical either way).
decltype(&portable::Quant8MatMulEntry) Avx512Quant8() {
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) return avx512vnni::Quant8MatMulEntry;
  return avx512::Quant8MatMulEntry;
}
const Isa kAvx512{"avx512f", avx512::MatMulEntry, avx512::DotEntry, avx512::ReadSumEntry, avx512::TileInputsEntry,
                  avx512::AttendEntry, avx512::QuantMatMulEntry, Avx512Quant8()};
#endif
#if defined(SPLITLM_HAVE_NEON)
// The int8-activation kernels: sdot where the CPU has it (ARMv8.2 dotprod),
// else plain NEON types with scalar integer sums (bit-identical either way).
decltype(&portable::Quant8MatMulEntry) NeonQuant8() {
  if ((getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0) return neondot::Quant8MatMulEntry;
  return neon::Quant8MatMulEntry;
}
const Isa kNeon{"neon", neon::MatMulEntry, neon::DotEntry, neon::ReadSumEntry, neon::TileInputsEntry, neon::AttendEntry,
                neon::QuantMatMulEntry, NeonQuant8()};
#endif

const Isa* Detect() {
#if defined(SPLITLM_HAVE_AVX2)
  if (const char* env = std::getenv("SPLITLM_KERNELS")) {
    if (std::string(env) == "portable") return &kPortable;
    if (std::string(env) == "avx2") return &kAvx2;
  }
  if (__builtin_cpu_supports("avx512f")) return &kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) return &kAvx2;
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
  if (n == kAvx2.name && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
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
  PoolParallelFor(n, grain, at::get_num_threads(), fn, ctx);
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
                 const float* bias, QuantActs acts) {
  const Isa* isa = g_isa.load(std::memory_order_relaxed);
  const int panels = (m + 15) / 16;
  const int grain = std::max(1, 65536 / (16 * k));
  if (acts == QuantActs::kInt8) {
    // Each input row quantised once (per row: no dependence on the batch).
    thread_local std::vector<int8_t> xq;
    thread_local std::vector<float> xd;
    thread_local std::vector<int32_t> xs;
    const int block = QuantBlockValues(type);
    xq.resize(static_cast<size_t>(n) * k);
    xd.resize(static_cast<size_t>(n) * (k / block));
    xs.resize(static_cast<size_t>(n) * (k / 16));
    int8_t* q = xq.data();
    float* d = xd.data();
    int32_t* s = xs.data();
    ParallelFor(n, std::max(1, 16384 / k), [&](int b, int e) {
      for (int i = b; i < e; ++i) {
        const size_t r = static_cast<size_t>(i);
        QuantizeActivations(x + r * k, k, block, q + r * k, d + r * (k / block), s + r * (k / 16));
      }
    });
    ParallelFor(panels, grain, [&](int b, int e) { isa->quant8_matmul(type, packed, m, k, q, d, s, n, y, ldy, bias, b, e); });
    return;
  }
  const float* xp = PackInputs(isa, x, n, k);
  // As MatMul: panels of ~64K weights or more per task.
  ParallelFor(panels, grain, [&](int b, int e) { isa->quant_matmul(type, packed, m, k, xp, n, y, ldy, bias, b, e); });
}

float ReadSum(const float* p, size_t n) { return g_isa.load(std::memory_order_relaxed)->read_sum(p, n); }

float Dot(const float* a, const float* b, int k) { return g_isa.load(std::memory_order_relaxed)->dot(a, b, k); }

void Attend(const float* const* q, int nq, const float* kt, int stride, const float* v,
            const int* t, int hd, float scale, float* const* scores, float* const* out) {
  g_isa.load(std::memory_order_relaxed)->attend(q, nq, kt, stride, v, t, hd, scale, scores, out);
}

}  // namespace splitlm::partition::kernels
