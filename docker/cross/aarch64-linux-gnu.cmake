# CMake toolchain for cross-compiling vLLM's CPU extension for aarch64 on an x86_64 Debian host
# (docker/vllm-cross.sh): Debian's g++-aarch64-linux-gnu, with the target's libraries from multiarch :arm64
# packages (/usr/lib/aarch64-linux-gnu) and torch from the target's wheel (TorchConfig.cmake beside this file).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# Programs (python, ninja) are the build host's; libraries and headers come from the multiarch target paths
# and from absolute paths (the target torch), so the root path stays the host's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
