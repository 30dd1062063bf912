// Which BLAS LibTorch is running on. Debian's LibTorch takes libblas.so.3
// from the alternatives system; the reference BLAS is ~20x slower than
// OpenBLAS, so binaries check at start-up and warn loudly.
#pragma once

#include <string>

namespace splitlm::partition {

struct BlasInfo {
  std::string library;  // resolved path of the loaded BLAS, or "" if none is mapped
  bool openblas = false;
  std::string config;  // openblas_get_config() when available
};

// Inspects the libraries mapped into this process (LibTorch must be loaded).
BlasInfo DetectBlas();

}  // namespace splitlm::partition
