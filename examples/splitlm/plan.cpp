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
  return scheduler::ComputeProfile::FromJson(transport::ReadTextFileOrThrow(path, transport::kMaxListBytes), path);
}

// The weights `profile` (from `origin`) was measured with.
scheduler::WeightCost MeasuredWith(const partition::Model& model, const scheduler::ComputeProfile& profile,
                                   const std::string& origin, double quant_compute_factor) {
  if (profile.weights != "gguf" && !partition::IsWeightFormat(profile.weights)) {
    throw Exception(Exception::kInvalidArgument, origin + ": weights \"" + profile.weights +
                                                     "\" is not gguf or one of " + partition::WeightFormatList());
  }
  return {partition::ModelWeightBytes(model, profile.weights == "gguf" ? "model" : profile.weights), quant_compute_factor};
}

nlohmann::json WeightsJson(const partition::WeightBytes& w) {
  return {{"format", w.format}, {"layer_bytes", w.layers}, {"embed_bytes", w.embed}, {"head_bytes", w.head_read},
          {"tensor_types", w.tensor_types}};
}

}  // namespace

Runner AddProfile(CLI::App& app) {
  auto* cmd = app.add_subcommand("profile", "time every layer on this machine and write a profile file");
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
  auto* cmd = app.add_subcommand("plan", "predict every cut and choose one (objective and constraints from --config)");
  auto dir = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto device_weights = std::make_shared<std::string>();
  auto cloud_weights = std::make_shared<std::string>();
  cmd->add_option("--model", *dir, "model directory or .gguf file");
  cmd->add_option("--device-weights", *device_weights,
                  "weight format the device holds: model (its own), f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m")
      ->check(scheduler::flags::Schema("scheduler.device_weights"));
  cmd->add_option("--cloud-weights", *cloud_weights, "weight format the cloud holds, as --device-weights")
      ->check(scheduler::flags::Schema("scheduler.cloud_weights"));
  cmd->add_option("--config", *config, "TOML configuration ([scheduler], [link], [power])")->required()->check(CLI::ExistingFile);
  cmd->add_flag("--json", *json, "one JSON line");
  auto speculate = std::make_shared<std::string>();
  auto acceptance = std::make_shared<double>(-1);
  auto draft_ms = std::make_shared<double>(-1);
  cmd->add_option("--speculate", *speculate,
                  "plan speculative decoding with this drafter (as splitlm-device --speculate, e.g. prompt-lookup:8; "
                  "default device.speculate)");
  cmd->add_option("--acceptance", *acceptance,
                  "per-position draft acceptance rate to plan with (default scheduler.acceptance, else the drafter's prior)")
      ->check(scheduler::flags::Schema("scheduler.acceptance"));
  cmd->add_option("--draft-step-ms", *draft_ms, "a draft model's decode step on the device, ms per draft token")
      ->check(scheduler::flags::Schema("scheduler.draft_step_ms"));
  return [=](const Context& ctx) {
    using scheduler::FillFromConfig;
    const auto cfg = scheduler::Config::Load(*config);
    std::string model_dir = *dir;
    FillFromConfig(cfg, "model.dir", !dir->empty(), model_dir);
    if (model_dir.empty()) throw Exception(Exception::kInvalidArgument, "no model: pass --model DIR or set model.dir");
    auto model = partition::Model::Open(model_dir, "", ctx.isa);
    const auto& c = model->config();

    scheduler::PlanInputs in;
    std::string device_profile, cloud_profile, codec = "f32";
    double speedup = 1, usd_per_hour = 0.36;
    FillFromConfig(cfg, "scheduler.device_profile", false, device_profile);
    FillFromConfig(cfg, "scheduler.cloud_profile", false, cloud_profile);
    FillFromConfig(cfg, "scheduler.cloud_speedup", false, speedup);
    FillFromConfig(cfg, "scheduler.cloud_usd_per_hour", false, usd_per_hour);
    FillFromConfig(cfg, "device.codec", false, codec);
    scheduler::ProfileOptions po;
    po.threads = at::get_num_threads();
    po.progress = [&](const std::string& s) { ctx.log->info("profiling this machine: {}", s); };
    if (device_profile.empty()) {
      in.device = scheduler::MeasureProfile(*model, po);
    } else {
      bool measured = false;
      in.device = scheduler::LoadOrMeasureProfile(*model, device_profile, po, &measured);
      if (measured) ctx.log->info("measured and cached the device profile in {}", device_profile);
    }
    if (!cloud_profile.empty()) {
      in.cloud = ReadProfile(cloud_profile);
    } else {
      in.cloud = in.device;
      for (auto& row : in.cloud.layer_decode_us) for (double& v : row) v /= speedup;
      for (auto& row : in.cloud.layer_prefill_us) for (double& v : row) v /= speedup;
      in.cloud.head_decode_us /= speedup;
    }
    if (in.device.model_fingerprint != model->fingerprint() || in.cloud.model_fingerprint != model->fingerprint()) {
      throw Exception(Exception::kInvalidArgument,
                      "a profile was measured on another model (fingerprint differs): re-run splitlm profile");
    }
    // Each side's weights in its format; the profiles re-expressed for them.
    std::string device_format = "model", cloud_format = "model";
    double quant_compute_factor = 1;
    FillFromConfig(cfg, "scheduler.device_weights", !device_weights->empty(), device_format);
    FillFromConfig(cfg, "scheduler.cloud_weights", !cloud_weights->empty(), cloud_format);
    FillFromConfig(cfg, "scheduler.quant_compute_factor", false, quant_compute_factor);
    if (!device_weights->empty()) device_format = *device_weights;
    if (!cloud_weights->empty()) cloud_format = *cloud_weights;
    const scheduler::WeightCost device_w{partition::ModelWeightBytes(*model, device_format), quant_compute_factor};
    const scheduler::WeightCost cloud_w{partition::ModelWeightBytes(*model, cloud_format), quant_compute_factor};
    const std::string device_origin = device_profile.empty() ? "the device profile" : device_profile;
    const std::string cloud_origin = cloud_profile.empty() ? device_origin : cloud_profile;
    const auto device_from = MeasuredWith(*model, in.device, device_origin, quant_compute_factor);
    const auto cloud_from = MeasuredWith(*model, in.cloud, cloud_origin, quant_compute_factor);
    const std::string device_measured = in.device.weights, cloud_measured = in.cloud.weights;
    in.device = scheduler::RetargetProfile(in.device, device_from, device_w);
    in.cloud = scheduler::RetargetProfile(in.cloud, cloud_from, cloud_w);
    in.cloud_usd_per_s = usd_per_hour / 3600.0;
    scheduler::ApplyPlanConfig(cfg, in);
    in.workload.max_context = c.max_context;
    in.workload.activation_bytes = static_cast<int>(transport::EncodedSize(*transport::ParseCodec(codec), 1, c.hidden_size));
    std::string speculate_text = "off";
    FillFromConfig(cfg, "device.speculate", !speculate->empty(), speculate_text);
    if (!speculate->empty()) speculate_text = *speculate;
    std::string why;
    const auto spec = device::ParseSpeculate(speculate_text, &why);
    if (!spec) throw Exception(Exception::kInvalidArgument, "--speculate / device.speculate: " + why);
    const auto kind = scheduler::DrafterKindFromName(spec->drafter);
    if (!kind)
      throw Exception(Exception::kInvalidArgument,
                      "--speculate: the cost model does not know drafter \"" + spec->drafter + "\"");
    in.speculation.drafter = *kind;
    in.speculation.max_drafts = spec->max_drafts;
    if (*acceptance >= 0) in.speculation.acceptance = *acceptance;
    if (*draft_ms >= 0) in.speculation.draft_model_us = *draft_ms * 1e3;
    if (*kind == scheduler::DrafterKind::kDraftModel && in.speculation.draft_model_us <= 0) {
      throw Exception(Exception::kInvalidArgument,
                      "--speculate " + speculate_text +
                          ": give the draft model's step time (--draft-step-ms or scheduler.draft_step_ms)");
    }

    const auto plan = scheduler::ChooseCut(in);
    if (*json) {
      auto j = nlohmann::json::parse(scheduler::PlanJson(plan, in.objective));
      j["device_weights"] = WeightsJson(device_w.bytes);
      j["cloud_weights"] = WeightsJson(cloud_w.bytes);
      j["device_profile_weights"] = device_measured;
      j["cloud_profile_weights"] = cloud_measured;
      std::cout << j.dump() << std::endl;
    } else {
      std::cout << "device weights " << device_w.bytes.Summary() << " (profile measured with " << device_measured << ")\n"
                << "cloud weights  " << cloud_w.bytes.Summary() << " (profile measured with " << cloud_measured << ")\n"
                << scheduler::FormatPlan(plan, in.objective);
    }
    return plan.chosen ? 0 : 3;
  };
}

}  // namespace splitlm::cli
