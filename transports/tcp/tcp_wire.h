// What the TCP transport puts on the wire. Both ends run the same build on the same kind of
// host, so the structs travel in host byte order; the magic numbers catch a stray or foreign
// connection rather than bridge architectures.
//
// Connection setup: the lower rank of a pair opens numSockets streams to the higher rank's data
// listener and sends one Hello on each. Nothing is sent back: the higher rank verifies the hello
// and either adopts the socket or closes it.
//
// Data: each message is cut into chunks of chunkBytes; chunk k of the connection's running chunk
// count (over all messages in one direction) travels on socket k mod numSockets. The first chunk
// of a message is preceded by a MsgHeader on its socket. Nothing else is framed: both sides know
// the message sizes, so both compute the same chunk-to-socket map.
#pragma once

#include <cstdint>

#include "exec/call_stamp.h"

namespace chorus::tcp {

constexpr uint64_t kHelloMagic = 0x43484f5255535443ull;  // "CHORUSTC"
constexpr uint32_t kMsgMagic = 0x4d534743u;              // "MSGC"

struct Hello {
  uint64_t magic = kHelloMagic;
  uint64_t secret[2] = {0, 0};
  uint64_t commId = 0;
  int32_t fromRank = -1;
  int32_t toRank = -1;
  int32_t socketIndex = -1;
  int32_t numSockets = 0;
  // How many connect() calls between this pair came before this one, so that the sockets of
  // two successive connects to the same peer are never mixed up.
  uint64_t ordinal = 0;
};
static_assert(sizeof(Hello) == 56, "Hello is a wire format");

struct MsgHeader {
  uint64_t bytes = 0;
  uint32_t seq = 0;  // low 32 bits of the sender's ticket: catches a skipped or extra message
  uint32_t magic = kMsgMagic;
  CallStamp stamp;   // the call the message belongs to (exec/call_stamp.h)
};
static_assert(sizeof(MsgHeader) == 40, "MsgHeader is a wire format");

}  // namespace chorus::tcp
