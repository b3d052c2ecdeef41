#include "process_group.h"

#include <pybind11/pybind11.h>

#include <c10/util/Exception.h>
#include <cstdlib>
#include <cstring>
#include <set>

#include "torch_types.h"

namespace chorus_torch {

namespace {

// The Store key under which rank 0 publishes the communicator's unique id. The Store that
// torch hands a backend is already prefixed per process group.
constexpr const char* kUniqueIdKey = "chorus/unique_id";

// Every live group, for shutdownAll().
std::mutex gLiveMutex;
std::set<ProcessGroupChorus*> gLive;

std::chrono::microseconds envMicros(const char* name, long long dflt) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::chrono::microseconds(dflt);
  char* end = nullptr;
  long long x = std::strtoll(v, &end, 10);
  TORCH_CHECK(end && *end == '\0' && x >= 0 && x <= 1000000, "chorus backend: ", name, "=\"", v,
              "\" must be a whole number of microseconds in [0, 1000000]");
  return std::chrono::microseconds(x);
}

}  // namespace

ProcessGroupChorus::ProcessGroupChorus(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                       std::chrono::milliseconds timeout)
    : c10d::ProcessGroup(rank, size), timeout_(timeout) {
  TORCH_CHECK(store, "chorus backend: no Store to rendezvous through");
  TORCH_CHECK(timeout.count() > 0, "chorus backend: the process group's timeout must be positive");
  // Read the knobs first: a malformed one fails before any rank waits on another.
  const auto workerDelay = envMicros("CHORUS_TORCH_WORKER_DELAY_US", 50);
  const auto p2pWindow = envMicros("CHORUS_TORCH_P2P_WINDOW_US", 200);
  chorusUniqueId id;
  if (rank == 0) {
    OpQueue::check(chorusGetUniqueId(&id), nullptr, "chorusGetUniqueId");
    const auto* bytes = reinterpret_cast<const uint8_t*>(id.internal);
    store->set(kUniqueIdKey, std::vector<uint8_t>(bytes, bytes + sizeof(id.internal)));
  } else {
    std::vector<uint8_t> bytes = store->get(kUniqueIdKey);  // waits up to the Store's timeout
    TORCH_CHECK(bytes.size() == sizeof(id.internal), "chorus backend: the Store's unique id has ", bytes.size(),
                " bytes, expected ", sizeof(id.internal), " (another program using the same key?)");
    std::memcpy(id.internal, bytes.data(), sizeof(id.internal));
  }
  chorusConfig_t config = CHORUS_CONFIG_INITIALIZER;
  config.timeoutSec = std::chrono::duration<double>(timeout).count();
  OpQueue::check(chorusCommInitRankConfig(&comm_, size, id, rank, &config), nullptr, "chorusCommInitRankConfig");
  if (rank == 0) {
    // Every rank read the id before it could join, so the key can go (a later group that
    // reuses this Store and prefix must not find a stale id).
    try {
      store->deleteKey(kUniqueIdKey);
    } catch (const std::exception&) {
      // Stores without deleteKey keep it; ids are single-use, so a stale one fails loudly.
    }
  }
  queue_ = std::make_shared<OpQueue>(comm_, workerDelay, p2pWindow);
  std::lock_guard<std::mutex> g(gLiveMutex);
  gLive.insert(this);
}

void ProcessGroupChorus::shutdownAll() {
  std::vector<std::shared_ptr<OpQueue>> queues;
  {
    std::lock_guard<std::mutex> g(gLiveMutex);
    for (ProcessGroupChorus* pg : gLive) queues.push_back(pg->queue_);
  }
  for (auto& q : queues) q->shutdown();
  OpQueue::joinOrphans();  // runners of groups whose last reference went inside a callback
}

ProcessGroupChorus::~ProcessGroupChorus() {
  {
    std::lock_guard<std::mutex> g(gLiveMutex);
    gLive.erase(this);
  }
  // Queued calls may complete futures whose callbacks are Python code: let them take the GIL.
  std::unique_ptr<pybind11::gil_scoped_release> nogil;
  if (Py_IsInitialized() && PyGILState_Check()) nogil = std::make_unique<pybind11::gil_scoped_release>();
  try {
    queue_->shutdown();
  } catch (const std::exception&) {
  }
  // Destroy, not abort, also after a failed call: it is prompt either way (no call is pending),
  // and an abort would fail peers that are still finishing the last call with us.
  chorusCommDestroy(comm_);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupChorus::submit(c10d::OpType type, Kind kind, std::vector<at::Tensor> outputs,
                                                          std::function<void()> issue, std::function<void()> finish,
                                                          bool grouped) {
  auto work = c10::make_intrusive<ChorusWork>(queue_, rank_, type, std::move(outputs));
  QueuedOp op{std::move(issue), std::move(finish), work};
  std::unique_lock<std::mutex> g(mu_);
  ++seqNum_;
  if (coalescing_) {
    coalesced_.ops.push_back(std::move(op));
    coalesced_.pointToPoint = coalesced_.pointToPoint && kind == Kind::PointToPoint;
    return work;
  }
  g.unlock();
  Batch batch;
  batch.ops.push_back(std::move(op));
  batch.pointToPoint = kind == Kind::PointToPoint;
  batch.grouped = grouped;
  queue_->enqueue(std::move(batch));
  return work;
}

void ProcessGroupChorus::startCoalescing() {
  std::lock_guard<std::mutex> g(mu_);
  TORCH_CHECK(!coalescing_, "chorus backend: a coalescing block is already open on this group");
  coalescing_ = true;
  coalesced_ = Batch();
  coalesced_.pointToPoint = true;  // until a collective joins
  coalesced_.grouped = true;
}

void ProcessGroupChorus::endCoalescing(std::vector<c10::intrusive_ptr<c10d::Work>>& /*reqs*/) {
  Batch batch;
  {
    std::lock_guard<std::mutex> g(mu_);
    TORCH_CHECK(coalescing_, "chorus backend: endCoalescing without startCoalescing");
    coalescing_ = false;
    batch = std::move(coalesced_);
    coalesced_ = Batch();
  }
  if (batch.ops.empty()) return;
  // One Chorus group, which never deadlocks on its own sends and receives; it is not merged
  // with neighbouring point-to-point calls (it is complete as the user wrote it).
  batch.pointToPoint = false;
  queue_->enqueue(std::move(batch));
}

void ProcessGroupChorus::setSequenceNumberForGroup() {
  std::lock_guard<std::mutex> g(mu_);
  seqNum_ = 0;
}

uint64_t ProcessGroupChorus::getSequenceNumberForGroup() {
  std::lock_guard<std::mutex> g(mu_);
  return seqNum_;
}

void ProcessGroupChorus::checkRoot(int64_t root, const char* opName) const {
  TORCH_CHECK(root >= 0 && root < size_, "chorus backend: ", opName, " root ", root, " is out of range [0, ", size_, ")");
}

void ProcessGroupChorus::checkPeer(int peer, const char* opName) const {
  TORCH_CHECK(peer >= 0 && peer < size_, "chorus backend: ", opName, " peer ", peer, " is out of range [0, ", size_, ")");
}

ProcessGroupChorus::CallOp ProcessGroupChorus::reductionOp(const c10d::ReduceOp& op, at::ScalarType type) {
  bool premul = false;
  double factor = 0;
  chorusRedOp_t plain = toChorusOp(op, type, &premul, &factor);
  if (!premul) return {plain, nullptr};
  // The factor in the call's dtype, read by Chorus when the operator is created.
  at::Tensor scalar = at::full({1}, factor, at::TensorOptions().dtype(type));
  chorusRedOp_t made;
  check(chorusRedOpCreatePreMulSum(&made, scalar.data_ptr(), reductionType(type), chorusScalarHostImmediate, comm_),
        "chorusRedOpCreatePreMulSum");
  chorusComm_t comm = comm_;
  return {made, std::shared_ptr<void>(nullptr, [comm, made](void*) { chorusRedOpDestroy(made, comm); })};
}

}  // namespace chorus_torch
