// Out-of-band messages between ranks, used to set up transports (exchange shm names, verify
// TCP handshakes...). Implemented by the bootstrap over its own authenticated TCP sockets.
//
// Contract: messages from one rank to another with the same tag arrive in the order sent;
// recv(peer, tag) takes the next message from peer with that tag, whatever other tags arrived
// first (those wait for their own recv). A message's size must equal the size the receiver
// asks for (a mismatch is chorusInternalError). Small sends (< 64 KiB) do not wait for the
// receiver, so "send to all, then receive from all" cannot deadlock. Every call honours its
// Deadline (chorusTimeout) and reports a dead peer as chorusRemoteError.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/deadline.h"

namespace chorus {

// Tags in use, one per purpose, so that setups of different transports never mix.
enum OobTag : uint32_t {
  kTagBarrier = 1,
  kTagBootstrapCards = 2,  // the bootstrap's all-gather of PeerCards at join
  kTagAllgather = 3,       // Bootstrap::allgather
  kTagShmSetup = 16,
  kTagShmReady = 17,
  kTagTcpSetup = 32,
  kTagSplit = 48,  // chorusCommSplit: the leader of each color sends the new unique id
  kTagNetSetup = 64,  // network-plugin transports: listen handles (64 + the transport's slot, < 72)
  kTagUser = 1024,  // first tag free for tests and later subsystems
};

class Oob {
 public:
  virtual ~Oob() = default;
  virtual void send(int peer, uint32_t tag, const void* data, size_t bytes, Deadline deadline) = 0;
  virtual void recv(int peer, uint32_t tag, void* data, size_t bytes, Deadline deadline) = 0;
};

}  // namespace chorus
