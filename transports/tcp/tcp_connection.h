// One TCP connection to a peer: numSockets non-blocking streams, messages striped over them.
//
// Striping: a message of `bytes` is cut into ceil(bytes / chunk) chunks. The connection numbers
// chunks in each direction from 0 over all messages; chunk k goes on socket k mod numSockets.
// Both sides post the same message sizes in the same order, so both compute the same map and no
// chunk carries a header. A message's first chunk is preceded by a MsgHeader (size, sequence, call stamp)
// that the receiver checks against the recv it posted.
//
// Each socket keeps a cursor per direction: (message ticket, chunk index, bytes done in that
// chunk's segment). A segment is the chunk's bytes, with the MsgHeader in front for chunk 0.
// progress() gathers a socket's next segments into one sendmsg/recvmsg (up to kMaxIov pieces)
// and repeats until the kernel takes or gives no more. A message completes when all its chunks,
// on whichever sockets, are done; tickets complete in order.
//
// Plain receives read straight into the destination. Reducing receives read each chunk into the
// socket's bounce buffer and hand it to RecvSink::deliver once complete (whole elements, since
// chunks are multiples of 64 bytes).
#pragma once

#include <sys/uio.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "bootstrap/socket.h"
#include "transports/tcp/tcp_wire.h"
#include "transports/transport.h"

namespace chorus::tcp {

class TcpConnection final : public Connection {
 public:
  // socks: the connected streams in socket-index order (any blocking mode; made non-blocking).
  TcpConnection(int rank, int peer, std::vector<Fd> socks, size_t chunkBytes);
  ~TcpConnection() override = default;

  uint64_t doPostSend(const void* buf, size_t bytes, const CallStamp& stamp) override;
  uint64_t postRecv(const RecvSink& sink) override;
  bool progress() override;
  uint64_t sendsCompleted() const override { return sendQ_.done; }
  uint64_t recvsCompleted() const override { return recvQ_.done; }
  void checkAlive() override;
  void abort() noexcept override;
  const char* kind() const override { return "tcp"; }

  int numSockets() const { return static_cast<int>(socks_.size()); }

 private:
  static constexpr uint64_t kUnset = ~uint64_t{0};
  static constexpr int kMaxIov = 64;

  // One posted message (either direction).
  struct Op {
    size_t bytes = 0;
    uint64_t firstChunk = 0;  // connection-wide number of its chunk 0
    uint64_t numChunks = 0;
    uint64_t chunksLeft = 0;  // complete when 0
    const char* src = nullptr;  // send
    RecvSink sink;              // recv
    MsgHeader header;           // send: what goes out; recv: what came in
  };
  struct Cursor {
    uint64_t ticket = 0;      // message being moved on this socket
    uint64_t chunk = kUnset;  // chunk index within it (kUnset: not yet located)
    size_t off = 0;           // bytes of the chunk's segment already moved
  };
  struct Socket {
    Fd fd;
    Cursor send;
    Cursor recv;
    std::unique_ptr<char[]> bounce;  // for reducing receives, chunkBytes long
  };
  // One side's queue of messages: tickets done..done+ops.size()-1 are outstanding.
  struct Queue {
    std::deque<Op> ops;
    uint64_t done = 0;
    uint64_t nextChunk = 0;
    uint64_t posted() const { return done + ops.size(); }
    Op& at(uint64_t ticket) { return ops[ticket - done]; }
  };
  // Where one segment's bytes live.
  struct Segment {
    char* head = nullptr;  // MsgHeader bytes (chunk 0 only)
    size_t headLen = 0;
    char* data = nullptr;
    size_t dataLen = 0;
    bool bounce = false;  // data is the socket's bounce buffer
    size_t len() const { return headLen + dataLen; }
  };

  uint64_t post(Queue& q, Op op);
  // Moves the cursor to the next chunk that socket s carries; false when none is posted yet.
  bool locate(Queue& q, int s, Cursor& c);
  Segment segment(Queue& q, int s, const Cursor& c, bool recv);
  int gather(Queue& q, int s, Cursor c, bool recv, iovec* iov, size_t* total);
  void advance(Queue& q, int s, bool recv, size_t n);
  void chunkDone(Queue& q, uint64_t ticket);
  bool progressSocket(int s, bool recv);
  void checkHeader(uint64_t ticket, const Op& op);

  void throwIfFailed() const;
  void markFailed(chorusResult_t code, const std::string& message);
  [[noreturn]] void fail(chorusResult_t code, const std::string& message);
  [[noreturn]] void failErrno(int err, int s, const char* op);

  int rank_;
  size_t chunkBytes_;
  std::vector<Socket> socks_;
  Queue sendQ_;
  Queue recvQ_;
  bool failed_ = false;
  chorusResult_t failCode_ = chorusSuccess;
  std::string failMessage_;
};

}  // namespace chorus::tcp
