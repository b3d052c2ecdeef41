// Process-wide UCP context and worker (see ucx_state.h).
#include "transports/ucx/ucx_state.h"

#include <sched.h>
#include <time.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "transports/ucx/ucx_comm.h"

namespace chorus::ucxnet {

State& state() {
  static State s;
  return s;
}

namespace {

std::mutex& initMutex() {
  static std::mutex m;
  return m;
}

// Request memory UCX reserves for us in every request: our per-request bookkeeping lives there,
// so a post allocates nothing of its own (UCX takes the request from its memory pool).
void initRequest(void* request) { *static_cast<RequestInfo*>(request) = RequestInfo{}; }

// Whether UCX_TLS lets UCX use its mm transports (sysv, posix), so that setting MM_ERROR_HANDLING
// is meaningful (UCX warns about an "invalid configuration" otherwise). Unset or "all": yes; a
// list: when it names them (sm, shm, mm, sysv, posix); a "^" exclusion list: unless it names them.
bool tlsMayUseMm(const char* tls) {
  if (tls == nullptr || *tls == '\0') return true;
  const bool exclude = tls[0] == '^';
  bool named = false;
  bool all = false;
  std::string list(exclude ? tls + 1 : tls);
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t end = list.find(',', pos);
    if (end == std::string::npos) end = list.size();
    std::string name = list.substr(pos, end - pos);
    if (!name.empty() && name[0] == '\\') name.erase(0, 1);  // "\sysv": exactly this transport
    if (name == "sm" || name == "shm" || name == "mm" || name == "sysv" || name == "posix") named = true;
    if (name == "all") all = true;
    pos = end + 1;
  }
  return exclude ? !named : (named || all);
}

chorusNetResult_t failInit(const char* call, ucs_status_t status) {
  UCXNET_ERROR("ucx: %s failed: %s", call, ucs_status_string(status));
  return chorusNetSystemError;
}

}  // namespace

chorusNetResult_t initState(chorusNetLogger_v1_t logger) {
  std::lock_guard<std::mutex> lock(initMutex());
  State& s = state();
  if (s.ready) return chorusNetSuccess;
  s.logger = logger;

  // ucp_config_read applies every UCX_* variable of the environment (UCX_TLS, UCX_NET_DEVICES,
  // UCX_KEEPALIVE_INTERVAL, ...): the plugin adds no knobs of its own.
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return failInit("ucp_config_read", st);
  // Every ep asks for peer-failure handling. UCX 1.13 then leaves its shared-memory transports
  // (sysv, posix: "error handling: ep_check" only) out of the ep's lanes unless
  // UCX_MM_ERROR_HANDLING=y, so two processes of one host would talk over TCP loopback. Turn it on
  // unless the user chose. A dead peer is still noticed at once: the connection manager's TCP
  // socket of a client-server ep lives as long as the ep, and its reset fails the ep
  // (CONNECTION_RESET); UCX's keepalive over the shm lane (UCX_KEEPALIVE_INTERVAL) backs it up.
  if (getenv("UCX_MM_ERROR_HANDLING") == nullptr && tlsMayUseMm(getenv("UCX_TLS"))) {
    st = ucp_config_modify(config, "MM_ERROR_HANDLING", "y");
    if (st != UCS_OK) UCXNET_WARN("ucx: cannot set MM_ERROR_HANDLING=y (%s): shared memory stays unused", ucs_status_string(st));
  }

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_REQUEST_SIZE | UCP_PARAM_FIELD_REQUEST_INIT |
                      UCP_PARAM_FIELD_MT_WORKERS_SHARED | UCP_PARAM_FIELD_NAME;
  // Tags carry the data; streams carry the one-time connection handshake (ucx_connect.cpp).
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_STREAM;
  params.request_size = sizeof(RequestInfo);
  params.request_init = initRequest;
  params.mt_workers_shared = 0;  // one worker
  params.name = "chorus";
  ucp_context_h context = nullptr;
  st = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (st != UCS_OK) return failInit("ucp_init", st);

  ucp_worker_params_t wparams{};
  wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wparams.thread_mode = UCS_THREAD_MODE_MULTI;
  ucp_worker_h worker = nullptr;
  st = ucp_worker_create(context, &wparams, &worker);
  if (st != UCS_OK) {
    ucp_cleanup(context);
    return failInit("ucp_worker_create", st);
  }
  ucp_worker_attr_t wattr{};
  wattr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
  st = ucp_worker_query(worker, &wattr);
  if (st != UCS_OK || wattr.thread_mode != UCS_THREAD_MODE_MULTI) {
    // A UCX built without --enable-mt gives a single-threaded worker; the plugin relies on UCX's
    // worker lock, so it refuses instead of racing.
    UCXNET_ERROR("ucx: the worker is not multi-thread safe (UCX built without --enable-mt?): %s",
                 st != UCS_OK ? ucs_status_string(st) : "thread mode is not UCS_THREAD_MODE_MULTI");
    ucp_worker_destroy(worker);
    ucp_cleanup(context);
    return chorusNetSystemError;
  }
  s.context = context;
  s.worker = worker;
  s.ready = true;
  UCXNET_INFO("ucx: UCP %s initialised (worker thread mode multi, UCX_TLS=%s, UCX_NET_DEVICES=%s)", ucp_get_version_string(),
              getenv("UCX_TLS") ? getenv("UCX_TLS") : "(all)", getenv("UCX_NET_DEVICES") ? getenv("UCX_NET_DEVICES") : "(all)");
  return chorusNetSuccess;
}

chorusNetResult_t requireReady(const char* what) {
  if (state().ready) return chorusNetSuccess;
  UCXNET_ERROR("ucx: %s called before a successful init", what);
  return chorusNetInvalidUsage;
}

bool isRemoteStatus(ucs_status_t status) {
  switch (status) {
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_CANCELED:
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_IO_ERROR:
    case UCS_ERR_SOME_CONNECTS_FAILED:
      return true;
    default:
      return false;
  }
}

chorusNetResult_t resultOf(ucs_status_t status, bool peerFailed) {
  if (status == UCS_OK) return chorusNetSuccess;
  if (status == UCS_ERR_MESSAGE_TRUNCATED) return chorusNetInternalError;
  if (peerFailed || isRemoteStatus(status)) return chorusNetRemoteError;
  return chorusNetSystemError;
}

uint64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

ucs_status_t waitBounded(void* request, uint64_t timeoutNs) {
  if (request == nullptr) return UCS_OK;
  if (UCS_PTR_IS_ERR(request)) return UCS_PTR_STATUS(request);
  const uint64_t deadline = nowNs() + timeoutNs;
  for (;;) {
    ucs_status_t st = ucp_request_check_status(request);
    if (st != UCS_INPROGRESS) return st;
    if (nowNs() >= deadline) return UCS_INPROGRESS;
    if (ucp_worker_progress(state().worker) == 0) sched_yield();
  }
}

}  // namespace chorus::ucxnet
