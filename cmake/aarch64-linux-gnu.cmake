# CMake toolchain for the aarch64 build on an x86 Debian 12 host (see
# cmake/cross_arm64.sh, which makes the sysroot): Debian's cross g++, the
# arm64 packages unpacked into a sysroot, the host's capnp compiler, and
# qemu-aarch64 to run what is built (tests, generators).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# The sysroot: -DSPLITLM_ARM64_SYSROOT, else $ARM64_SYSROOT, else the default
# of cross_arm64.sh. try_compile re-reads this file: pass the variable on.
if(NOT SPLITLM_ARM64_SYSROOT)
  if(DEFINED ENV{ARM64_SYSROOT})
    set(SPLITLM_ARM64_SYSROOT "$ENV{ARM64_SYSROOT}")
  else()
    get_filename_component(SPLITLM_ARM64_SYSROOT "${CMAKE_CURRENT_LIST_DIR}/../build-arm64-sysroot" ABSOLUTE)
  endif()
endif()
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES SPLITLM_ARM64_SYSROOT)
set(CMAKE_SYSROOT "${SPLITLM_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${SPLITLM_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# pkg-config: the sysroot's .pc files only, paths prefixed with the sysroot.
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${SPLITLM_ARM64_SYSROOT}")
set(ENV{PKG_CONFIG_LIBDIR}
  "${SPLITLM_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${SPLITLM_ARM64_SYSROOT}/usr/share/pkgconfig")

# Shared libraries needed by shared libraries (libtorch's BLAS, ...).
set(_splitlm_lib "${SPLITLM_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu")
set(CMAKE_EXE_LINKER_FLAGS_INIT
  "-Wl,-rpath-link,${_splitlm_lib}:${_splitlm_lib}/openblas-openmp:${SPLITLM_ARM64_SYSROOT}/lib/aarch64-linux-gnu")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "${CMAKE_EXE_LINKER_FLAGS_INIT}")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "${CMAKE_EXE_LINKER_FLAGS_INIT}")

# Built programs run under user-mode emulation (test discovery, ctest).
set(CMAKE_CROSSCOMPILING_EMULATOR
  qemu-aarch64 -L "${SPLITLM_ARM64_SYSROOT}" -E "LD_LIBRARY_PATH=${_splitlm_lib}/openblas-openmp:${_splitlm_lib}")
