// Every environment knob Chorus reads, in one place, with its default. docs/ENV.md lists the
// same knobs for users; keep the two in step. A Config is read once per communicator at init.
#pragma once

#include <cstddef>
#include <string>

namespace chorus {

struct Config {
  // CHORUS_TIMEOUT: seconds any single wait may take before it becomes chorusTimeout.
  double timeoutSec = 300.0;
  // CHORUS_DIAG_TIMEOUT: seconds the hang report (and a dead neighbour's cause) may take to
  // gather; 0 = half of CHORUS_TIMEOUT, within [1, 5].
  double diagTimeoutSec = 0;
  // CHORUS_DIAG_SIGNAL: a signal (USR1, USR2, or a number) that prints every communicator's
  // hang report; 0 = none.
  int diagSignal = 0;
  // CHORUS_SHRINK_TIMEOUT: how long chorusCommShrink's coordinator waits for the survivors to
  // join before it leaves out the ranks that have not.
  double shrinkTimeoutSec = 10;
  // The diagnosis deadline in effect (CHORUS_DIAG_TIMEOUT or its default).
  double diagSeconds() const;
  // How often a rank asks a stalled or running-ahead call's peers how far they are
  // (core/peer_probe.h): an eighth of CHORUS_TIMEOUT, within [0.1, 1] s.
  double probeSeconds() const;
  // CHORUS_SPIN: whether waits spin ~2 us before they yield: "auto" (spin unless this host runs
  // more ranks of the communicator than it has CPUs), "1" (always), "0" (never). See Backoff.
  std::string spin = "auto";
  // CHORUS_TRANSPORT: "" (choose per peer pair, see CHORUS_TRANSPORT_MAP), or one transport for
  // every pair: "shm", "tcp", "ucx", "ofi", "plugin".
  std::string transport;
  // CHORUS_TRANSPORT_MAP: per pair class, transports in order of preference, e.g.
  // "local=shm,rack=tcp,network=ucx|tcp" (src/core/transport_select.h; docs/ENV.md).
  std::string transportMap;
  // CHORUS_NET_PLUGIN: the network plugin to load (a path, or X for libchorus-net-X.so); "" = none.
  std::string netPlugin;
  // CHORUS_NET_CHUNK: fragment size of messages on network-plugin transports (ucx, ofi, plugin).
  size_t netChunkBytes = 1024 * 1024;
  // CHORUS_NET_INFLIGHT: fragments in flight per direction and connection on those transports.
  int netInflight = 8;
  // CHORUS_SOCKET_IFNAME: interface (prefix) whose address bootstrap and TCP use; "" = auto.
  std::string socketIfname;
  // CHORUS_TCP_NSOCKS: TCP streams per peer pair.
  int tcpNumSockets = 2;
  // CHORUS_TCP_CHUNK: bytes per striped chunk on TCP.
  size_t tcpChunkBytes = 512 * 1024;
  // The eager FIFO of each shm channel (transports/shm/shm_segment.h): CHORUS_SHM_SLOT_BYTES,
  // the largest fragment; CHORUS_SHM_NSLOTS, fragments (messages) in flight; CHORUS_SHM_FIFO_BYTES,
  // the payload ring they share, each fragment taking what it needs.
  size_t shmSlotBytes = 256 * 1024;
  int shmNumSlots = 64;
  size_t shmFifoBytes = 2 * 1024 * 1024;
  // CHORUS_SHM_CMA: 1 = messages >= CHORUS_SHM_CMA_THRESHOLD move with one copy by
  // cross-memory attach (process_vm_readv); 0 = always through the FIFO; auto (default) = on
  // when the CPU advertises fast string copies (erms/fsrm), which the kernel's copy needs to
  // beat two user-space memcpys (measured: docs/PERFORMANCE.md).
  bool shmUseCma = false;
  size_t shmCmaThreshold = 1024 * 1024;
  // Single copy for the messages of calls whose receives never reduce (broadcast, all-gather,
  // alltoall, gather, scatter, send/recv: CallStamp's kStampCopyOnly), from
  // CHORUS_SHM_CMA_COPY_THRESHOLD: the receiver's one kernel copy beats the FIFO's two even where
  // the kernel copies slowly, as a reduction's does not (docs/PERFORMANCE.md). On unless
  // CHORUS_SHM_CMA=0.
  bool shmCmaCopies = true;
  size_t shmCmaCopyThreshold = 128 * 1024;
  // Whether any message may move by single copy (the transport probes for it at connect time).
  bool shmCmaAllowed() const { return shmUseCma || shmCmaCopies; }
  // CHORUS_SLICE_BYTES: pipelining slice of the ring algorithm.
  size_t sliceBytes = 256 * 1024;
  // CHORUS_DEVICE_SLICE: the unit in which device buffers are staged through host memory
  // (device/staging.h); 0 (default) chooses by size.
  size_t deviceSliceBytes = 0;
  // CHORUS_ALGO: tune string forcing algorithms per collective and size (docs/TUNING.md).
  std::string algoTune;
  // CHORUS_TUNE_LATENCY_US / CHORUS_TUNE_BANDWIDTH_GBPS: override the link class the
  // transports declare for the tuner's model (0 = use the transport's).
  double tuneLatencyUs = 0;
  double tuneBandwidthGBps = 0;
  // CHORUS_CLUSTER_FILE: the cluster description file (src/topology/cluster_file.h); "" = none.
  std::string clusterFile;
  // CHORUS_HOSTID: overrides the host identity used to decide which ranks share a host.
  std::string hostId;

  // Whether the kernel's user copies are fast here (x86 erms or fsrm in /proc/cpuinfo).
  static bool cpuHasFastStringCopy();
  // Reads the environment. Malformed values throw chorusInvalidArgument naming the variable.
  static Config fromEnv();
};

// Environment helpers (throw chorusInvalidArgument on malformed values).
std::string envString(const char* name, const std::string& dflt);
long long envInt(const char* name, long long dflt);
double envDouble(const char* name, double dflt);
// Accepts plain numbers and K/M/G suffixes (powers of 1024).
size_t envBytes(const char* name, size_t dflt);

}  // namespace chorus
