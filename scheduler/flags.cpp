#include "scheduler/flags.h"

#include <array>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "scheduler/config.h"
#include "transport/error.h"
#include "transport/http_server.h"

namespace splitlm::scheduler::flags {
namespace {

constexpr std::array<std::pair<const char*, spdlog::level::level_enum>, 6> kLevels = {{
    {"trace", spdlog::level::trace},
    {"debug", spdlog::level::debug},
    {"info", spdlog::level::info},
    {"warn", spdlog::level::warn},
    {"error", spdlog::level::err},
    {"off", spdlog::level::off},
}};

std::string LevelList() {
  std::string all;
  for (const auto& [name, level] : kLevels) all += (all.empty() ? "" : ", ") + std::string(name);
  return all;
}

// What --help shows of `spec`: its range or its choices.
std::string Describe(const scheduler::KeySpec& spec) {
  std::ostringstream out;
  out.precision(15);
  if (!spec.choices.empty()) {
    for (size_t i = 0; i < spec.choices.size(); ++i) out << (i ? "|" : "") << spec.choices[i];
  } else if (spec.type == scheduler::KeySpec::Type::kInt ||
             spec.type == scheduler::KeySpec::Type::kFloat) {
    out << spec.min << ".." << spec.max;
  }
  return out.str();
}

CLI::Validator Check(const scheduler::KeySpec& spec, const std::string& name) {
  return CLI::Validator([spec](std::string& text) { return scheduler::CheckText(spec, text); },
                        Describe(spec), name);
}

}  // namespace

CLI::Validator Schema(const std::string& key) { return Check(scheduler::SchemaKey(key), key); }

CLI::Validator Number(double min, double max) {
  scheduler::KeySpec spec;
  spec.type = scheduler::KeySpec::Type::kFloat;
  spec.min = min;
  spec.max = max;
  return Check(spec, "NUMBER");
}

CLI::Option* AddLogLevel(CLI::App& app, std::string& level) {
  return app.add_option("--log-level", level, LevelList())
      ->check(CLI::Validator(
          [](std::string& text) {
            for (const auto& [name, l] : kLevels) {
              if (text == name) return std::string();
            }
            return "\"" + text + "\" is not one of " + LevelList();
          },
          "", "LEVEL"))
      ->capture_default_str();
}

spdlog::level::level_enum ParseLogLevel(const std::string& name) {
  for (const auto& [n, level] : kLevels) {
    if (name == n) return level;
  }
  throw Exception(Exception::kInvalidArgument,
                  "log level \"" + name + "\" is not one of " + LevelList());
}

void CheckHttpExposure(const std::string& address, bool http_public) {
  if (http_public || !transport::IsPublicHttpAddress(address)) return;
  throw Exception(
      Exception::kInvalidArgument,
      "--http " + address +
          " is beyond loopback, where the HTTP API is neither encrypted nor authenticated: "
          "pass --http-public to serve it there anyway");
}

}  // namespace splitlm::scheduler::flags
