#include "transports/shm/shm_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "base/error.h"

namespace chorus::shm {
namespace {

constexpr size_t kPage = 4096;

size_t roundUp(size_t x, size_t to) { return (x + to - 1) / to * to; }

size_t slotHeadersOffset() { return sizeof(SegmentHeader); }
size_t payloadOffset(uint32_t numSlots) { return roundUp(slotHeadersOffset() + numSlots * sizeof(SlotHeader), kPage); }

// Closes an fd on scope exit.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

size_t Segment::mappedBytes(uint32_t numSlots, size_t ringBytes) { return payloadOffset(numSlots) + ringBytes; }

namespace {

// The geometry a segment may have (also checked when opening a peer's segment).
bool validGeometry(size_t maxFragment, uint32_t numSlots, size_t ringBytes) {
  return maxFragment >= 64 && maxFragment % 64 == 0 && ringBytes >= maxFragment && ringBytes % 64 == 0 && ringBytes <= (1u << 30) &&
         numSlots >= 2 && numSlots <= 1024;
}

}  // namespace

void Segment::setGeometry(uint32_t numSlots, size_t maxFragment, size_t ringBytes) {
  numSlots_ = numSlots;
  maxFragment_ = maxFragment;
  ringBytes_ = ringBytes;
  payload_ = static_cast<char*>(base_) + payloadOffset(numSlots);
}

void Segment::mapFd(int fd, size_t bytes) {
  // Not MAP_POPULATE: the pages are reserved (posix_fallocate in create), and a process maps
  // them as it touches them. Populating made every channel's whole FIFO (2 MiB by default)
  // resident in both processes at once: 12 MiB of an 18 MiB rank at np 8 running 8-byte
  // all-reduces, growing with the peers a rank has. The price is a page fault per 4 KiB the
  // first time a slot's bytes are used, once per channel.
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) CHORUS_THROW_ERRNO("shm: mmap of %s (%zu bytes)", name_.c_str(), bytes);
  base_ = p;
  bytes_ = bytes;
  header_ = static_cast<SegmentHeader*>(p);
  slots_ = reinterpret_cast<SlotHeader*>(static_cast<char*>(p) + slotHeadersOffset());
}

std::unique_ptr<Segment> Segment::create(const std::string& name, const SegmentIdentity& id, size_t maxFragment,
                                         uint32_t numSlots, size_t ringBytes) {
  CHORUS_CHECK_ARG(validGeometry(maxFragment, numSlots, ringBytes),
                   "shm: geometry of %u slots, %zu-byte fragments and a %zu-byte ring: slots must be in 2..1024, fragment and "
                   "ring sizes multiples of 64 with 64 <= fragment <= ring <= 1 GiB",
                   numSlots, maxFragment, ringBytes);
  std::unique_ptr<Segment> seg(new Segment());
  seg->name_ = name;
  int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) CHORUS_THROW_ERRNO("shm: cannot create segment %s", name.c_str());
  FdGuard guard{fd};
  seg->linked_ = true;  // from here on the destructor unlinks it if anything fails
  size_t bytes = mappedBytes(numSlots, ringBytes);
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) CHORUS_THROW_ERRNO("shm: ftruncate of %s to %zu bytes", name.c_str(), bytes);
  // Reserve the pages now: on a full tmpfs this fails with ENOSPC instead of a SIGBUS later.
  if (int err = posix_fallocate(fd, 0, static_cast<off_t>(bytes)); err != 0) {
    errno = err;
    CHORUS_THROW_ERRNO("shm: cannot reserve %zu bytes for %s (is /dev/shm large enough? containers: --shm-size)", bytes,
                       name.c_str());
  }
  seg->mapFd(fd, bytes);
  SegmentHeader* h = new (seg->base_) SegmentHeader();
  h->magic = kSegmentMagic;
  h->version = kSegmentVersion;
  h->numSlots = numSlots;
  h->maxFragment = static_cast<uint32_t>(maxFragment);
  h->ringBytes = static_cast<uint32_t>(ringBytes);
  h->commId = id.commId;
  h->secret[0] = id.secret[0];
  h->secret[1] = id.secret[1];
  h->nonce = id.nonce;
  h->from = id.from;
  h->to = id.to;
  for (uint32_t i = 0; i < numSlots; ++i) new (seg->slots_ + i) SlotHeader();
  seg->setGeometry(numSlots, maxFragment, ringBytes);
  return seg;
}

std::unique_ptr<Segment> Segment::open(const std::string& name, const SegmentIdentity& id) {
  std::unique_ptr<Segment> seg(new Segment());
  seg->name_ = name;
  int fd = shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0 && errno == ENOENT)  // announced but gone: the creator removed it when it gave up
    CHORUS_THROW(chorusRemoteError, "shm: segment %s no longer exists: rank %d, its creator, failed or died", name.c_str(),
                 id.to);
  if (fd < 0) CHORUS_THROW_ERRNO("shm: cannot open segment %s", name.c_str());
  FdGuard guard{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) CHORUS_THROW_ERRNO("shm: fstat of %s", name.c_str());
  size_t size = static_cast<size_t>(st.st_size);
  if (size < payloadOffset(2)) CHORUS_THROW(chorusInternalError, "shm: segment %s is too small (%zu bytes)", name.c_str(), size);
  seg->mapFd(fd, size);
  const SegmentHeader* h = seg->header_;
  bool same = h->magic == kSegmentMagic && h->version == kSegmentVersion && h->commId == id.commId &&
              h->secret[0] == id.secret[0] && h->secret[1] == id.secret[1] && h->nonce == id.nonce &&
              h->from == id.from && h->to == id.to;
  if (!same)
    CHORUS_THROW(chorusInternalError,
                 "shm: segment %s does not belong to this communicator and rank pair %d -> %d (identity check failed)",
                 name.c_str(), id.from, id.to);
  const uint32_t numSlots = h->numSlots;
  const size_t maxFragment = h->maxFragment, ringBytes = h->ringBytes;
  if (!validGeometry(maxFragment, numSlots, ringBytes) || mappedBytes(numSlots, ringBytes) != size)
    CHORUS_THROW(chorusInternalError,
                 "shm: segment %s has an inconsistent geometry (%u slots, %zu-byte fragments, %zu-byte ring, %zu mapped)",
                 name.c_str(), numSlots, maxFragment, ringBytes, size);
  seg->setGeometry(numSlots, maxFragment, ringBytes);
  return seg;
}

void Segment::unlink() noexcept {
  if (!linked_) return;
  shm_unlink(name_.c_str());
  linked_ = false;
}

Segment::~Segment() {
  unlink();
  if (base_) munmap(base_, bytes_);
}

}  // namespace chorus::shm
