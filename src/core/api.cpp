// The C ABI: argument checks, error capture and the handle registry. Every entry point runs
// its body through apiCall(), which turns a chorus::Error into its result code and keeps the
// message for chorusGetLastError.
#include <chorus/chorus.h>

#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <set>
#include <thread>
#include <vector>

#include "bootstrap/launcher_env.h"
#include "bootstrap/unique_id.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/log.h"
#include "core/stream.h"

struct chorusComm {
  std::unique_ptr<chorus::Communicator> impl;
  std::mutex mu;
  std::condition_variable idle;
  int pending = 0;  // calls enqueued on streams and not finished
  std::string lastError;
};

struct chorusStream {
  chorus::Stream impl;
};

namespace chorus {
namespace {

std::mutex gRegistryMutex;
std::set<const chorusComm*> gComms;
std::set<const chorusStream*> gStreams;
thread_local std::string tLastError;
thread_local std::string tLastErrorCopy;  // what chorusGetLastError returned last

void setLastError(chorusComm* comm, const std::string& text) {
  tLastError = text;
  if (!comm) return;
  std::lock_guard<std::mutex> g(gRegistryMutex);  // comm may be a stale handle: touch it only if live
  if (!gComms.count(comm)) return;
  std::lock_guard<std::mutex> g2(comm->mu);
  comm->lastError = text;
}

// Runs body; maps exceptions to result codes and records their text.
template <typename F>
chorusResult_t apiCall(chorusComm* comm, F&& body) {
  try {
    body();
    return chorusSuccess;
  } catch (const Error& e) {
    setLastError(comm, e.what());
    return e.code();
  } catch (const std::bad_alloc&) {
    setLastError(comm, "out of memory");
    return chorusSystemError;
  } catch (const std::exception& e) {
    setLastError(comm, format("internal error: %s", e.what()));
    return chorusInternalError;
  } catch (...) {
    setLastError(comm, "internal error: unknown exception");
    return chorusInternalError;
  }
}

void checkComm(const chorusComm* comm) {
  CHORUS_CHECK_ARG(comm != nullptr, "communicator is NULL");
  std::lock_guard<std::mutex> g(gRegistryMutex);
  if (!gComms.count(comm))
    CHORUS_THROW(chorusInvalidUsage, "communicator %p is not valid (destroyed, aborted or never created)", static_cast<const void*>(comm));
}

Stream* checkStream(const chorusStream* s) {
  CHORUS_CHECK_ARG(s != nullptr, "stream is NULL");
  std::lock_guard<std::mutex> g(gRegistryMutex);
  if (!gStreams.count(s)) CHORUS_THROW(chorusInvalidUsage, "stream %p is not valid (destroyed or never created)", static_cast<const void*>(s));
  return &const_cast<chorusStream*>(s)->impl;
}

chorusComm* registerComm(std::unique_ptr<Communicator> impl) {
  auto* c = new chorusComm;
  c->impl = std::move(impl);
  std::lock_guard<std::mutex> g(gRegistryMutex);
  gComms.insert(c);
  return c;
}

// Removes comm from the registry (so no new call can start), waits for its enqueued calls,
// then frees it.
void retireComm(chorusComm* comm, bool abort) {
  {
    std::lock_guard<std::mutex> g(gRegistryMutex);
    gComms.erase(comm);
  }
  if (abort) comm->impl->abort();
  {
    std::unique_lock<std::mutex> g(comm->mu);
    comm->idle.wait(g, [comm] { return comm->pending == 0; });
  }
  delete comm;
}

}  // namespace
}  // namespace chorus

using namespace chorus;

#pragma GCC visibility push(default)
extern "C" {

chorusResult_t chorusGetVersion(int* version) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(version, "version is NULL");
    *version = CHORUS_VERSION_CODE;
  });
}

const char* chorusGetErrorString(chorusResult_t result) {
  switch (result) {
    case chorusSuccess: return "no error";
    case chorusSystemError: return "system error (a system call failed)";
    case chorusInternalError: return "internal error (a bug in Chorus or a protocol violation)";
    case chorusInvalidArgument: return "invalid argument";
    case chorusInvalidUsage: return "invalid usage";
    case chorusRemoteError: return "remote error (a peer failed or went away)";
    case chorusInProgress: return "operation in progress";
    case chorusTimeout: return "timeout (a wait passed CHORUS_TIMEOUT)";
    default: return "unknown result code";
  }
}

const char* chorusGetLastError(chorusComm_t comm) {
  if (comm) {
    std::lock_guard<std::mutex> g(gRegistryMutex);
    if (gComms.count(comm)) {
      std::lock_guard<std::mutex> g2(comm->mu);
      tLastErrorCopy = comm->lastError;
      return tLastErrorCopy.c_str();
    }
  }
  tLastErrorCopy = tLastError;
  return tLastErrorCopy.c_str();
}

chorusResult_t chorusGetUniqueId(chorusUniqueId* uniqueId) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(uniqueId, "uniqueId is NULL");
    *uniqueId = encodeUniqueId(createUniqueIdAndRoot(Config::fromEnv()));
  });
}

chorusResult_t chorusCommInitRank(chorusComm_t* comm, int nranks, chorusUniqueId id, int rank) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(comm, "comm is NULL");
    *comm = nullptr;
    CHORUS_CHECK_ARG(nranks >= 1, "nranks must be >= 1 (got %d)", nranks);
    CHORUS_CHECK_ARG(rank >= 0 && rank < nranks, "rank %d is out of range [0, %d)", rank, nranks);
    *comm = registerComm(Communicator::create(decodeUniqueId(id), nranks, rank));
  });
}

chorusResult_t chorusCommInitAll(chorusComm_t* comms, int ndev, const int* devlist) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(comms, "comms is NULL");
    CHORUS_CHECK_ARG(ndev >= 1, "ndev must be >= 1 (got %d)", ndev);
    for (int i = 0; i < ndev; ++i) comms[i] = nullptr;
    (void)devlist;  // CPU ranks: the device list only names devices; nothing to bind yet
    // All ranks live in this process: rendezvous over loopback unless an interface was chosen.
    Config config = Config::fromEnv();
    if (config.socketIfname.empty()) config.socketIfname = "lo";
    UniqueIdData id = createUniqueIdAndRoot(config);
    std::vector<std::unique_ptr<Communicator>> made(ndev);
    std::vector<std::string> errors(ndev);
    std::vector<chorusResult_t> codes(ndev, chorusSuccess);
    std::vector<std::thread> threads;
    for (int r = 0; r < ndev; ++r) {
      threads.emplace_back([&, r] {
        try {
          made[r] = Communicator::create(id, ndev, r, config);
        } catch (const Error& e) {
          codes[r] = e.code();
          errors[r] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int r = 0; r < ndev; ++r)
      if (codes[r] != chorusSuccess) throw Error(codes[r], format("chorusCommInitAll: rank %d: %s", r, errors[r].c_str()));
    for (int r = 0; r < ndev; ++r) comms[r] = registerComm(std::move(made[r]));
  });
}

chorusResult_t chorusCommInitFromEnv(chorusComm_t* comm) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(comm, "comm is NULL");
    *comm = nullptr;
    Config config = Config::fromEnv();
    LaunchInfo info = detectLauncher(config);
    if (info.rank == 0) startRootService(info.id, config);
    *comm = registerComm(Communicator::create(info.id, info.size, info.rank));
  });
}

chorusResult_t chorusCommDestroy(chorusComm_t comm) {
  return apiCall(nullptr, [&] {
    checkComm(comm);
    retireComm(comm, false);
  });
}

chorusResult_t chorusCommAbort(chorusComm_t comm) {
  return apiCall(nullptr, [&] {
    checkComm(comm);
    retireComm(comm, true);
  });
}

chorusResult_t chorusCommGetAsyncError(chorusComm_t comm, chorusResult_t* asyncError) {
  return apiCall(comm, [&] {
    checkComm(comm);
    CHORUS_CHECK_ARG(asyncError, "asyncError is NULL");
    *asyncError = comm->impl->asyncError();
  });
}

chorusResult_t chorusCommCount(const chorusComm_t comm, int* count) {
  return apiCall(comm, [&] {
    checkComm(comm);
    CHORUS_CHECK_ARG(count, "count is NULL");
    *count = comm->impl->nranks();
  });
}

chorusResult_t chorusCommUserRank(const chorusComm_t comm, int* rank) {
  return apiCall(comm, [&] {
    checkComm(comm);
    CHORUS_CHECK_ARG(rank, "rank is NULL");
    *rank = comm->impl->rank();
  });
}

chorusResult_t chorusAllReduce(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, chorusRedOp_t op,
                               chorusComm_t comm, chorusStream_t stream) {
  Stream* s = nullptr;
  chorusResult_t r = apiCall(comm, [&] {
    checkComm(comm);
    if (stream) s = checkStream(stream);
    Communicator::validateAllReduce(sendbuf, recvbuf, count, datatype, op);
    if (!s) comm->impl->allReduce(sendbuf, recvbuf, count, datatype, op);
  });
  if (r != chorusSuccess || !s) return r;
  {
    std::lock_guard<std::mutex> g(comm->mu);
    ++comm->pending;
  }
  s->enqueue([=]() -> chorusResult_t {
    chorusResult_t res = apiCall(comm, [&] { comm->impl->allReduce(sendbuf, recvbuf, count, datatype, op); });
    std::lock_guard<std::mutex> g(comm->mu);
    if (--comm->pending == 0) comm->idle.notify_all();
    return res;
  });
  return chorusSuccess;
}

chorusResult_t chorusStreamCreate(chorusStream_t* stream) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(stream, "stream is NULL");
    auto* s = new chorusStream;
    std::lock_guard<std::mutex> g(gRegistryMutex);
    gStreams.insert(s);
    *stream = s;
  });
}

chorusResult_t chorusStreamSynchronize(chorusStream_t stream) {
  chorusResult_t inner = chorusSuccess;
  chorusResult_t r = apiCall(nullptr, [&] { inner = checkStream(stream)->synchronize(); });
  return r != chorusSuccess ? r : inner;
}

chorusResult_t chorusStreamQuery(chorusStream_t stream) {
  chorusResult_t inner = chorusSuccess;
  chorusResult_t r = apiCall(nullptr, [&] { inner = checkStream(stream)->query(); });
  return r != chorusSuccess ? r : inner;
}

chorusResult_t chorusStreamDestroy(chorusStream_t stream) {
  chorusResult_t inner = chorusSuccess;
  chorusResult_t r = apiCall(nullptr, [&] {
    Stream* s = checkStream(stream);
    inner = s->synchronize();
    {
      std::lock_guard<std::mutex> g(gRegistryMutex);
      gStreams.erase(stream);
    }
    delete stream;
  });
  return r != chorusSuccess ? r : inner;
}

}  // extern "C"
#pragma GCC visibility pop
