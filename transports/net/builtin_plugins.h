// Chorus's own network plugins (transports/ucx, transports/ofi). They are written against the
// public plugin ABI only (include/chorus/net_plugin.h) and use nothing else of Chorus, so the
// same sources make a self-contained libchorus-net-<name>.so (plugin_export.cpp).
//
// How a program gets them depends on the library it links:
//  * libchorus.so does not contain them and does not link UCX or libfabric: loading a fabric
//    library costs start-up time (libfabric's psm provider sleeps in a constructor, ~200 ms)
//    and UCX installs signal handlers, which no program should pay for a transport it does not
//    use. The ucx and ofi transports dlopen libchorus-net-<name>.so (next to libchorus) when a
//    communicator first makes them.
//  * the static library (tests, tools built in the tree) has them compiled in.
#pragma once

#include <string>

#include "chorus/net_plugin.h"

namespace chorus {

// transports/ucx: UCP tagged messages (defined only when built with UCX, CHORUS_HAVE_UCX).
const chorusNet_v1_t& ucxNetPlugin();
// transports/ofi: libfabric RDM endpoints with tagged messages (CHORUS_HAVE_OFI).
const chorusNet_v1_t& ofiNetPlugin();

// The built-in plugin `name` ("ucx", "ofi") when it is compiled into this library, else null
// (transports/net/linked_plugins.cpp, built once per library kind).
const chorusNet_v1_t* linkedNetPlugin(const std::string& name);

}  // namespace chorus
