// The contents of chorusUniqueId: where the root rendezvous listens, and the communicator's
// random secret and id. Every rank must present the secret to the root and to each other.
#pragma once

#include <chorus/chorus.h>

#include <cstddef>
#include <cstdint>

#include "base/config.h"
#include "bootstrap/peer_card.h"

namespace chorus {

struct UniqueIdData {
  static constexpr uint32_t kMagic = 0x43484f52;  // "CHOR"
  static constexpr uint32_t kVersion = 1;
  uint32_t magic = kMagic;
  uint32_t version = kVersion;
  WireAddr root;
  uint64_t secret[2] = {0, 0};
  uint64_t commId = 0;
};
static_assert(sizeof(UniqueIdData) <= CHORUS_UNIQUE_ID_BYTES, "unique id too large");

// Bytes form: chorusUniqueId.internal (what applications copy between processes, e.g. through
// torch's Store). Each decoder throws chorusInvalidArgument, naming the problem, for anything
// but a well-formed id (tests/fuzz/fuzz_unique_id.cpp feeds them arbitrary bytes).
UniqueIdData decodeUniqueId(const chorusUniqueId& id);
UniqueIdData decodeUniqueIdBytes(const void* bytes, size_t size);
chorusUniqueId encodeUniqueId(const UniqueIdData& data);
// The checks decodeUniqueId makes (magic, version, root address), for an id that arrived some
// other way (a communicator split sends one over the out-of-band channel).
void checkUniqueId(const UniqueIdData& id);

// Fresh random secret and comm id from the kernel's random source.
void fillRandom(void* buf, size_t bytes);

// Creates a unique id whose root listens on the interface chosen by config (CHORUS_SOCKET_IFNAME)
// at an ephemeral port, and starts the root rendezvous service (a detached thread) on it.
UniqueIdData createUniqueIdAndRoot(const Config& config);

// Starts the root rendezvous at a fixed address (launcher mode: rank 0 at MASTER_ADDR:PORT).
// The id's secret and comm id are given by the caller (they must be equal on every rank).
void startRootService(const UniqueIdData& id, const Config& config);

}  // namespace chorus
