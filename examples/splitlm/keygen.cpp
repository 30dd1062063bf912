#include "examples/splitlm/cli.h"
#include "transport/security.h"

namespace splitlm::cli {

Runner AddKeygen(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("keygen", "write a CURVE key pair (PREFIX.key secret, PREFIX.pub public)");
  auto prefix = std::make_shared<std::string>();
  cmd->add_option("--out", *prefix, "path prefix, e.g. keys/device")->required();
  return [prefix](const Context& ctx) {
    transport::WriteKeyPair(transport::GenerateKeyPair(), *prefix);
    ctx.log->info("wrote {}.key (keep secret) and {}.pub (give to the other side)", *prefix,
                  *prefix);
    return 0;
  };
}

}  // namespace splitlm::cli
