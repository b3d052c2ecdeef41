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
#include "bootstrap/wire.h"
#include "base/config.h"
#include "base/oob.h"
#include "bootstrap/peer_card.h"
#include "bootstrap/traffic.h"

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
  // Dissemination barrier: ceil(log2 p) rounds, over the connections the join opened.
  virtual void barrier(Deadline deadline) = 0;
  // Closes every socket so that peers blocked on this rank see an error. Never throws.
  virtual void abort() noexcept = 0;
  // Everything this rank's bootstrap has sent and received since it began to join (the
  // check-in included). Any thread.
  virtual BootstrapTraffic traffic() const = 0;
};

// What the bootstrap reads from other processes, as pure functions: the real code and the fuzz
// targets (tests/fuzz) call the same ones. Each throws chorus::Error naming the problem.
//
// The root's answer to a check-in is a wire::Reply and a body: rootAnswerBodyBytes says how many
// body bytes follow the Reply (at most 64 KiB of error text, or the addresses); parseRootAnswer
// returns the addresses of the ranks `rank` sends to in the card all-gather (checked: exactly
// ranks wire::bruckSendPeer(rank, nranks, 2^k), with IPv4/IPv6 addresses), or throws the error
// the root reported (its code, and its text with unprintable bytes replaced).
size_t rootAnswerBodyBytes(const wire::Reply& reply, int nranks);
std::vector<wire::PeerAddr> parseRootAnswer(const wire::Reply& reply, const char* body, size_t bytes, int rank,
                                            int nranks);
// The cards after the all-gather: each card's rank field and bootstrap address are checked
// (chorusInternalError otherwise), and what is only read later is made safe to read: strings
// end with a NUL, addresses of an unknown family are cleared, the topology card is sanitized
// (sanitizeTopoCard).
void checkPeerCards(std::vector<PeerCard>& cards, int rank);

}  // namespace chorus
