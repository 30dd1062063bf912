#include <iostream>

#include "examples/splitlm/cli.h"
#include "scheduler/config.h"

namespace splitlm::cli {

Runner AddConfigKeys(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("config-keys", "print every configuration key as a Markdown table");
  auto check = std::make_shared<std::string>();
  cmd->add_option("--check", *check, "validate this TOML file instead")->check(CLI::ExistingFile);
  return [check](const Context& ctx) {
    if (!check->empty()) {
      scheduler::Config::Load(*check);
      ctx.log->info("{}: valid", *check);
      return 0;
    }
    std::cout << scheduler::ConfigMarkdown();
    return 0;
  };
}

}  // namespace splitlm::cli
