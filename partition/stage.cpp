#include "partition/stage.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <utility>

#include "partition/kernels.h"
#include "partition/model.h"
#include "partition/tensor_f32.h"
#include "partition/weight_matrix.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using Matrix = std::shared_ptr<const WeightMatrix>;

struct LayerWeights {
  at::Tensor in_norm, qkv_bias, post_norm;
  Matrix qkv, o, gate_up, down;
};

at::Tensor LoadTensor(const Model& model, const std::string& name,
                      const std::vector<int64_t>& shape) {
  const TensorRef t = model.Tensor(name, shape);
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  TensorToF32(t, out.data_ptr<float>());
  return out;
}

// The named [rows_i, k] tensors stacked into one matrix in the model's
// weight format.
Matrix LoadMatrix(const Model& model,
                  const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts) {
  std::vector<WeightMatrix::Part> refs;
  refs.reserve(parts.size());
  for (const auto& [name, shape] : parts) refs.push_back({name, model.Tensor(name, shape)});
  return WeightMatrix::Load(refs, model.weights(), model.config().num_layers, model.isa());
}

size_t Bytes(const at::Tensor& t) { return t.defined() ? t.numel() * sizeof(float) : 0; }
size_t Bytes(const Matrix& m) { return m ? m->bytes() : 0; }
// Bytes of one row of `m` as held (rows are held uniformly).
size_t RowBytes(const Matrix& m) { return m && m->rows() > 0 ? m->bytes() / m->rows() : 0; }

const float* Data(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// Inverse frequencies as Hugging Face computes them, in float32.
std::vector<float> InverseFrequencies(const ModelConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    float e = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(c.rope_theta), e);
  }
  const RopeScaling& rs = c.rope_scaling;
  if (rs.kind == RopeScaling::Kind::kLinear) {
    for (float& f : inv) f = f / static_cast<float>(rs.factor);
  } else if (rs.kind == RopeScaling::Kind::kLlama3) {
    const double low_wavelen = rs.original_max_position / rs.low_freq_factor;
    const double high_wavelen = rs.original_max_position / rs.high_freq_factor;
    for (float& f : inv) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = static_cast<float>(f / rs.factor);
      } else if (wavelen >= high_wavelen) {
        double smooth = (rs.original_max_position / wavelen - rs.low_freq_factor) /
                        (rs.high_freq_factor - rs.low_freq_factor);
        f = static_cast<float>((1 - smooth) * f / rs.factor + smooth * f);
      }
    }
  }
  for (size_t i = 0; i < rs.freq_factors.size() && i < inv.size(); ++i)
    inv[i] = inv[i] / rs.freq_factors[i];
  return inv;
}

// Layer l's tensors, the matrices in the model's weight format.
LayerWeights LoadLayer(const Model& model, int l) {
  const ModelConfig& c = model.config();
  const int64_t h = c.hidden_size, hd = c.head_dim, qd = int64_t{c.num_heads} * hd,
                kvd = int64_t{c.num_kv_heads} * hd, inter = c.intermediate_size;
  const std::string p = "model.layers." + std::to_string(l) + ".";
  LayerWeights lw;
  lw.in_norm = LoadTensor(model, p + "input_layernorm.weight", {h});
  lw.qkv = LoadMatrix(model, {{p + "self_attn.q_proj.weight", {qd, h}},
                              {p + "self_attn.k_proj.weight", {kvd, h}},
                              {p + "self_attn.v_proj.weight", {kvd, h}}});
  if (c.qkv_bias) {
    lw.qkv_bias = at::cat({LoadTensor(model, p + "self_attn.q_proj.bias", {qd}),
                           LoadTensor(model, p + "self_attn.k_proj.bias", {kvd}),
                           LoadTensor(model, p + "self_attn.v_proj.bias", {kvd})},
                          0)
                      .contiguous();
  }
  lw.o = LoadMatrix(model, {{p + "self_attn.o_proj.weight", {h, qd}}});
  lw.post_norm = LoadTensor(model, p + "post_attention_layernorm.weight", {h});
  lw.gate_up = LoadMatrix(
      model, {{p + "mlp.gate_proj.weight", {inter, h}}, {p + "mlp.up_proj.weight", {inter, h}}});
  lw.down = LoadMatrix(model, {{p + "mlp.down_proj.weight", {h, inter}}});
  return lw;
}

size_t LayerBytes(const LayerWeights& lw) {
  return Bytes(lw.in_norm) + Bytes(lw.qkv) + Bytes(lw.qkv_bias) + Bytes(lw.o) +
         Bytes(lw.post_norm) + Bytes(lw.gate_up) + Bytes(lw.down);
}

// cos and sin of every position's rotary angles, [max_context][head_dim].
std::pair<std::shared_ptr<const std::vector<float>>, std::shared_ptr<const std::vector<float>>>
RotaryTables(const ModelConfig& c) {
  const std::vector<float> inv = InverseFrequencies(c);
  const int half = c.head_dim / 2;
  auto cos = std::make_shared<std::vector<float>>(static_cast<size_t>(c.max_context) * c.head_dim);
  auto sin = std::make_shared<std::vector<float>>(cos->size());
  for (int pos = 0; pos < c.max_context; ++pos) {
    for (int i = 0; i < c.head_dim; ++i) {
      const float f = static_cast<float>(pos) * inv[i % half];
      (*cos)[static_cast<size_t>(pos) * c.head_dim + i] = std::cos(f);
      (*sin)[static_cast<size_t>(pos) * c.head_dim + i] = std::sin(f);
    }
  }
  return {std::move(cos), std::move(sin)};
}

// Rows per task for row-wise work (norms, rotary, activation).
constexpr int kRowGrain = 8;
// Values of a row's gated activation per task.
constexpr int kActChunk = 256;
// Pieces per task of the loops by row and head or row and chunk.
constexpr int kPieceGrain = 2;

// Keys are stored transposed, one row per dimension; padding the row keeps
// the rows of a head off the same cache sets when capacity is a power of 2.
size_t KeyStride(int capacity) { return static_cast<size_t>(capacity) + 16; }

void RmsNorm(kernels::Isa isa, const float* x, const float* w, int h, float eps, float* y) {
  const float var = kernels::Dot(isa, x, x, h) / static_cast<float>(h);
  const float s = 1.0f / std::sqrt(var + eps);
  for (int i = 0; i < h; ++i) y[i] = w[i] * (x[i] * s);
}

// HF rotate_half layout: pairs (d, d + hd/2).
void Rope(float* v, const float* cos, const float* sin, int hd) {
  const int half = hd / 2;
  for (int d = 0; d < half; ++d) {
    const float a = v[d], b = v[d + half];
    v[d] = a * cos[d] + (-b) * sin[d];
    v[d + half] = b * cos[d + half] + a * sin[d + half];
  }
}

}  // namespace

struct StageWeights::Impl {
  ModelConfig cfg;
  StageSpec spec;
  uint64_t fingerprint = 0;
  kernels::Isa isa = kernels::Isa::Portable();  // the model's (Model::isa())
  // The embedding table in the weight format: the head's matrix itself when
  // the stage holds a tied head (one copy), rows looked up with Row().
  Matrix embed;
  std::vector<LayerWeights> layers;
  at::Tensor final_norm;
  Matrix head;
  std::shared_ptr<const std::vector<float>> cos, sin;  // [max_context][head_dim]
  size_t bytes = 0;
  size_t decode_bytes = 0;
};

namespace {

// The final norm and the head over each sequence's last row of `x` (all its
// rows with all_logits), one matrix pass for all; outs[s] gets sequence s's.
void HeadLogits(kernels::Isa isa, const ModelConfig& cfg, const at::Tensor& final_norm,
                const Matrix& head, const std::vector<float>& x,
                const std::vector<StageInput>& inputs, float eps, const std::vector<float*>& outs) {
  const int h = cfg.hidden_size, vocab = cfg.vocab_size;
  std::vector<int> rows;  // rows of x that get logits, in output order
  for (size_t s = 0, r = 0; s < inputs.size(); r += inputs[s].count, ++s) {
    for (int i = inputs[s].all_logits ? 0 : inputs[s].count - 1; i < inputs[s].count; ++i) {
      rows.push_back(static_cast<int>(r) + i);
    }
  }
  const int m = static_cast<int>(rows.size());
  std::vector<float> xn(static_cast<size_t>(m) * h);
  kernels::ParallelFor(m, kRowGrain, [&](int b, int e) {
    for (int i = b; i < e; ++i) {
      RmsNorm(isa, &x[static_cast<size_t>(rows[i]) * h], Data(final_norm), h, eps,
              &xn[static_cast<size_t>(i) * h]);
    }
  });
  if (inputs.size() == 1) {
    head->Apply(xn.data(), m, outs[0]);
    return;
  }
  std::vector<float> logits(static_cast<size_t>(m) * vocab);
  head->Apply(xn.data(), m, logits.data());
  for (size_t s = 0, i = 0; s < inputs.size(); ++s) {
    const size_t n = inputs[s].all_logits ? static_cast<size_t>(inputs[s].count) : 1;
    std::memcpy(outs[s], &logits[i * vocab], n * vocab * sizeof(float));
    i += n;
  }
}

}  // namespace

StageSpec StageSpec::Range(const ModelConfig& config, int begin, int end) {
  if (begin < 0 || end < begin || end > config.num_layers) {
    throw Exception(Exception::kInvalidArgument, "layer range [" + std::to_string(begin) + ", " +
                                                     std::to_string(end) +
                                                     ") is outside the model's 0.." +
                                                     std::to_string(config.num_layers) + " layers");
  }
  StageSpec s;
  s.begin = begin;
  s.end = end;
  s.embedding = begin == 0;
  s.head = end == config.num_layers;
  return s;
}

StageSpec StageSpec::Device(const ModelConfig& config, int cut) {
  if (cut < 0 || cut > config.num_layers) {
    throw Exception(Exception::kInvalidArgument,
                    "cut " + std::to_string(cut) + " is out of range: the model has " +
                        std::to_string(config.num_layers) + " layers, so a cut is in 0.." +
                        std::to_string(config.num_layers));
  }
  StageSpec s = Range(config, 0, cut);
  s.embedding = true;
  return s;
}

StageSpec StageSpec::Cloud(const ModelConfig& config, int cut) {
  Device(config, cut);  // validates
  StageSpec s = Range(config, cut, config.num_layers);
  s.embedding = false;
  s.head = true;
  return s;
}

StageWeights::StageWeights() : impl_(std::make_unique<Impl>()) {}
StageWeights::~StageWeights() = default;
const StageSpec& StageWeights::spec() const { return impl_->spec; }
const ModelConfig& StageWeights::config() const { return impl_->cfg; }
uint64_t StageWeights::model_fingerprint() const { return impl_->fingerprint; }
size_t StageWeights::bytes() const { return impl_->bytes; }
size_t StageWeights::decode_bytes_per_token() const { return impl_->decode_bytes; }

std::string StageWeights::weight_formats() const {
  const Impl& w = *impl_;
  auto layer_format = [](const LayerWeights& lw) {
    std::set<std::string> names;
    for (const Matrix& m : {lw.qkv, lw.o, lw.gate_up, lw.down}) {
      const std::string f = m->format();
      for (size_t b = 0, e; b <= f.size(); b = e + 1) {
        e = f.find('/', b);
        if (e == std::string::npos) e = f.size();
        names.insert(f.substr(b, e - b));
      }
    }
    std::string out;
    for (const std::string& n : names) out += (out.empty() ? "" : "/") + n;
    return out;
  };
  // A table held apart from the head (untied, or no head in this stage).
  std::string out = w.embed && w.embed != w.head ? "embed:" + w.embed->format() : "";
  for (size_t i = 0; i < w.layers.size();) {
    const std::string f = layer_format(w.layers[i]);
    size_t e = i + 1;
    while (e < w.layers.size() && layer_format(w.layers[e]) == f) ++e;
    const int first = w.spec.begin + static_cast<int>(i),
              last = w.spec.begin + static_cast<int>(e) - 1;
    out += (out.empty() ? "" : " ") + std::to_string(first) +
           (last > first ? "-" + std::to_string(last) : "") + ":" + f;
    i = e;
  }
  if (w.spec.head) out += std::string(out.empty() ? "" : " ") + "head:" + w.head->format();
  return out;
}

std::shared_ptr<const StageWeights> StageWeights::Load(const Model& model, const StageSpec& spec) {
  const ModelConfig& c = model.config();
  StageSpec::Range(c, spec.begin, spec.end);  // validates the range
  if (spec.head && spec.end != c.num_layers)
    throw Exception(Exception::kInvalidArgument,
                    "a stage with the head must end at the last layer");
  if (spec.embedding && spec.begin != 0)
    throw Exception(Exception::kInvalidArgument,
                    "a stage with the embedding must start at layer 0");
  std::shared_ptr<StageWeights> sw(new StageWeights());
  Impl& w = *sw->impl_;
  w.cfg = c;
  w.spec = spec;
  w.fingerprint = model.fingerprint();
  w.isa = model.isa();
  const int64_t h = c.hidden_size, vocab = c.vocab_size;
  for (int l = spec.begin; l < spec.end; ++l) {
    LayerWeights lw = LoadLayer(model, l);
    w.bytes += LayerBytes(lw);
    w.decode_bytes += LayerBytes(lw);
    w.layers.push_back(std::move(lw));
  }
  // A tied head shares the embedding: a stage holding both keeps only the
  // packed head and looks embedding rows up in it.
  const bool tied = !model.HasTensor("lm_head.weight") && c.tie_word_embeddings;
  if (spec.head) {
    w.final_norm = LoadTensor(model, "model.norm.weight", {h});
    w.head =
        LoadMatrix(model, {{tied ? "model.embed_tokens.weight" : "lm_head.weight", {vocab, h}}});
    w.decode_bytes += Bytes(w.final_norm) + Bytes(w.head);
    w.bytes += Bytes(w.final_norm) + Bytes(w.head);
  }
  if (spec.embedding) {
    if (spec.head && tied) {
      w.embed = w.head;  // one copy: rows are looked up in the packed head
    } else {
      // Held in the model's format as the (tied) head would be, so a device
      // without the head holds quantised blocks, not an fp32 table.
      w.embed = LoadMatrix(model, {{"model.embed_tokens.weight", {vocab, h}}});
      w.bytes += Bytes(w.embed);
    }
    w.decode_bytes += RowBytes(w.embed);
  }

  auto [cos, sin] = RotaryTables(c);
  w.cos = std::move(cos);
  w.sin = std::move(sin);
  // Every tensor is copied: the file's pages need not stay mapped.
  model.ReleaseMappedPages();
  return sw;
}

std::shared_ptr<const StageWeights> StageWeights::Slice(const StageSpec& spec) const {
  const Impl& from = *impl_;
  if (spec.begin < from.spec.begin || spec.end > from.spec.end || spec.begin > spec.end ||
      (spec.embedding && !from.spec.embedding) || (spec.head && !from.spec.head) ||
      (spec.head && spec.end != from.cfg.num_layers) || (spec.embedding && spec.begin != 0)) {
    throw Exception(Exception::kInvalidArgument,
                    "cannot slice layers [" + std::to_string(spec.begin) + ", " +
                        std::to_string(spec.end) + ") from a stage holding [" +
                        std::to_string(from.spec.begin) + ", " + std::to_string(from.spec.end) +
                        ")");
  }
  std::shared_ptr<StageWeights> sw(new StageWeights());
  Impl& w = *sw->impl_;
  w.cfg = from.cfg;
  w.spec = spec;
  w.fingerprint = from.fingerprint;
  w.isa = from.isa;
  w.cos = from.cos;
  w.sin = from.sin;
  for (int l = spec.begin; l < spec.end; ++l) {
    const LayerWeights& lw = from.layers[l - from.spec.begin];
    const size_t lb = LayerBytes(lw);
    w.bytes += lb;
    w.decode_bytes += lb;
    w.layers.push_back(lw);
  }
  if (spec.head) {
    w.final_norm = from.final_norm;
    w.head = from.head;
    w.bytes += Bytes(w.final_norm) + Bytes(w.head);
    w.decode_bytes += Bytes(w.final_norm) + Bytes(w.head);
  }
  if (spec.embedding) {
    // When the source's table is its tied head, a slice without the head
    // still holds (and counts) the matrix to look rows up in.
    w.embed = from.embed;
    if (w.embed != w.head) w.bytes += Bytes(w.embed);
    w.decode_bytes += RowBytes(w.embed);
  }
  return sw;
}

Stage::Stage(std::shared_ptr<const StageWeights> weights, int max_context)
    : weights_(std::move(weights)) {
  const ModelConfig& c = weights_->config();
  max_context_ = max_context > 0 ? std::min(max_context, c.max_context) : c.max_context;
}

Stage::~Stage() = default;

const StageSpec& Stage::spec() const { return weights_->spec(); }

size_t Stage::OutputSize(int count) const {
  const ModelConfig& c = weights_->config();
  return spec().head ? static_cast<size_t>(c.vocab_size)
                     : static_cast<size_t>(count) * c.hidden_size;
}

size_t Stage::kv_bytes() const {
  return kv_.empty() ? 0 : HugePageAllocationSize(kv_.capacity() * sizeof(float));
}

namespace {

// Floats of one layer's keys and of its values at `capacity` positions.
size_t KeyFloats(const ModelConfig& c, int capacity) {
  return static_cast<size_t>(c.num_kv_heads) * c.head_dim * KeyStride(capacity);
}
size_t ValueFloats(const ModelConfig& c, int capacity) {
  return static_cast<size_t>(c.num_kv_heads) * capacity * c.head_dim;
}

}  // namespace

float* Stage::Keys(size_t l) {
  const ModelConfig& c = weights_->config();
  return kv_.data() + l * (KeyFloats(c, capacity_) + ValueFloats(c, capacity_));
}

float* Stage::Values(size_t l) { return Keys(l) + KeyFloats(weights_->config(), capacity_); }

void Stage::Reserve(int positions) {
  if (positions <= capacity_) return;
  const ModelConfig& c = weights_->config();
  const int cap =
      std::max({positions, std::min(max_context_, capacity_ * 2), std::min(max_context_, 64)});
  const size_t layers = weights_->spec().end - weights_->spec().begin;
  const size_t hd = c.head_dim, kf = KeyFloats(c, cap), layer = kf + ValueFloats(c, cap);
  HugePageVector<float> n(layers * layer);
  for (size_t l = 0; capacity_ > 0 && l < layers; ++l) {
    const float* keys = Keys(l);
    const float* values = Values(l);
    float* nk = &n[l * layer];
    float* nv = nk + kf;
    for (size_t row = 0; row < c.num_kv_heads * hd; ++row) {
      std::memcpy(&nk[row * KeyStride(cap)], &keys[row * KeyStride(capacity_)],
                  static_cast<size_t>(position_) * sizeof(float));
    }
    for (int g = 0; g < c.num_kv_heads; ++g) {
      std::memcpy(&nv[g * cap * hd], &values[g * capacity_ * hd],
                  static_cast<size_t>(position_) * hd * sizeof(float));
    }
  }
  kv_.swap(n);
  capacity_ = cap;
}

void Stage::Truncate(int position) {
  if (position < 0 || position > position_) {
    throw Exception(Exception::kInvalidArgument,
                    "cannot truncate to position " + std::to_string(position) +
                        ": the cache holds " + std::to_string(position_) + " positions");
  }
  position_ = position;
}

void Stage::Forward(const StageInput& input, float* out) { ForwardBatch({this}, {input}, {out}); }

namespace {

// Profiling (see Stage::SetPartTimer): time since the last mark goes to a part.
class PartTimer {
 public:
  PartTimer(std::vector<double>* us, size_t parts) : us_(us) {
    if (us_) us_->resize(parts, 0.0);
  }
  void Mark(size_t part) {
    if (!us_) return;
    const auto now = std::chrono::steady_clock::now();
    (*us_)[part] += std::chrono::duration<double, std::micro>(now - last_).count();
    last_ = now;
  }

 private:
  std::vector<double>* us_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

}  // namespace

// One ForwardBatch call: a row per position of every sequence, and the
// buffers every layer's steps share.
struct Stage::Batch {
  Batch(const std::vector<Stage*>& stages, const std::vector<StageInput>& inputs)
      : stages(stages), inputs(inputs), w(stages[0]->weights_->impl()), c(w.cfg) {}

  // Throws (touching no state) unless every input fits its stage.
  void Validate();
  // Reserves the caches and fills x with each row's embedding or input.
  void Embed();
  // Layer l's attention block: x += o(attend(rope(qkv(norm(x))))), with the
  // new keys and values appended to each sequence's cache.
  void Attention(size_t l);
  // Layer l's MLP block: x += down(silu(gate(norm(x))) * up(norm(x))).
  void Mlp(size_t l);
  // The last layer's rows (or the head's logits) into outs.
  void Output(const std::vector<float*>& outs);

  const std::vector<Stage*>& stages;
  const std::vector<StageInput>& inputs;
  const StageWeights::Impl& w;
  const ModelConfig& c;
  const int h = c.hidden_size, hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads;
  const int qd = nh * hd, kvd = nkv * hd, qkvd = qd + 2 * kvd, inter = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  int total = 0;
  std::vector<int> row_stage, row_pos;
  std::vector<float> x, xn, qkv, attn, tmp, gu, act;
  // Attention blocks: (first row, count) of up to four rows of one sequence.
  std::vector<std::pair<int, int>> blocks;

 private:
  void ValidateTokens(const StageInput& in) const;
  void RopeAndCache(size_t l, int r, int g);
  void AttendBlocks(size_t l);
};

void Stage::Batch::ValidateTokens(const StageInput& in) const {
  for (int i = 0; i < in.count; ++i) {
    if (in.tokens[i] < 0 || in.tokens[i] >= c.vocab_size) {
      throw Exception(Exception::kInvalidArgument, "token id " + std::to_string(in.tokens[i]) +
                                                       " is outside the vocabulary of " +
                                                       std::to_string(c.vocab_size));
    }
  }
}

void Stage::Batch::Validate() {
  total = 0;
  for (size_t s = 0; s < stages.size(); ++s) {
    const Stage& st = *stages[s];
    const StageInput& in = inputs[s];
    if (&st.weights_->impl() != &w)
      throw Exception(Exception::kInvalidArgument, "ForwardBatch: stages must share weights");
    if (in.count <= 0)
      throw Exception(Exception::kInvalidArgument, "stage input must hold at least one position");
    if (w.spec.embedding ? in.tokens == nullptr : in.hidden == nullptr) {
      throw Exception(Exception::kInvalidArgument,
                      w.spec.embedding
                          ? "this stage starts at layer 0 and takes token ids"
                          : "this stage starts at layer " + std::to_string(w.spec.begin) +
                                " and takes hidden states");
    }
    if (st.position_ + in.count > st.max_context_) {
      throw Exception(Exception::kInvalidArgument,
                      std::to_string(in.count) + " positions at position " +
                          std::to_string(st.position_) + " exceed the context of " +
                          std::to_string(st.max_context_) + " tokens");
    }
    if (in.tokens != nullptr) ValidateTokens(in);
    total += in.count;
  }
}

void Stage::Batch::Embed() {
  row_stage.resize(total);
  row_pos.resize(total);
  x.resize(static_cast<size_t>(total) * h);
  for (size_t s = 0, r = 0; s < stages.size(); ++s) {
    stages[s]->Reserve(stages[s]->position_ + inputs[s].count);
    for (int i = 0; i < inputs[s].count; ++i, ++r) {
      row_stage[r] = static_cast<int>(s);
      row_pos[r] = stages[s]->position_ + i;
      if (!w.spec.embedding) {
        std::memcpy(&x[r * h], inputs[s].hidden + static_cast<size_t>(i) * h, h * sizeof(float));
      } else {
        w.embed->Row(inputs[s].tokens[i], &x[r * h]);
      }
    }
    for (int i = 0; i < inputs[s].count; i += 4) {
      blocks.emplace_back(static_cast<int>(r) - inputs[s].count + i,
                          std::min(4, inputs[s].count - i));
    }
  }
  const size_t rows = total;
  xn.resize(rows * h);
  qkv.resize(rows * qkvd);
  attn.resize(rows * qd);
  tmp.resize(rows * h);
  gu.resize(rows * 2 * inter);
  act.resize(rows * inter);
}

// Row r's rotary embedding of KV head g and of its query heads, and its key
// and value of head g into its sequence's cache.
void Stage::Batch::RopeAndCache(size_t l, int r, int g) {
  Stage& st = *stages[row_stage[r]];
  float* q = &qkv[static_cast<size_t>(r) * qkvd];
  float* k = q + qd;
  const float* v = k + kvd;
  const float* cs = &(*w.cos)[static_cast<size_t>(row_pos[r]) * hd];
  const float* sn = &(*w.sin)[static_cast<size_t>(row_pos[r]) * hd];
  const int group = nh / nkv;
  for (int hh = g * group; hh < (g + 1) * group; ++hh) Rope(q + hh * hd, cs, sn, hd);
  Rope(k + g * hd, cs, sn, hd);
  const size_t ks = KeyStride(st.capacity_);
  float* kt = st.Keys(l) + static_cast<size_t>(g) * hd * ks + row_pos[r];
  for (int d = 0; d < hd; ++d) kt[static_cast<size_t>(d) * ks] = k[g * hd + d];
  std::memcpy(st.Values(l) + (static_cast<size_t>(g) * st.capacity_ + row_pos[r]) * hd, v + g * hd,
              hd * sizeof(float));
}

// Queries of one sequence go in blocks of up to four consecutive rows that
// share key loads; causal blocks cost in proportion to their position, so
// unit u pairs block a with block nb-1-a to balance threads.
void Stage::Batch::AttendBlocks(size_t l) {
  const int nb = static_cast<int>(blocks.size()), group = nh / nkv;
  kernels::ParallelFor(((nb + 1) / 2) * nh, 2, [&](int b, int e) {
    thread_local std::vector<float> scratch;
    for (int u = b; u < e; ++u) {
      const int a = u / nh, hh = u % nh, g = hh / group;
      for (int bi : {a, nb - 1 - a}) {
        const auto [r0, nq] = blocks[bi];
        Stage& st = *stages[row_stage[r0]];
        const float* q[4];
        float* out[4];
        float* sc[4];
        int t[4];
        const int tmax = row_pos[r0 + nq - 1] + 1;
        if (scratch.size() < 4 * static_cast<size_t>(tmax))
          scratch.resize(4 * static_cast<size_t>(tmax));
        for (int i = 0; i < nq; ++i) {
          q[i] = &qkv[static_cast<size_t>(r0 + i) * qkvd + hh * hd];
          out[i] = &attn[static_cast<size_t>(r0 + i) * qd + hh * hd];
          sc[i] = &scratch[static_cast<size_t>(i) * tmax];
          t[i] = row_pos[r0 + i] + 1;
        }
        const size_t ks = KeyStride(st.capacity_);
        kernels::Attend(
            w.isa, q, nq, st.Keys(l) + static_cast<size_t>(g) * hd * ks, static_cast<int>(ks),
            st.Values(l) + static_cast<size_t>(g) * st.capacity_ * hd, t, hd, scale, sc, out);
        if (bi == nb - 1 - bi) break;
      }
    }
  });
}

void Stage::Batch::Attention(size_t l) {
  const LayerWeights& lw = w.layers[l];
  // Row-wise work runs on the thread pool too (inline for one row).
  kernels::ParallelFor(total, kRowGrain, [&](int b, int e) {
    for (int r = b; r < e; ++r) RmsNorm(w.isa, &x[r * h], Data(lw.in_norm), h, eps, &xn[r * h]);
  });
  lw.qkv->Apply(xn.data(), total, qkv.data(), Data(lw.qkv_bias));
  // By KV head too, so that one token's cache writes (a strided column of
  // keys per head) go on every thread.
  kernels::ParallelFor(total * nkv, kPieceGrain, [&](int b, int e) {
    for (int u = b; u < e; ++u) RopeAndCache(l, u / nkv, u % nkv);
  });
  AttendBlocks(l);
  lw.o->Apply(attn.data(), total, tmp.data());
}

void Stage::Batch::Mlp(size_t l) {
  const LayerWeights& lw = w.layers[l];
  kernels::ParallelFor(total, kRowGrain, [&](int b, int e) {
    for (size_t i = static_cast<size_t>(b) * h; i < static_cast<size_t>(e) * h; ++i)
      x[i] = x[i] + tmp[i];
    for (int r = b; r < e; ++r) RmsNorm(w.isa, &x[r * h], Data(lw.post_norm), h, eps, &xn[r * h]);
  });
  lw.gate_up->Apply(xn.data(), total, gu.data());
  // In chunks of a row, so that one token's activation runs on every thread.
  const int chunks = (inter + kActChunk - 1) / kActChunk;
  kernels::ParallelFor(total * chunks, kPieceGrain, [&](int b, int e) {
    for (int c = b; c < e; ++c) {
      const size_t r = static_cast<size_t>(c / chunks);
      const int j0 = (c % chunks) * kActChunk, j1 = std::min(inter, j0 + kActChunk);
      const float* g = &gu[r * 2 * inter];
      const float* u = g + inter;
      float* a = &act[r * inter];
      for (int j = j0; j < j1; ++j) a[j] = (g[j] / (1.0f + std::exp(-g[j]))) * u[j];
    }
  });
  lw.down->Apply(act.data(), total, tmp.data());
  kernels::ParallelFor(total, kRowGrain, [&](int b, int e) {
    for (size_t i = static_cast<size_t>(b) * h; i < static_cast<size_t>(e) * h; ++i)
      x[i] = x[i] + tmp[i];
  });
}

void Stage::Batch::Output(const std::vector<float*>& outs) {
  if (!w.spec.head) {
    for (size_t s = 0, r = 0; s < stages.size(); r += inputs[s].count, ++s) {
      std::memcpy(outs[s], &x[r * h], static_cast<size_t>(inputs[s].count) * h * sizeof(float));
    }
    return;
  }
  HeadLogits(w.isa, c, w.final_norm, w.head, x, inputs, eps, outs);
}

// The batch below runs unhooked; the hook of the first stage sees it.
void Stage::ForwardHooked(const std::vector<Stage*>& stages, const std::vector<StageInput>& inputs,
                          const std::vector<float*>& outs) {
  ComputeHook* hook = stages[0]->compute_hook_;
  int rows = 0;
  double kv_reads = 0;
  for (size_t s = 0; s < stages.size(); ++s) {
    // Position p attends p + 1 positions.
    const double p0 = stages[s]->position_, n = inputs[s].count;
    rows += inputs[s].count;
    kv_reads += n * p0 + n * (n + 1) / 2;
  }
  const auto t0 = std::chrono::steady_clock::now();
  stages[0]->compute_hook_ = nullptr;
  struct Restore {
    Stage* s;
    ComputeHook* h;
    ~Restore() { s->compute_hook_ = h; }
  } restore{stages[0], hook};
  ForwardBatch(stages, inputs, outs);
  hook->AfterForward(
      stages[0]->spec(), rows, static_cast<int>(stages.size()), kv_reads,
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
}

void Stage::ForwardBatch(const std::vector<Stage*>& stages, const std::vector<StageInput>& inputs,
                         const std::vector<float*>& outs) {
  if (stages.empty()) return;
  if (stages[0]->compute_hook_ != nullptr && inputs.size() == stages.size()) {
    ForwardHooked(stages, inputs, outs);
    return;
  }
  if (inputs.size() != stages.size() || outs.size() != stages.size()) {
    throw Exception(Exception::kInvalidArgument,
                    "ForwardBatch: stages, inputs and outputs differ in number");
  }
  Batch batch(stages, inputs);
  batch.Validate();  // before touching any state
  const size_t layers = batch.w.layers.size();
  PartTimer timer(stages[0]->part_timer_, layers + 2);
  batch.Embed();
  timer.Mark(0);
  for (size_t l = 0; l < layers; ++l) {
    batch.Attention(l);
    batch.Mlp(l);
    timer.Mark(1 + l);
  }
  for (size_t s = 0; s < stages.size(); ++s) stages[s]->position_ += inputs[s].count;
  batch.Output(outs);
  timer.Mark(layers + 1);
}

}  // namespace splitlm::partition
