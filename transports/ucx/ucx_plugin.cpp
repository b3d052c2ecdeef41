// The UCX plugin's function table (include/chorus/net_plugin.h), reached through
// chorus::ucxNetPlugin() inside libchorus and exported as chorusNetPlugin_v1 by
// libchorus-net-ucx.so (transports/net/plugin_export.cpp). Design: ucx_comm.h.
#include "transports/net/builtin_plugins.h"
#include "transports/ucx/ucx_comm.h"
#include "transports/ucx/ucx_state.h"

namespace chorus {

const chorusNet_v1_t& ucxNetPlugin() {
  static const chorusNet_v1_t plugin = {
      "ucx",
      CHORUS_NET_PLUGIN_ABI_VERSION,
      ucxnet::initState,
      ucxnet::ucxDevices,
      ucxnet::ucxGetProperties,
      ucxnet::ucxListen,
      ucxnet::ucxConnect,
      ucxnet::ucxAccept,
      ucxnet::ucxRegMr,
      ucxnet::ucxDeregMr,
      ucxnet::ucxIsend,
      ucxnet::ucxIrecv,
      ucxnet::ucxTest,
      ucxnet::ucxCloseSend,
      ucxnet::ucxCloseRecv,
      ucxnet::ucxCloseListen,
  };
  return plugin;
}

}  // namespace chorus
