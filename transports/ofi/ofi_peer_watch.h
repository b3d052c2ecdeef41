// Liveness of a peer process, checked before every send to it (shm) and before a receive from
// it that may start a rendezvous (every other provider: see "tcp;ofi_rxm" below).
//
// Which peers are watched: with shm, every address (its name carries the pid); with any
// provider, every peer that told us its pid in a control message (connect, accept: CtrlMsg)
// from the same host and pid namespace (localHostTag()). Peers on other hosts are not watched.
//
// Why: libfabric 1.17's shm provider guards each endpoint's shared region with a process-shared
// spinlock in that region. A sender takes the receiver's lock to queue a command (fi_tsend,
// fi_tinject), and the owner takes its own lock while it progresses (fi_cq_read). A process
// killed while it holds its own lock leaves it locked forever: the next send to it spins inside
// the provider without end, with our device lock held (issue 12: survivors hung in fi_tsend from
// the close path and the data path). So no send goes to a peer that is dead or dying.
//
// "Dying" matters: a SIGKILLed process only becomes a zombie (what a pidfd reports) once the
// kernel has torn down its memory (1-5 ms for a rank here, 10-60 ms for a process of a few hundred
// MiB), and its lock is stuck from the instant of the kill. /proc/<pid>/stat shows the pending
// SIGKILL at once. So a check polls the pidfd (shm::ProcessWatch, ~0.5 us) and reads the stat
// file, kept open (several microseconds on a busy host: before every send it doubled an 8-byte
// all-reduce at 2 ranks). Control messages (connect, accept, close, ping: the close path) check
// every time; data sends at most once per kCheckIntervalNs, a window far shorter than the pidfd's.
// What remains: a kill in that interval, and a kill while another process already waits for the
// lock; the watchdog (ofi_watchdog.h) turns a send stuck there into a fatal error.
//
// tcp;ofi_rxm (libfabric 1.17) has two bugs a dead peer sets off, and both are avoided by not
// going near a peer known gone:
//   - rxm closes the connection of a peer whose socket shut down (rxm_process_shutdown: its
//     msg_ep becomes NULL) but leaves that peer's unexpected messages queued with a pointer to the
//     closed connection. A receive posted later that matches a rendezvous request among them
//     starts the RMA read on the NULL endpoint: SIGSEGV at address 0x30 (fid_ep.rma) inside
//     fi_trecv (campaign finding 5). Eager messages are copied out and are harmless. So a receive
//     larger than rxm's eager size from a peer that is gone, and that did not close the comm
//     with every send complete (kClosedClean), is never posted: it fails the comm instead.
//   - a send to a dead peer makes rxm reconnect; the refused connection and the retry spin
//     inside one fi_cq_read for as long as the send is queued (the watchdog then ended the
//     process after CHORUS_TIMEOUT). So no data or control send goes to a peer known gone.
// A third spin, which no check here avoids (live peers streaming while rxm drains its queue after
// a dead peer's connection shut down), is described with kBusyCallDeadlineFactor (ofi_watchdog.h).
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "transports/shm/process_watch.h"

namespace chorus::ofi {

class PeerWatch {
 public:
  // Watches pid, a process of this pid namespace that is alive now (it just sent us its name).
  // A pid that cannot be seen here (another namespace) is never reported gone.
  explicit PeerWatch(pid_t pid);
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

  // True once the process has exited, is exiting or has a fatal SIGKILL pending. Sticky.
  // thorough: look now; otherwise at most once per kCheckIntervalNs (false in between).
  bool gone(bool thorough);
  pid_t pid() const { return watch_.pid(); }
  // Why gone() said so ("exited", "killed", "exiting"), "" while it has not.
  const char* why() const { return why_; }

 private:
  shm::ProcessWatch watch_;
  int statFd_ = -1;       // /proc/<pid>/stat, kept open: bound to this process, not to its pid
  bool visible_ = false;  // the pid is a live process of this namespace
  bool gone_ = false;
  const char* why_ = "";
  int64_t lastCheckNs_ = 0;  // when the process was last looked at
};

// A tag of this host and pid namespace (the boot id and the namespace's inode, hashed; 0 when
// either cannot be read): two processes with the same nonzero tag see each other's pids.
uint64_t localHostTag();

// How often data sends look at their peer's process (see above): the longest a kill can go
// unseen by them.
constexpr int64_t kCheckIntervalNs = 200000;

}  // namespace chorus::ofi
