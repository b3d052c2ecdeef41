// Turns one of Chorus's own network plugins into a loadable libchorus-net-<name>.so: compiled
// once per plugin module with CHORUS_NET_BUILTIN naming the plugin's accessor (CMakeLists.txt).
// Not part of libchorus itself, which must not export the plugin symbol.
#include "transports/net/builtin_plugins.h"

#ifndef CHORUS_NET_BUILTIN
#error "CHORUS_NET_BUILTIN must name the plugin accessor (e.g. ucxNetPlugin)"
#endif

extern "C" __attribute__((visibility("default"))) const chorusNet_v1_t chorusNetPlugin_v1 = chorus::CHORUS_NET_BUILTIN();
