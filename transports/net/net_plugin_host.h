// How Chorus hosts a network plugin (include/chorus/net_plugin.h): loading it, initialising it
// once per process, and turning its result codes into chorus::Error.
#pragma once

#include <string>

#include "chorus/net_plugin.h"

namespace chorus::net {

// Calls plugin.init once per process (per plugin table); later calls return the first result.
// Throws chorusSystemError naming the plugin when initialisation failed.
void ensureInitialised(const chorusNet_v1_t& plugin);

// Throws chorus::Error for a failed plugin call: chorusNetRemoteError becomes chorusRemoteError,
// the others their chorusResult_t twins. `what` names the call and its peer for the message.
void check(chorusNetResult_t r, const chorusNet_v1_t& plugin, const std::string& what);

}  // namespace chorus::net
