// libFuzzer target: arbitrary bytes as a safetensors file (its header parser
// and every entry's checks), as a config.json and as a GGUF file, as a
// downloaded or damaged model would hold them. Every input must either parse or throw
// Exception; anything else (a crash, a sanitizer report, another
// exception) is a finding. The first byte chooses the parser (mod 3). A
// GGUF tensor of a type splitlm decodes has its first row decoded (any bytes
// must decode without a fault), and, for the types held re-encoded
// (quant_decode.h), re-encoded: every value must keep its bits.
// Build: cmake -DSPLITLM_BUILD_FUZZERS=ON with clang (see cmake/bootstrap.sh).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "partition/gguf.h"
#include "partition/model_config.h"
#include "partition/quant.h"
#include "partition/quant_decode.h"
#include "partition/safetensors.h"
#include "transport/error.h"

using namespace splitlm::partition;

namespace {

// Decodes the first row of `t` (at most 4096 values), and checks an exact
// re-encoding keeps every value's bits.
void DecodeFirstRow(const GgufTensor& t, const uint8_t* file) {
  const int64_t n = t.dims[0];
  if (!IsDequantizeSupported(t.type) || n > 4096) return;
  const uint8_t* row = file + t.offset;
  std::vector<float> y(static_cast<size_t>(n));
  DequantizeRow(t.type, row, y.data(), n);
  const auto form = ExactBlockForm(t.type);
  if (!form) return;
  const GgmlBlock out = *GgmlBlockOf(*form);
  std::vector<uint8_t> re(static_cast<size_t>(n / out.values * out.bytes));
  std::vector<float> z(static_cast<size_t>(n));
  if (!TranscodeRow(t.type, row, re.data(), n)) std::abort();
  DequantizeRow(*form, re.data(), z.data(), n);
  if (std::memcmp(y.data(), z.data(), y.size() * sizeof(float)) != 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  try {
    if (data[0] % 3 == 2) {
      const GgufHeader h = ParseGgufHeader(data + 1, size - 1, "fuzz.gguf");
      for (const auto& t : h.tensors) {
        if (t.offset > size - 1 || t.bytes > size - 1 - t.offset || t.offset % h.alignment != 0)
          std::abort();
        DecodeFirstRow(t, data + 1);
      }
    } else if (data[0] % 3 == 0) {
      const SafetensorsHeader h = ParseSafetensorsHeader(data + 1, size - 1, "fuzz.safetensors");
      for (const auto& [name, info] : h.tensors) {
        // The contract data() relies on: every tensor lies inside the file.
        if (info.offset > size - 1 || info.bytes > size - 1 - info.offset) std::abort();
      }
    } else {
      const ModelConfig c = ParseModelConfig(
          std::string(reinterpret_cast<const char*>(data + 1), size - 1), "fuzz/config.json");
      if (c.num_layers <= 0 || c.head_dim <= 0 || c.num_heads % c.num_kv_heads != 0) std::abort();
      for (int eos : c.eos_token_ids) {
        if (eos < 0 || eos >= c.vocab_size) std::abort();
      }
      (void)ParseModelConfig(ModelConfigToJson(c),
                             "fuzz/round-trip.json");  // what we write, we read
    }
  } catch (const splitlm::Exception&) {
  }
  return 0;
}
