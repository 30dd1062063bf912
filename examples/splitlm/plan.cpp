// splitlm profile / splitlm plan: measure this machine, then predict every
// cut and choose one under the configured objective and constraints.
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

#include "device/drafter.h"
#include "examples/splitlm/cli.h"
#include "partition/model.h"
#include "scheduler/config.h"
#include "scheduler/cost_model.h"
#include "scheduler/flags.h"
#include "scheduler/weights.h"
#include "transport/codec.h"
#include "transport/error.h"
#include "transport/text_file.h"

namespace splitlm::cli {
namespace {

scheduler::ComputeProfile ReadProfile(const std::string& path) {
  return scheduler::ComputeProfile::FromJson(
      transport::ReadTextFileOrThrow(path, transport::kMaxListBytes), path);
}

// The weights `profile` (from `origin`) was measured with.
scheduler::WeightCost MeasuredWith(const partition::Model& model,
                                   const scheduler::ComputeProfile& profile,
                                   const std::string& origin, double quant_compute_factor) {
  if (profile.weights != "gguf" && !partition::IsWeightFormat(profile.weights)) {
    throw Exception(Exception::kInvalidArgument, origin + ": weights \"" + profile.weights +
                                                     "\" is not gguf or one of " +
                                                     partition::WeightFormatList());
  }
  return {partition::ModelWeightBytes(model, profile.weights == "gguf" ? "model" : profile.weights),
          quant_compute_factor};
}

nlohmann::json WeightsJson(const partition::WeightBytes& w) {
  return {{"format", w.format},
          {"layer_bytes", w.layers},
          {"embed_bytes", w.embed},
          {"head_bytes", w.head_read},
          {"tensor_types", w.tensor_types}};
}

struct PlanArgs {
  std::string model;
  std::string config;
  bool json = false;
  std::string device_weights;
  std::string cloud_weights;
  std::string speculate;
  double acceptance = -1;  // < 0: from the config or the drafter's prior
  double draft_ms = -1;    // < 0: from the config
};

void AddPlanFlags(CLI::App* cmd, PlanArgs* args) {
  cmd->add_option("--model", args->model, "model directory or .gguf file");
  cmd->add_option("--device-weights", args->device_weights,
                  "weight format the device holds: model (its own), f32, f16, bf16, q8_0, q4_0, "
                  "q4_k, q6_k, q4_k_m")
      ->check(scheduler::flags::Schema("scheduler.device_weights"));
  cmd->add_option("--cloud-weights", args->cloud_weights,
                  "weight format the cloud holds, as --device-weights")
      ->check(scheduler::flags::Schema("scheduler.cloud_weights"));
  cmd->add_option("--config", args->config, "TOML configuration ([scheduler], [link], [power])")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_flag("--json", args->json, "one JSON line");
  cmd->add_option("--speculate", args->speculate,
                  "plan speculative decoding with this drafter (as splitlm-device --speculate, "
                  "e.g. prompt-lookup:8; "
                  "default device.speculate)");
  cmd->add_option("--acceptance", args->acceptance,
                  "per-position draft acceptance rate to plan with (default scheduler.acceptance, "
                  "else the drafter's prior)")
      ->check(scheduler::flags::Schema("scheduler.acceptance"));
  cmd->add_option("--draft-step-ms", args->draft_ms,
                  "a draft model's decode step on the device, ms per draft token")
      ->check(scheduler::flags::Schema("scheduler.draft_step_ms"));
}

// Where the device and cloud profiles came from (empty: measured here / the
// device's, scaled by scheduler.cloud_speedup).
struct ProfileFiles {
  std::string device;
  std::string cloud;
};

// The device profile (measured now, or loaded from / cached in
// scheduler.device_profile) and the cloud's (scheduler.cloud_profile, else the
// device's divided by scheduler.cloud_speedup).
ProfileFiles LoadProfiles(const scheduler::Config& cfg, const partition::Model& model,
                          const Context& ctx, scheduler::PlanInputs& in, double* usd_per_hour,
                          std::string* codec) {
  using scheduler::FillFromConfig;
  ProfileFiles files;
  double speedup = 1;
  FillFromConfig(cfg, "scheduler.device_profile", false, files.device);
  FillFromConfig(cfg, "scheduler.cloud_profile", false, files.cloud);
  FillFromConfig(cfg, "scheduler.cloud_speedup", false, speedup);
  FillFromConfig(cfg, "scheduler.cloud_usd_per_hour", false, *usd_per_hour);
  FillFromConfig(cfg, "device.codec", false, *codec);
  scheduler::ProfileOptions options;
  options.threads = at::get_num_threads();
  options.progress = [&](const std::string& s) { ctx.log->info("profiling this machine: {}", s); };
  if (files.device.empty()) {
    in.device = scheduler::MeasureProfile(model, options);
  } else {
    bool measured = false;
    in.device = scheduler::LoadOrMeasureProfile(model, files.device, options, &measured);
    if (measured) ctx.log->info("measured and cached the device profile in {}", files.device);
  }
  if (!files.cloud.empty()) {
    in.cloud = ReadProfile(files.cloud);
  } else {
    in.cloud = in.device;
    for (auto& row : in.cloud.layer_decode_us)
      for (double& v : row) v /= speedup;
    for (auto& row : in.cloud.layer_prefill_us)
      for (double& v : row) v /= speedup;
    in.cloud.head_decode_us /= speedup;
  }
  if (in.device.model_fingerprint != model.fingerprint() ||
      in.cloud.model_fingerprint != model.fingerprint()) {
    throw Exception(
        Exception::kInvalidArgument,
        "a profile was measured on another model (fingerprint differs): re-run splitlm profile");
  }
  return files;
}

// Each side's weights in its format, and the weights its profile was measured with.
struct PlanWeights {
  scheduler::WeightCost device;
  scheduler::WeightCost cloud;
  std::string device_measured;
  std::string cloud_measured;
};

// Re-expresses the profiles in `in` for the weight format each side holds.
PlanWeights RetargetToWeights(const scheduler::Config& cfg, const PlanArgs& args,
                              const partition::Model& model, const ProfileFiles& files,
                              scheduler::PlanInputs& in) {
  using scheduler::FillFromConfig;
  std::string device_format = "model", cloud_format = "model";
  double quant_compute_factor = 1;
  FillFromConfig(cfg, "scheduler.device_weights", !args.device_weights.empty(), device_format);
  FillFromConfig(cfg, "scheduler.cloud_weights", !args.cloud_weights.empty(), cloud_format);
  FillFromConfig(cfg, "scheduler.quant_compute_factor", false, quant_compute_factor);
  if (!args.device_weights.empty()) device_format = args.device_weights;
  if (!args.cloud_weights.empty()) cloud_format = args.cloud_weights;
  PlanWeights weights{{partition::ModelWeightBytes(model, device_format), quant_compute_factor},
                      {partition::ModelWeightBytes(model, cloud_format), quant_compute_factor},
                      in.device.weights,
                      in.cloud.weights};
  const std::string device_origin = files.device.empty() ? "the device profile" : files.device;
  const std::string cloud_origin = files.cloud.empty() ? device_origin : files.cloud;
  const auto device_from = MeasuredWith(model, in.device, device_origin, quant_compute_factor);
  const auto cloud_from = MeasuredWith(model, in.cloud, cloud_origin, quant_compute_factor);
  in.device = scheduler::RetargetProfile(in.device, device_from, weights.device);
  in.cloud = scheduler::RetargetProfile(in.cloud, cloud_from, weights.cloud);
  return weights;
}

// The drafter to plan with: --speculate, else device.speculate.
void ApplySpeculation(const scheduler::Config& cfg, const PlanArgs& args,
                      scheduler::PlanInputs& in) {
  std::string speculate_text = "off";
  scheduler::FillFromConfig(cfg, "device.speculate", !args.speculate.empty(), speculate_text);
  if (!args.speculate.empty()) speculate_text = args.speculate;
  const auto spec = device::ParseSpeculate(speculate_text, "--speculate / device.speculate");
  const auto kind = scheduler::DrafterKindFromName(spec.drafter);
  if (!kind)
    throw Exception(Exception::kInvalidArgument,
                    "--speculate: the cost model does not know drafter \"" + spec.drafter + "\"");
  in.speculation.drafter = *kind;
  in.speculation.max_drafts = spec.max_drafts;
  if (args.acceptance >= 0) in.speculation.acceptance = args.acceptance;
  if (args.draft_ms >= 0) in.speculation.draft_model_us = args.draft_ms * 1e3;
  if (*kind == scheduler::DrafterKind::kDraftModel && in.speculation.draft_model_us <= 0) {
    throw Exception(
        Exception::kInvalidArgument,
        "--speculate " + speculate_text +
            ": give the draft model's step time (--draft-step-ms or scheduler.draft_step_ms)");
  }
}

void PrintPlan(const scheduler::Plan& plan, const scheduler::PlanInputs& in,
               const PlanWeights& weights, bool json) {
  if (json) {
    auto j = nlohmann::json::parse(scheduler::PlanJson(plan, in.objective));
    j["device_weights"] = WeightsJson(weights.device.bytes);
    j["cloud_weights"] = WeightsJson(weights.cloud.bytes);
    j["device_profile_weights"] = weights.device_measured;
    j["cloud_profile_weights"] = weights.cloud_measured;
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << "device weights " << weights.device.bytes.Summary() << " (profile measured with "
              << weights.device_measured << ")\n"
              << "cloud weights  " << weights.cloud.bytes.Summary() << " (profile measured with "
              << weights.cloud_measured << ")\n"
              << scheduler::FormatPlan(plan, in.objective);
  }
}

int RunPlan(const PlanArgs& args, const Context& ctx) {
  const auto cfg = scheduler::Config::Load(args.config);
  std::string model_dir = args.model;
  scheduler::FillFromConfig(cfg, "model.dir", !args.model.empty(), model_dir);
  if (model_dir.empty())
    throw Exception(Exception::kInvalidArgument, "no model: pass --model DIR or set model.dir");
  auto model = partition::Model::Open(model_dir, "", ctx.isa);
  const auto& config = model->config();

  scheduler::PlanInputs in;
  double usd_per_hour = 0.36;
  std::string codec = "f32";
  const ProfileFiles files = LoadProfiles(cfg, *model, ctx, in, &usd_per_hour, &codec);
  const PlanWeights weights = RetargetToWeights(cfg, args, *model, files, in);
  in.cloud_usd_per_s = usd_per_hour / 3600.0;
  scheduler::ApplyPlanConfig(cfg, in);
  in.workload.max_context = config.max_context;
  in.workload.activation_bytes = static_cast<int>(
      transport::EncodedSize(*transport::ParseCodec(codec), 1, config.hidden_size));
  ApplySpeculation(cfg, args, in);

  const auto plan = scheduler::ChooseCut(in);
  PrintPlan(plan, in, weights, args.json);
  return plan.chosen ? 0 : 3;
}

}  // namespace

Runner AddProfile(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("profile", "time every layer on this machine and write a profile file");
  auto dir = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("--model", *dir, "model directory or .gguf file")->required();
  cmd->add_option("--out", *out, "profile file (JSON)")->required();
  return [=](const Context& ctx) {
    auto model = partition::Model::Open(*dir, "", ctx.isa);
    scheduler::ProfileOptions o;
    o.threads = at::get_num_threads();
    o.progress = [&](const std::string& s) { ctx.log->info("profile: {}", s); };
    const auto p = scheduler::MeasureProfile(*model, o);
    std::ofstream f(*out, std::ios::trunc);
    f << p.ToJson();
    if (!f) throw Exception(Exception::kUnavailable, *out + ": write failed");
    ctx.log->info("wrote {} ({}; decode per layer {:.0f} us at context {})", *out, p.hardware,
                  p.layer_decode_us[0][0], p.decode_contexts[0]);
    return 0;
  };
}

Runner AddPlan(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plan", "predict every cut and choose one (objective and constraints from --config)");
  auto args = std::make_shared<PlanArgs>();
  AddPlanFlags(cmd, args.get());
  return [args](const Context& ctx) { return RunPlan(*args, ctx); };
}

}  // namespace splitlm::cli
