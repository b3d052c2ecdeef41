// The watchdog thread of the libfabric plugin (design in ofi_watchdog.h).
#include "transports/ofi/ofi_watchdog.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transports/ofi/ofi_log.h"
#include "transports/shm/process_watch.h"

namespace chorus::ofi {

void CallRecord::addPid(int pid) {
  const int n = npids.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i)
    if (pids[i].load(std::memory_order_relaxed) == pid) return;
  if (n >= kMaxPids) return;  // beyond: only the call's own peer and the deadline rule apply
  pids[n].store(pid, std::memory_order_relaxed);
  npids.store(n + 1, std::memory_order_release);
}

namespace {

constexpr auto kTick = std::chrono::milliseconds(100);

struct Watched {
  const char* name;
  CallRecord* record;
  bool peerLocks = false;  // shm: a call may wait on another process's lock
  uint64_t seq = 0;  // the call seen in progress at the last tick (0: none)
  std::chrono::steady_clock::time_point since;
  bool warned = false;  // the call was logged as long (non-shm, past CHORUS_TIMEOUT)
};

std::mutex gMu;                // guards gWatched (the watchdog copies it each tick)
std::vector<Watched>* gWatched = new std::vector<Watched>;  // never destroyed: the thread outlives main

// The job's deadline: CHORUS_TIMEOUT seconds, as the communicator reads it (default 300).
double callDeadlineSec() {
  const char* v = getenv("CHORUS_TIMEOUT");
  char* end = nullptr;
  const double s = v != nullptr ? strtod(v, &end) : 0;
  return v != nullptr && end != v && s > 0 ? s : 300.0;
}

bool isDead(int pid) { return pid > 0 && !shm::ProcessWatch(pid).alive(); }

[[noreturn]] void fatal(const std::string& text) {
  OFI_LOG(kLogError, "%s", text.c_str());
  if (logSink().load() == nullptr) fprintf(stderr, "chorus ofi: %s\n", text.c_str());
  fflush(stderr);
  abort();
}

// One look at a device; ends the process when its call is stuck.
void inspect(Watched& w, std::chrono::steady_clock::time_point now, double deadlineSec) {
  const uint64_t seq = w.record->seq.load(std::memory_order_acquire);
  if ((seq & 1) == 0) {
    w.seq = 0;
    return;
  }
  if (seq != w.seq) {  // a new call since the last tick
    w.seq = seq;
    w.since = now;
    w.warned = false;
    return;
  }
  const double stuck = std::chrono::duration<double>(now - w.since).count();
  if (stuck < kDeadPeerStuckSec) return;
  const char* call = w.record->call.load(std::memory_order_relaxed);
  const int target = w.record->peerPid.load(std::memory_order_relaxed);
  int dead = isDead(target) ? target : 0;
  for (int i = 0, n = w.record->npids.load(std::memory_order_acquire); dead == 0 && i < n; ++i) {
    const int pid = w.record->pids[i].load(std::memory_order_relaxed);
    if (isDead(pid)) dead = pid;
  }
  char what[160];
  if (target > 0)
    snprintf(what, sizeof(what), "%s to process %d", call ? call : "a provider call", target);
  else
    snprintf(what, sizeof(what), "%s", call ? call : "a provider call");
  char text[512];
  if (dead != 0) {
    snprintf(text, sizeof(text),
             "FATAL: ofi %s: %s has not returned for %.1f s and process %d, a peer on this device, is dead: it died "
             "holding a lock of libfabric's shm region (%s), which the provider waits on forever. This process "
             "cannot continue; aborting it instead of hanging.",
             w.name, what, stuck, dead, dead == target ? "its own region" : "its own or this process's region");
    fatal(text);
  }
  if (!w.peerLocks && stuck < kBusyCallDeadlineFactor * deadlineSec) {
    // Busy, not stuck on a dead process: it ends when the peers feeding it stop (see the header).
    if (stuck >= deadlineSec && !w.warned) {
      w.warned = true;
      OFI_LOG(kLogWarn,
              "ofi %s: %s has not returned for %.0f s (CHORUS_TIMEOUT): the provider is busy inside it (libfabric "
              "1.17 tcp;ofi_rxm drains its message queue while live peers keep sending after a peer's connection "
              "closed); waiting for them to stop, at most %.0f s in all",
              w.name, what, stuck, kBusyCallDeadlineFactor * deadlineSec);
    }
    return;
  }
  if (stuck >= (w.peerLocks ? 1.0 : kBusyCallDeadlineFactor) * deadlineSec) {
    char limit[64];
    if (w.peerLocks)
      snprintf(limit, sizeof(limit), "CHORUS_TIMEOUT");
    else
      snprintf(limit, sizeof(limit), "its limit, %g x CHORUS_TIMEOUT", kBusyCallDeadlineFactor);
    snprintf(text, sizeof(text),
             "FATAL: ofi %s: %s has not returned for %.0f s (%s): no peer of this device is known dead (%s). This "
             "process cannot continue; aborting it instead of hanging.",
             w.name, what, stuck, limit,
             w.peerLocks ? "one stopped while holding a provider lock?" : "busy in the provider without end");
    fatal(text);
  }
}

void run() {
  const double deadlineSec = callDeadlineSec();
  std::vector<Watched> local;
  for (;;) {
    std::this_thread::sleep_for(kTick);
    {
      std::lock_guard<std::mutex> lock(gMu);
      for (size_t i = local.size(); i < gWatched->size(); ++i) local.push_back((*gWatched)[i]);  // devices only get added
    }
    const auto now = std::chrono::steady_clock::now();
    for (Watched& w : local) inspect(w, now, deadlineSec);
  }
}

}  // namespace

void watchDevice(const char* deviceName, CallRecord* record, bool peerLocks) {
  static std::once_flag started;
  {
    std::lock_guard<std::mutex> lock(gMu);
    Watched w;
    w.name = deviceName;
    w.record = record;
    w.peerLocks = peerLocks;
    gWatched->push_back(w);
  }
  std::call_once(started, [] { std::thread(run).detach(); });
}

}  // namespace chorus::ofi
