// The process's device plugin (include/chorus/device_plugin.h): which one CHORUS_DEVICE_PLUGIN
// names, loaded once on first need, and the few helpers the rest of Chorus uses to ask about
// pointers and to turn a plugin's result into a chorus::Error. docs/DEVICES.md.
#pragma once

#include <chorus/device_plugin.h>

#include <string>

namespace chorus {

// The plugin CHORUS_DEVICE_PLUGIN selects ("auto" by default: cuda where libcuda.so.1 loads and
// has a device, else none), or null for none. The first call loads and initialises it; a plugin
// the user named that cannot be loaded or initialised throws chorusInvalidUsage (saying why), on
// that call and every later one.
const chorusDevice_v1_t* devicePlugin();
// Whether a plugin is loaded, without loading one (cheap: every call of the C API asks).
bool devicePluginActive();

// Where p lives per the active plugin: chorusDevMemHost without one.
chorusDevMemKind_t memoryKind(const void* p, int* device = nullptr);

// Throws chorus::Error (the plugin's code, "<plugin> <what>: <code name>") unless r is success.
void deviceCheck(chorusDevResult_t r, const chorusDevice_v1_t* plugin, const char* what);

// Checks a loaded table: version, name, and every mandatory function (throws chorusInvalidUsage
// naming what is missing; `where` says where it came from).
void checkDeviceTable(const chorusDevice_v1_t* table, const std::string& where);

}  // namespace chorus
