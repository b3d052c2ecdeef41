// The communicator: one rank's view of a group. Owns the bootstrap, the transports, the
// connections made so far (lazily: only to the peers an algorithm uses), the cache of
// schedules, and the error state. Collectives on one communicator are serialized.
#pragma once

#include <chorus/chorus.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/unique_id.h"
#include "core/config.h"
#include "exec/executor.h"
#include "exec/schedule.h"
#include "transports/transport.h"

namespace chorus {

class Communicator {
 public:
  // Joins the communicator (collective over nranks). Throws chorus::Error.
  static std::unique_ptr<Communicator> create(const UniqueIdData& id, int nranks, int rank);
  static std::unique_ptr<Communicator> create(const UniqueIdData& id, int nranks, int rank, const Config& config);
  ~Communicator();

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  const Config& config() const { return config_; }

  // Checks an all-reduce's arguments (chorusInvalidArgument), without communicating.
  static void validateAllReduce(const void* sendbuf, const void* recvbuf, size_t count, chorusDataType_t dtype, chorusRedOp_t op);
  // Runs an all-reduce to completion on the calling thread. Precondition: the arguments passed
  // validateAllReduce (the C API checks them once, before running or queuing the call).
  void allReduce(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t dtype, chorusRedOp_t op);

  // Makes every pending and future call fail promptly and tells the peers (never throws).
  void abort() noexcept;

  // Error state: the first failure breaks the communicator (later calls fail at once).
  chorusResult_t asyncError() const { return asyncError_.load(); }
  void recordError(chorusResult_t code, const std::string& text);
  std::string lastError() const;

 private:
  Communicator(int rank, int nranks, const Config& config);
  void init(const UniqueIdData& id);
  // Connects (once) to every peer in `peers`, choosing the transport per pair.
  void ensureConnected(const std::vector<int>& peers);
  Transport* transportFor(int peer);
  // A built schedule and its executor plan (which refers to it: entries never move).
  struct CachedSchedule {
    RankSchedule schedule;
    std::unique_ptr<ExecPlan> plan;
  };
  // Returns the cached entry for the shape, building it on first use (*fresh = true then).
  CachedSchedule& allReduceSchedule(size_t count, size_t elemSize, bool inPlace, bool average, bool* fresh);

  // Forwards Oob calls to the bootstrap, which exists only after the TCP listener does.
  struct OobForwarder : Oob {
    Bootstrap* target = nullptr;
    void send(int peer, uint32_t tag, const void* d, size_t n, Deadline dl) override { target->send(peer, tag, d, n, dl); }
    void recv(int peer, uint32_t tag, void* d, size_t n, Deadline dl) override { target->recv(peer, tag, d, n, dl); }
  };

  const int rank_;
  const int nranks_;
  const Config config_;
  std::vector<PeerCard> cards_;
  OobForwarder oob_;
  TransportContext ctx_;
  std::unique_ptr<Bootstrap> bootstrap_;
  std::unique_ptr<TcpTransportBase> tcp_;
  std::unique_ptr<Transport> shm_;
  std::vector<std::unique_ptr<Connection>> connections_;  // indexed by peer
  std::vector<Connection*> connectionPtrs_;

  std::mutex execMutex_;  // one collective at a time
  uint64_t seq_ = 0;
  std::map<std::tuple<size_t, size_t, bool, bool>, CachedSchedule> scheduleCache_;

  std::atomic<bool> aborted_{false};
  std::atomic<chorusResult_t> asyncError_{chorusSuccess};
  mutable std::mutex errorMutex_;
  std::string lastError_;
};

}  // namespace chorus
