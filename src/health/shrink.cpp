#include "health/shrink.h"

#include <algorithm>
#include <cstring>
#include <future>

#include "bootstrap/unique_id.h"
#include "base/error.h"
#include "base/log.h"
#include "health/health_service.h"

namespace chorus {

void ShrinkCoordinator::configure(const Config& config, double windowSeconds) {
  std::lock_guard<std::mutex> g(mu_);
  config_ = config;
  window_ = windowSeconds;
}

HealthAnswer ShrinkCoordinator::join(int nranks, AliveFn alive, int from, uint32_t epoch, const std::vector<int>& excluded) {
  std::lock_guard<std::mutex> g(mu_);
  HealthAnswer a;
  if (epoch < epoch_) {
    a.code = HealthStatusCode::Refused;  // a stale round
    return a;
  }
  if (epoch > epoch_) {
    epoch_ = epoch;
    running_ = decided_ = false;
    joined_.clear();
    excluded_.clear();
    outcome_.clear();
  }
  if (decided_) {
    a.code = HealthStatusCode::Refused;  // too late: the survivors are decided without it
    return a;
  }
  joined_.insert(from);
  for (int r : excluded)
    if (r >= 0 && r < nranks) excluded_.insert(r);
  if (!running_) {
    running_ = true;
    // Detached: it holds what it uses, and ends by the round's window.
    std::thread([self = shared_from_this(), nranks, alive = std::move(alive), epoch] { self->decide(nranks, alive, epoch); }).detach();
  }
  return a;
}

HealthAnswer ShrinkCoordinator::poll(int from, uint32_t epoch) {
  std::lock_guard<std::mutex> g(mu_);
  HealthAnswer a;
  if (epoch != epoch_ || !joined_.count(from)) {
    a.code = HealthStatusCode::Refused;
  } else if (!decided_) {
    a.code = HealthStatusCode::NotYet;
  } else {
    a.payload = outcome_;
  }
  return a;
}

void ShrinkCoordinator::decide(int n, const AliveFn& alive, uint32_t epoch) {
  double window;
  {
    std::lock_guard<std::mutex> g(mu_);
    window = window_;
  }
  Deadline closes = Deadline::after(window);
  std::vector<bool> dead(n, false);
  // Until every rank has joined or is known dead: ping the others now and then.
  for (;;) {
    std::vector<int> waiting;
    {
      std::lock_guard<std::mutex> g(mu_);
      if (epoch_ != epoch) return;  // a newer round took over
      for (int r = 0; r < n; ++r)
        if (!joined_.count(r) && !dead[r] && !excluded_.count(r)) waiting.push_back(r);
    }
    if (waiting.empty() || closes.expired()) break;
    std::vector<std::future<bool>> pings;
    Deadline pingBy = Deadline::after(std::min(0.5, window / 10));
    for (int r : waiting) pings.push_back(std::async(std::launch::async, [&alive, r, pingBy] { return alive(r, pingBy); }));
    for (size_t i = 0; i < waiting.size(); ++i)
      if (!pings[i].get()) dead[waiting[i]] = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<int32_t> survivors;
  Config config;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (epoch_ != epoch) return;
    for (int r : joined_)
      if (!excluded_.count(r)) survivors.push_back(r);
    config = config_;
  }
  std::vector<uint8_t> outcome;
  try {
    UniqueIdData id = createUniqueIdAndRoot(config);
    ShrinkWire w{static_cast<uint32_t>(sizeof id), static_cast<uint32_t>(survivors.size())};
    outcome.resize(sizeof w + sizeof id + survivors.size() * sizeof(int32_t));
    memcpy(outcome.data(), &w, sizeof w);
    memcpy(outcome.data() + sizeof w, &id, sizeof id);
    memcpy(outcome.data() + sizeof w + sizeof id, survivors.data(), survivors.size() * sizeof(int32_t));
  } catch (const Error& e) {
    CHORUS_WARN(kLogInit, "shrink round %u: could not open the new communicator's rendezvous: %s", epoch, e.what());
  }
  std::vector<int> gone;
  for (int r = 0; r < n; ++r)
    if (std::find(survivors.begin(), survivors.end(), r) == survivors.end()) gone.push_back(r);
  CHORUS_WARN(kLogInit, "shrink round %u: %zu survivor(s); left out: %s", epoch, survivors.size(),
              gone.empty() ? "none" : rankRanges(gone).c_str());
  std::lock_guard<std::mutex> g(mu_);
  if (epoch_ != epoch) return;
  outcome_ = std::move(outcome);
  decided_ = true;
}

ShrinkOutcome shrinkRound(const HealthService& service, uint32_t epoch, const std::vector<int>& excluded, double windowSeconds) {
  const int n = service.identity().nranks;
  std::vector<int32_t> ex(excluded.begin(), excluded.end());
  std::string tried;
  for (int c = 0; c < n; ++c) {
    if (std::find(excluded.begin(), excluded.end(), c) != excluded.end()) continue;
    try {
      Deadline joinBy = Deadline::after(std::min(2.0, windowSeconds));
      HealthAnswer a = service.call(c, HealthOp::ShrinkJoin, epoch, 0, ex.data(), ex.size() * sizeof(int32_t), joinBy);
      if (a.code == HealthStatusCode::Refused)
        CHORUS_THROW(chorusInvalidUsage, "chorusCommShrink: the survivors were already decided without rank %d (round %u)",
                     service.identity().rank, epoch);
      Deadline decidedBy = Deadline::after(windowSeconds + 5);
      for (;;) {
        a = service.call(c, HealthOp::ShrinkPoll, epoch, 0, nullptr, 0, Deadline::after(2));
        if (a.code == HealthStatusCode::Refused)
          CHORUS_THROW(chorusInvalidUsage, "chorusCommShrink: rank %d was left out of the survivors (round %u)",
                       service.identity().rank, epoch);
        if (a.code == HealthStatusCode::Ok) break;
        if (decidedBy.expired())
          CHORUS_THROW(chorusTimeout, "chorusCommShrink: coordinator rank %d did not decide round %u within %.1f s", c, epoch,
                       windowSeconds + 5);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      ShrinkWire w;
      if (a.payload.size() < sizeof w) CHORUS_THROW(chorusInternalError, "chorusCommShrink: malformed outcome from rank %d", c);
      memcpy(&w, a.payload.data(), sizeof w);
      if (w.idBytes == 0 || a.payload.size() != sizeof w + w.idBytes + size_t{w.survivors} * sizeof(int32_t))
        CHORUS_THROW(chorusRemoteError, "chorusCommShrink: coordinator rank %d could not open the new communicator", c);
      ShrinkOutcome out;
      out.uniqueId.assign(a.payload.begin() + sizeof w, a.payload.begin() + sizeof w + w.idBytes);
      out.survivors.resize(w.survivors);
      memcpy(out.survivors.data(), a.payload.data() + sizeof w + w.idBytes, w.survivors * sizeof(int32_t));
      return out;
    } catch (const Error& e) {
      if (e.code() == chorusInvalidUsage) throw;
      // This coordinator is gone or silent: the next rank coordinates.
      tried += format("%srank %d: %s", tried.empty() ? "" : "; ", c, e.what());
      CHORUS_INFO(kLogInit, "shrink round %u: coordinator rank %d did not serve (%s); trying the next", epoch, c, e.what());
    }
  }
  CHORUS_THROW(chorusRemoteError, "chorusCommShrink: no rank could coordinate round %u (%s)", epoch, tried.c_str());
}

}  // namespace chorus
