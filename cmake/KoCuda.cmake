# KoCuda.cmake — the CUDA kernels (kernels/*.cu, kernels/*.cpp) as the static library `ko_cuda`.
# Included by the top-level CMakeLists.txt only when KO_CUDA is ON (a CUDA compiler was found, or
# -DKO_CUDA=ON). Consumers (ko_tests, ko_bench, the Node addon) link it and get KO_CUDA=1.
#
#   * Architectures: sm_80 (A100), sm_89 (RTX 40xx / L4 / L40), sm_90 (H100) as real code, plus
#     compute_90 PTX so newer GPUs can JIT it. Override with -DCMAKE_CUDA_ARCHITECTURES=... or the
#     CUDAARCHS environment variable.
#   * The CUDA runtime is linked statically (CUDA::cudart_static): the addon then only needs the
#     NVIDIA driver (libcuda.so) at run time, which cudart loads with dlopen. cuBLASLt will also be
#     dlopen'ed at run time (the build machines have no cuBLAS), hence ${CMAKE_DL_LIBS}.
#   * No --use_fast_math: the kernels keep IEEE fp32 semantics so they can be checked against the
#     CPU twins in native/.

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  # Must be set before enable_language(CUDA), which would otherwise pick the compiler's default.
  set(CMAKE_CUDA_ARCHITECTURES "80-real;89-real;90-real;90-virtual" CACHE STRING
      "CUDA architectures to compile for (ko-train default: sm_80, sm_89, sm_90 + compute_90 PTX)")
endif()

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

if(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 11.8)
  message(FATAL_ERROR "ko-train: CUDA ${CMAKE_CUDA_COMPILER_VERSION} is too old; sm_89/sm_90 need CUDA >= 11.8 "
                      "(or configure with -DKO_CUDA=OFF for a CPU-only build)")
endif()

set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

file(GLOB KO_CUDA_SOURCES CONFIGURE_DEPENDS
     ${CMAKE_CURRENT_SOURCE_DIR}/kernels/*.cu
     ${CMAKE_CURRENT_SOURCE_DIR}/kernels/*.cpp)
add_library(ko_cuda STATIC ${KO_CUDA_SOURCES})

set_target_properties(ko_cuda PROPERTIES
  POSITION_INDEPENDENT_CODE ON        # -fPIC for g++, -Xcompiler=-fPIC for nvcc: linked into the .node addon
  CUDA_SEPARABLE_COMPILATION OFF      # whole-program compilation: no device-link step is needed
  CUDA_RESOLVE_DEVICE_SYMBOLS OFF     # (nothing to resolve without -rdc)
  CUDA_RUNTIME_LIBRARY Static)

target_include_directories(ko_cuda PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/kernels)
target_compile_definitions(ko_cuda PUBLIC KO_CUDA=1)
# ko_core provides the CPU twins the self-tests compare against (ko::adamwUpdate, native/ops.h);
# linking it here also puts it after ko_cuda on every consumer's link line.
target_link_libraries(ko_cuda PUBLIC ko_core CUDA::cudart_static ${CMAKE_DL_LIBS})

# (POSITION_INDEPENDENT_CODE already gives nvcc -Xcompiler=-fPIC.)
target_compile_options(ko_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall>
  $<$<COMPILE_LANGUAGE:CXX>:-Wall>)

# Keep the statically linked CUDA runtime private to a shared library that links ko_cuda (the .node
# addon): its cuda* symbols are not exported, so another CUDA library loaded into the same Node
# process cannot interpose on them, nor ours on its.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  target_link_options(ko_cuda INTERFACE
    "$<$<OR:$<STREQUAL:$<TARGET_PROPERTY:TYPE>,SHARED_LIBRARY>,$<STREQUAL:$<TARGET_PROPERTY:TYPE>,MODULE_LIBRARY>>:LINKER:--exclude-libs,libcudart_static.a>")
endif()

message(STATUS "ko-train: CUDA ${CMAKE_CUDA_COMPILER_VERSION} (${CMAKE_CUDA_COMPILER}), "
               "architectures ${CMAKE_CUDA_ARCHITECTURES}")
