#include "partition/kernels.h"
#include "partition/kernels_quant.h"
#include "partition/kernels_table.h"
#include "partition/thread_pool.h"
#include "transport/error.h"

#include <ATen/Parallel.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#if defined(SPLITLM_HAVE_NEON)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include <cstdint>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

namespace splitlm::partition::kernels {

#define SPLITLM_DECLARE_ISA(ns)                                                                    \
  namespace ns {                                                                                   \
  void MatMulEntry(const float* packed, int m, int k, const float* x, int n, float* y,             \
                   const float* bias, int p0, int p1);                                             \
  float DotEntry(const float* a, const float* b, int k);                                           \
  float ReadSumEntry(const float* p, size_t n);                                                    \
  int TileInputsEntry();                                                                           \
  void AttendEntry(const float* const* q, int nq, const float* kt, int stride, const float* v,     \
                   const int* t, int hd, float scale, float* const* scores, float* const* out);    \
  bool QuantMatMulEntry(uint32_t type, const uint8_t* packed, int m, int k, const float* x, int n, \
                        float* y, int ldy, const float* bias, int p0, int p1);                     \
  bool Quant8MatMulEntry(uint32_t type, const uint8_t* packed, int m, int k, const int8_t* xq,     \
                         const float* xd, const int32_t* xs, int n, float* y, int ldy,             \
                         const float* bias, int p0, int p1);                                       \
  void QuantizeActsEntry(const float* x, int k, int block, int8_t* q, float* d, int32_t* s16);     \
  void HalfMatMulEntry(bool bf16, const uint16_t* packed, int m, int k, const float* x, int n,     \
                       float* y, int ldy, const float* bias, int p0, int p1);                      \
  int HalfTileInputsEntry();                                                                       \
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

// The table of one instruction set's namespace, its int8-activation kernels
// given apart (a CPU feature may pick them from another namespace).
#define SPLITLM_ISA_TABLE(label, ns, quant8)                                                      \
  IsaTable {                                                                                      \
    label, ns::MatMulEntry, ns::DotEntry, ns::ReadSumEntry, ns::TileInputsEntry, ns::AttendEntry, \
        ns::QuantMatMulEntry, quant8, ns::QuantizeActsEntry, ns::HalfMatMulEntry,                 \
        ns::HalfTileInputsEntry                                                                   \
  }

namespace {

// The tables are constants, built on first use (after the CPU probes are
// ready) and never changed.
const IsaTable& PortableTable() {
  static const IsaTable table =
      SPLITLM_ISA_TABLE("portable", portable, portable::Quant8MatMulEntry);
  return table;
}

#if defined(SPLITLM_HAVE_AVX2)
// F16C from CPUID leaf 1 (clang's __builtin_cpu_supports has no "f16c").
bool CpuHasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
bool CpuHasAvx2() {
  // F16C (vcvtph2ps) is on every AVX2 CPU; the 16-bit kernels need it.
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && CpuHasF16c();
}
bool CpuHasAvx512() { return __builtin_cpu_supports("avx512f"); }
const IsaTable& Avx2Table() {
  static const IsaTable table = SPLITLM_ISA_TABLE("avx2+fma", avx2, avx2::Quant8MatMulEntry);
  return table;
}
// The int8-activation kernels of an AVX-512 CPU: vpdpbusd where the CPU has
// VNNI (and BW), else the AVX2 ones at 256 bits (bit-identical either way).
const IsaTable& Avx512Table() {
  static const IsaTable table =
      SPLITLM_ISA_TABLE("avx512f", avx512,
                        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")
                            ? avx512vnni::Quant8MatMulEntry
                            : avx512::Quant8MatMulEntry);
  return table;
}
#endif

#if defined(SPLITLM_HAVE_NEON)
// Advanced SIMD is mandatory on ARMv8-A: no run-time probe needed. The
// int8-activation kernels: sdot where the CPU has it (ARMv8.2 dotprod), else
// plain NEON types with scalar integer sums (bit-identical either way).
const IsaTable& NeonTable() {
  static const IsaTable table =
      SPLITLM_ISA_TABLE("neon", neon,
                        (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0 ? neondot::Quant8MatMulEntry
                                                                   : neon::Quant8MatMulEntry);
  return table;
}
#endif

}  // namespace

Isa Isa::Portable() { return Isa(&PortableTable()); }

Isa Isa::Best() {
#if defined(SPLITLM_HAVE_AVX2)
  if (CpuHasAvx512()) return Isa(&Avx512Table());
  if (CpuHasAvx2()) return Isa(&Avx2Table());
#endif
#if defined(SPLITLM_HAVE_NEON)
  return Isa(&NeonTable());
#endif
  return Portable();
}

std::optional<Isa> Isa::Named(std::string_view name) {
  if (name == "portable") return Portable();
#if defined(SPLITLM_HAVE_AVX2)
  if ((name == "avx2+fma" || name == "avx2") && CpuHasAvx2()) return Isa(&Avx2Table());
  if ((name == "avx512f" || name == "avx512") && CpuHasAvx512()) return Isa(&Avx512Table());
#endif
#if defined(SPLITLM_HAVE_NEON)
  if (name == "neon") return Isa(&NeonTable());
#endif
  return std::nullopt;
}

std::vector<Isa> Isa::Available() {
  std::vector<Isa> out;
  for (const char* name : {"portable", "avx2+fma", "avx512f", "neon"}) {
    if (auto isa = Named(name)) out.push_back(*isa);
  }
  return out;
}

Isa Isa::Choose(const char* name, std::string_view setting) {
  if (name == nullptr || *name == '\0') return Best();
  if (auto isa = Named(name)) return *isa;
  std::string available;
  for (Isa isa : Available())
    available += (available.empty() ? "" : ", ") + std::string(isa.name());
  throw Exception(Exception::kInvalidArgument,
                  std::string(setting) + " \"" + name +
                      "\": not an instruction set this build and CPU run (" + available + ")");
}

const char* Isa::name() const { return table_->name; }

void ParallelFor(int n, int grain, void (*fn)(void*, int, int), void* ctx) {
  if (n <= 0) return;
  // Up to kPiecesPerThread pieces per thread, each thread taking the next
  // piece when it is done with one: a thread whose core is slower (busy with
  // another process, or later to wake) takes fewer, and the caller never
  // waits for a thread that has not started (thread_pool.h). Which thread
  // computes a piece never changes what it computes.
  constexpr int kPiecesPerThread = 4;
  const int threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int g = std::max(grain, 1);
  const int pieces = std::min({(n + g - 1) / g, threads * kPiecesPerThread, kMaxPieces});
  struct Loop {
    int n, pieces;
    void (*fn)(void*, int, int);
    void* ctx;
  } loop{n, pieces, fn, ctx};
  RunPieces(
      threads, pieces,
      [](void* c, int p) {
        const Loop& l = *static_cast<const Loop*>(c);
        l.fn(l.ctx, static_cast<int>(static_cast<int64_t>(l.n) * p / l.pieces),
             static_cast<int>(static_cast<int64_t>(l.n) * (p + 1) / l.pieces));
      },
      &loop);
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
const float* PackInputs(const IsaTable& isa, const float* x, int n, int k) {
  if (n <= 1) return x;
  thread_local std::vector<float> packed_inputs;
  const int tile = isa.tile_inputs();
  packed_inputs.resize(static_cast<size_t>(n) * k);
  float* dst = packed_inputs.data();
  const int groups = (n + tile - 1) / tile;
  ParallelFor(groups, 4, [&](int b, int e) {
    for (int grp = b; grp < e; ++grp) {
      const int i0 = grp * tile, g = std::min(tile, n - i0);
      float* out = dst + static_cast<size_t>(i0) * k;
      for (int j = 0; j < k; ++j)
        for (int ii = 0; ii < g; ++ii)
          out[static_cast<size_t>(j) * g + ii] = x[static_cast<size_t>(i0 + ii) * k + j];
    }
  });
  return dst;
}

}  // namespace

void MatMul(Isa isa_value, const float* packed, int m, int k, const float* x, int n, float* y,
            const float* bias) {
  const IsaTable& isa = isa_value.table();
  const float* xp = PackInputs(isa, x, n, k);
  // Threads take whole panels; a matrix under ~256 KiB stays on one thread.
  const int panels = (m + 15) / 16;
  const int grain = std::max(1, 65536 / (16 * k));
  ParallelFor(panels, grain, [&](int b, int e) { isa.matmul(packed, m, k, xp, n, y, bias, b, e); });
}

void QuantMatMul(Isa isa_value, uint32_t type, const uint8_t* packed, int m, int k, const float* x,
                 int n, float* y, int ldy, const float* bias, QuantActs acts) {
  const IsaTable& isa = isa_value.table();
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
        isa.quantize_acts(x + r * k, k, block, q + r * k, d + r * (k / block), s + r * (k / 16));
      }
    });
    // Pieces of at least 8 panels: whole tiles of the decode kernels.
    ParallelFor(panels, std::max(8, grain), [&](int b, int e) {
      isa.quant8_matmul(type, packed, m, k, q, d, s, n, y, ldy, bias, b, e);
    });
    return;
  }
  const float* xp = PackInputs(isa, x, n, k);
  // As MatMul: panels of ~64K weights or more per task.
  ParallelFor(panels, grain, [&](int b, int e) {
    isa.quant_matmul(type, packed, m, k, xp, n, y, ldy, bias, b, e);
  });
}

void QuantizeActivations(Isa isa, const float* x, int k, int block, int8_t* q, float* d,
                         int32_t* s16) {
  isa.table().quantize_acts(x, k, block, q, d, s16);
}

float ReadSum(Isa isa, const float* p, size_t n) { return isa.table().read_sum(p, n); }

float Dot(Isa isa, const float* a, const float* b, int k) { return isa.table().dot(a, b, k); }

void Attend(Isa isa, const float* const* q, int nq, const float* kt, int stride, const float* v,
            const int* t, int hd, float scale, float* const* scores, float* const* out) {
  isa.table().attend(q, nq, kt, stride, v, t, hd, scale, scores, out);
}

}  // namespace splitlm::partition::kernels
