// A device stage of a memory-mapped GGUF model neither reads nor keeps the
// pages of layers >= its cut.
//
// Reads: the pages wholly inside the later layers' tensors are made
// inaccessible (mprotect PROT_NONE on this process's mapping) while the stage
// loads and runs a prefill and a few decode steps: a read of any of them
// would stop the test with SIGSEGV, whatever the page cache holds and however
// busy the machine is.
// Keeps: afterwards no page of the file is mapped present in this process
// (/proc/self/pagemap's present bits: this process's page tables, not the
// page cache, which Model::Open's digest read fills with the whole file), as
// StageWeights::Load releases the mapping once it has copied its tensors;
// a page the test touches itself shows as present, so the method sees pages.
#include "partition/resident_memory.h"

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <string>
#include <vector>

#include "partition/gguf.h"
#include "partition/gguf_model.h"
#include "partition/hf_to_gguf.h"
#include "partition/model.h"
#include "partition/random_model.h"
#include "partition/stage.h"
#include "tests/common/stage_chain.h"
#include "tests/common/test_util.h"

namespace splitlm::partition {
namespace {

struct Range {
  uintptr_t begin, end;
  int layer;  // -1: not a layer's (embedding, head, norms)
};

// Every tensor of `model` as an address range of its mapping.
std::vector<Range> TensorRanges(const Model& model, const GgufFile& header) {
  const ModelConfig& c = model.config();
  const int64_t h = c.hidden_size, f = c.intermediate_size, q = c.num_heads * c.head_dim,
                kv = c.num_kv_heads * c.head_dim;
  std::vector<std::pair<std::string, std::vector<int64_t>>> names = {
      {"model.embed_tokens.weight", {c.vocab_size, h}}, {"model.norm.weight", {h}}};
  if (model.HasTensor("lm_head.weight")) names.push_back({"lm_head.weight", {c.vocab_size, h}});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const auto& [n, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
             {"input_layernorm.weight", {h}},
             {"post_attention_layernorm.weight", {h}},
             {"self_attn.q_proj.weight", {q, h}},
             {"self_attn.k_proj.weight", {kv, h}},
             {"self_attn.v_proj.weight", {kv, h}},
             {"self_attn.o_proj.weight", {h, q}},
             {"mlp.gate_proj.weight", {f, h}},
             {"mlp.up_proj.weight", {f, h}},
             {"mlp.down_proj.weight", {h, f}}}) {
      names.push_back({p + n, shape});
    }
  }
  std::vector<Range> ranges;
  // The header: from the start of the mapping to the tensor data.
  const auto* embed =
      static_cast<const uint8_t*>(model.Tensor(names[0].first, names[0].second).data);
  const uintptr_t base =
      reinterpret_cast<uintptr_t>(embed) - header.FindTensor("token_embd.weight")->offset;
  ranges.push_back({base, base + header.header().data_start, -1});
  for (const auto& [name, shape] : names) {
    const auto* data =
        static_cast<const uint8_t*>(model.Tensor(name, shape).data);  // touches nothing
    const GgufTensor* t = header.FindTensor(GgufTensorName(name));
    const int layer = name.rfind("model.layers.", 0) == 0 ? std::stoi(name.substr(13)) : -1;
    ranges.push_back(
        {reinterpret_cast<uintptr_t>(data), reinterpret_cast<uintptr_t>(data) + t->bytes, layer});
  }
  return ranges;
}

TEST(ResidentMemory, ADeviceStageNeitherReadsNorKeepsTheLayersPastItsCut) {
  testing::TempDir dir;
  RandomModelOptions o;
  o.preset = "small";
  auto hf = Model::Open(testing::MakeModel(dir.Sub("hf"), o));
  ConvertToGguf(*hf, dir.Sub("m.gguf"));
  auto model = Model::Open(dir.Sub("m.gguf"));
  auto header = GgufFile::Open(dir.Sub("m.gguf"));
  const ModelConfig& c = model->config();
  ASSERT_EQ(8, c.num_layers);
  const std::vector<Range> ranges = TensorRanges(*model, *header);
  const Range file{ranges[0].begin, ranges[0].begin + std::filesystem::file_size(dir.Sub("m.gguf")),
                   -1};
  if (!PresentBytes(reinterpret_cast<const void*>(file.begin), 1)) {
    GTEST_SKIP() << "/proc/self/pagemap is not readable here";
  }
  const int cut = 3;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  std::vector<std::pair<uintptr_t, size_t>> guarded;
  size_t guarded_bytes = 0;
  for (const Range& r : ranges) {
    const uintptr_t b = (r.begin + page - 1) / page * page, e = r.end / page * page;
    if (r.layer < cut || e <= b) continue;
    ASSERT_EQ(0, ::mprotect(reinterpret_cast<void*>(b), e - b, PROT_NONE)) << std::strerror(errno);
    guarded.push_back({b, e - b});
    guarded_bytes += e - b;
  }
  EXPECT_GT(guarded_bytes, size_t{8} << 20) << "the later layers should be most of the file";
  {
    Stage device(StageWeights::Load(*model, StageSpec::Device(c, cut)));
    std::vector<float> hidden(device.OutputSize(9));
    const auto prompt = testing::Prompt(9, c.vocab_size);
    device.Forward({prompt.data(), nullptr, 9}, hidden.data());
    for (int i = 0; i < 3; ++i) device.Forward({prompt.data() + i, nullptr, 1}, hidden.data());
    EXPECT_EQ(0u, *PresentBytes(reinterpret_cast<const void*>(file.begin), file.end - file.begin))
        << "the stage keeps pages of the file mapped";
  }
  for (const auto& [b, n] : guarded)
    ASSERT_EQ(0, ::mprotect(reinterpret_cast<void*>(b), n, PROT_READ));
  // The method sees a page this process touches.
  const auto* probe = reinterpret_cast<const volatile uint8_t*>(guarded.back().first);
  (void)*probe;
  EXPECT_EQ(page, *PresentBytes(const_cast<const uint8_t*>(probe), page));
}

TEST(ResidentMemory, FileAndProcessRssAreReadable) {
  REQUIRE_SHARED(gguf, "gguf/stories260K-f32.gguf");
  auto model = Model::Open(gguf);
  ASSERT_TRUE(FileMappedRss(gguf).has_value());
  ASSERT_TRUE(ProcessRss().has_value());
  EXPECT_GT(*ProcessRss(), 0u);
  // Loading a stage copies every tensor and releases the file's pages.
  auto all =
      StageWeights::Load(*model, StageSpec::Device(model->config(), model->config().num_layers));
  EXPECT_EQ(0u, *FileMappedRss(gguf));
  const auto* first = static_cast<const volatile uint8_t*>(
      model->Tensor("model.norm.weight", {model->config().hidden_size}).data);
  (void)*first;
  EXPECT_GT(*FileMappedRss(gguf), 0u);
  EXPECT_FALSE(FileMappedRss("/nonexistent/file").has_value());
}

}  // namespace
}  // namespace splitlm::partition
