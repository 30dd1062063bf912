// Command-line flags of the three binaries (splitlm, splitlm-device,
// splitlm-cloud), checked by the rules of the configuration file: a flag that
// mirrors a config key is validated by that key's schema entry (so a value is
// accepted or refused alike from either), numbers must be finite, and
// --log-level is parsed in one place.
#pragma once

#include <spdlog/common.h>
#include <CLI/CLI.hpp>

#include <string>

namespace splitlm::scheduler::flags {

// Validates a flag's text as the configuration's `key` (scheduler/config.h):
// the same type, range and choices, and the same reason when refused. Throws
// Exception(kInvalidArgument) at set-up for a key the schema lacks.
CLI::Validator Schema(const std::string& key);

// For flags with no config key: a finite number in [min, max].
CLI::Validator Number(double min, double max);

// Adds --log-level to `app`, bound to `level`; any value but trace, debug,
// info, warn, error or off is refused with the list.
CLI::Option* AddLogLevel(CLI::App& app, std::string& level);

// The spdlog level `name` (one AddLogLevel admits). Throws
// Exception(kInvalidArgument) for any other: spdlog's own parser reads an unknown
// name as "off", silencing every message, fatal ones included.
spdlog::level::level_enum ParseLogLevel(const std::string& name);

// Serving HTTP (--http HOST:PORT) beyond loopback needs --http-public, in
// every binary: throws Exception(kInvalidArgument) naming both flags otherwise.
void CheckHttpExposure(const std::string& address, bool http_public);

}  // namespace splitlm::scheduler::flags
