// Where this rank's failure started, as its health service tells the ranks that ask. Shared by
// the communicator (which writes it) and the service's handlers (which may outlive it). A
// question waits, up to the asker's deadline, for the answer to settle: a rank still finding out
// (asking its own failed peer, or gathering a hang report) answers the moment it knows, so a
// cascade settles hop by hop without polling.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>

#include "base/deadline.h"
#include "health/health_wire.h"

namespace chorus {

class CauseBoard {
 public:
  // settled = false: a provisional record, to be refined.
  void record(int origin, int code, const std::string& text, bool settled) {
    std::lock_guard<std::mutex> g(mu_);
    broken_ = true;
    cause_.origin = origin;
    cause_.code = code;
    cause_.settled = settled;
    text_ = text;
    cv_.notify_all();
  }
  void setAsking(int peer) {
    std::lock_guard<std::mutex> g(mu_);
    asking_ = peer;
  }
  bool broken() const {
    std::lock_guard<std::mutex> g(mu_);
    return broken_;
  }
  int origin() const {
    std::lock_guard<std::mutex> g(mu_);
    return cause_.origin;
  }
  // False while healthy. Two ranks that broke on each other would each wait for the other: what
  // this one has is final for the rank it is asking itself.
  bool read(int asker, Deadline deadline, CauseWire* cause, std::string* text) {
    std::unique_lock<std::mutex> g(mu_);
    auto ready = [&] { return broken_ && (cause_.settled || asking_ == asker); };
    if (!deadline.infinite()) cv_.wait_until(g, deadline.at(), ready);
    if (!broken_) return false;
    *cause = cause_;
    cause->settled = ready();
    *text = text_;
    return true;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool broken_ = false;
  CauseWire cause_;
  std::string text_;
  int asking_ = -1;
};

}  // namespace chorus
