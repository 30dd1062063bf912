#include "sim/workload.h"

#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "device/agent.h"
#include "partition/prompt.h"
#include "partition/tokenizer.h"
#include "transport/error.h"
#include "transport/metrics.h"
#include "transport/text_file.h"

namespace splitlm::sim {
namespace {

namespace fs = std::filesystem;

// The prompts of `file`, one line of token ids each, each valid for a model
// of `config` (partition::ValidatePrompt); errors name the file and line.
std::vector<std::vector<int32_t>> ReadPrompts(const std::string& file,
                                              const partition::ModelConfig& config) {
  std::istringstream in(transport::ReadTextFileOrThrow(file, transport::kMaxListBytes));
  std::vector<std::vector<int32_t>> prompts;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const std::string where = file + ":" + std::to_string(n) + ": ";
    std::vector<int32_t> ids;
    try {
      ids = partition::ParseTokenIds(line);
      partition::ValidatePrompt(ids, config);
    } catch (const std::exception& e) {
      throw Exception(Exception::kInvalidArgument, where + e.what());
    }
    prompts.push_back(ids);
  }
  if (prompts.empty())
    throw Exception(Exception::kInvalidArgument,
                    file + ": no prompts (one line of token ids each)");
  return prompts;
}

std::vector<std::vector<int32_t>> GeneratedPrompts(int count, int length, int vocab_size) {
  std::vector<std::vector<int32_t>> prompts;
  for (int p = 0; p < count; ++p) {
    std::vector<int32_t> ids(length);
    for (int i = 0; i < length; ++i)
      ids[i] = static_cast<int32_t>((1 + 97 * p + 31 * i) % vocab_size);
    prompts.push_back(ids);
  }
  return prompts;
}

}  // namespace

partition::SamplingParams SamplingOf(const Settings& s) {
  partition::SamplingParams p;
  p.temperature = static_cast<float>(s.temperature);
  p.seed = s.seed;
  return p;
}

const Reference& ReferenceFor(Workbench& bench, const Settings& s) {
  auto& r =
      bench
          .references[{s.prompt_file, s.prompts, s.prompt_tokens, s.tokens, s.temperature, s.seed}];
  if (!r.prompts.empty()) return r;
  const auto& c = bench.model->config();
  r.prompts = s.prompt_file.empty() ? GeneratedPrompts(s.prompts, s.prompt_tokens, c.vocab_size)
                                    : ReadPrompts(s.prompt_file, c);
  for (const auto& ids : r.prompts) {
    if (static_cast<int>(ids.size()) + s.tokens > c.max_context) {
      r.prompts.clear();
      throw Exception(Exception::kInvalidArgument, "a prompt of " + std::to_string(ids.size()) +
                                                       " tokens + " + std::to_string(s.tokens) +
                                                       " tokens exceed the model's context of " +
                                                       std::to_string(c.max_context));
    }
  }
  device::AgentOptions lo;
  lo.cut = c.num_layers;
  zmq::context_t z;
  transport::Metrics m;
  device::Agent local(*bench.model, lo, z, m);
  for (const auto& ids : r.prompts)
    r.tokens.push_back(local.Generate({ids, s.tokens, SamplingOf(s), false}).tokens);
  return r;
}

std::optional<scheduler::HardwareProfile> FindHardware(const std::string& value,
                                                       const std::string& dir,
                                                       const std::string& kind) {
  if (value.empty() || value == "host") return std::nullopt;
  const std::string file =
      value.find('/') != std::string::npos ? value : dir + "/" + value + ".toml";
  if (!fs::exists(file)) {
    std::string names;
    if (fs::is_directory(dir)) {
      for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().extension() == ".toml")
          names += (names.empty() ? "" : ", ") + e.path().stem().string();
      }
    }
    throw Exception(Exception::kNotFound, kind + " profile \"" + value + "\" not found (" + file +
                                              "); profiles in " + dir + ": " +
                                              (names.empty() ? "none" : names));
  }
  auto hw = scheduler::LoadHardwareProfile(file);
  if (hw.kind != kind)
    throw Exception(Exception::kInvalidArgument,
                    file + ": a " + hw.kind + " profile, used as the " + kind);
  return hw;
}

}  // namespace splitlm::sim
