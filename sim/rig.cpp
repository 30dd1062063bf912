#include "sim/rig.h"

namespace splitlm::sim {
namespace {

cloud::WorkerOptions WorkerOptionsFor(const partition::Model& model, const RigOptions& o,
                                      HardwareEmulator* cloud_emu) {
  cloud::WorkerOptions wo = o.worker;
  if (cloud_emu) {
    wo.compute_hook = cloud_emu;
    const auto profile = scheduler::RooflineProfile(*o.cloud, model.config(), cloud_emu->weights(),
                                                    model.fingerprint());
    wo.report_layer_decode_us.clear();
    for (const auto& layer : profile.layer_decode_us)
      wo.report_layer_decode_us.push_back(static_cast<float>(layer[0]));
    wo.report_head_decode_us = static_cast<float>(profile.head_decode_us);
  }
  wo.server.log = o.log;
  return wo;
}

}  // namespace

Rig::Rig(const partition::Model& model, RigOptions o, zmq::context_t& context) {
  const auto& c = model.config();
  if (o.device)
    device_emu_.emplace(*o.device, c, o.device_weights.value_or(scheduler::F32Weights(c)), clock_);
  if (o.cloud)
    cloud_emu_.emplace(*o.cloud, c, o.cloud_weights.value_or(scheduler::F32Weights(c)), clock_);
  worker_ = std::make_unique<InProcessWorker>(
      model, context, cloud_metrics_, o.log,
      WorkerOptionsFor(model, o, cloud_emu_ ? &*cloud_emu_ : nullptr), clock_);
  ShaperOptions so = o.link;
  so.upstream = worker_->address();
  so.log = o.log;
  relay_ = std::make_unique<ShapingRelay>(so, clock_);
}

Rig::~Rig() {
  relay_.reset();
  worker_.reset();
}

device::AgentOptions Rig::AgentOptions(device::AgentOptions o) {
  o.channel.endpoint = relay_->endpoint();
  if (device_emu_) o.compute_hook = &*device_emu_;
  return o;
}

}  // namespace splitlm::sim
