// The built-in "cuda" device plugin (cuda_device.cpp): NVIDIA GPUs through the CUDA driver API,
// loaded with dlopen at run time, so building Chorus needs nothing of CUDA. docs/DEVICES.md.
#pragma once

#include <chorus/device_plugin.h>

#include <string>

namespace chorus {

// The plugin, or null when libcuda.so.1 cannot be loaded or lacks a needed symbol (*why says
// which).
const chorusDevice_v1_t* cudaDevicePlugin(std::string* why);

}  // namespace chorus
