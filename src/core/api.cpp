// The C ABI: argument checks, error capture and the handle registry. Every entry point runs
// its body through apiCall(), which turns a chorus::Error into its result code and keeps the
// message for chorusGetLastError.
#include <chorus/chorus.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "bootstrap/launcher_env.h"
#include "bootstrap/unique_id.h"
#include "core/coll_call.h"
#include "core/api_internal.h"
#include "core/comm.h"
#include "base/error.h"
#include "base/log.h"
#include "core/stream.h"
#include "core/user_config.h"
#include "device/device.h"
#include "device/device_memory.h"
#include "base/config.h"
#include "exec/reduce.h"

// Handles are pinned by every call that uses them: destroy/abort first unregister the handle
// (so no new call can start), then wait until the last pin is released and free what the handle
// owns. The handle's own few bytes are never freed (see bury()): a stale handle stays safe to
// look at, so a thread that validated a handle once pins it again with two atomic operations
// and no lock (Pin).
struct chorusHandle {
  std::mutex mu;
  std::condition_variable unpinned;
  std::atomic<int> pins{0};       // calls using the handle right now, including calls queued on streams
  std::atomic<bool> closed{false};  // unregistered: no new pin may start
  int records = 0;                // calls recorded in open groups (GroupRef), guarded by mu
  bool retired = false;           // destroyed or aborted; buried when records drops to 0, guarded by mu
};

struct chorusComm : chorusHandle {
  std::unique_ptr<chorus::Communicator> impl;
  std::string lastError;  // guarded by mu
};

struct chorusStream : chorusHandle {
  std::unique_ptr<chorus::Stream> impl = std::make_unique<chorus::Stream>();
  void* deviceStream = nullptr;  // chorusStreamCreateFromDevice: calls on device buffers are ordered on it
};

namespace chorus {
namespace {

std::mutex gRegistryMutex;  // lock order: gRegistryMutex, then a handle's mu
std::set<const chorusComm*> gComms;
std::set<const chorusStream*> gStreams;
thread_local std::string tLastError;
thread_local std::string tLastErrorCopy;  // what chorusGetLastError returned last

const char* plural(size_t n) { return n == 1 ? "" : "s"; }

// The communicator's copy of an error text, if comm is live (it may be a stale handle).
void setCommError(chorusComm* comm, const std::string& text) {
  std::lock_guard<std::mutex> g(gRegistryMutex);
  if (!gComms.count(comm)) return;
  std::lock_guard<std::mutex> g2(comm->mu);
  comm->lastError = text;
}

void setLastError(chorusComm* comm, const std::string& text) {
  tLastError = text;
  if (comm) setCommError(comm, text);
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

// The handle this thread last found in its registry: its memory is a handle for good (bury()),
// so it may be pinned again without the registry.
template <typename H>
thread_local const H* tKnown = nullptr;

// A use of a live handle; throws chorusInvalidUsage for a destroyed or unknown one.
template <typename H>
class Pin {
 public:
  Pin(H* h, const std::set<const H*>& registry, const char* what) : h_(nullptr) {
    CHORUS_CHECK_ARG(h != nullptr, "%s is NULL", what);
    if (h != tKnown<H>) {
      std::lock_guard<std::mutex> g(gRegistryMutex);
      if (!registry.count(h)) notValid(h, what);
      tKnown<H> = h;
    }
    // Pin, then look: unregister() closes, then waits for the pins (both sequentially
    // consistent), so either this pin sees the handle closed or the destroy sees this pin.
    h->pins.fetch_add(1);
    h_ = h;
    if (h->closed.load()) {
      release();
      h_ = nullptr;
      notValid(h, what);
    }
  }
  ~Pin() {
    if (h_) release();
  }
  Pin(Pin&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  H* operator->() const { return h_; }
  H* get() const { return h_; }

 private:
  [[noreturn]] static void notValid(const H* h, const char* what) {
    CHORUS_THROW(chorusInvalidUsage, "%s %p is not valid (destroyed, aborted or never created)", what, static_cast<const void*>(h));
  }
  void release() {
    // The last pin of a closed handle wakes its destroy (which checks pins under mu).
    if (h_->pins.fetch_sub(1) == 1 && h_->closed.load()) {
      std::lock_guard<std::mutex> g(h_->mu);
      h_->unpinned.notify_all();
    }
  }
  H* h_;
};

Pin<chorusComm> pinComm(chorusComm* c) { return Pin<chorusComm>(c, gComms, "communicator"); }
Pin<chorusStream> pinStream(chorusStream* s) { return Pin<chorusStream>(s, gStreams, "stream"); }

// A retired handle's own memory (its contents are freed already) is kept for the life of the
// process: a stale handle is then always refused safely, even without the registry (Pin), and
// its address never comes back as another handle. About 150 bytes per destroyed communicator
// or stream; held here, so that leak checkers see it reachable.
std::mutex gBuriedMutex;
std::vector<std::unique_ptr<chorusComm>> gBuriedComms;
std::vector<std::unique_ptr<chorusStream>> gBuriedStreams;
void bury(chorusComm* h) {
  std::lock_guard<std::mutex> g(gBuriedMutex);
  gBuriedComms.emplace_back(h);
}
void bury(chorusStream* h) {
  std::lock_guard<std::mutex> g(gBuriedMutex);
  gBuriedStreams.emplace_back(h);
}

// A call recorded in an open group holds its handles' memory, not a pin: destroy and abort do
// not wait for groups, which another thread may keep open for as long as it likes.
// chorusGroupEnd pins the handles again, which fails for one retired meanwhile; the memory held
// here means that its address cannot belong to a new handle by then.
template <typename H>
class GroupRef {
 public:
  GroupRef() = default;
  explicit GroupRef(H* h) : h_(h) {  // h is live: the caller holds a Pin on it
    if (!h_) return;
    std::lock_guard<std::mutex> g(h_->mu);
    ++h_->records;
  }
  ~GroupRef() { reset(); }
  GroupRef(GroupRef&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  GroupRef& operator=(GroupRef&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  H* get() const { return h_; }

 private:
  void reset() noexcept {
    if (!h_) return;
    bool last = false;
    {
      std::lock_guard<std::mutex> g(h_->mu);
      last = --h_->records == 0 && h_->retired;
    }
    if (last) bury(h_);
    h_ = nullptr;
  }
  H* h_ = nullptr;
};

// Unregisters h (so that no new call can pin it); throws for a handle that is not live, so that
// of two racing destroys only one proceeds.
template <typename H>
void unregister(H* h, std::set<const H*>& registry, const char* what) {
  CHORUS_CHECK_ARG(h != nullptr, "%s is NULL", what);
  std::lock_guard<std::mutex> g(gRegistryMutex);
  if (!registry.erase(h))
    CHORUS_THROW(chorusInvalidUsage, "%s %p is not valid (destroyed, aborted or never created)", what, static_cast<const void*>(h));
  h->closed.store(true);
}

// Waits until no call uses h any more. Every pinned call is bounded by CHORUS_TIMEOUT (its
// waits all have deadlines), so this wait is bounded too.
template <typename H>
void waitUnpinned(H* h) {
  std::unique_lock<std::mutex> g(h->mu);
  h->unpinned.wait(g, [h] { return h->pins.load() == 0; });
}

// The last step of destroy/abort (h unregistered, unpinned, its contents freed): buries the
// handle now, or leaves that to the last GroupRef on it.
template <typename H>
void freeHandle(H* h) {
  bool last = false;
  {
    std::lock_guard<std::mutex> g(h->mu);
    h->retired = true;
    last = h->records == 0;
  }
  if (last) bury(h);
}

chorusComm* registerComm(std::unique_ptr<Communicator> impl) {
  auto* c = new chorusComm;
  c->impl = std::move(impl);
  std::lock_guard<std::mutex> g(gRegistryMutex);
  gComms.insert(c);
  return c;
}

CollCall collective(Coll coll, const char* name, const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t dtype,
                    chorusRedOp_t op = chorusSum, int root = 0) {
  CollCall c;
  c.op = op;
  c.root = root;
  c.coll = coll;
  c.apiName = name;
  c.sendbuf = sendbuf;
  c.recvbuf = recvbuf;
  c.count = count;
  c.dtype = dtype;
  return c;
}

// "chorusAllReduce (1024 x float32 sum)", "chorusSend (8 x int32 to rank 1)": a recorded call
// in errors and logs.
std::string describe(const CollCall& c) {
  std::string s = format("%s (%zu x %s", c.apiName, c.count, dataTypeName(c.dtype));
  if (c.kind == CallKind::Send) s += format(" to rank %d", c.peer);
  if (c.kind == CallKind::Recv) s += format(" from rank %d", c.peer);
  if (c.kind == CallKind::Collective && isReduction(c.coll))
    s += static_cast<int>(c.op) >= chorusNumOps ? " premulsum" : format(" %s", redOpName(c.op));
  return s + ")";
}

std::string describe(const std::vector<const CollCall*>& calls) {
  std::string s;
  for (const CollCall* c : calls) s += (s.empty() ? "" : ", ") + describe(*c);
  return s;
}

// A call recorded inside a group (see GroupRef).
struct PendingCall {
  GroupRef<chorusComm> comm;
  GroupRef<chorusStream> stream;  // empty: run on the calling thread
  CollCall call;
};

struct GroupState {
  int depth = 0;
  std::vector<PendingCall> pending;
  chorusResult_t failed = chorusSuccess;  // the first error of a call in the open group
  std::string failedText;
  ~GroupState();  // a thread that exits inside a group breaks the communicators of its calls
};
thread_local GroupState tGroup;

// The calls of the calling thread's open group recorded on h (a communicator or a stream).
std::vector<const CollCall*> recordedOn(const chorusHandle* h) {
  std::vector<const CollCall*> calls;
  for (const PendingCall& p : tGroup.pending)
    if (p.comm.get() == h || p.stream.get() == h) calls.push_back(&p.call);
  return calls;
}

// Destroying a handle that the calling thread's open group holds calls on would leave them
// nowhere to run: refused, naming the calls.
void refuseIfRecorded(const chorusHandle* h, const char* api, const char* what, const char* advice) {
  std::vector<const CollCall*> calls = recordedOn(h);
  if (calls.empty()) return;
  CHORUS_THROW(chorusInvalidUsage,
               "%s(%p) inside chorusGroupStart: this thread's open group holds %zu call%s on this %s (%s); %s", api,
               static_cast<const void*>(h), calls.size(), plural(calls.size()), what, describe(calls).c_str(), advice);
}

// chorusCommAbort inside a group: the calling thread's calls recorded on comm are dropped.
void dropRecorded(chorusComm* comm) {
  std::vector<const CollCall*> calls = recordedOn(comm);
  if (calls.empty()) return;
  CHORUS_WARN(kLogColl, "chorusCommAbort(%p) inside chorusGroupStart: dropped %zu call%s recorded on it: %s",
              static_cast<void*>(comm), calls.size(), plural(calls.size()), describe(calls).c_str());
  auto& v = tGroup.pending;
  v.erase(std::remove_if(v.begin(), v.end(), [comm](const PendingCall& p) { return p.comm.get() == comm; }), v.end());
}

void retireComm(chorusComm* comm, bool abort) {
  if (!abort)
    refuseIfRecorded(comm, "chorusCommDestroy", "communicator", "call chorusGroupEnd first, or chorusCommAbort to drop them");
  unregister(comm, gComms, "communicator");
  if (abort) {
    dropRecorded(comm);
    comm->impl->abort();
  }
  waitUnpinned(comm);
  comm->impl.reset();
  freeHandle(comm);
}

// A communicator broken by an earlier error refuses new calls at once, saying why (run() says
// only "aborted" when the break also aborted it, as for a thread that exited inside a group).
void checkNotBroken(const Communicator& c) {
  if (c.asyncError() != chorusSuccess)
    CHORUS_THROW(chorusInvalidUsage, "communicator is broken by an earlier error: %s", c.lastError().c_str());
}

// Breaks a communicator whose calls a thread dropped by exiting inside a group: the next call
// on it fails with `text`, and its peers, which wait for the dropped calls, are told now.
void breakComm(chorusComm* h, const std::string& text) noexcept {
  try {
    Pin<chorusComm> pin = pinComm(h);  // a retired communicator needs nothing more
    logSetThreadRank(h->impl->rank());  // the log line names the rank
    h->impl->recordError(chorusInvalidUsage, text);
    h->impl->abort();
    std::lock_guard<std::mutex> g(h->mu);
    h->lastError = text;
  } catch (...) {
  }
}

// Runs at thread exit, when other thread-locals (tLastError) may be gone already: touches none.
GroupState::~GroupState() {
  std::vector<chorusComm*> comms;
  for (const PendingCall& p : pending)
    if (std::find(comms.begin(), comms.end(), p.comm.get()) == comms.end()) comms.push_back(p.comm.get());
  for (chorusComm* h : comms) {
    std::vector<const CollCall*> calls;
    for (const PendingCall& p : pending)
      if (p.comm.get() == h) calls.push_back(&p.call);
    try {
      breakComm(
          h, format("a thread exited inside chorusGroupStart holding %s on this communicator: never issued, so the communicator "
                    "is broken and its peers were told",
                    describe(calls).c_str()));
    } catch (...) {
    }
  }
}

std::span<CollCall> callsOf(CollCall& one) { return {&one, 1}; }
std::span<CollCall> callsOf(std::vector<CollCall>& group) { return group; }

// A call (CollCall) or a group's calls on one communicator (std::vector<CollCall>), queued on a
// stream. It holds the communicator pinned until it has run and been destroyed (a destroy of
// the communicator waits for it; one of the stream synchronizes first).
template <typename Calls>
struct QueuedRun {
  Pin<chorusComm> comm;
  chorusComm* handle;
  Stream* queue;
  Calls calls;
  chorusResult_t operator()() {
    chorusResult_t res = apiCall(handle, [&] { comm->impl->run(callsOf(calls)); });
    if (res != chorusSuccess) queue->noteErrorText(tLastError);
    return res;
  }
};
static_assert(Stream::Task::kInline<QueuedRun<CollCall>>, "a stream call is queued without an allocation");

// Runs calls of one communicator now, or queues them on the stream (null: run now). On a stream
// bound to a device stream, the device copies of calls on device buffers are enqueued there now,
// at the call's place in the device stream's order (device/staging.h).
template <typename Calls>
void issue(Pin<chorusComm> comm, chorusComm* handle, chorusStream* stream, Calls calls) {
  if (!stream) {
    comm->impl->run(callsOf(calls));
    return;
  }
  if (stream->deviceStream && devicePluginActive())
    for (CollCall& c : callsOf(calls)) c.staged = comm->impl->stage(c, stream->deviceStream);
  Stream* queue = stream->impl.get();
  queue->enqueue(QueuedRun<Calls>{std::move(comm), handle, queue, std::move(calls)});
}

// The calls a group made on one communicator, issued as one merged run.
struct Batch {
  chorusComm* comm;
  chorusStream* stream;
  std::vector<CollCall> calls;
};

// Groups recorded calls by communicator, in the order communicators were first used.
std::vector<Batch> batchByComm(std::vector<PendingCall>& pending) {
  std::vector<Batch> batches;
  for (PendingCall& p : pending) {
    auto b = std::find_if(batches.begin(), batches.end(), [&](const Batch& x) { return x.comm == p.comm.get(); });
    if (b == batches.end()) {
      batches.push_back({p.comm.get(), p.stream.get(), {}});
      b = batches.end() - 1;
    } else if (b->stream != p.stream.get()) {
      CHORUS_THROW(chorusInvalidUsage,
                   "chorusGroupEnd: calls on one communicator in a group must use one stream (%s used another)", p.call.apiName);
    }
    b->calls.push_back(std::move(p.call));
  }
  return batches;
}

// Pins a batch's handle again at chorusGroupEnd: one destroyed or aborted by another thread
// while the group was open fails, naming the calls it drops.
template <typename H>
Pin<H> repin(H* h, const std::set<const H*>& registry, const char* what, const Batch& b) {
  try {
    return Pin<H>(h, registry, what);
  } catch (const Error&) {
    std::vector<const CollCall*> calls;
    for (const CollCall& c : b.calls) calls.push_back(&c);
    CHORUS_THROW(chorusInvalidUsage, "chorusGroupEnd: %s %p was destroyed or aborted while the group was open; dropped %s", what,
                 static_cast<const void*>(h), describe(calls).c_str());
  }
}

void issueBatch(Batch& b) {
  Pin<chorusComm> comm = repin(b.comm, gComms, "communicator", b);
  std::optional<Pin<chorusStream>> stream;  // live while the calls are queued on it
  if (b.stream) stream.emplace(repin(b.stream, gStreams, "stream", b));
  issue(std::move(comm), b.comm, stream ? (*stream).get() : nullptr, std::move(b.calls));
}

// A group with a call that failed when it was recorded is not issued at all; each of its
// communicators gets the reason as its last error.
chorusResult_t cancelGroup(const std::vector<PendingCall>& pending, chorusResult_t code, const std::string& why) {
  return apiCall(nullptr, [&] {
    std::string text = format("group cancelled, nothing in it was issued: a call in it failed (%s)", why.c_str());
    for (const PendingCall& p : pending) setCommError(p.comm.get(), text);
    throw Error(code, text);
  });
}

// chorusGroupEnd's work: one merged run per communicator. A failure on one communicator is its
// last error (chorusGetLastError(comm)) and does not keep the others from being issued (their
// peers wait for them); the first failure is returned and is the thread's last error.
chorusResult_t issueGroup(std::vector<PendingCall>& pending) {
  std::vector<Batch> batches;
  chorusResult_t r = apiCall(nullptr, [&] { batches = batchByComm(pending); });
  if (r != chorusSuccess) return cancelGroup(pending, r, tLastError);
  chorusResult_t first = chorusSuccess;
  std::string firstText;
  for (Batch& b : batches) {
    chorusResult_t res = apiCall(b.comm, [&] { issueBatch(b); });
    if (res == chorusSuccess || first != chorusSuccess) continue;
    first = res;
    firstText = tLastError;
  }
  if (first != chorusSuccess) tLastError = firstText;
  return first;
}

// Records a validated call in the calling thread's open group (the caller pins comm).
void record(chorusComm* comm, chorusStream* stream, CollCall call) {
  std::optional<Pin<chorusStream>> live;  // the stream is live while the reference is taken
  if (stream) live.emplace(pinStream(stream));
  tGroup.pending.push_back({GroupRef<chorusComm>(comm), GroupRef<chorusStream>(stream), std::move(call)});
}

// Every collective and point-to-point entry point: pin, copy vector arguments (fill), validate,
// then run now, queue on the stream, or record in the open group.
template <typename Fill>
chorusResult_t submit(chorusComm* comm, chorusStream* stream, CollCall call, Fill&& fill) {
  chorusResult_t r = apiCall(comm, [&] {
    Pin<chorusComm> c = pinComm(comm);
    fill(call, c->impl->nranks());
    c->impl->validate(call);
    checkNotBroken(*c->impl);
    if (tGroup.depth > 0) return record(comm, stream, std::move(call));
    if (!stream) {
      // The common blocking call: nothing allocated or copied.
      c->impl->run(callsOf(call));
      return;
    }
    Pin<chorusStream> s = pinStream(stream);  // live while the call is queued on it
    issue(std::move(c), comm, s.get(), std::move(call));
  });
  if (r != chorusSuccess && tGroup.depth > 0 && tGroup.failed == chorusSuccess) {
    tGroup.failed = r;
    tGroup.failedText = tLastError;
  }
  return r;
}

chorusResult_t submit(chorusComm* comm, chorusStream* stream, CollCall call) {
  return submit(comm, stream, std::move(call), [](CollCall&, int) {});
}

}  // namespace

Communicator& communicatorOf(chorusComm_t comm) {
  std::lock_guard<std::mutex> g(gRegistryMutex);
  CHORUS_CHECK_ARG(comm && gComms.count(comm), "communicator %p is not live", static_cast<void*>(comm));
  return *comm->impl;
}

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
  return chorusCommInitRankConfig(comm, nranks, id, rank, nullptr);
}

chorusResult_t chorusCommInitRankConfig(chorusComm_t* comm, int nranks, chorusUniqueId id, int rank,
                                        const chorusConfig_t* config) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(comm, "comm is NULL");
    *comm = nullptr;
    CHORUS_CHECK_ARG(nranks >= 1, "nranks must be >= 1 (got %d)", nranks);
    CHORUS_CHECK_ARG(rank >= 0 && rank < nranks, "rank %d is out of range [0, %d)", rank, nranks);
    Config settings = Config::fromEnv();
    if (config) applyUserConfig(*config, settings);
    *comm = registerComm(Communicator::create(decodeUniqueId(id), nranks, rank, settings));
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
    threads.reserve(ndev);  // emplace_back cannot reallocate (and throw) with threads running
    for (int r = 0; r < ndev; ++r) {
      threads.emplace_back([&, r] {
        try {
          made[r] = Communicator::create(id, ndev, r, config);
        } catch (const Error& e) {
          codes[r] = e.code();
          errors[r] = e.what();
        } catch (const std::exception& e) {
          codes[r] = chorusInternalError;
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
    LaunchInfo info = detectLauncher();
    if (info.rank == 0) startRootService(info.id, config);
    *comm = registerComm(Communicator::create(info.id, info.size, info.rank));
  });
}

chorusResult_t chorusCommDestroy(chorusComm_t comm) {
  return apiCall(nullptr, [&] { retireComm(comm, false); });
}

chorusResult_t chorusCommAbort(chorusComm_t comm) {
  return apiCall(nullptr, [&] { retireComm(comm, true); });
}

chorusResult_t chorusCommGetAsyncError(chorusComm_t comm, chorusResult_t* asyncError) {
  return apiCall(comm, [&] {
    auto c = pinComm(comm);
    CHORUS_CHECK_ARG(asyncError, "asyncError is NULL");
    *asyncError = c->impl->asyncError();
  });
}

chorusResult_t chorusCommCount(const chorusComm_t comm, int* count) {
  return apiCall(comm, [&] {
    auto c = pinComm(comm);
    CHORUS_CHECK_ARG(count, "count is NULL");
    *count = c->impl->nranks();
  });
}

chorusResult_t chorusCommUserRank(const chorusComm_t comm, int* rank) {
  return apiCall(comm, [&] {
    auto c = pinComm(comm);
    CHORUS_CHECK_ARG(rank, "rank is NULL");
    *rank = c->impl->rank();
  });
}

chorusResult_t chorusAllReduce(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, chorusRedOp_t op,
                               chorusComm_t comm, chorusStream_t stream) {
  return submit(comm, stream, collective(Coll::AllReduce, "chorusAllReduce", sendbuf, recvbuf, count, datatype, op));
}

chorusResult_t chorusBroadcast(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, int root,
                               chorusComm_t comm, chorusStream_t stream) {
  return submit(comm, stream, collective(Coll::Broadcast, "chorusBroadcast", sendbuf, recvbuf, count, datatype, chorusSum, root));
}

chorusResult_t chorusReduce(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, chorusRedOp_t op, int root,
                            chorusComm_t comm, chorusStream_t stream) {
  return submit(comm, stream, collective(Coll::Reduce, "chorusReduce", sendbuf, recvbuf, count, datatype, op, root));
}

chorusResult_t chorusAllGather(const void* sendbuf, void* recvbuf, size_t sendcount, chorusDataType_t datatype, chorusComm_t comm,
                               chorusStream_t stream) {
  return submit(comm, stream, collective(Coll::AllGather, "chorusAllGather", sendbuf, recvbuf, sendcount, datatype));
}

chorusResult_t chorusReduceScatter(const void* sendbuf, void* recvbuf, size_t recvcount, chorusDataType_t datatype, chorusRedOp_t op,
                                   chorusComm_t comm, chorusStream_t stream) {
  return submit(comm, stream, collective(Coll::ReduceScatter, "chorusReduceScatter", sendbuf, recvbuf, recvcount, datatype, op));
}

chorusResult_t chorusAlltoAll(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, chorusComm_t comm,
                              chorusStream_t stream) {
  return submit(comm, stream, collective(Coll::AlltoAll, "chorusAlltoAll", sendbuf, recvbuf, count, datatype));
}

chorusResult_t chorusGather(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, int root, chorusComm_t comm,
                            chorusStream_t stream) {
  return submit(comm, stream, collective(Coll::Gather, "chorusGather", sendbuf, recvbuf, count, datatype, chorusSum, root));
}

chorusResult_t chorusScatter(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, int root, chorusComm_t comm,
                             chorusStream_t stream) {
  return submit(comm, stream, collective(Coll::Scatter, "chorusScatter", sendbuf, recvbuf, count, datatype, chorusSum, root));
}

chorusResult_t chorusAllGatherV(const void* sendbuf, size_t sendcount, void* recvbuf, const size_t* recvcounts, const size_t* displs,
                                chorusDataType_t datatype, chorusComm_t comm, chorusStream_t stream) {
  CollCall c = collective(Coll::AllGatherV, "chorusAllGatherV", sendbuf, recvbuf, sendcount, datatype);
  return submit(comm, stream, std::move(c), [&](CollCall& call, int n) {
    call.v = std::make_shared<CollCall::Arrays>();
    call.v->counts = copyCounts(recvcounts, n, "recvcounts");
    call.v->displs = copyCounts(displs, n, "displs");
  });
}

chorusResult_t chorusReduceScatterV(const void* sendbuf, void* recvbuf, const size_t* recvcounts, const size_t* displs,
                                    chorusDataType_t datatype, chorusRedOp_t op, chorusComm_t comm, chorusStream_t stream) {
  CollCall c = collective(Coll::ReduceScatterV, "chorusReduceScatterV", sendbuf, recvbuf, 0, datatype);
  c.op = op;
  return submit(comm, stream, std::move(c), [&](CollCall& call, int n) {
    auto& v = *(call.v = std::make_shared<CollCall::Arrays>());
    v.counts = copyCounts(recvcounts, n, "recvcounts");
    if (displs) {
      v.displs = copyCounts(displs, n, "displs");
    } else {  // packed in rank order
      v.displs.assign(n, 0);
      for (int r = 1; r < n; ++r) {
        CHORUS_CHECK_ARG(v.displs[r - 1] <= SIZE_MAX - v.counts[r - 1],
                         "chorusReduceScatterV: recvcounts[0..%d] sum past SIZE_MAX", r - 1);
        v.displs[r] = v.displs[r - 1] + v.counts[r - 1];
      }
    }
  });
}

chorusResult_t chorusAlltoAllV(const void* sendbuf, const size_t* sendcounts, const size_t* sdispls, void* recvbuf,
                               const size_t* recvcounts, const size_t* rdispls, chorusDataType_t datatype, chorusComm_t comm,
                               chorusStream_t stream) {
  CollCall c = collective(Coll::AlltoAllV, "chorusAlltoAllV", sendbuf, recvbuf, 0, datatype);
  return submit(comm, stream, std::move(c), [&](CollCall& call, int n) {
    auto& v = *(call.v = std::make_shared<CollCall::Arrays>());
    v.sendCounts = copyCounts(sendcounts, n, "sendcounts");
    v.sendDispls = copyCounts(sdispls, n, "sdispls");
    v.recvCounts = copyCounts(recvcounts, n, "recvcounts");
    v.recvDispls = copyCounts(rdispls, n, "rdispls");
  });
}

chorusResult_t chorusSend(const void* sendbuf, size_t count, chorusDataType_t datatype, int peer, chorusComm_t comm,
                          chorusStream_t stream) {
  CollCall c = collective(Coll::AllReduce, "chorusSend", sendbuf, nullptr, count, datatype);
  c.kind = CallKind::Send;
  c.peer = peer;
  return submit(comm, stream, std::move(c));
}

chorusResult_t chorusRecv(void* recvbuf, size_t count, chorusDataType_t datatype, int peer, chorusComm_t comm, chorusStream_t stream) {
  CollCall c = collective(Coll::AllReduce, "chorusRecv", nullptr, recvbuf, count, datatype);
  c.kind = CallKind::Recv;
  c.peer = peer;
  return submit(comm, stream, std::move(c));
}

chorusResult_t chorusBarrier(chorusComm_t comm, chorusStream_t stream) {
  // A one-byte max all-reduce: every rank's byte must reach every rank, so nobody leaves early.
  auto bytes = std::make_shared<std::array<uint8_t, 2>>();
  CollCall c = collective(Coll::AllReduce, "chorusBarrier", bytes->data(), bytes->data() + 1, 1, chorusUint8);
  c.op = chorusMax;
  c.owned = bytes;
  return submit(comm, stream, std::move(c));
}

chorusResult_t chorusGroupStart(void) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(tGroup.depth < 1 << 20, "chorusGroupStart nested too deeply");
    ++tGroup.depth;
  });
}

chorusResult_t chorusGroupEnd(void) {
  bool closed = false;
  chorusResult_t r = apiCall(nullptr, [&] {
    if (tGroup.depth == 0) CHORUS_THROW(chorusInvalidUsage, "chorusGroupEnd without chorusGroupStart");
    closed = --tGroup.depth == 0;
  });
  if (r != chorusSuccess || !closed) return r;
  std::vector<PendingCall> pending = std::exchange(tGroup.pending, {});
  chorusResult_t failed = std::exchange(tGroup.failed, chorusSuccess);
  std::string why = std::exchange(tGroup.failedText, {});
  if (failed != chorusSuccess) return cancelGroup(pending, failed, why);
  return issueGroup(pending);
}

chorusResult_t chorusCommSplit(chorusComm_t comm, int color, int key, chorusComm_t* newcomm) {
  return apiCall(comm, [&] {
    auto c = pinComm(comm);
    CHORUS_CHECK_ARG(newcomm, "newcomm is NULL");
    *newcomm = nullptr;
    CHORUS_CHECK_ARG(tGroup.depth == 0, "chorusCommSplit inside a group is not supported");
    std::unique_ptr<Communicator> made = c->impl->split(color, key);
    if (made) *newcomm = registerComm(std::move(made));
  });
}

chorusResult_t chorusCommShrink(chorusComm_t comm, const int* excludeRanks, int excludeCount, chorusComm_t* newcomm) {
  return apiCall(comm, [&] {
    auto c = pinComm(comm);
    CHORUS_CHECK_ARG(newcomm, "newcomm is NULL");
    *newcomm = nullptr;
    CHORUS_CHECK_ARG(excludeCount >= 0 && (excludeCount == 0 || excludeRanks), "excludeRanks is NULL with excludeCount %d",
                     excludeCount);
    CHORUS_CHECK_ARG(tGroup.depth == 0, "chorusCommShrink inside a group is not supported");
    std::vector<int> excluded(excludeRanks, excludeRanks + excludeCount);
    *newcomm = registerComm(c->impl->shrink(excluded));
  });
}

chorusResult_t chorusCommDiagnose(chorusComm_t comm, char* report, size_t reportBytes) {
  return apiCall(comm, [&] {
    auto c = pinComm(comm);
    HangReport rep = c->impl->diagnose();
    if (report && reportBytes) snprintf(report, reportBytes, "%s", rep.summary.c_str());
  });
}

chorusResult_t chorusRedOpCreatePreMulSum(chorusRedOp_t* op, void* scalar, chorusDataType_t datatype,
                                          chorusScalarResidence_t residence, chorusComm_t comm) {
  return apiCall(comm, [&] {
    auto c = pinComm(comm);
    CHORUS_CHECK_ARG(op, "op is NULL");
    // Read as the integer a C caller passes: loading a value outside the enumerators as this enum
    // type is undefined behaviour in C++ (UBSan: "not a valid value for type").
    std::underlying_type_t<chorusScalarResidence_t> where;
    memcpy(&where, &residence, sizeof where);
    CHORUS_CHECK_ARG(where == chorusScalarDevice || where == chorusScalarHostImmediate, "unknown scalar residence %d",
                     static_cast<int>(where));
    *op = c->impl->preMulSumOps().create(scalar, datatype);
  });
}

chorusResult_t chorusRedOpDestroy(chorusRedOp_t op, chorusComm_t comm) {
  return apiCall(comm, [&] {
    auto c = pinComm(comm);
    c->impl->preMulSumOps().destroy(op);
  });
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

chorusResult_t chorusStreamCreateFromDevice(chorusStream_t* stream, void* deviceStream) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(stream, "stream is NULL");
    CHORUS_CHECK_ARG(deviceStream, "deviceStream is NULL");
    if (!devicePlugin())
      CHORUS_THROW(chorusInvalidUsage, "chorusStreamCreateFromDevice: no device plugin is loaded (CHORUS_DEVICE_PLUGIN=%s)",
                   envString("CHORUS_DEVICE_PLUGIN", "auto").c_str());
    auto* s = new chorusStream;
    s->deviceStream = deviceStream;
    std::lock_guard<std::mutex> g(gRegistryMutex);
    gStreams.insert(s);
    *stream = s;
  });
}

chorusResult_t chorusGetDevicePlugin(const chorusDevice_v1_t** plugin) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(plugin, "plugin is NULL");
    *plugin = devicePlugin();
  });
}

chorusResult_t chorusCommRegister(const chorusComm_t comm, void* buff, size_t size, void** handle) {
  return apiCall(comm, [&] {
    auto c = pinComm(comm);
    CHORUS_CHECK_ARG(handle, "handle is NULL");
    *handle = registerBuffer(comm, buff, size);
  });
}

chorusResult_t chorusCommDeregister(const chorusComm_t comm, void* handle) {
  return apiCall(comm, [&] {
    auto c = pinComm(comm);
    deregisterBuffer(comm, handle);
  });
}

chorusResult_t chorusMemAlloc(void** ptr, size_t size) {
  return apiCall(nullptr, [&] {
    CHORUS_CHECK_ARG(ptr, "ptr is NULL");
    *ptr = sharedMemAlloc(size);
  });
}

chorusResult_t chorusMemFree(void* ptr) {
  return apiCall(nullptr, [&] { sharedMemFree(ptr); });
}

chorusResult_t chorusStreamSynchronize(chorusStream_t stream) {
  chorusResult_t inner = chorusSuccess;
  chorusResult_t r = apiCall(nullptr, [&] {
    auto s = pinStream(stream);
    inner = s->impl->synchronize();
    if (inner != chorusSuccess) tLastError = s->impl->errorText();  // the error happened on another thread
  });
  return r != chorusSuccess ? r : inner;
}

chorusResult_t chorusStreamQuery(chorusStream_t stream) {
  chorusResult_t inner = chorusSuccess;
  chorusResult_t r = apiCall(nullptr, [&] {
    auto s = pinStream(stream);
    inner = s->impl->query();
    if (inner != chorusSuccess && inner != chorusInProgress) tLastError = s->impl->errorText();
  });
  return r != chorusSuccess ? r : inner;
}

chorusResult_t chorusStreamDestroy(chorusStream_t stream) {
  chorusResult_t inner = chorusSuccess;
  chorusResult_t r = apiCall(nullptr, [&] {
    refuseIfRecorded(stream, "chorusStreamDestroy", "stream", "call chorusGroupEnd first");
    unregister(stream, gStreams, "stream");
    waitUnpinned(stream);  // calls that were enqueueing on it have finished enqueueing
    inner = stream->impl->synchronize();
    stream->impl.reset();
    freeHandle(stream);
  });
  return r != chorusSuccess ? r : inner;
}

}  // extern "C"
#pragma GCC visibility pop
