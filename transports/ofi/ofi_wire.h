// What the libfabric plugin puts on the wire: the listen handle, the control messages, and the
// layout of the 64-bit libfabric tags.
//
// Tags (tagBits = the provider's usable tag bits, from mem_tag_format; 64 on tcp;ofi_rxm, shm):
//   bit tagBits-1        control bit: 1 for control messages, 0 for data
//   bits 31..tagBits-2   data: the receiver's comm id (low bits of it), assigned by the accepting
//                        side, unique among that endpoint's comms until it wraps (2^32 ids with 64
//                        tag bits); control messages use no other bits
//   bits 0..30           data: the user tag (0..CHORUS_NET_MAX_TAG)
// Data receives are posted with the exact tag and, when the provider has FI_DIRECTED_RECV, the
// peer's address, so two comms never match each other's messages: not even two connections
// from one process to one listener, which differ by comm id. Control messages all go to one
// wildcard receive per endpoint (tag = control bit, every lower bit ignored) and carry their
// addressing in the payload.
//
// Integers travel in host byte order: Chorus's processes share an architecture.
#pragma once

#include <cstddef>
#include <cstdint>

#include "chorus/net_plugin.h"

namespace chorus::ofi {

constexpr uint32_t kHandleMagic = 0x4f464931;  // "OFI1"
constexpr uint32_t kCtrlMagic = 0x4f464943;    // "OFIC"
constexpr size_t kMaxNameBytes = 112;          // the endpoint name (fi_getname) we can carry

// The handle listen() fills in (exactly CHORUS_NET_HANDLE_MAXSIZE bytes, no pointers).
struct WireHandle {
  uint32_t magic;
  uint16_t nameLen;
  uint16_t reserved;
  uint64_t listenerId;
  uint8_t name[kMaxNameBytes];
};
static_assert(sizeof(WireHandle) == CHORUS_NET_HANDLE_MAXSIZE, "handle layout");

enum CtrlType : uint8_t {
  kCtrlConnect = 1,  // dst = listener id, src = the connecting side's comm id
  kCtrlAccept = 2,   // dst = connecting comm id, src = the new receive comm's id
  kCtrlRefuse = 3,   // dst = connecting comm id: no such listener (closed)
  kCtrlClosed = 4,   // dst = peer comm id; value = data messages the closing sender posted
  kCtrlPing = 5,     // dst = peer comm id: keepalive; an unknown dst is answered with kCtrlClosed
};
constexpr uint64_t kUnknownCount = ~0ull;  // kCtrlClosed.value when the count is not known

// kCtrlClosed.flags: the closing side had no send of the comm still in flight (every message it
// counted was handed over in full: none waits for the receiver to fetch it).
constexpr uint8_t kClosedClean = 1;

// Every control message also carries the sender's endpoint name, so that the receiver can
// answer (insert it in its address vector) without FI_SOURCE, and the sender's pid with a tag
// of its host and pid namespace (LocalHost in ofi_peer_watch.h), so that a receiver on the same
// host and namespace can watch the sender's process whatever the provider (ofi_peer_watch.h).
struct CtrlMsg {
  uint32_t magic;
  uint8_t type;
  uint8_t flags;  // kCtrlClosed: kClosedClean
  uint16_t nameLen;
  uint64_t dstId;
  uint64_t srcId;
  uint64_t value;
  int32_t pid;       // the sender's process
  uint32_t reserved;
  uint64_t hostTag;  // its host and pid namespace (0: unknown, never matched)
  uint8_t name[kMaxNameBytes];
};
constexpr size_t kCtrlHeaderBytes = offsetof(CtrlMsg, name);
constexpr size_t kCtrlBytes = sizeof(CtrlMsg);

// The tag layout for one provider.
struct TagLayout {
  int bits = 64;            // usable tag bits
  uint64_t ctrlBit = 0;     // 1 << (bits - 1)
  uint64_t idMask = 0;      // comm id bits available in data tags

  static constexpr int kUserBits = 31;

  void init(int tagBits) {
    bits = tagBits;
    ctrlBit = 1ull << (bits - 1);
    idMask = (1ull << (bits - 1 - kUserBits)) - 1;
  }
  uint64_t data(uint64_t commId, int userTag) const {
    return ((commId & idMask) << kUserBits) | static_cast<uint64_t>(static_cast<uint32_t>(userTag));
  }
  uint64_t ctrlIgnore() const { return ctrlBit - 1; }
};

}  // namespace chorus::ofi
