// Bootstrap: how the ranks of a communicator find each other and exchange what their
// transports need, before any data moves. See docs/ARCHITECTURE.md "Bootstrap" for the
// message pattern and its cost:
//  1. each rank opens a listener and checks in with the root (secret, rank, nranks, its
//     address); the root answers each rank with only the addresses it needs for step 2
//     (ceil(log2 p) of them), so no rank receives O(p) data from the root;
//  2. the PeerCards are all-gathered with Bruck's algorithm: ceil(log2 p) rounds, each rank
//     sending to rank - 2^k and receiving from rank + 2^k;
//  3. afterwards any two ranks may exchange out-of-band messages (Oob) over sockets opened on
//     first use and authenticated with the secret.
#pragma once

#include <memory>
#include <vector>

#include "bootstrap/unique_id.h"
#include "core/config.h"
#include "core/oob.h"
#include "core/peer_card.h"

namespace chorus {

class Bootstrap : public Oob {
 public:
  // Joins the rendezvous of id as rank of nranks. `card` is this rank's card; its rank and
  // bootstrapAddr fields are filled in here. Returns once every card is known.
  static std::unique_ptr<Bootstrap> join(const UniqueIdData& id, int rank, int nranks, PeerCard card,
                                         const Config& config, Deadline deadline);

  virtual const std::vector<PeerCard>& cards() const = 0;
  // All-gather of fixed-size records: buf holds nranks records of `bytes`; this rank's own
  // record at index rank is sent, the others are filled in. Bruck's algorithm, log2 rounds.
  virtual void allgather(void* buf, size_t bytes, Deadline deadline) = 0;
  // Dissemination barrier: ceil(log2 p) rounds.
  virtual void barrier(Deadline deadline) = 0;
  // Closes every socket so that peers blocked on this rank see an error. Never throws.
  virtual void abort() noexcept = 0;
};

}  // namespace chorus
