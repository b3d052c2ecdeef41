// The pending queue of the libfabric plugin (one per device/endpoint).
#pragma once

#include <cstddef>

#include "transports/ofi/ofi_request.h"

namespace chorus::ofi {

// A queue of posts that got -FI_EAGAIN, oldest first (an intrusive FIFO through
// Request::nextPending). Each comm has one for its data posts: while it is not empty, a new post
// of that comm goes behind it, and progress retries it from the head, stopping at the first post
// that still gets -FI_EAGAIN; so no post overtakes an older one of its comm, which keeps each
// comm's send and receive order. Queues are per comm, not per endpoint, so that a peer that
// does not drain (its shm queue full, an rxm connection still being made) holds back only the
// comms to it, and queued sends never hold back receives (the other way round would deadlock
// two comms that wait on each other). Control messages have a queue of their own whose posts
// are retried independently (they need no order among themselves).
class PendingQueue {
 public:
  bool empty() const { return head_ == nullptr; }
  Request* front() const { return head_; }
  void push(Request* r) {
    r->nextPending = nullptr;
    r->queued = true;
    if (tail_ != nullptr) tail_->nextPending = r;
    else head_ = r;
    tail_ = r;
    ++size_;
  }
  Request* pop() {
    Request* r = head_;
    head_ = r->nextPending;
    if (head_ == nullptr) tail_ = nullptr;
    r->nextPending = nullptr;
    r->queued = false;
    --size_;
    return r;
  }
  size_t size() const { return size_; }

 private:
  Request* head_ = nullptr;
  Request* tail_ = nullptr;
  size_t size_ = 0;
};

}  // namespace chorus::ofi
