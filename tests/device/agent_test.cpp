// The device agent against a fake worker (a raw ROUTER socket that answers
// Hello and then stays silent): a fail-mode error says why the cloud failed,
// from what the link shows, not just that a deadline passed.
#include <gtest/gtest.h>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "device/agent.h"
#include "partition/model.h"
#include "tests/common/test_util.h"

namespace splitlm {
namespace {

using std::chrono::milliseconds;

// A worker that completes the ZeroMQ handshake, answers the first Hello
// and, if `answer_heartbeats`, every heartbeat, but never a step.
class SilentWorker {
 public:
  SilentWorker(zmq::context_t& ctx, const partition::Model& model, bool answer_heartbeats)
      : socket_(ctx, zmq::socket_type::router), answer_heartbeats_(answer_heartbeats) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
    const auto& c = model.config();
    hello_.reply = true;
    hello_.model_fingerprint = model.fingerprint();
    hello_.layer_end = c.num_layers;
    hello_.codecs = {transport::Codec::kF32};
    hello_.hidden_size = c.hidden_size;
    hello_.num_layers = c.num_layers;
    hello_.max_context = c.max_context;
    thread_ = std::thread([this] { Serve(); });
  }
  ~SilentWorker() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  void Serve() {
    bool greeted = false;
    while (!stop_) {
      zmq::pollitem_t item{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, milliseconds(20)) == 0) continue;
      std::vector<zmq::message_t> frames;
      do {
        frames.emplace_back();
        (void)socket_.recv(frames.back(), zmq::recv_flags::none);
      } while (frames.back().more());
      if (frames.size() < 2) continue;
      auto d = transport::DecodeMessage(frames[1].data(), frames[1].size());
      if (!d.message) continue;
      const bool hello = std::holds_alternative<transport::Hello>(*d.message) && !greeted;
      const bool beat =
          std::holds_alternative<transport::Heartbeat>(*d.message) && answer_heartbeats_;
      if (!hello && !beat) continue;
      greeted = greeted || hello;
      const std::string reply =
          transport::EncodeMessage(hello ? transport::Message(hello_) : transport::Heartbeat{});
      socket_.send(frames[0], zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(reply), zmq::send_flags::none);
    }
  }
  zmq::socket_t socket_;
  std::string endpoint_;
  transport::Hello hello_;
  bool answer_heartbeats_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class AgentTest : public ::testing::Test {
 protected:
  AgentTest() : model_(partition::Model::Open(testing::MakeModel(dir_.Sub("tiny")))) {}
  device::AgentOptions FailOptions(const std::string& endpoint) {
    device::AgentOptions o;
    o.cut = 2;
    o.fallback = device::Fallback::kFail;
    o.channel.endpoint = endpoint;
    o.log =
        std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
    o.channel.log = o.log;
    return o;
  }
  // The DeviceError a generation ends with ("" if it does not throw one).
  std::pair<std::string, device::CloudFault> FailureOf(const device::AgentOptions& o) {
    transport::Metrics metrics;
    device::Agent agent(*model_, o, ctx_, metrics);
    try {
      agent.Generate({{1, 2, 3}, 4, {}, false});
    } catch (const device::DeviceError& e) {
      return {e.what(), e.fault()};
    }
    return {"", device::CloudFault::kNone};
  }

  testing::TempDir dir_;
  std::unique_ptr<partition::Model> model_;
  zmq::context_t ctx_;
};

TEST_F(AgentTest, AWorkerSilentAfterTheHandshakeIsReportedAsMissedHeartbeats) {
  SilentWorker worker(ctx_, *model_, /*answer_heartbeats=*/false);
  auto o = FailOptions(worker.endpoint());
  o.step_deadline = milliseconds(600000);  // only the heartbeats can end the wait
  o.channel.heartbeat_interval = milliseconds(200);
  auto [what, fault] = FailureOf(o);
  EXPECT_EQ("cloud " + worker.endpoint() + ": no heartbeat for 600 ms (fallback: fail)", what);
  EXPECT_EQ(device::CloudFault::kNoHeartbeat, fault);
}

TEST_F(AgentTest, AStepUnansweredWhileHeartbeatsAreIsReportedAsTheStepDeadline) {
  SilentWorker worker(ctx_, *model_, /*answer_heartbeats=*/true);
  auto o = FailOptions(worker.endpoint());
  o.step_deadline = milliseconds(1000);
  o.channel.heartbeat_interval = milliseconds(600000);  // never declared dead
  auto [what, fault] = FailureOf(o);
  EXPECT_EQ("cloud " + worker.endpoint() + ": step 1 not answered within 1000 ms (fallback: fail)",
            what);
  EXPECT_EQ(device::CloudFault::kStepTimeout, fault);
}

}  // namespace
}  // namespace splitlm
