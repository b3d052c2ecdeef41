// Which built-in network plugins this library has compiled in (builtin_plugins.h). Built twice:
// with CHORUS_NET_LINKED=1 into the static library, which also holds the plugins' objects, and
// without into libchorus.so, which loads them as modules.
#include "transports/net/builtin_plugins.h"

namespace chorus {

const chorusNet_v1_t* linkedNetPlugin([[maybe_unused]] const std::string& name) {
#if defined(CHORUS_NET_LINKED) && defined(CHORUS_HAVE_UCX)
  if (name == "ucx") return &ucxNetPlugin();
#endif
#if defined(CHORUS_NET_LINKED) && defined(CHORUS_HAVE_OFI)
  if (name == "ofi") return &ofiNetPlugin();
#endif
  return nullptr;
}

}  // namespace chorus
