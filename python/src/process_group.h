// ProcessGroupChorus: torch.distributed's process-group interface (c10d::ProcessGroup of
// PyTorch 1.13) over one Chorus communicator.
//
// Construction is the rendezvous: rank 0 creates a Chorus unique id and publishes it in the
// Store that init_process_group / new_group hands the backend; the others read it there, and
// all join one communicator whose deadline is the group's timeout (chorusCommInitRankConfig).
// Every call checks its arguments at once (a clear RuntimeError, nothing queued), then queues
// one Chorus call (collectives.cpp has the mapping of each operation) on the group's OpQueue
// and returns its Work.
#pragma once

#include <chorus/chorus.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "op_queue.h"
#include "work.h"

namespace chorus_torch {

class ProcessGroupChorus : public c10d::ProcessGroup {
 public:
  ProcessGroupChorus(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, std::chrono::milliseconds timeout);
  // Runs what is queued, then frees the communicator (aborts it if a call failed).
  ~ProcessGroupChorus() override;

  const std::string getBackendName() const override { return "chorus"; }

  // Runs what every live group has queued and stops their runner threads (idempotent; later
  // calls run on the threads that wait for them). Called at interpreter exit (atexit in
  // chorus_torch/__init__.py), before Python finalizes: a runner still inside a future callback
  // then would be killed trying to take the GIL, and take the process down with it.
  static void shutdownAll();
  std::chrono::milliseconds timeout() const { return timeout_; }

  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& tensors, const c10d::BroadcastOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors, const c10d::AllreduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allreduce_coalesced(std::vector<at::Tensor>& tensors,
                                                     const c10d::AllreduceCoalescedOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce(std::vector<at::Tensor>& tensors, const c10d::ReduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
                                           const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                 const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather_coalesced(std::vector<std::vector<at::Tensor>>& outputLists,
                                                     std::vector<at::Tensor>& inputs,
                                                     const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> gather(std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
                                        const c10d::GatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> scatter(std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
                                         const c10d::ScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce_scatter(std::vector<at::Tensor>& outputs,
                                                std::vector<std::vector<at::Tensor>>& inputs,
                                                const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                      const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> alltoall_base(at::Tensor& output, at::Tensor& input, std::vector<int64_t>& outputSplits,
                                               std::vector<int64_t>& inputSplits,
                                               const c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> alltoall(std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
                                          const c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> send(std::vector<at::Tensor>& tensors, int dstRank, int tag) override;
  c10::intrusive_ptr<c10d::Work> recv(std::vector<at::Tensor>& tensors, int srcRank, int tag) override;
  c10::intrusive_ptr<c10d::Work> recvAnysource(std::vector<at::Tensor>& tensors, int tag) override;
  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions& opts) override;

  // torch's coalescing (batch_isend_irecv): the calls in between run as one Chorus group.
  void startCoalescing() override;
  void endCoalescing(std::vector<c10::intrusive_ptr<c10d::Work>>& reqs) override;

  // The number of calls issued on this group since the last reset (same on every rank).
  void setSequenceNumberForGroup() override;
  uint64_t getSequenceNumberForGroup() override;

 private:
  enum class Kind { Collective, PointToPoint };
  // Queues one call (or adds it to the open coalescing block) and returns its Work. `issue`
  // makes the Chorus call(s); `finish` runs after success (copies staged outputs back).
  c10::intrusive_ptr<c10d::Work> submit(c10d::OpType type, Kind kind, std::vector<at::Tensor> outputs,
                                        std::function<void()> issue, std::function<void()> finish = nullptr,
                                        bool grouped = false);
  // Throws the library's error text as a RuntimeError if r failed.
  void check(chorusResult_t r, const char* what) const { OpQueue::check(r, comm_, what); }
  void checkRoot(int64_t root, const char* opName) const;
  void checkPeer(int peer, const char* opName) const;
  // A call's reduction operator: a plain one, or a PreMulSum created on this communicator for
  // the call's dtype, which `owner` destroys when the last copy goes (plain ops allocate nothing).
  struct CallOp {
    chorusRedOp_t value;
    std::shared_ptr<void> owner;
  };
  CallOp reductionOp(const c10d::ReduceOp& op, at::ScalarType type);

  chorusComm_t comm_ = nullptr;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<OpQueue> queue_;
  std::mutex mu_;  // guards the coalescing state and the sequence number
  bool coalescing_ = false;
  Batch coalesced_;
  uint64_t seqNum_ = 0;
};

}  // namespace chorus_torch
