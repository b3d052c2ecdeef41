// Harness of the transport conformance suite (tests/transport/test_conformance.cpp): the table of
// transports under test, a rank's view of one transport (set up as the communicator does it), a
// progress loop with a deadline, and buffers with checked content and guard bytes.
//
// Ranks are real processes (fixtures/ranks.h): fabric libraries are initialised in each rank
// after the fork, and the fault tests kill or end one of them.
#pragma once

#include <chorus/chorus.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "base/config.h"
#include "base/deadline.h"
#include "base/error.h"
#include "base/oob.h"
#include "bootstrap/peer_card.h"
#include "fixtures/ranks.h"
#include "transports/transport.h"

namespace chorus::test {

// Any single wait of a rank (bootstrap, connect, a drive loop) gives up after this long: a hang
// becomes a failure. Tests that expect an error measure how long it took against tighter bounds.
constexpr double kRankWaitSec = 20;
// The parent kills every rank still running after this long.
constexpr double kTestDeadlineSec = 60;

// One row of the table: a transport and the environment its rank processes get before it is made.
struct TransportParam {
  const char* label;   // gtest parameter name (letters, digits, '_')
  TransportId id;
  std::vector<std::pair<std::string, std::string>> env;
  std::string netPlugin;     // Config::netPlugin for TransportId::Plugin: a path, or a name
  bool built;                // false: the suite skips it, saying why
  const char* whyNotBuilt;   // e.g. "CHORUS_WITH_UCX=OFF"
  const char* expectedName;  // Transport::name() and Connection::kind()
  // The name form of netPlugin (libchorus-net-X.so on the library path): the dynamic loader
  // reads LD_LIBRARY_PATH at process start, so each test of this row re-runs itself in a fresh
  // process of this binary with CHORUS_NET_PLUGIN_DIR on LD_LIBRARY_PATH.
  bool needsLibraryPath = false;
};

// gtest prints a parameter by its label.
void PrintTo(const TransportParam& p, std::ostream* os);

// Every transport the suite runs on (test_conformance.cpp instantiates the suite over it).
const std::vector<TransportParam>& transportParams();

// One rank's transport, set up as Communicator::init does: the param's environment is applied,
// the transport made, its card filled, the bootstrap joined, the cards published to the context.
class RankTransport {
 public:
  RankTransport(const TransportParam& param, int rank, int nranks, const chorusUniqueId& id, double timeoutSec = kRankWaitSec);
  ~RankTransport();
  RankTransport(const RankTransport&) = delete;
  RankTransport& operator=(const RankTransport&) = delete;

  Transport& transport() { return *transport_; }
  Bootstrap& bootstrap() { return *bootstrap_; }
  const Config& config() const { return config_; }
  int rank() const { return rank_; }
  int nranks() const { return nranks_; }

  // connect(peers) with a deadline `seconds` from now.
  std::vector<std::unique_ptr<Connection>> connect(const std::vector<int>& peers, double seconds = kRankWaitSec);
  // Bootstrap barrier (no transport progress is made while in it).
  void barrier(double seconds = kRankWaitSec);
  // Out-of-band notes between ranks (kTagUser), e.g. "I got my error, you may go".
  void notify(int peer, uint32_t value);
  uint32_t awaitNote(int peer, double seconds = kRankWaitSec);
  // Destroys the transport now (its connections must be gone already).
  void destroyTransport() { transport_.reset(); }

 private:
  struct Forwarder : Oob {
    Oob* target = nullptr;
    void send(int peer, uint32_t tag, const void* data, size_t bytes, Deadline deadline) override;
    void recv(int peer, uint32_t tag, void* data, size_t bytes, Deadline deadline) override;
  };

  int rank_;
  int nranks_;
  Config config_;
  std::vector<PeerCard> cards_;
  Forwarder oob_;
  TransportContext ctx_;
  std::unique_ptr<Bootstrap> bootstrap_;
  std::unique_ptr<Transport> transport_;  // declared last: destroyed before the bootstrap
};

// runRanksWithId (fixtures/ranks.h), then removes what the rank processes left in /dev/shm (see
// shmLeftBehind) so that no test leaves garbage for the next. Names removed go to *leftBehind.
std::vector<RankExit> runRanksTidy(int n, const std::function<int(int rank, const chorusUniqueId& id)>& body,
                                   std::vector<std::string>* leftBehind = nullptr);
// /dev/shm entries named after process pid: the pid followed by a non-digit (libfabric's shm
// provider names its regions "<pid>:<n>:<n>"), but for those in `existedBefore` (pids are
// reused: a rank killed by an earlier test leaves its region, named after a pid a later rank
// may get). Only meaningful once that process has ended.
std::vector<std::string> shmLeftBehind(int pid, const std::vector<std::string>& existedBefore = {});

// Drives conns until done() holds. Calls checkAlive() on each about every 2 ms. Throws the
// transports' errors as they come; past `seconds` throws chorusTimeout whose text starts with
// "test deadline" (so it is never mistaken for a transport's own timeout).
void drive(const std::vector<Connection*>& conns, const std::function<bool()>& done, double seconds = kRankWaitSec);
std::vector<Connection*> pointers(const std::vector<std::unique_ptr<Connection>>& conns);

// Runs f; returns chorusSuccess, or the chorus::Error's code (its text in *what). Any other
// exception is reported as chorusInternalError with its text.
chorusResult_t codeOf(const std::function<void()>& f, std::string* what = nullptr);
double secondsSince(Clock::time_point t);

// Message content: 8-byte words, the first one the seed itself (so a received message says which
// message it is), the others a mix of seed and index. Any length and alignment.
void fillPattern(void* buf, size_t n, uint64_t seed);
// -1 if buf holds the pattern of seed, else the offset of the first wrong byte.
long long patternMismatch(const void* buf, size_t n, uint64_t seed);
// The seed stored in a message's first word (fewer than 8 bytes: what is there, zero-padded).
uint64_t storedSeed(const void* buf, size_t n);

// A buffer whose data starts `misalign` bytes past a 64-byte boundary, between guard bytes that
// must stay untouched. Data starts filled with 0x5A.
class Buffer {
 public:
  static constexpr size_t kGuard = 64;
  explicit Buffer(size_t bytes, size_t misalign = 0);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return bytes_; }
  bool guardsIntact() const;

 private:
  uint8_t* base_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
  size_t misalign_ = 0;
};

// Messages posted on connections and checked once complete: every send filled with the pattern
// of its seed, every receive checked against the seed the sender used. Also checks that tickets
// count 0, 1, 2... per connection and direction.
class Traffic {
 public:
  void send(Connection& c, size_t bytes, uint64_t seed, size_t misalign = 0);
  void recv(Connection& c, size_t bytes, uint64_t seed, size_t misalign = 0);
  // Whether every posted operation has completed.
  bool done() const;
  // Drives every connection used until done().
  void run(double seconds = kRankWaitSec);
  // Expects (gtest) every receive to hold its message and every guard to be intact; returns the
  // number of bad messages (each reported, the first few in detail).
  int check() const;
  size_t posted() const { return ops_.size(); }

 private:
  struct Op {
    Connection* conn;
    bool isSend;
    uint64_t ticket;
    uint64_t seed;
    Buffer buf;
  };
  void noteTicket(Connection& c, bool isSend, uint64_t ticket);

  std::vector<Op> ops_;
  std::vector<Connection*> conns_;
  std::vector<std::pair<std::pair<Connection*, bool>, uint64_t>> nextTicket_;
};

// Memory shared between the test process and its ranks (anonymous MAP_SHARED, made before the
// fork), for results and time stamps the parent checks. Plain lock-free atomics only.
template <typename T>
class SharedBoard {
 public:
  SharedBoard();
  ~SharedBoard();
  T* operator->() const { return p_; }
  T& operator*() const { return *p_; }

 private:
  T* p_;
};
void* mapShared(size_t bytes);
void unmapShared(void* p, size_t bytes);
template <typename T>
SharedBoard<T>::SharedBoard() : p_(new (mapShared(sizeof(T))) T()) {}
template <typename T>
SharedBoard<T>::~SharedBoard() {
  p_->~T();
  unmapShared(p_, sizeof(T));
}
// Nanoseconds of the monotonic clock (the same in every process of the machine).
int64_t monotonicNs();

}  // namespace chorus::test
