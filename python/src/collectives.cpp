// Each torch.distributed operation as Chorus calls. The checks run on the calling thread
// (a wrong call raises at once and queues nothing); the lambdas run later, in issue order,
// on whichever thread runs the group's queue. They hold the tensors they use.
//
// Buffers: Chorus reads and writes flat buffers, so strided tensors are staged (staging.h),
// and list arguments (one tensor per rank) go through one packed buffer where Chorus's call
// takes one (all-gather, gather, scatter, reduce-scatter), or through a group of sends and
// receives where each tensor can be used as it is (all-to-all of a list).
#include <c10/util/Exception.h>

#include "process_group.h"
#include "staging.h"
#include "torch_types.h"

namespace chorus_torch {

namespace {

// The packed buffer of a per-rank list: `n` blocks of `block` elements of `like`'s dtype.
at::Tensor packedBuffer(const at::Tensor& like, int n, int64_t block) {
  return at::empty({n * block}, like.options().memory_format(at::MemoryFormat::Contiguous));
}

// A list of per-rank tensors that must all match `ref` in dtype and element count.
void checkBlocks(const std::vector<at::Tensor>& list, const at::Tensor& ref, int n, const char* what) {
  TORCH_CHECK(static_cast<int>(list.size()) == n, "chorus backend: ", what, " must hold ", n,
              " tensors (one per rank), got ", list.size());
  for (const auto& t : list) {
    checkTensor(t, what);
    TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "chorus backend: ", what, " mixes dtypes (",
                c10::toString(ref.scalar_type()), " and ", c10::toString(t.scalar_type()), ")");
    TORCH_CHECK(t.numel() == ref.numel(), "chorus backend: ", what, " holds a tensor of ", t.numel(),
                " elements where ", ref.numel(), " are expected");
  }
}

// Copies block i of `packed` into list[i] (shapes from the list).
void unpack(const at::Tensor& packed, const std::vector<at::Tensor>& list) {
  int64_t off = 0;
  for (const auto& t : list) {
    t.copy_(packed.narrow(0, off, t.numel()).view(t.sizes()));
    off += t.numel();
  }
}

void pack(const std::vector<at::Tensor>& list, const at::Tensor& packed) {
  int64_t off = 0;
  for (const auto& t : list) {
    packed.narrow(0, off, t.numel()).view(t.sizes()).copy_(t);
    off += t.numel();
  }
}

// Element counts and displacements (in Chorus elements) of an all-to-all-v side: split sizes
// along dim 0 (empty = equal), each row holding `row` torch elements.
void splitLayout(const at::Tensor& t, const std::vector<int64_t>& splits, int n, size_t per,
                 std::vector<size_t>* counts, std::vector<size_t>* displs, const char* what) {
  counts->assign(n, 0);
  displs->assign(n, 0);
  const int64_t rows = t.dim() == 0 ? 1 : t.size(0);
  const int64_t row = rows == 0 ? 0 : t.numel() / rows;
  if (splits.empty()) {
    TORCH_CHECK(rows % n == 0, "chorus backend: all_to_all_single ", what, " has ", rows,
                " rows along dim 0, which do not split evenly over ", n, " ranks; pass split sizes");
  } else {
    TORCH_CHECK(static_cast<int>(splits.size()) == n, "chorus backend: all_to_all_single ", what, " split sizes have ",
                splits.size(), " entries for ", n, " ranks");
  }
  int64_t at = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t r = splits.empty() ? rows / n : splits[i];
    TORCH_CHECK(r >= 0, "chorus backend: all_to_all_single ", what, " split size ", r, " is negative");
    (*counts)[i] = static_cast<size_t>(r * row) * per;
    (*displs)[i] = static_cast<size_t>(at * row) * per;
    at += r;
  }
  TORCH_CHECK(at == rows, "chorus backend: all_to_all_single ", what, " split sizes add up to ", at, " rows, but the tensor has ",
              rows);
}

}  // namespace

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::broadcast(std::vector<at::Tensor>& tensors,
                                                             const c10d::BroadcastOptions& opts) {
  checkSingle(tensors, "broadcast");
  checkRoot(opts.rootRank, "broadcast");
  TORCH_CHECK(opts.rootTensor == 0, "chorus backend: broadcast takes one tensor per process (rootTensor must be 0)");
  const Staged s = Staged::inout(tensors[0]);
  const Movement m = movementType(s.flat.scalar_type());
  const int root = static_cast<int>(opts.rootRank);
  return submit(c10d::OpType::BROADCAST, Kind::Collective, tensors,
                [this, s, m, root] {
                  check(chorusBroadcast(s.data(), s.data(), s.numel() * m.elementsPer, m.type, root, comm_, nullptr),
                        "broadcast");
                },
                [s] { s.copyBack(); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::allreduce(std::vector<at::Tensor>& tensors,
                                                             const c10d::AllreduceOptions& opts) {
  checkSingle(tensors, "allreduce");
  const Staged s = Staged::inout(tensors[0]);
  const chorusDataType_t type = reductionType(s.flat.scalar_type());
  auto op = reductionOp(opts.reduceOp, s.flat.scalar_type());
  return submit(c10d::OpType::ALLREDUCE, Kind::Collective, tensors,
                [this, s, type, op] {
                  check(chorusAllReduce(s.data(), s.data(), s.numel(), type, op.value, comm_, nullptr), "allreduce");
                },
                [s] { s.copyBack(); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::allreduce_coalesced(std::vector<at::Tensor>& tensors,
                                                                       const c10d::AllreduceCoalescedOptions& opts) {
  TORCH_CHECK(!tensors.empty(), "chorus backend: allreduce_coalesced needs at least one tensor");
  std::vector<Staged> staged;
  std::vector<chorusDataType_t> types;
  std::vector<CallOp> ops;
  for (const auto& t : tensors) {
    checkTensor(t, "allreduce_coalesced tensor");
    staged.push_back(Staged::inout(t));
    types.push_back(reductionType(t.scalar_type()));
    ops.push_back(reductionOp(opts.reduceOp, t.scalar_type()));
  }
  // One Chorus group: the all-reduces are issued together as one merged operation.
  return submit(
      c10d::OpType::ALLREDUCE_COALESCED, Kind::Collective, tensors,
      [this, staged, types, ops] {
        for (size_t i = 0; i < staged.size(); ++i)
          check(chorusAllReduce(staged[i].data(), staged[i].data(), staged[i].numel(), types[i], ops[i].value, comm_, nullptr),
                "allreduce_coalesced");
      },
      [staged] {
        for (const auto& s : staged) s.copyBack();
      },
      /*grouped=*/true);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::reduce(std::vector<at::Tensor>& tensors, const c10d::ReduceOptions& opts) {
  checkSingle(tensors, "reduce");
  checkRoot(opts.rootRank, "reduce");
  TORCH_CHECK(opts.rootTensor == 0, "chorus backend: reduce takes one tensor per process (rootTensor must be 0)");
  const Staged s = Staged::inout(tensors[0]);
  const chorusDataType_t type = reductionType(s.flat.scalar_type());
  auto op = reductionOp(opts.reduceOp, s.flat.scalar_type());
  const int root = static_cast<int>(opts.rootRank);
  const bool isRoot = root == rank_;
  return submit(c10d::OpType::REDUCE, Kind::Collective, tensors,
                [this, s, type, op, root, isRoot] {
                  check(chorusReduce(s.data(), isRoot ? s.data() : nullptr, s.numel(), type, op.value, root, comm_, nullptr),
                        "reduce");
                },
                [s, isRoot] {
                  if (isRoot) s.copyBack();
                });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                                             std::vector<at::Tensor>& inputs,
                                                             const c10d::AllgatherOptions& /*opts*/) {
  checkSingle(inputs, "allgather");
  TORCH_CHECK(outputs.size() == 1, "chorus backend: allgather takes one output list per process (got ", outputs.size(), ")");
  checkBlocks(outputs[0], inputs[0], size_, "allgather output list");
  const Staged in = Staged::input(inputs[0]);
  const Movement m = movementType(in.flat.scalar_type());
  at::Tensor packed = packedBuffer(in.flat, size_, in.flat.numel());
  std::vector<at::Tensor> outs = outputs[0];
  return submit(c10d::OpType::ALLGATHER, Kind::Collective, outs,
                [this, in, m, packed] {
                  check(chorusAllGather(in.data(), packed.data_ptr(), in.numel() * m.elementsPer, m.type, comm_, nullptr),
                        "allgather");
                },
                [packed, outs] { unpack(packed, outs); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::_allgather_base(at::Tensor& output, at::Tensor& input,
                                                                   const c10d::AllgatherOptions& /*opts*/) {
  checkTensor(input, "_allgather_base input");
  checkTensor(output, "_allgather_base output");
  TORCH_CHECK(output.scalar_type() == input.scalar_type(), "chorus backend: _allgather_base output dtype ",
              c10::toString(output.scalar_type()), " differs from the input's ", c10::toString(input.scalar_type()));
  TORCH_CHECK(output.numel() == input.numel() * size_, "chorus backend: _allgather_base output has ", output.numel(),
              " elements, expected world size x input = ", input.numel() * size_);
  const Staged in = Staged::input(input);
  const Staged out = Staged::output(output);
  const Movement m = movementType(input.scalar_type());
  return submit(c10d::OpType::_ALLGATHER_BASE, Kind::Collective, {output},
                [this, in, out, m] {
                  check(chorusAllGather(in.data(), out.data(), in.numel() * m.elementsPer, m.type, comm_, nullptr),
                        "_allgather_base");
                },
                [out] { out.copyBack(); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::allgather_coalesced(std::vector<std::vector<at::Tensor>>& outputLists,
                                                                       std::vector<at::Tensor>& inputs,
                                                                       const c10d::AllgatherOptions& /*opts*/) {
  // outputLists[i][j] receives rank i's inputs[j] (torch's all_gather_coalesced layout).
  TORCH_CHECK(static_cast<int>(outputLists.size()) == size_, "chorus backend: allgather_coalesced needs ", size_,
              " output lists (one per rank), got ", outputLists.size());
  std::vector<Staged> ins;
  std::vector<at::Tensor> packed;
  std::vector<std::vector<at::Tensor>> byInput(inputs.size());
  for (size_t j = 0; j < inputs.size(); ++j) {
    checkTensor(inputs[j], "allgather_coalesced input");
    for (int i = 0; i < size_; ++i) {
      TORCH_CHECK(outputLists[i].size() == inputs.size(), "chorus backend: allgather_coalesced output list ", i, " has ",
                  outputLists[i].size(), " tensors for ", inputs.size(), " inputs");
      byInput[j].push_back(outputLists[i][j]);
    }
    checkBlocks(byInput[j], inputs[j], size_, "allgather_coalesced output");
    ins.push_back(Staged::input(inputs[j]));
    packed.push_back(packedBuffer(ins.back().flat, size_, inputs[j].numel()));
  }
  std::vector<at::Tensor> flatOutputs;
  for (const auto& l : outputLists) flatOutputs.insert(flatOutputs.end(), l.begin(), l.end());
  return submit(
      c10d::OpType::ALLGATHER_COALESCED, Kind::Collective, flatOutputs,
      [this, ins, packed] {
        for (size_t j = 0; j < ins.size(); ++j) {
          const Movement m = movementType(ins[j].flat.scalar_type());
          check(chorusAllGather(ins[j].data(), packed[j].data_ptr(), ins[j].numel() * m.elementsPer, m.type, comm_, nullptr),
                "allgather_coalesced");
        }
      },
      [packed, byInput] {
        for (size_t j = 0; j < packed.size(); ++j) unpack(packed[j], byInput[j]);
      },
      /*grouped=*/true);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::gather(std::vector<std::vector<at::Tensor>>& outputs,
                                                          std::vector<at::Tensor>& inputs, const c10d::GatherOptions& opts) {
  checkSingle(inputs, "gather");
  checkRoot(opts.rootRank, "gather");
  const int root = static_cast<int>(opts.rootRank);
  const bool isRoot = root == rank_;
  std::vector<at::Tensor> outs;
  if (isRoot) {
    TORCH_CHECK(outputs.size() == 1, "chorus backend: gather takes one output list on the root (got ", outputs.size(), ")");
    checkBlocks(outputs[0], inputs[0], size_, "gather output list");
    outs = outputs[0];
  } else {
    TORCH_CHECK(outputs.empty() || (outputs.size() == 1 && outputs[0].empty()),
                "chorus backend: gather takes output tensors on the root only");
  }
  const Staged in = Staged::input(inputs[0]);
  const Movement m = movementType(in.flat.scalar_type());
  at::Tensor packed = isRoot ? packedBuffer(in.flat, size_, in.flat.numel()) : at::Tensor();
  return submit(c10d::OpType::GATHER, Kind::Collective, outs,
                [this, in, m, packed, root, isRoot] {
                  check(chorusGather(in.data(), isRoot ? packed.data_ptr() : nullptr, in.numel() * m.elementsPer, m.type,
                                     root, comm_, nullptr),
                        "gather");
                },
                [packed, outs, isRoot] {
                  if (isRoot) unpack(packed, outs);
                });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::scatter(std::vector<at::Tensor>& outputs,
                                                           std::vector<std::vector<at::Tensor>>& inputs,
                                                           const c10d::ScatterOptions& opts) {
  checkSingle(outputs, "scatter");
  checkRoot(opts.rootRank, "scatter");
  const int root = static_cast<int>(opts.rootRank);
  const bool isRoot = root == rank_;
  std::vector<at::Tensor> ins;
  if (isRoot) {
    TORCH_CHECK(inputs.size() == 1, "chorus backend: scatter takes one input list on the root (got ", inputs.size(), ")");
    checkBlocks(inputs[0], outputs[0], size_, "scatter input list");
    ins = inputs[0];
  } else {
    TORCH_CHECK(inputs.empty() || (inputs.size() == 1 && inputs[0].empty()),
                "chorus backend: scatter takes input tensors on the root only");
  }
  const Staged out = Staged::output(outputs[0]);
  const Movement m = movementType(out.flat.scalar_type());
  at::Tensor packed = isRoot ? packedBuffer(out.flat, size_, out.flat.numel()) : at::Tensor();
  return submit(c10d::OpType::SCATTER, Kind::Collective, outputs,
                [this, out, m, packed, ins, root, isRoot] {
                  if (isRoot) pack(ins, packed);  // read when the call runs, as the other backends do
                  check(chorusScatter(isRoot ? packed.data_ptr() : nullptr, out.data(), out.numel() * m.elementsPer, m.type,
                                      root, comm_, nullptr),
                        "scatter");
                },
                [out] { out.copyBack(); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::reduce_scatter(std::vector<at::Tensor>& outputs,
                                                                  std::vector<std::vector<at::Tensor>>& inputs,
                                                                  const c10d::ReduceScatterOptions& opts) {
  checkSingle(outputs, "reduce_scatter");
  TORCH_CHECK(inputs.size() == 1, "chorus backend: reduce_scatter takes one input list per process (got ", inputs.size(), ")");
  checkBlocks(inputs[0], outputs[0], size_, "reduce_scatter input list");
  const Staged out = Staged::output(outputs[0]);
  const chorusDataType_t type = reductionType(out.flat.scalar_type());
  auto op = reductionOp(opts.reduceOp, out.flat.scalar_type());
  at::Tensor packed = packedBuffer(out.flat, size_, out.flat.numel());
  std::vector<at::Tensor> ins = inputs[0];
  return submit(c10d::OpType::REDUCE_SCATTER, Kind::Collective, outputs,
                [this, out, type, op, packed, ins] {
                  pack(ins, packed);
                  check(chorusReduceScatter(packed.data_ptr(), out.data(), out.numel(), type, op.value, comm_, nullptr),
                        "reduce_scatter");
                },
                [out] { out.copyBack(); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::_reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                                        const c10d::ReduceScatterOptions& opts) {
  checkTensor(input, "_reduce_scatter_base input");
  checkTensor(output, "_reduce_scatter_base output");
  TORCH_CHECK(output.scalar_type() == input.scalar_type(), "chorus backend: _reduce_scatter_base output dtype ",
              c10::toString(output.scalar_type()), " differs from the input's ", c10::toString(input.scalar_type()));
  TORCH_CHECK(input.numel() == output.numel() * size_, "chorus backend: _reduce_scatter_base input has ", input.numel(),
              " elements, expected world size x output = ", output.numel() * size_);
  const Staged in = Staged::input(input);
  const Staged out = Staged::output(output);
  const chorusDataType_t type = reductionType(input.scalar_type());
  auto op = reductionOp(opts.reduceOp, input.scalar_type());
  return submit(c10d::OpType::_REDUCE_SCATTER_BASE, Kind::Collective, {output},
                [this, in, out, type, op] {
                  check(chorusReduceScatter(in.data(), out.data(), out.numel(), type, op.value, comm_, nullptr),
                        "_reduce_scatter_base");
                },
                [out] { out.copyBack(); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::alltoall_base(at::Tensor& output, at::Tensor& input,
                                                                 std::vector<int64_t>& outputSplits,
                                                                 std::vector<int64_t>& inputSplits,
                                                                 const c10d::AllToAllOptions& /*opts*/) {
  checkTensor(input, "all_to_all_single input");
  checkTensor(output, "all_to_all_single output");
  TORCH_CHECK(output.scalar_type() == input.scalar_type(), "chorus backend: all_to_all_single output dtype ",
              c10::toString(output.scalar_type()), " differs from the input's ", c10::toString(input.scalar_type()));
  const Staged in = Staged::input(input);
  const Staged out = Staged::output(output);
  const Movement m = movementType(input.scalar_type());
  if (outputSplits.empty() && inputSplits.empty()) {
    TORCH_CHECK(input.numel() == output.numel(), "chorus backend: all_to_all_single input has ", input.numel(),
                " elements and output ", output.numel(), "; without split sizes they must be equal");
    TORCH_CHECK(input.numel() % size_ == 0, "chorus backend: all_to_all_single of ", input.numel(),
                " elements does not split evenly over ", size_, " ranks; pass split sizes");
    const size_t count = static_cast<size_t>(input.numel() / size_) * m.elementsPer;
    return submit(c10d::OpType::ALLTOALL_BASE, Kind::Collective, {output},
                  [this, in, out, m, count] {
                    check(chorusAlltoAll(in.data(), out.data(), count, m.type, comm_, nullptr), "all_to_all_single");
                  },
                  [out] { out.copyBack(); });
  }
  std::vector<size_t> sc, sd, rc, rd;
  splitLayout(input, inputSplits, size_, m.elementsPer, &sc, &sd, "input");
  splitLayout(output, outputSplits, size_, m.elementsPer, &rc, &rd, "output");
  return submit(c10d::OpType::ALLTOALL_BASE, Kind::Collective, {output},
                [this, in, out, m, sc, sd, rc, rd] {
                  check(chorusAlltoAllV(in.data(), sc.data(), sd.data(), out.data(), rc.data(), rd.data(), m.type, comm_,
                                        nullptr),
                        "all_to_all_single");
                },
                [out] { out.copyBack(); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::alltoall(std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
                                                            const c10d::AllToAllOptions& /*opts*/) {
  TORCH_CHECK(static_cast<int>(inputs.size()) == size_ && static_cast<int>(outputs.size()) == size_,
              "chorus backend: all_to_all takes ", size_, " input and ", size_, " output tensors (one per rank), got ",
              inputs.size(), " and ", outputs.size());
  TORCH_CHECK(!inputs.empty(), "chorus backend: all_to_all needs tensors");
  checkSameType(inputs, inputs[0].scalar_type(), "all_to_all input list");
  checkSameType(outputs, inputs[0].scalar_type(), "all_to_all output list");
  std::vector<Staged> ins, outs;
  for (const auto& t : inputs) ins.push_back(Staged::input(t));
  for (const auto& t : outputs) outs.push_back(Staged::output(t));
  const Movement m = movementType(inputs[0].scalar_type());
  // Blocks may differ in size per peer: one group of sends and receives, straight from and into
  // each tensor (Chorus turns the pair to oneself into a copy). Sizes must match pairwise; a
  // mismatch is the library's size-check error.
  return submit(
      c10d::OpType::ALLTOALL, Kind::Collective, outputs,
      [this, ins, outs, m] {
        for (int peer = 0; peer < size_; ++peer) {
          check(chorusSend(ins[peer].data(), ins[peer].numel() * m.elementsPer, m.type, peer, comm_, nullptr), "all_to_all");
          check(chorusRecv(outs[peer].data(), outs[peer].numel() * m.elementsPer, m.type, peer, comm_, nullptr),
                "all_to_all");
        }
      },
      [outs] {
        for (const auto& s : outs) s.copyBack();
      },
      /*grouped=*/true);
}

namespace {
// Chorus matches the messages between two ranks in issue order; a tag that asked for another
// order would be silently ignored, so only the default tag is taken.
void checkTag(int tag, const char* opName) {
  TORCH_CHECK(tag == 0, "chorus backend: ", opName, " with tag ", tag,
              " is not supported: messages between two ranks match in the order they are issued (pass tag=0)");
}
}  // namespace

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::send(std::vector<at::Tensor>& tensors, int dstRank, int tag) {
  checkTag(tag, "send");
  checkSingle(tensors, "send");
  checkPeer(dstRank, "send");
  const Staged s = Staged::input(tensors[0]);
  const Movement m = movementType(s.flat.scalar_type());
  return submit(c10d::OpType::SEND, Kind::PointToPoint, tensors, [this, s, m, dstRank] {
    check(chorusSend(s.data(), s.numel() * m.elementsPer, m.type, dstRank, comm_, nullptr), "send");
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::recv(std::vector<at::Tensor>& tensors, int srcRank, int tag) {
  checkTag(tag, "recv");
  checkSingle(tensors, "recv");
  checkPeer(srcRank, "recv");
  const Staged s = Staged::output(tensors[0]);
  const Movement m = movementType(s.flat.scalar_type());
  return submit(c10d::OpType::RECV, Kind::PointToPoint, tensors,
                [this, s, m, srcRank] {
                  check(chorusRecv(s.data(), s.numel() * m.elementsPer, m.type, srcRank, comm_, nullptr), "recv");
                },
                [s] { s.copyBack(); });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::recvAnysource(std::vector<at::Tensor>& /*tensors*/, int /*tag*/) {
  TORCH_CHECK(false, "chorus backend: receiving from any source is not supported (Chorus matches messages by peer); "
                     "pass src to recv/irecv");
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::barrier(const c10d::BarrierOptions& /*opts*/) {
  return submit(c10d::OpType::BARRIER, Kind::Collective, {},
                [this] { check(chorusBarrier(comm_, nullptr), "barrier"); });
}

}  // namespace chorus_torch
