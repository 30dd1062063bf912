#include "partition/blas_check.h"

#include <dlfcn.h>

#include <ATen/Context.h>
#include <fstream>
#include <sstream>

namespace splitlm::partition {

BlasInfo DetectBlas() {
  // Touch LibTorch so its BLAS is mapped even in a process that has not run
  // a tensor op yet.
  (void)at::globalContext().userEnabledMkldnn();
  BlasInfo info;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (path.find("libopenblas") != std::string::npos ||
        path.find("openblas") != std::string::npos) {
      info.library = path;
      info.openblas = true;
      break;
    }
    if (path.find("libblas.so") != std::string::npos && info.library.empty()) info.library = path;
  }
  using ConfigFn = char* (*)();
  if (auto fn = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    info.openblas = true;
    info.config = fn();
  }
  return info;
}

}  // namespace splitlm::partition
