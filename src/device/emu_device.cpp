// The "emu" device plugin: an accelerator emulated in the host process, strict enough that a
// data path which forgets a staging copy crashes and one that forgets a wait reads stale data.
//
// - Device memory is an address range the host cannot touch: memAlloc reserves a PROT_NONE
//   mapping and hands out its address, while the bytes live in a second, private mapping that
//   only the copy engine reaches (address + (engine base - device base)). Any host load or store
//   through a device pointer is SIGSEGV.
// - Every stream is a worker thread running its operations in order. A copy first waits
//   CHORUS_EMU_COPY_DELAY_US microseconds (default 50, like a DMA's start-up; 0 makes the engine
//   exactly memcpy), then copies; so a reader that does not wait for the copy's event sees the old
//   bytes.
// - CHORUS_EMU_DEVICES devices (default 1); a pointer's device is the one it was allocated on.
// docs/DEVICES.md describes it with the rest of the device support.
#include "device/emu_device.h"

#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "base/config.h"
#include "exec/reduce.h"

namespace chorus {
namespace {

struct Range {
  size_t bytes = 0;
  char* engine = nullptr;  // device memory: where the bytes really are; pinned: null
  int device = 0;
  size_t mapped = 0;       // length of both mappings
};

// Every allocation, by base address, for pointerQuery and the engine's address translation.
struct Registry {
  std::shared_mutex mutex;
  std::map<uintptr_t, Range> ranges;

  // The allocation holding p (its base and range); false when none does.
  bool find(const void* p, uintptr_t* base, Range* out) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    std::shared_lock<std::shared_mutex> lock(mutex);
    auto it = ranges.upper_bound(a);
    if (it == ranges.begin()) return false;
    --it;
    size_t span = it->second.bytes ? it->second.bytes : 1;
    if (a - it->first >= span) return false;
    *base = it->first;
    *out = it->second;
    return true;
  }
};

Registry& registry() {
  static Registry* r = new Registry;  // outlives every static destructor that might free memory
  return *r;
}

int numDevices() {
  static const int n = static_cast<int>(std::max<size_t>(1, envBytes("CHORUS_EMU_DEVICES", 1)));
  return n;
}
std::chrono::microseconds copyDelay() {
  static const auto d = std::chrono::microseconds(envBytes("CHORUS_EMU_COPY_DELAY_US", 50));
  return d;
}

// Where `p` lives for `n` bytes: Host (the engine uses the pointer itself), Device (*engine: the
// engine mapping's address), or Overrun (it starts in device memory and runs past the
// allocation). One registry lookup.
enum class Where { Host, Device, Overrun };
Where locate(const void* p, size_t n, char** engine) {
  uintptr_t base;
  Range r;
  if (!registry().find(p, &base, &r) || !r.engine) {
    *engine = const_cast<char*>(static_cast<const char*>(p));
    return Where::Host;
  }
  const size_t at = reinterpret_cast<uintptr_t>(p) - base;
  if (n > r.bytes - at) return Where::Overrun;
  *engine = r.engine + at;
  return Where::Device;
}

struct Event {
  std::atomic<uint64_t> recorded{0};   // generation of the latest record
  std::atomic<uint64_t> completed{0};  // generation the stream has passed
};

struct Op {
  enum Kind { Copy, Wait, Record, WaitEvent, Reduce } kind;
  char* dst = nullptr;
  const char* src = nullptr;
  size_t bytes = 0;
  const volatile uint64_t* word = nullptr;
  uint64_t value = 0;
  Event* event = nullptr;
  ReduceFn reduce = nullptr;
  size_t count = 0;
};

// The engine's copy. From 1 MiB up it stores around the CPU caches, as a DMA engine does not
// fill them: glibc's memcpy keeps slices below its own threshold (tens of MiB here) in the cache,
// and at 4 MiB that made a copy 64 MiB through twice as slow as one memcpy of it (11 vs 6 ms);
// streaming stores take 8.5 ms.
void engineCopy(char* d, const char* s, size_t n) {
#if defined(__x86_64__)
  if (n >= (1u << 20) && (d + n <= s || s + n <= d)) {
    size_t head = (64 - (reinterpret_cast<uintptr_t>(d) & 63)) & 63;
    std::memcpy(d, s, head);
    d += head;
    s += head;
    n -= head;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
      __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
      __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
      __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
      __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), a);
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
    }
    _mm_sfence();
    std::memcpy(d + i, s + i, n - i);
    return;
  }
#endif
  std::memmove(d, s, n);
}

// Polls a condition with sleeps that grow to 50 us (the engine's waits are on the host).
template <typename F>
void pollUntil(F done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins < 64) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(spins < 256 ? 5 : 50));
  }
}

class Stream {
 public:
  explicit Stream(int device) : device_(device), worker_([this] { loop(); }) {}
  ~Stream() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    worker_.join();
  }
  void push(const Op& op) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ops_.push_back(op);
    }
    cv_.notify_one();
  }
  int device() const { return device_; }

 private:
  void loop() {
    for (;;) {
      Op op;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || !ops_.empty(); });
        if (ops_.empty()) return;  // stop_ and drained
        op = ops_.front();
        ops_.pop_front();
      }
      switch (op.kind) {
        case Op::Copy:
          if (copyDelay().count() > 0) std::this_thread::sleep_for(copyDelay());
          if (op.bytes) engineCopy(op.dst, op.src, op.bytes);
          break;
        case Op::Wait:
          pollUntil([&] { return __atomic_load_n(const_cast<const uint64_t*>(op.word), __ATOMIC_ACQUIRE) >= op.value; });
          break;
        case Op::Record:
          op.event->completed.store(op.value, std::memory_order_release);
          break;
        case Op::WaitEvent:
          pollUntil([&] { return op.event->completed.load(std::memory_order_acquire) >= op.value; });
          break;
        case Op::Reduce:
          op.reduce(op.dst, op.dst, op.src, op.count);
          break;
      }
    }
  }

  const int device_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Op> ops_;
  bool stop_ = false;
  std::thread worker_;  // last: starts once the rest is built
};

chorusDevResult_t emuInit(int* ndevices) {
  if (!ndevices) return chorusDevInvalidArgument;
  *ndevices = numDevices();
  return chorusDevSuccess;
}

chorusDevResult_t emuPointerQuery(const void* ptr, chorusDevMemKind_t* kind, int* device) {
  if (!kind) return chorusDevInvalidArgument;
  uintptr_t base;
  Range r;
  if (!ptr || !registry().find(ptr, &base, &r)) {
    *kind = chorusDevMemHost;
    if (device) *device = -1;
    return chorusDevSuccess;
  }
  *kind = r.engine ? chorusDevMemDevice : chorusDevMemPinned;
  if (device) *device = r.engine ? r.device : -1;
  return chorusDevSuccess;
}

size_t pageRound(size_t bytes) {
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (std::max<size_t>(bytes, 1) + page - 1) / page * page;
}

chorusDevResult_t emuMemAlloc(int device, size_t bytes, void** ptr) {
  if (!ptr || device < 0 || device >= numDevices() || bytes > (size_t{1} << 46)) return chorusDevInvalidArgument;
  size_t len = pageRound(bytes);
  // The address the host sees: reserved, never accessible.
  void* user = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (user == MAP_FAILED) return chorusDevSystemError;
  void* engine = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (engine == MAP_FAILED) {
    munmap(user, len);
    return chorusDevSystemError;
  }
  std::unique_lock<std::shared_mutex> lock(registry().mutex);
  registry().ranges[reinterpret_cast<uintptr_t>(user)] = Range{bytes, static_cast<char*>(engine), device, len};
  *ptr = user;
  return chorusDevSuccess;
}

chorusDevResult_t emuHostAlloc(size_t bytes, void** ptr) {
  if (!ptr || bytes > (size_t{1} << 46)) return chorusDevInvalidArgument;
  size_t len = pageRound(bytes);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return chorusDevSystemError;
  std::unique_lock<std::shared_mutex> lock(registry().mutex);
  registry().ranges[reinterpret_cast<uintptr_t>(p)] = Range{bytes, nullptr, -1, len};
  *ptr = p;
  return chorusDevSuccess;
}

// Frees an allocation of the given kind (device: engine != null) starting exactly at ptr.
chorusDevResult_t freeRange(void* ptr, bool device) {
  if (!ptr) return chorusDevSuccess;
  Range r;
  {
    std::unique_lock<std::shared_mutex> lock(registry().mutex);
    auto it = registry().ranges.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == registry().ranges.end() || (it->second.engine != nullptr) != device) return chorusDevInvalidArgument;
    r = it->second;
    registry().ranges.erase(it);
  }
  munmap(ptr, r.mapped);
  if (r.engine) munmap(r.engine, r.mapped);
  return chorusDevSuccess;
}
chorusDevResult_t emuMemFree(void* ptr) { return freeRange(ptr, true); }
chorusDevResult_t emuHostFree(void* ptr) { return freeRange(ptr, false); }

chorusDevResult_t emuStreamCreate(int device, void** stream) {
  if (!stream || device < 0 || device >= numDevices()) return chorusDevInvalidArgument;
  try {
    *stream = new Stream(device);
  } catch (...) {
    return chorusDevSystemError;
  }
  return chorusDevSuccess;
}
chorusDevResult_t emuStreamDestroy(void* stream) {
  if (!stream) return chorusDevInvalidArgument;
  delete static_cast<Stream*>(stream);  // runs what is queued first
  return chorusDevSuccess;
}

chorusDevResult_t emuCopyAsync(void* dst, const void* src, size_t bytes, void* stream) {
  if (!stream || (bytes && (!dst || !src))) return chorusDevInvalidArgument;
  Op op{Op::Copy};
  char* d;
  char* s;
  if (locate(dst, bytes, &d) == Where::Overrun || locate(src, bytes, &s) == Where::Overrun) return chorusDevInvalidArgument;
  op.dst = d;
  op.src = s;
  op.bytes = bytes;
  static_cast<Stream*>(stream)->push(op);
  return chorusDevSuccess;
}

chorusDevResult_t emuWaitValue(void* stream, const volatile uint64_t* word, uint64_t value) {
  if (!stream || !word || reinterpret_cast<uintptr_t>(word) % 8) return chorusDevInvalidArgument;
  Op op{Op::Wait};
  op.word = word;
  op.value = value;
  static_cast<Stream*>(stream)->push(op);
  return chorusDevSuccess;
}

chorusDevResult_t emuEventCreate(void** event) {
  if (!event) return chorusDevInvalidArgument;
  *event = new Event;
  return chorusDevSuccess;
}
chorusDevResult_t emuEventDestroy(void* event) {
  delete static_cast<Event*>(event);
  return chorusDevSuccess;
}
chorusDevResult_t emuEventRecord(void* event, void* stream) {
  if (!event || !stream) return chorusDevInvalidArgument;
  Event* e = static_cast<Event*>(event);
  Op op{Op::Record};
  op.event = e;
  op.value = e->recorded.fetch_add(1) + 1;
  static_cast<Stream*>(stream)->push(op);
  return chorusDevSuccess;
}
chorusDevResult_t emuEventQuery(void* event, int* done) {
  if (!event || !done) return chorusDevInvalidArgument;
  const Event* e = static_cast<const Event*>(event);
  *done = e->completed.load(std::memory_order_acquire) >= e->recorded.load(std::memory_order_acquire);
  return chorusDevSuccess;
}
chorusDevResult_t emuEventSynchronize(void* event) {
  if (!event) return chorusDevInvalidArgument;
  const Event* e = static_cast<const Event*>(event);
  uint64_t target = e->recorded.load(std::memory_order_acquire);
  pollUntil([&] { return e->completed.load(std::memory_order_acquire) >= target; });
  return chorusDevSuccess;
}
chorusDevResult_t emuStreamWaitEvent(void* stream, void* event) {
  if (!stream || !event) return chorusDevInvalidArgument;
  Op op{Op::WaitEvent};
  op.event = static_cast<Event*>(event);
  op.value = op.event->recorded.load(std::memory_order_acquire);
  static_cast<Stream*>(stream)->push(op);
  return chorusDevSuccess;
}

chorusDevResult_t emuReduce(void* dst, const void* src, size_t count, int datatype, int op, void* stream) {
  if (!stream || (count && (!dst || !src))) return chorusDevInvalidArgument;
  size_t es = dataTypeSize(static_cast<chorusDataType_t>(datatype));
  if (es == 0 || op < 0 || op >= chorusAvg) return chorusDevInvalidUsage;
  Op o{Op::Reduce};
  char* d;
  char* s;
  // Both operands must be device memory, as the ABI says.
  if (locate(dst, count * es, &d) != Where::Device || locate(src, count * es, &s) != Where::Device) return chorusDevInvalidArgument;
  o.dst = d;
  o.src = s;
  o.count = count;
  o.reduce = reduceFunction(static_cast<chorusDataType_t>(datatype), static_cast<chorusRedOp_t>(op));
  static_cast<Stream*>(stream)->push(o);
  return chorusDevSuccess;
}

const chorusDevice_v1_t kEmu = {
    CHORUS_DEVICE_PLUGIN_ABI_VERSION, "emu",         emuInit,        emuPointerQuery, emuMemAlloc,    emuMemFree,         emuHostAlloc,
    emuHostFree,   emuStreamCreate, emuStreamDestroy, emuCopyAsync, emuWaitValue,       emuEventCreate,
    emuEventDestroy, emuEventRecord, emuEventQuery,  emuEventSynchronize, emuStreamWaitEvent, emuReduce,
};

}  // namespace

const chorusDevice_v1_t* emuDevicePlugin() { return &kEmu; }

}  // namespace chorus
