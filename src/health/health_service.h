// The health service: one thread per communicator that answers other ranks' questions about
// this rank while its own threads are busy elsewhere (inside a collective, in user code, or
// stuck). It is what makes failures diagnosable at scale:
//  * Cause: why this rank's communicator broke. A rank whose neighbour aborted asks that
//    neighbour, so every error names the rank where the failure started, not the last link
//    of the cascade; a neighbour that does not answer is dead (or stopped).
//  * Gather / Report: the hang report (hang_report.h). A gather runs down a binomial tree rooted
//    at the requester (each rank asks at most log2(p) children, in parallel, and answers its
//    parent), so its cost per rank stays logarithmic; a child that does not answer is reported
//    unreachable and its subtree is asked directly. Report is served by rank 0 (the
//    coordinator) for everybody, one gather per burst of requests.
//  * Ping / ShrinkJoin / ShrinkPoll: liveness and the agreement of chorusCommShrink (shrink.h).
//
// Wire: one authenticated request per TCP connection (health_wire.h), served by a short-lived
// thread (at most kMaxHandlers at once; more are answered "busy" and come back). A connection
// gets that thread only once its whole request has arrived with the right secret: until then
// the service thread reads it without blocking, within the stranger limits of the bootstrap's
// listeners (bootstrap/auth_gate.h: closed after CHORUS_AUTH_TIMEOUT, at most
// CHORUS_AUTH_MAX_PENDING waiting, the oldest closed to make room or to free a descriptor; WARN
// lines rate-limited). Strangers - a wrong secret, a malformed or oversized request, or
// silence - are closed unanswered.
// CHORUS_DIAG_SIGNAL (e.g. USR1) makes every live service of the process print the hang
// report of its communicator.
//
// Lifetime: the listener opens at construction (its address goes in the rank's card), the
// thread starts with start(); the destructor stops serving at once (a handler still running
// finishes its network work without touching the communicator).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/socket.h"
#include "base/deadline.h"
#include "bootstrap/peer_card.h"
#include "health/cause_board.h"
#include "health/hang_report.h"
#include "health/health_client.h"
#include "health/health_wire.h"

namespace chorus {

struct HealthIdentity {
  uint64_t commId = 0;
  uint64_t secret[2] = {0, 0};
  int rank = 0;
  int nranks = 1;
};

// What the service asks its communicator (called from service threads).
struct HealthHooks {
  std::function<RankStatus()> status;
  // Where this rank's failure started (shared: handlers may outlive the communicator).
  std::shared_ptr<CauseBoard> cause;
};

class ShrinkCoordinator;

class HealthService {
 public:
  static constexpr int kMaxHandlers = 64;
  static constexpr double kRequestSeconds = 2.0;  // a handler's reply must be written within this

  // commTimeoutSec (> 0): CHORUS_TIMEOUT, which caps CHORUS_AUTH_TIMEOUT (AuthLimits::fromEnv).
  HealthService(const HealthIdentity& id, const WireAddr& bindAddr, int diagSignal, double commTimeoutSec = 0);
  ~HealthService();
  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;

  WireAddr address() const { return addr_; }
  // Starts serving; cards[r].healthAddr is rank r's service.
  void start(const std::vector<PeerCard>& cards, HealthHooks hooks);
  // The communicator is going away (the destructor's first step): from now on this rank answers
  // as gone (Status: Closed, Ping: will not come) and never calls its hooks again.
  void close();

  // --- asking other ranks (any thread) ---
  // Why peer's communicator broke. False when peer did not answer by the deadline (dead,
  // stopped or unreachable); true with an empty text when it answered but is healthy.
  bool askCause(int peer, Deadline deadline, CauseWire* cause, std::string* text) const;
  bool ping(int peer, Deadline deadline) const;
  // True when peer's service refuses or resets the connection (its process or communicator is
  // gone) or says its communicator is broken: a peer that will not take part any more. A silent
  // peer (stopped, slow) is not gone.
  bool gone(int peer, Deadline deadline) const;
  // One peer's status: Answered (in *out), Gone (its service refuses or resets the connection,
  // or answers that its communicator is closed: process or communicator gone) or Silent (no answer by the deadline: stopped, slow or cut off).
  enum class Reach { Answered, Gone, Silent };
  Reach status(int peer, Deadline deadline, RankStatus* out) const;
  // Every rank's status, gathered down a tree rooted at this rank.
  std::vector<RankStatus> gather(Deadline deadline) const;
  // The hang report: from the coordinator (rank 0), or gathered here if it does not answer.
  HangReport report(Deadline deadline) const;

  // The shrink agreement's coordinator state (served by this rank when it coordinates).
  ShrinkCoordinator& shrinkCoordinator() { return *shrink_; }
  const HealthIdentity& identity() const;
  const std::vector<PeerCard>& cards() const;
  HealthAnswer call(int peer, HealthOp op, uint32_t epoch, int32_t arg, const void* payload, size_t bytes, Deadline deadline) const;

 private:
  struct State;
  struct Pending;
  struct Admission;  // the connections whose request has not arrived whole (service thread only)
  void loop();
  void acceptQueued();
  void admit(Fd fd);
  bool readRequest(Pending& p);
  void dispatch(Pending& p);
  static void handle(const std::shared_ptr<State>& state, Fd fd, HealthRequest req, std::vector<uint8_t> payload);
  static HealthAnswer callRank(const State& st, int peer, HealthOp op, uint32_t epoch, int32_t arg, const void* payload, size_t bytes,
                               Deadline deadline);
  // Appends the status of every rank of the subtree headed by relative rank `rel` (tree rooted
  // at `root`): its own when self, else by asking it, then directly its children where it does not answer.
  static void collectSubtree(State& st, int rel, int root, Deadline deadline, bool self, std::vector<RankStatus>* out);
  static HangReport coordinatorReport(State& st, Deadline deadline);
  static HangReport reportVia(State& st, Deadline deadline);
  static std::vector<RankStatus> gatherVia(State& st, Deadline deadline);

  std::shared_ptr<State> state_;
  std::shared_ptr<ShrinkCoordinator> shrink_;
  Fd listener_;
  WireAddr addr_;
  std::unique_ptr<Admission> admission_;
  Fd stopFd_, signalFd_;
  int signalSlot_ = -1;
  std::thread thread_;
};

}  // namespace chorus
