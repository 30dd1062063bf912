// A device stage of a memory-mapped GGUF model neither reads nor keeps the
// pages of layers >= its cut: after loading [0, K) and running a prefill and
// a few decode steps, no page wholly inside a tensor of a later layer is
// mapped present in this process.
//
// Why this cannot be flaky: presence is read from /proc/self/pagemap, i.e.
// this process's own page table entries, not the page cache (mincore() would
// report the page cache, which Model::Open's digest read, or another
// process, fills with the whole file). A PTE appears only when this process
// faults on the page, or when the kernel's fault-around maps cached
// neighbours of a faulting page; fault-around is limited to an aligned
// window of at most a page table (2 MiB on x86-64 and 4K-page aarch64,
// 64 KiB by default), so pages in a 2 MiB window that holds any byte the
// stage may read are not judged. Memory pressure can only remove PTEs, which
// cannot make the test fail. The model is large enough (8 layers of ~3 MB)
// that most of the later layers lie outside those windows, and the test
// checks that it judged many pages and that it sees a page it touches itself.
#include "partition/resident_memory.h"

#include <gtest/gtest.h>

#include <unistd.h>

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

constexpr uintptr_t kWindow = uintptr_t{2} << 20;

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
             {"input_layernorm.weight", {h}},      {"post_attention_layernorm.weight", {h}},
             {"self_attn.q_proj.weight", {q, h}},  {"self_attn.k_proj.weight", {kv, h}},
             {"self_attn.v_proj.weight", {kv, h}}, {"self_attn.o_proj.weight", {h, q}},
             {"mlp.gate_proj.weight", {f, h}},     {"mlp.up_proj.weight", {f, h}},
             {"mlp.down_proj.weight", {h, f}}}) {
      names.push_back({p + n, shape});
    }
  }
  std::vector<Range> ranges;
  // The header: from the start of the mapping to the tensor data.
  const auto* embed = static_cast<const uint8_t*>(model.Tensor(names[0].first, names[0].second).data);
  const uintptr_t base = reinterpret_cast<uintptr_t>(embed) - header.FindTensor("token_embd.weight")->offset;
  ranges.push_back({base, base + header.header().data_start, -1});
  for (const auto& [name, shape] : names) {
    const auto* data = static_cast<const uint8_t*>(model.Tensor(name, shape).data);  // touches nothing
    const GgufTensor* t = header.FindTensor(GgufTensorName(name));
    const int layer = name.rfind("model.layers.", 0) == 0 ? std::stoi(name.substr(13)) : -1;
    ranges.push_back({reinterpret_cast<uintptr_t>(data), reinterpret_cast<uintptr_t>(data) + t->bytes, layer});
  }
  return ranges;
}

TEST(ResidentMemory, ADeviceStageMapsNoPageOfTheLayersPastItsCut) {
  testing::TempDir dir;
  RandomModelOptions o;
  o.preset = "small";
  auto hf = Model::Open(testing::MakeModel(dir.Sub("hf"), o));
  ConvertToGguf(*hf, dir.Sub("m.gguf"));
  auto model = Model::Open(dir.Sub("m.gguf"));
  auto header = GgufFile::Open(dir.Sub("m.gguf"));
  const ModelConfig& c = model->config();
  ASSERT_EQ(8, c.num_layers);
  if (!PresentBytes(model->Tensor("model.norm.weight", {c.hidden_size}).data, 1)) {
    GTEST_SKIP() << "/proc/self/pagemap is not readable here";
  }
  const std::vector<Range> ranges = TensorRanges(*model, *header);
  const int cut = 3;
  {
    partition::Stage device(StageWeights::Load(*model, StageSpec::Device(c, cut)));
    std::vector<float> hidden(device.OutputSize(9));
    const auto prompt = testing::Prompt(9, c.vocab_size);
    device.Forward({prompt.data(), nullptr, 9}, hidden.data());
    for (int i = 0; i < 3; ++i) device.Forward({prompt.data() + i, nullptr, 1}, hidden.data());
  }
  // The windows the stage may have faulted in: those of the tensors it reads
  // (the embedding and layers < cut) and of the file's header.
  std::vector<Range> read = {ranges[0], ranges[1]};  // the header and the embedding
  for (const Range& r : ranges) {
    if (r.layer >= 0 && r.layer < cut) read.push_back(r);
  }
  auto near_read = [&](uintptr_t page) {
    for (const Range& r : read) {
      if (page + kWindow > (r.begin & ~(kWindow - 1)) && page < ((r.end + kWindow - 1) & ~(kWindow - 1))) return true;
    }
    return false;
  };
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  size_t judged = 0, present = 0;
  for (const Range& r : ranges) {
    if (r.layer < cut) continue;
    for (uintptr_t p = (r.begin + page - 1) / page * page; p + page <= r.end; p += page) {
      if (near_read(p)) continue;
      ++judged;
      present += *PresentBytes(reinterpret_cast<const void*>(p), page) / page;
    }
  }
  EXPECT_GT(judged, 2000u) << "too few pages of layers >= " << cut << " lie outside the stage's windows";
  EXPECT_EQ(0u, present) << "pages of layers >= " << cut << " are mapped present";
  // The method sees a page this process touches.
  const Range& last = ranges.back();
  const auto* probe = reinterpret_cast<const volatile uint8_t*>((last.begin + page - 1) / page * page);
  (void)*probe;
  EXPECT_EQ(page, *PresentBytes(const_cast<const uint8_t*>(probe), page));
}

TEST(ResidentMemory, FileAndProcessRssAreReadable) {
  REQUIRE_SHARED(gguf, "gguf/stories260K-f32.gguf");
  auto model = Model::Open(gguf);
  ASSERT_TRUE(FileMappedRss(gguf).has_value());
  ASSERT_TRUE(ProcessRss().has_value());
  EXPECT_GT(*ProcessRss(), 0u);
  const size_t before = *FileMappedRss(gguf);
  auto all = StageWeights::Load(*model, StageSpec::Device(model->config(), model->config().num_layers));
  // Loading every tensor maps (most of) the file: at least its first tensor.
  EXPECT_GT(*FileMappedRss(gguf), before);
  EXPECT_FALSE(FileMappedRss("/nonexistent/file").has_value());
}

}  // namespace
}  // namespace splitlm::partition
