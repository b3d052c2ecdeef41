// The libfabric plugin's watchdog: no call into the provider may last forever.
//
// libfabric 1.17's shm provider can spin without end inside a call when a peer died holding a
// lock of a shared region (ofi_peer_watch.h): a send to a process that was killed holding its own
// lock between our liveness check and the provider's lock (microseconds), or any call on our own
// endpoint when a peer was killed in the middle of sending to us (it held *our* region's lock).
// Such a thread cannot be brought back: it spins inside the provider with the device lock held.
// The watchdog turns that endless hang into a fatal error that says which call, which peer and
// why, so that the job ends instead of waiting forever:
//   - a call in progress for kDeadPeerStuckSec while a peer of its device is dead (the call's
//     target first): "the process died holding a lock of its shm region" -> abort();
//   - a call in progress for the job's deadline (CHORUS_TIMEOUT, default 300 s) in any case
//     (e.g. a peer stopped with SIGSTOP while it holds its lock) -> abort(). For providers other
//     than shm, whose calls wait on no other process's lock, only at kBusyCallDeadlineFactor x
//     CHORUS_TIMEOUT (logged at CHORUS_TIMEOUT): see kBusyCallDeadlineFactor below.
//
// Cost on the data path: each watched call stores a sequence number (odd while inside), the
// call's name and its peer's pid, all relaxed atomics on the device (CallRecord). The watchdog is
// one thread per process, started with the first device, that samples the records every 100 ms
// and never touches the provider or a device lock.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace chorus::ofi {

// The provider call a device is inside (written by the thread holding the device lock).
struct CallRecord {
  std::atomic<uint64_t> seq{0};         // odd while inside a call
  std::atomic<const char*> call{nullptr};  // e.g. "fi_tsend" (a string literal)
  std::atomic<int> peerPid{0};          // the call's peer, 0 when it has none (fi_cq_read)

  // The pids of the device's peers (appended under the device lock, read by the watchdog).
  static constexpr int kMaxPids = 1024;
  std::atomic<int> pids[kMaxPids] = {};
  std::atomic<int> npids{0};
  void addPid(int pid);
};

// Marks the provider call `call` (to peer pid, 0: none) for the watchdog while it lasts.
class CallScope {
 public:
  CallScope(CallRecord& rec, const char* call, int pid) : rec_(rec) {
    rec_.call.store(call, std::memory_order_relaxed);
    rec_.peerPid.store(pid, std::memory_order_relaxed);
    rec_.seq.store(rec_.seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  ~CallScope() { rec_.seq.store(rec_.seq.load(std::memory_order_relaxed) + 1, std::memory_order_release); }
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

 private:
  CallRecord& rec_;
};

// How long a call may be inside the provider while a peer of its device is dead.
constexpr double kDeadPeerStuckSec = 1.0;

// How long, as a multiple of CHORUS_TIMEOUT, a call of a provider whose calls do not wait on
// other processes' locks (every provider but shm) may last before the watchdog ends the process.
// Such a call is not stuck on a dead process: it is busy. libfabric 1.17's tcp;ofi_rxm spins
// inside one fi_cq_read for as long as live peers keep streaming messages to this endpoint after
// a peer's connection shut down (rxm_close_conn drains the endpoint's shared message CQ until it
// is empty, and every message it takes in lets its sender send the next one: campaign finding 5,
// replay 0x73ea71eb63b2bb99). Chorus ranks stop sending at the latest when their own
// CHORUS_TIMEOUT passes (their waits fail, or the peer is not in their collective), so the call
// returns and this process fails with an error instead of being ended. At CHORUS_TIMEOUT the
// watchdog only logs the call; at kBusyCallDeadlineFactor x CHORUS_TIMEOUT it still ends the
// process (a loop that never ends cannot be left).
constexpr double kBusyCallDeadlineFactor = 3.0;

// Puts a device (its name, for the message, and its record; both live as long as the process)
// under the watchdog, starting the watchdog thread on first use. peerLocks: the provider's calls
// may wait on a lock that another process holds (shm): the deadline is CHORUS_TIMEOUT; otherwise
// kBusyCallDeadlineFactor x CHORUS_TIMEOUT.
void watchDevice(const char* deviceName, CallRecord* record, bool peerLocks);

}  // namespace chorus::ofi
