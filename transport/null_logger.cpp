#include "transport/null_logger.h"

#include <spdlog/sinks/null_sink.h>

namespace splitlm::transport {

const std::shared_ptr<spdlog::logger>& NullLogger() {
  static const std::shared_ptr<spdlog::logger> kNull = [] {
    auto log =
        std::make_shared<spdlog::logger>("null", std::make_shared<spdlog::sinks::null_sink_mt>());
    log->set_level(spdlog::level::off);
    return log;
  }();
  return kNull;
}

}  // namespace splitlm::transport
