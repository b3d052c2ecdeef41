// The built-in "emu" device plugin (emu_device.cpp): an emulated accelerator whose memory the
// host cannot touch and whose copies complete late, for tests and CI. docs/DEVICES.md.
#pragma once

#include <chorus/device_plugin.h>

namespace chorus {

const chorusDevice_v1_t* emuDevicePlugin();

}  // namespace chorus
