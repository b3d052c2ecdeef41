// The UCX plugin's process-wide state: one UCP context and one worker shared by every comm, the
// logger Chorus gave to init, and small helpers (status mapping, bounded progress). Uses nothing of
// Chorus but include/chorus/net_plugin.h: the same code is built into libchorus and into
// libchorus-net-ucx.so.
#pragma once

#include <ucp/api/ucp.h>

#include <cstdint>

#include "chorus/net_plugin.h"

namespace chorus::ucxnet {

// Everything init() creates. `worker` runs in UCS_THREAD_MODE_MULTI: different comms may be used
// from different threads at once (the ABI allows it, and Chorus runs ranks as threads in tests),
// and every UCP call on it takes UCX's own worker lock.
struct State {
  bool ready = false;
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  chorusNetLogger_v1_t logger = nullptr;
};

// The one instance (zero until init succeeds; never torn down: UCX's context lives as long as the
// process, like the worker's eps that a comm left behind after a close that could not finish).
State& state();

// init() of the function table: reads UCX's configuration (UCX_TLS, UCX_NET_DEVICES and every
// other UCX_* variable), creates the context (tag + stream features) and the worker. Idempotent.
chorusNetResult_t initState(chorusNetLogger_v1_t logger);

// chorusNetInvalidUsage (logged) unless init succeeded.
chorusNetResult_t requireReady(const char* what);

// Log through Chorus's logger (silent when it gave none). level: 0 error .. 3 trace.
#define UCXNET_LOG(level, ...)                                                                        \
  do {                                                                                                \
    chorusNetLogger_v1_t ucxnetLogger_ = ::chorus::ucxnet::state().logger;                            \
    if (ucxnetLogger_) ucxnetLogger_((level), __FILE__, __LINE__, __VA_ARGS__);                        \
  } while (0)
#define UCXNET_WARN(...) UCXNET_LOG(1, __VA_ARGS__)
#define UCXNET_INFO(...) UCXNET_LOG(2, __VA_ARGS__)
#define UCXNET_TRACE(...) UCXNET_LOG(3, __VA_ARGS__)
#define UCXNET_ERROR(...) UCXNET_LOG(0, __VA_ARGS__)

// Statuses that mean "the peer or the link is gone" (connection reset, endpoint timeout,
// unreachable, rejected, canceled by an endpoint failure...).
bool isRemoteStatus(ucs_status_t status);
// A UCX status as a plugin result: OK -> success, truncation -> internal error, a remote status
// (or any error on a comm whose peer already failed) -> remote error, anything else -> system error.
chorusNetResult_t resultOf(ucs_status_t status, bool peerFailed);

// Monotonic time in nanoseconds.
uint64_t nowNs();

// Progresses the worker until `request` (a UCP request pointer, NULL or an error pointer counts as
// complete) is complete or timeoutNs passed. Returns the request's status, UCS_INPROGRESS when the
// deadline passed first. Does not free the request.
ucs_status_t waitBounded(void* request, uint64_t timeoutNs);

}  // namespace chorus::ucxnet
