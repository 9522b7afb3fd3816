# A CPU-only CMake package config for the TARGET's torch when cross-compiling (docker/vllm-cross.sh sets
# Torch_DIR here and TORCH_TARGET_ROOT to the unpacked aarch64 torch wheel). The wheel's own config cannot be
# used: it runs on the build host's torch module, and PyPI's aarch64 torch is a CUDA build whose config asks for
# the CUDA toolkit. vLLM's CPU extension needs only what this declares: the `torch` target (libtorch,
# libtorch_cpu, libc10, the headers and the compile definitions torch_cpu exports), TORCH_LIBRARIES and
# TORCH_INSTALL_PREFIX.
if(NOT TORCH_TARGET_ROOT OR NOT EXISTS "${TORCH_TARGET_ROOT}/torch/lib/libtorch_cpu.so")
  message(FATAL_ERROR "TORCH_TARGET_ROOT must be an unpacked torch wheel for the target (got '${TORCH_TARGET_ROOT}')")
endif()
set(TORCH_INSTALL_PREFIX "${TORCH_TARGET_ROOT}/torch")
set(TORCH_INCLUDE_DIRS "${TORCH_INSTALL_PREFIX}/include" "${TORCH_INSTALL_PREFIX}/include/torch/csrc/api/include")
set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=1")
if(NOT TARGET torch)
  add_library(torch SHARED IMPORTED)
  set_target_properties(torch PROPERTIES
    IMPORTED_LOCATION "${TORCH_INSTALL_PREFIX}/lib/libtorch.so"
    INTERFACE_INCLUDE_DIRECTORIES "${TORCH_INCLUDE_DIRS}"
    INTERFACE_COMPILE_DEFINITIONS "USE_DISTRIBUTED;USE_C10D_GLOO;USE_RPC;USE_TENSORPIPE"
    INTERFACE_COMPILE_OPTIONS "${TORCH_CXX_FLAGS}"
    INTERFACE_LINK_LIBRARIES "${TORCH_INSTALL_PREFIX}/lib/libtorch_cpu.so;${TORCH_INSTALL_PREFIX}/lib/libc10.so")
endif()
set(TORCH_LIBRARY "${TORCH_INSTALL_PREFIX}/lib/libtorch.so")
set(TORCH_LIBRARIES torch)
file(READ "${TORCH_INSTALL_PREFIX}/version.py" _torch_version_py)
string(REGEX MATCH "__version__ = '([0-9.]+)" _ "${_torch_version_py}")
set(Torch_VERSION "${CMAKE_MATCH_1}")
set(Torch_FOUND TRUE)
set(TORCH_FOUND TRUE)
message(STATUS "Target torch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX} (cross-compiling)")
