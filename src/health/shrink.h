// The agreement behind chorusCommShrink: after a failure, the survivors agree on who is gone and
// get the unique id of a communicator of the survivors, over the health services (no data
// transport is trusted after a failure).
//
// Protocol, one round per epoch (every call of chorusCommShrink on a communicator is the next
// epoch; a round that fails is retried as the next):
//  1. Each survivor joins the coordinator: the lowest rank that answers (rank 0, or the next
//     when it is dead or silent), sending the ranks it wants excluded.
//  2. The coordinator waits until every rank has joined or is known gone: a rank whose service
//     refuses connections is dead at once; one that does not answer a ping (stopped, cut off)
//     or answers but has not joined is left out when the round's window closes.
//  3. It decides: survivors = joined and not excluded, in old-rank order; it opens the new
//     communicator's rendezvous and answers every survivor's poll with the unique id and the
//     list. A rank that joins a decided round it is not part of is told so (chorusInvalidUsage).
//  4. Survivors join the new communicator, ranked by old rank. If a survivor dies between the
//     decision and the new communicator's init, the init fails on every other survivor, which
//     retries the whole round (epoch + 1) excluding it.
// Every wait is bounded: joins and polls by the round's window, pings by a fraction of it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "base/config.h"
#include "base/deadline.h"
#include "health/health_client.h"

namespace chorus {

class HealthService;

class ShrinkCoordinator : public std::enable_shared_from_this<ShrinkCoordinator> {
 public:
  // Set once at init: what the rendezvous of a new communicator needs, and the round's window.
  void configure(const Config& config, double windowSeconds);

  // Whether a rank's service answers a ping by the deadline (false at once when it refuses).
  using AliveFn = std::function<bool(int rank, Deadline deadline)>;
  // Served by the health service when this rank coordinates. `alive` must stay usable after
  // the service is gone (it holds what it needs).
  HealthAnswer join(int nranks, AliveFn alive, int from, uint32_t epoch, const std::vector<int>& excluded);
  HealthAnswer poll(int from, uint32_t epoch);

 private:
  void decide(int nranks, const AliveFn& alive, uint32_t epoch);

  std::mutex mu_;
  Config config_;
  double window_ = 10;
  uint32_t epoch_ = 0;
  bool running_ = false, decided_ = false;
  std::set<int> joined_, excluded_;
  std::vector<uint8_t> outcome_;  // ShrinkWire + unique id + survivors
};

struct ShrinkOutcome {
  std::vector<uint8_t> uniqueId;  // UniqueIdData bytes
  std::vector<int> survivors;     // old ranks, ascending
};

// The survivor's side of one round: joins the first coordinator that answers and waits for the
// decision. Throws chorus::Error (chorusInvalidUsage when this rank was left out, chorusTimeout
// or chorusRemoteError when no coordinator decided in time).
ShrinkOutcome shrinkRound(const HealthService& service, uint32_t epoch, const std::vector<int>& excluded, double windowSeconds);

}  // namespace chorus
