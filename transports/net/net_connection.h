// A Connection over a network plugin: one sendComm (this rank -> peer) and one recvComm
// (peer -> this rank). Each message is a 32-byte header holding its size and call stamp, then its bytes cut into
// fragments of at most `chunk` bytes; header and fragments are plugin messages whose tag is their
// sequence number in that direction, so they match in order whatever the plugin does with equal
// tags. The header makes any call or size mismatch between a send and its receive an error at once (a
// receive expecting more fragments than were sent would otherwise wait for one that never
// comes). Up to `inflight` plugin messages are posted per direction. Plain receives land directly in the sink's buffer; reducing receives land in
// registered staging buffers (one per in-flight fragment) and are reduced from there.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "chorus/net_plugin.h"
#include "transports/shm/process_watch.h"
#include "transports/transport.h"

namespace chorus::net {

// The hello tag: the first message on each new sendComm names the sending rank. Data fragments
// use tags 0 .. kHelloTag - 1, cycling.
constexpr int kHelloTag = CHORUS_NET_MAX_TAG;

struct NetLinkParams {
  size_t chunk = 1 << 20;   // fragment bytes (multiple of 64)
  int inflight = 8;         // fragments posted per direction
  bool regRequired = false; // plugin needs an mhandle for every buffer
};

class NetConnection final : public Connection {
 public:
  // Takes ownership of both comms. `watch` is a pid watch on a same-host peer (or an empty watch).
  NetConnection(int peer, const chorusNet_v1_t& plugin, const std::string& kind, void* sendComm, void* recvComm,
                const NetLinkParams& params, shm::ProcessWatch watch);
  ~NetConnection() override;

  uint64_t doPostSend(const void* buf, size_t bytes, const CallStamp& stamp) override;
  uint64_t postRecv(const RecvSink& sink) override;
  bool progress() override;
  uint64_t sendsCompleted() const override { return sendsDone_; }
  uint64_t recvsCompleted() const override { return recvsDone_; }
  void checkAlive() override;
  void abort() noexcept override;
  const char* kind() const override { return kind_.c_str(); }

 private:
  struct Message {
    const char* send = nullptr;  // send side
    RecvSink sink;               // recv side
    size_t bytes = 0;
    size_t posted = 0;           // bytes whose fragments are posted
    size_t fragsLeft = 0;        // fragments not yet completed
    bool started = false;        // header posted (then data fragments until posted == bytes)
    // What goes on the wire before the fragments (sent, or received for checking).
    struct Header {
      uint64_t bytes = 0;
      CallStamp stamp;
    } header;
    void* mhandle = nullptr;     // registration of the user buffer (regRequired plugins only)
  };
  struct Fragment {
    void* request = nullptr;
    Message* msg = nullptr;
    size_t offset = 0;
    size_t bytes = 0;
    int staging = -1;  // staging buffer index of a reducing receive
    bool header = false;
  };

  bool postFragments(bool send);
  bool testFragments(bool send);
  void checkHeader(const Message& m, size_t size);
  void retire(bool send);
  void markFailed(const std::string& why, int code) noexcept;
  [[noreturn]] void fail(const std::string& why, int code);
  void ensureUsable() const;
  void closeComms() noexcept;

  const chorusNet_v1_t& plugin_;
  std::string kind_;
  void* sendComm_;
  void* recvComm_;
  NetLinkParams params_;
  shm::ProcessWatch watch_;

  std::deque<Message> sends_, recvs_;   // not yet completed, in ticket order
  std::vector<Fragment> sendFrags_, recvFrags_;  // posted, in posting order
  uint64_t sendsPosted_ = 0, recvsPosted_ = 0, sendsDone_ = 0, recvsDone_ = 0;
  uint32_t sendTag_ = 0, recvTag_ = 0;

  std::vector<char> staging_;            // inflight * chunk bytes
  std::vector<int> freeStaging_;
  void* stagingMr_ = nullptr;

  bool failed_ = false;
  int failCode_ = 0;
  std::string failWhy_;
};

}  // namespace chorus::net
