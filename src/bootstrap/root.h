// Private to src/bootstrap: the root rendezvous service (see root.cpp for the protocol).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "bootstrap/auth_gate.h"
#include "bootstrap/socket.h"
#include "bootstrap/unique_id.h"
#include "bootstrap/wire.h"

namespace chorus {

// Starts a detached thread that serves exactly one rendezvous on `listener` (already listening)
// for the communicator of `id`, then closes everything and exits. It gives up, telling every
// rank that checked in which ranks never did, timeoutSec after it started. Connections that do
// not check in are held to `limits` (auth_gate.h).
void launchRootThread(Fd listener, const UniqueIdData& id, double timeoutSec, const AuthLimits& limits);

// The root's bookkeeping without its sockets: which ranks checked in, whether the check-ins
// agree, and what each connection is answered. The service in root.cpp feeds it the check-ins
// it reads; tests/fuzz/fuzz_root_checkin.cpp feeds it arbitrary ones. Connections are named by
// an int the caller chooses (root.cpp: the descriptor).
class RootRendezvous {
 public:
  // Called with the complete answer for connection `conn` (of rank `rank`, from `remote`); the
  // caller sends it and closes the connection. Every connection is answered at most once.
  using Answer = std::function<void(int conn, const std::string& remote, int rank, const std::string& bytes)>;

  // Largest communicator the root accepts; a bigger nranks is taken for garbage.
  static constexpr int kMaxRanks = 1 << 24;

  RootRendezvous(const UniqueIdData& id, Answer answer) : id_(id), answer_(std::move(answer)) {}

  // Why a complete Hello is not a check-in for this rendezvous at all (wrong magic, version,
  // secret or communicator): such a connection is closed without an answer. nullptr: it is one.
  static const char* refusal(const wire::Hello& h, const UniqueIdData& id);

  // A Hello that passed refusal() arrived on conn. Returns true when conn now waits for its
  // answer (the rank checked in; the caller keeps the connection open until answered); false
  // when it has been answered already (an inconsistent check-in, or the rendezvous failed).
  bool onCheckIn(int conn, const std::string& remote, const wire::Hello& h);
  // Every rank has checked in: answers each with its addresses.
  bool complete() const { return !failed_ && nranks_ > 0 && arrived_ == nranks_; }
  void finish();
  // The rendezvous failed: every rank checked in, and every rank that checks in later, gets
  // this error.
  void fail(chorusResult_t code, std::string text);
  // The deadline passed: the ranks that checked in are told which ranks never did.
  void onDeadline(double timeoutSec);
  // Nothing more to serve: failed, and as many ranks answered as any rank said there are.
  bool finished() const { return failed_ && answered_ >= maxNranks_; }
  bool failed() const { return failed_; }
  int arrived() const { return arrived_; }
  int nranks() const { return nranks_; }

 private:
  struct Arrived {
    int conn = -1;
    std::string remote;
    WireAddr listenAddr;
  };
  bool failWith(int conn, const std::string& remote, int rank, chorusResult_t code, std::string text);
  void answerFailure(int conn, const std::string& remote, int rank);

  UniqueIdData id_;
  Answer answer_;
  std::map<int, Arrived> ranks_;  // by rank, once checked in (until answered)
  int nranks_ = 0;                // 0 until the first valid Hello
  int firstRank_ = -1;            // the rank whose Hello set nranks_
  int arrived_ = 0;
  bool failed_ = false;
  chorusResult_t failCode_ = chorusSuccess;
  std::string failText_;
  int answered_ = 0;   // error answers sent (failed state)
  int maxNranks_ = 0;  // largest nranks any rank claimed: the failed state serves that many
};

}  // namespace chorus
