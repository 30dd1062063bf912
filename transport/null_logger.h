// The logger a component logs to when its caller gives none.
#pragma once

#include <memory>

#include <spdlog/logger.h>

namespace splitlm::transport {

// A logger that discards everything (level off, a null sink): the default of
// every options struct's `log`, so that libraries log unconditionally and
// never test for a missing logger. One instance shared by all callers; it
// holds no state worth changing, so leave its level and sinks alone.
// Thread-safe.
const std::shared_ptr<spdlog::logger>& NullLogger();

// `log`, or NullLogger() when it is null: components pass their options'
// logger through this once, in their constructors.
inline std::shared_ptr<spdlog::logger> OrNullLogger(std::shared_ptr<spdlog::logger> log) {
  if (log) return log;  // moved: a ternary with NullLogger()'s const& would copy
  return NullLogger();
}

}  // namespace splitlm::transport
