// splitlm profile / splitlm plan: measure this machine, then predict every
// cut and choose one under the configured objective and constraints.
#include <ATen/Parallel.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "examples/splitlm/cli.h"
#include "partition/model.h"
#include "scheduler/config.h"
#include "scheduler/cost_model.h"
#include "transport/codec.h"
#include "transport/text_file.h"

namespace splitlm::cli {
namespace {

scheduler::ComputeProfile ReadProfile(const std::string& path) {
  return scheduler::ComputeProfile::FromJson(
      transport::ReadTextFileOr<std::runtime_error>(path, transport::kMaxListBytes), path);
}

}  // namespace

Runner AddProfile(CLI::App& app) {
  auto* cmd = app.add_subcommand("profile", "time every layer on this machine and write a profile file");
  auto dir = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("--model", *dir, "model directory or .gguf file")->required();
  cmd->add_option("--out", *out, "profile file (JSON)")->required();
  return [=](const Context& ctx) {
    auto model = partition::Model::Open(*dir);
    scheduler::ProfileOptions o;
    o.threads = at::get_num_threads();
    o.progress = [&](const std::string& s) { ctx.log->info("profile: {}", s); };
    const auto p = scheduler::MeasureProfile(*model, o);
    std::ofstream f(*out, std::ios::trunc);
    f << p.ToJson();
    if (!f) throw std::runtime_error(*out + ": write failed");
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
  cmd->add_option("--model", *dir, "model directory or .gguf file");
  cmd->add_option("--config", *config, "TOML configuration ([scheduler], [link], [power])")->required()->check(CLI::ExistingFile);
  cmd->add_flag("--json", *json, "one JSON line");
  return [=](const Context& ctx) {
    using scheduler::FillFromConfig;
    const auto cfg = scheduler::Config::Load(*config);
    std::string model_dir = *dir;
    FillFromConfig(cfg, "model.dir", !dir->empty(), model_dir);
    if (model_dir.empty()) throw std::runtime_error("no model: pass --model DIR or set model.dir");
    auto model = partition::Model::Open(model_dir);
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
      throw std::runtime_error("a profile was measured on another model (fingerprint differs): re-run splitlm profile");
    }
    in.cloud_usd_per_s = usd_per_hour / 3600.0;
    scheduler::ApplyPlanConfig(cfg, in);
    in.workload.max_context = c.max_context;
    in.workload.activation_bytes = static_cast<int>(transport::EncodedSize(*transport::ParseCodec(codec), 1, c.hidden_size));

    const auto plan = scheduler::ChooseCut(in);
    if (*json) {
      std::cout << scheduler::PlanJson(plan, in.objective) << std::endl;
    } else {
      std::cout << scheduler::FormatPlan(plan, in.objective);
    }
    return plan.chosen ? 0 : 3;
  };
}

}  // namespace splitlm::cli
