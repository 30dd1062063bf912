# Finds every third-party dependency once, as imported targets, so that each
# library's CMakeLists.txt states its links and nothing else. All of them come
# from Debian 12 packages (see cmake/bootstrap.sh).

find_package(Threads REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 QUIET)
if(NOT TARGET CLI11::CLI11)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
endif()

# LibTorch: Debian's TorchConfig drags in Caffe2's protobuf/glog probes; we only
# need the C++ API, so import the two shared libraries directly.
find_path(SPLITLM_TORCH_INCLUDE ATen/ATen.h REQUIRED)
find_library(SPLITLM_TORCH_CPU torch_cpu REQUIRED)
find_library(SPLITLM_C10 c10 REQUIRED)
add_library(splitlm_torch INTERFACE)
target_link_libraries(splitlm_torch INTERFACE ${SPLITLM_TORCH_CPU} ${SPLITLM_C10})
target_include_directories(splitlm_torch SYSTEM INTERFACE
  ${SPLITLM_TORCH_INCLUDE} ${SPLITLM_TORCH_INCLUDE}/torch/csrc/api/include)
target_compile_definitions(splitlm_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
add_library(splitlm::torch ALIAS splitlm_torch)

find_package(CapnProto REQUIRED)

find_package(PkgConfig REQUIRED)
pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
# Byte-level BPE tokenizers: the pre-tokenizer regexes (PCRE2 with UTF and
# UCP) and Unicode normalisation (NFC) for tokenizer.json.
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)

find_package(tomlplusplus REQUIRED)
# xxHash (libxxhash-dev), used header-only (XXH_INLINE_ALL) to hash weights.
find_path(SPLITLM_XXHASH_INCLUDE xxhash.h REQUIRED)
find_package(Boost 1.74 REQUIRED)
