// makeTransport: every transport by its id (the names CHORUS_TRANSPORT and CHORUS_TRANSPORT_MAP
// take). The built-in network plugins exist when CMake found their library
// (transports/net/builtin_plugins.h says how a program gets them).
#include <cstring>
#include <string>

#include "base/error.h"
#include "transports/net/builtin_plugins.h"
#include "transports/transport.h"

namespace chorus {
namespace {

constexpr const char* kNames[] = {"shm", "tcp", "ucx", "ofi", "plugin"};
static_assert(sizeof(kNames) / sizeof(kNames[0]) == static_cast<size_t>(TransportId::Count));

// A built-in plugin: compiled into this library, or its module loaded on first use.
[[maybe_unused]] const chorusNet_v1_t& builtinNetPlugin(const char* name) {
  if (const chorusNet_v1_t* linked = linkedNetPlugin(name)) return *linked;
  return loadNetPlugin(name, std::string("the ") + name + " transport (its plugin module is built and installed next to libchorus)");
}

}  // namespace

const char* transportIdName(TransportId id) {
  size_t i = static_cast<size_t>(id);
  return i < static_cast<size_t>(TransportId::Count) ? kNames[i] : "?";
}

bool parseTransportId(const std::string& name, TransportId* id) {
  for (size_t i = 0; i < static_cast<size_t>(TransportId::Count); ++i)
    if (name == kNames[i]) {
      *id = static_cast<TransportId>(i);
      return true;
    }
  return false;
}

std::unique_ptr<Transport> makeTransport(TransportId id, const TransportContext& ctx) {
  switch (id) {
    case TransportId::Shm:
      return makeShmTransport(ctx);
    case TransportId::Tcp:
      return makeTcpTransport(ctx);
    case TransportId::Ucx:
#ifdef CHORUS_HAVE_UCX
      return makeNetTransport(builtinNetPlugin("ucx"), ctx, 0);
#else
      CHORUS_THROW(chorusInvalidUsage, "this Chorus was built without UCX (CHORUS_WITH_UCX=OFF); the ucx transport is not available");
#endif
    case TransportId::Ofi:
#ifdef CHORUS_HAVE_OFI
      return makeNetTransport(builtinNetPlugin("ofi"), ctx, 1);
#else
      CHORUS_THROW(chorusInvalidUsage, "this Chorus was built without libfabric (CHORUS_WITH_OFI=OFF); the ofi transport is not available");
#endif
    case TransportId::Plugin: {
      const std::string& spec = ctx.config ? ctx.config->netPlugin : std::string();
      if (spec.empty()) CHORUS_THROW(chorusInvalidUsage, "the plugin transport needs CHORUS_NET_PLUGIN (a path, or a name X for libchorus-net-X.so)");
      return makeNetTransport(loadNetPlugin(spec), ctx, 2);
    }
    default:
      break;
  }
  CHORUS_THROW(chorusInvalidArgument, "unknown transport id %d", static_cast<int>(id));
}

}  // namespace chorus
