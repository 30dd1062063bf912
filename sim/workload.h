// What every run of one model shares: the model, where hardware profiles are
// found, and the prompts of each workload with the all-local run's tokens for
// them (the reference every policy's tokens are compared with).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <spdlog/logger.h>

#include "partition/model.h"
#include "partition/sampler.h"
#include "scheduler/hardware.h"
#include "sim/settings.h"
#include "sim/stop_token.h"
#include "transport/null_logger.h"

namespace splitlm::sim {

// The sampling `s` asks for.
partition::SamplingParams SamplingOf(const Settings& s);

// Prompts and the all-local reference run's tokens for them.
struct Reference {
  std::vector<std::vector<int32_t>> prompts, tokens;
};

struct Workbench {
  const partition::Model* model = nullptr;  // not owned; outlives the bench
  std::string hardware_dir;                 // where profile names are looked up
  std::shared_ptr<spdlog::logger> log =
      transport::NullLogger();  // never null (null: replaced by NullLogger())
  // The runs end early once a stop is requested (splitlm sim: on SIGINT).
  StopToken stop;
  // By (prompt file, prompts, prompt tokens, tokens, temperature, seed).
  std::map<std::tuple<std::string, int, int, int, double, uint64_t>, Reference> references;
};

// The reference for `s`'s workload: its prompt file's prompts (or generated
// ones) and the local run's tokens, computed once (before any clock starts).
// Throws Exception(kInvalidArgument) naming the file and line of a bad prompt, or a
// prompt too long for the model's context.
const Reference& ReferenceFor(Workbench& bench, const Settings& s);

// The hardware profile `value` names: none for "" or "host", a file when it
// holds a '/', else `dir`/NAME.toml. `kind` is "device" or "cloud". Throws
// Exception(kNotFound) listing the profiles in `dir` when it is not found, or
// when the profile is of the other kind.
std::optional<scheduler::HardwareProfile> FindHardware(const std::string& value,
                                                       const std::string& dir,
                                                       const std::string& kind);

}  // namespace splitlm::sim
