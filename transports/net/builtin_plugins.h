// Chorus's own network plugins, compiled into libchorus (and each also built on its own as
// libchorus-net-<name>.so through plugin_export.cpp). They are written against the public plugin
// ABI only (include/chorus/net_plugin.h) and use nothing else of Chorus: the same sources make a
// self-contained plugin.
#pragma once

#include "chorus/net_plugin.h"

namespace chorus {

// transports/ucx: UCP tagged messages (defined only when built with UCX, CHORUS_HAVE_UCX).
const chorusNet_v1_t& ucxNetPlugin();
// transports/ofi: libfabric RDM endpoints with tagged messages (CHORUS_HAVE_OFI).
const chorusNet_v1_t& ofiNetPlugin();

}  // namespace chorus
