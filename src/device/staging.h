// Device buffers through pinned host staging, pipelined in slices (docs/DEVICES.md).
//
// A StagedCall is one call's staging on one rank. When it is created (when the call is issued,
// so at the call's place in its device stream's order) it enqueues on the call's device stream
// (a stream bound with chorusStreamCreateFromDevice, else the communicator's own "in" stream):
//   - an event marking where the call sits in that stream (bound streams only);
//   - the device-to-host copies of the input, slice by slice, each followed by an event;
//   - a wait for the call's done word (bound streams only): work queued after the call runs
//     after it.
// When the schedule starts (start(), from the executor's gate), it knows which step writes
// which output slice last, and enqueues on the communicator's "out" stream, in the order the
// slices will be finished: a wait for the call's event (bound streams), then per slice a wait
// for that slice's word and its host-to-device copy, then an end event.
// The executor runs the schedule on the host copies with the StagedCall as its gate
// (exec/executor.h): a step touches a staged byte only once the event of its slice copied in has
// passed; when the last step writing into an output slice finishes, the slice's word is set and
// the out stream copies it back while the collective goes on. finish() waits for the end event
// and sets the done word. A failed or abandoned call sets every word (no device stream may wait
// forever), and its result is then undefined, as a failed collective's is.
//
// Where the input and output are one buffer (in place), one host block mirrors the larger and
// the smaller is the same place inside it; the slices copied in then also gate writes (a step may
// not write a byte before the copy in of its slice has landed). Host-side buffers of a mixed call
// are used as they are.
#pragma once

#include <chorus/device_plugin.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "exec/executor.h"

namespace chorus {

class StagedCall {
 public:
  // One rank's buffers of one call. A side of 0 bytes is not staged; in place means `in` and
  // `out` are the same allocation with the smaller at aliasOffset bytes inside the larger
  // (outputInsideInput says which is larger).
  struct Layout {
    const void* in = nullptr;
    size_t inBytes = 0;
    bool inDevice = false;
    void* out = nullptr;
    size_t outBytes = 0;
    bool outDevice = false;
    bool inPlace = false;
    bool outputInsideInput = false;
    size_t aliasOffset = 0;
    // The call leaves some output bytes alone (the gaps between a V form's blocks): the output
    // is copied in too, so that the copy back returns those bytes unchanged.
    bool prefillOutput = false;
  };
  // Takes staging memory and enqueues the copies in on inStream (see above); `bound`: inStream is
  // the caller's, to be held until the call is done. The copies out go on outStream. sliceBytes
  // 0: chosen from the size (about eight slices per call, 256 KiB to 4 MiB each).
  StagedCall(const chorusDevice_v1_t* plugin, const Layout& layout, void* inStream, bool bound, void* outStream,
             size_t sliceBytes);
  ~StagedCall();  // abandons an unfinished call, waits for its copies, returns the memory
  StagedCall(const StagedCall&) = delete;
  StagedCall& operator=(const StagedCall&) = delete;

  // Where the schedule reads and writes this call's Input and Output.
  void* hostInput() const { return hostIn_; }
  void* hostOutput() const { return hostOut_; }

  // Blocks until the whole input has arrived (for work done before the schedule runs: the
  // PreMulSum scaling), by deadline.
  void waitInput(double timeoutSec);
  // The executor's side (ExecGate, through StagingGate).
  void expectWrite(const void* p, size_t n);
  void start();
  bool ready(const void* p, size_t n);
  void written(const void* p, size_t n);
  bool contains(const void* p) const;
  // Sets every word not yet set (failure, or a call that never ran).
  void abandon();
  // Waits (by deadline; abortFlag ends it too) until the device stream has passed the end
  // event: the results are in device memory. Throws chorusTimeout on the deadline.
  void finish(double timeoutSec, const std::atomic<bool>* abortFlag);

 private:
  struct Copy {
    char* host = nullptr;  // host side of the range (inside the block)
    char* dev = nullptr;   // device side
    size_t bytes = 0;
  };
  size_t slicesOf(const Copy& c) const { return c.bytes ? (c.bytes + slice_ - 1) / slice_ : 0; }
  void enqueueIn(const Copy& c);
  void enqueueOut();  // start(): the copies out, in the order the slices will be finished
  bool passed(void* event);
  void waitPassed(void* event, double timeoutSec, const std::atomic<bool>* abortFlag, const char* what);
  void setWord(uint64_t* w) { __atomic_store_n(w, 1, __ATOMIC_RELEASE); }
  // Slice range of c overlapping [p, p + n): false when none.
  bool overlap(const Copy& c, const void* p, size_t n, size_t* first, size_t* last) const;
  bool inputArrived(size_t slice);
  void release(size_t slice);

  const chorusDevice_v1_t* plugin_;
  void* inStream_;
  void* outStream_;
  bool bound_;
  size_t slice_ = 0;
  void* block_ = nullptr;  // pinned: the host copies, then the output words
  size_t blockBytes_ = 0;
  char* blockData_ = nullptr;
  size_t dataBytes_ = 0;
  uint64_t* words_ = nullptr;  // one per output slice, then the done word
  void* hostIn_ = nullptr;
  void* hostOut_ = nullptr;
  Copy d2h_[2], h2d_;  // copies in: the input, and the output where it is prefilled
  size_t d2hFirst_[2] = {0, 0};  // index in inEvents_ of each copy's first slice
  std::vector<void*> inEvents_;
  size_t inArrived_ = 0;  // slices copied in whose event has passed (they pass in order)
  std::vector<uint32_t> pending_;    // per output slice: writing steps not yet finished
  std::vector<uint32_t> lastWriter_;  // per output slice: order of the last step writing it
  uint32_t writes_ = 0;               // expectWrite calls so far
  void* callEvent_ = nullptr;         // bound: the call's place in the caller's stream
  void* releaseEvent_ = nullptr;      // bound: after the caller's stream's wait for the done word
  void* endEvent_ = nullptr;          // after the last copy out (null until start())
  bool finished_ = false;
};

// The executor's gate over the staged calls of one run (a group has several).
class StagingGate final : public ExecGate {
 public:
  void add(StagedCall* call) { calls_.push_back(call); }
  bool empty() const { return calls_.empty(); }
  void clear() { calls_.clear(); }
  void expectWrite(const void* p, size_t n) override;
  void start() override;
  bool ready(const void* p, size_t n) override;
  void written(const void* p, size_t n) override;

 private:
  StagedCall* owner(const void* p) const;
  std::vector<StagedCall*> calls_;
};

}  // namespace chorus
