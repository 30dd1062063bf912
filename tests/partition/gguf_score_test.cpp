// Teacher-forced scores of llama.cpp's synthk files (F32, and quantised files
// held in their block formats) agree with llama.cpp's own argmax at every
// position where its margin is clear (>= 0.01), at every cut.
#include "partition/score.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "partition/model.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

struct Reference {
  std::vector<int32_t> ids;
  // Per run ("f32", "q8_0", "q8_0 deq", ...): (argmax, margin) per position.
  std::map<std::string, std::vector<std::pair<int32_t, double>>> runs;
};

// Reads ../shared/gguf/synthk-teacher-forced.txt: '#' comments, an "ids:"
// line, then "RUN: id:margin id:margin ..." lines.
Reference ReadReference(const std::string& path) {
  Reference ref;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string run = line.substr(0, colon);
    std::istringstream rest(line.substr(colon + 1));
    std::string item;
    while (rest >> item) {
      if (run == "ids") {
        ref.ids.push_back(std::stoi(item));
      } else {
        const size_t c = item.find(':');
        ref.runs[run].emplace_back(std::stoi(item.substr(0, c)), std::stod(item.substr(c + 1)));
      }
    }
  }
  return ref;
}

std::optional<std::string> SharedGguf(const std::string& name) {
  auto shared = testing::SharedDir();
  if (!shared || !std::filesystem::exists(*shared + "/gguf/" + name)) return std::nullopt;
  return *shared + "/gguf/" + name;
}

// Positions where every run of `runs` has a margin >= 0.01 and the first
// run's argmax differs from ours; `compared` counts the positions checked.
std::vector<size_t> Disagreements(
    const SequenceScore& s, const std::vector<const std::vector<std::pair<int32_t, double>>*>& runs,
    size_t* compared) {
  std::vector<size_t> bad;
  *compared = 0;
  for (size_t i = 0; i < s.positions.size(); ++i) {
    bool clear = true;
    for (const auto* run : runs) clear = clear && run->at(i).second >= 0.01;
    if (!clear) continue;
    ++*compared;
    if (s.positions[i].argmax != runs[0]->at(i).first) bad.push_back(i);
  }
  return bad;
}

void ExpectAgreement(const std::string& file, const std::vector<std::string>& runs) {
  const auto path = SharedGguf(file);
  const auto ref_path = SharedGguf("synthk-teacher-forced.txt");
  if (!path || !ref_path)
    GTEST_SKIP() << "../shared/gguf/" << file << " or its reference is absent (set SPLITLM_SHARED)";
  const Reference ref = ReadReference(*ref_path);
  ASSERT_EQ(200u, ref.ids.size());
  auto model = Model::Open(*path);
  // The files say context_length 128 (llama.cpp ran past it); positions are
  // causal, so the first 128 positions' references hold for the prefix.
  const size_t n = std::min(ref.ids.size(), static_cast<size_t>(model->config().max_context));
  ASSERT_EQ(128u, n);
  const std::vector<int32_t> ids(ref.ids.begin(), ref.ids.begin() + static_cast<long>(n));
  const SequenceScore local = ScoreSequence(*model, model->config().num_layers, ids);
  ASSERT_EQ(n, local.positions.size());
  // Against the first run where its margin is clear, then against each
  // further run where all runs so far are clear.
  std::vector<const std::vector<std::pair<int32_t, double>>*> checked;
  for (const std::string& run : runs) {
    ASSERT_EQ(200u, ref.runs.at(run).size()) << run;
    checked.insert(checked.begin(), &ref.runs.at(run));
    size_t compared = 0;
    EXPECT_EQ(std::vector<size_t>{}, Disagreements(local, checked, &compared))
        << file << " vs " << run;
    EXPECT_GT(compared, 90u) << run;
  }
  EXPECT_TRUE(std::isfinite(local.perplexity));
  // A split gives the same numbers bit for bit.
  for (int cut : {0, 2}) {
    const SequenceScore split = ScoreSequence(*model, cut, ids);
    for (size_t i = 0; i < local.positions.size(); ++i) {
      ASSERT_EQ(local.positions[i].argmax, split.positions[i].argmax)
          << "cut " << cut << " pos " << i;
      ASSERT_EQ(local.positions[i].margin, split.positions[i].margin)
          << "cut " << cut << " pos " << i;
      ASSERT_EQ(local.positions[i].logprob_next, split.positions[i].logprob_next)
          << "cut " << cut << " pos " << i;
    }
  }
}

TEST(GgufScore, SynthkF32AgreesWithLlamaCpp) { ExpectAgreement("synthk-f32.gguf", {"f32"}); }
// The quantised files multiply 8-bit activations, as llama.cpp does (not the
// dequantised fp32 computation): against llama.cpp's run on the same file
// where its margin is clear, and against its dequantised run where both of
// its runs are clear (docs/exactness.md).
TEST(GgufScore, SynthkQ8_0AgreesWithLlamaCpp) {
  ExpectAgreement("synthk-q8_0.gguf", {"q8_0", "q8_0 deq"});
}
TEST(GgufScore, SynthkQ4_0AgreesWithLlamaCpp) {
  ExpectAgreement("synthk-q4_0.gguf", {"q4_0", "q4_0 deq"});
}
TEST(GgufScore, SynthkQ4_K_MAgreesWithLlamaCpp) {
  ExpectAgreement("synthk-q4_k_m.gguf", {"q4_k_m", "q4_k_m deq"});
}

TEST(GgufScore, MarginsAndLogProbabilitiesFollowTheirDefinitions) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.75f};
  const PositionScore p = TopTwo(logits.data(), 4);
  EXPECT_EQ(1, p.argmax);
  EXPECT_EQ(0.25f, p.margin);
  const std::vector<float> tie = {3.0f, 3.0f, 1.0f};
  EXPECT_EQ(0, TopTwo(tie.data(), 3).argmax);
  EXPECT_EQ(0.0f, TopTwo(tie.data(), 3).margin);
}

TEST(GgufScore, TooFewTokensAreAnError) {
  const auto path = SharedGguf("synthk-f32.gguf");
  if (!path) GTEST_SKIP() << "../shared/gguf/synthk-f32.gguf is absent (set SPLITLM_SHARED)";
  auto model = Model::Open(*path);
  try {
    ScoreSequence(*model, 4, {1});
    ADD_FAILURE() << "expected an error";
  } catch (const Exception& e) {
    EXPECT_EQ("scoring needs at least 2 tokens (got 1)", std::string(e.what()));
  }
}

}  // namespace
}  // namespace splitlm::partition
