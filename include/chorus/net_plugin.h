/* Chorus network plugin ABI, version 1 (frozen).
 *
 * A network plugin moves bytes between two processes over some fabric (InfiniBand, RoCE, EFA,
 * Slingshot, Ethernet...). Chorus loads one with dlopen from CHORUS_NET_PLUGIN: a path to a
 * shared object, or a name X meaning "libchorus-net-X.so" found on the library search path. The
 * object exports one symbol, `chorusNetPlugin_v1`, of type chorusNet_v1_t. Chorus's own UCX and
 * libfabric transports are written against this same ABI (transports/ucx, transports/ofi) and are
 * also built as libchorus-net-ucx.so and libchorus-net-ofi.so.
 *
 * This header is plain C and needs nothing but <stddef.h> and <stdint.h>: a plugin does not link
 * against libchorus. Version 1 is frozen: its struct layouts, function signatures and semantics
 * never change. A later version is a new struct (chorusNet_v2_t) under a new symbol; Chorus may
 * look for several versions, newest first.
 *
 * Model (one plugin instance per process, shared by every communicator):
 *   init -> devices -> getProperties(dev)
 *   receiver: listen(dev) -> handle (opaque bytes, sent to the peer by Chorus out of band)
 *   sender:   connect(dev, handle) -> sendComm;  receiver: accept(listenComm) -> recvComm
 *   sendComm carries messages one way, from the connecting process to the accepting one.
 *   isend(sendComm) / irecv(recvComm) post messages; test(request) polls them.
 *
 * Rules every function follows:
 *   - Returns chorusNetSuccess or an error code below. It never blocks for the network: calls that
 *     need the peer (connect, accept, isend, irecv) return at once and say "not yet" through
 *     their out-parameter (NULL comm / NULL request); Chorus calls again later. Chorus enforces
 *     all deadlines; a plugin has no timeouts of its own beyond what its fabric imposes.
 *   - Progress happens only inside calls (test, connect, accept, isend, irecv): Chorus polls.
 *     A plugin may use helper threads, but need not.
 *   - Matching: a message posted with isend(tag) on a sendComm matches an irecv with the same tag
 *     on the recvComm accepted from it; several messages with the same tag match in posting
 *     order. Tags are in [0, CHORUS_NET_MAX_TAG]; tags of different comms never mix.
 *   - A receive buffer larger than the message is allowed: test() reports the size received.
 *     A message larger than its receive buffer is an error (chorusNetInternalError).
 *   - Zero-byte messages are allowed (data may then be NULL).
 *   - A peer that dies, closes, or whose link fails makes every pending and later request on the
 *     comms to it fail with chorusNetRemoteError (from test, isend or irecv) - never hang.
 *   - Thread safety: Chorus calls one comm from one thread at a time; different comms (and
 *     listen/accept) may be called from different threads concurrently.
 */
#ifndef CHORUS_NET_PLUGIN_H_
#define CHORUS_NET_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CHORUS_NET_PLUGIN_ABI_VERSION 1
/* Size of the opaque connection handle listen() fills in and connect() reads. */
#define CHORUS_NET_HANDLE_MAXSIZE 128
#define CHORUS_NET_MAX_TAG 0x7fffffff
#define CHORUS_NET_NAME_MAXSIZE 64
#define CHORUS_NET_PCI_PATH_MAXSIZE 256

/* Result codes (numerically equal to the matching chorusResult_t values of chorus.h). */
typedef enum {
  chorusNetSuccess = 0,
  chorusNetSystemError = 1,     /* an OS or fabric-library call failed */
  chorusNetInternalError = 2,   /* a bug or protocol violation (e.g. truncated message) */
  chorusNetInvalidArgument = 3, /* a bad argument (NULL pointer, bad device, bad tag) */
  chorusNetInvalidUsage = 4,    /* a call not valid now (not initialised, unsupported) */
  chorusNetRemoteError = 5      /* the peer died, closed, or its link failed */
} chorusNetResult_t;

/* Memory kinds for regMr. Version 1 knows host memory only. */
#define CHORUS_NET_PTR_HOST 0x1

typedef struct {
  char name[CHORUS_NET_NAME_MAXSIZE];        /* device name, e.g. "mlx5_0:1", "lo", "tcp;ofi_rxm:eth0" */
  char pciPath[CHORUS_NET_PCI_PATH_MAXSIZE]; /* sysfs PCI path of the NIC, "" when none (loopback, shm) */
  int32_t numaNode;                          /* NUMA node of the NIC, -1 when unknown */
  int32_t speedMbps;                         /* link speed per direction, Mbit/s; 0 when unknown */
  float latencyUs;                           /* one small message's one-way latency, microseconds; 0 when unknown */
  int32_t maxInflight;                       /* most requests in flight per comm and direction (>= 1) */
  size_t maxMessageBytes;                    /* largest message one isend may carry (>= 1 MiB) */
  int32_t ptrSupport;                        /* CHORUS_NET_PTR_* bits regMr accepts */
  int32_t regRequired;                       /* 1: isend/irecv need an mhandle from regMr (NULL not allowed) */
  uint64_t guid;                             /* a stable id of the device (0 when none) */
} chorusNetProperties_v1_t;

/* Log sink Chorus gives the plugin at init: level 0 error, 1 warning, 2 info, 3 trace. It routes
 * the text into Chorus's own log (CHORUS_DEBUG), tagged NET. May be called from any thread. */
typedef void (*chorusNetLogger_v1_t)(int level, const char* file, int line, const char* fmt, ...);

typedef struct {
  /* Plugin name, e.g. "ucx", "ofi". Chorus names the transport after it. */
  const char* name;
  /* Must be CHORUS_NET_PLUGIN_ABI_VERSION (1); Chorus refuses any other value. */
  uint32_t abiVersion;

  /* Initialise the plugin. Called once per process before anything else; a second call returns
   * chorusNetSuccess without doing anything. On failure the plugin is unusable and Chorus reports
   * why (through the logger). */
  chorusNetResult_t (*init)(chorusNetLogger_v1_t logger);
  /* Number of devices (>= 1 on success). */
  chorusNetResult_t (*devices)(int* ndev);
  chorusNetResult_t (*getProperties)(int dev, chorusNetProperties_v1_t* props);

  /* Open a listener on dev. Fills handle (up to CHORUS_NET_HANDLE_MAXSIZE bytes, no pointers:
   * it travels to another process) and returns the listen comm. */
  chorusNetResult_t (*listen)(int dev, void* handle, void** listenComm);
  /* Start or continue connecting to the listener described by handle. *sendComm stays NULL until
   * the connection is usable; Chorus calls again with the same handle until it is not NULL.
   * Several connects to one handle give several independent sendComms. */
  chorusNetResult_t (*connect)(int dev, const void* handle, void** sendComm);
  /* Take the next incoming connection, if any: *recvComm is NULL when none is ready yet. */
  chorusNetResult_t (*accept)(void* listenComm, void** recvComm);

  /* Register memory [data, data + size) of kind type for comm (a send or recv comm). When
   * properties.regRequired is 0, Chorus may pass mhandle NULL to isend/irecv and the plugin
   * registers (and caches) on its own if its fabric needs it. */
  chorusNetResult_t (*regMr)(void* comm, void* data, size_t size, int type, void** mhandle);
  chorusNetResult_t (*deregMr)(void* comm, void* mhandle);

  /* Post a message. *request is NULL when the plugin cannot take it now (queue full): post again
   * later. The buffer must stay untouched until test() reports the request done. */
  chorusNetResult_t (*isend)(void* sendComm, const void* data, size_t size, int tag, void* mhandle, void** request);
  chorusNetResult_t (*irecv)(void* recvComm, void* data, size_t size, int tag, void* mhandle, void** request);
  /* Poll a request: *done becomes 1 when it finished; then *size (may be NULL) holds the bytes
   * sent or received and the request is freed (do not test it again). An error also frees it. */
  chorusNetResult_t (*test)(void* request, int* done, size_t* size);

  /* Close comms. Pending requests on them are abandoned (their buffers may be reused once close
   * returns). Closing a comm makes the peer's requests on its side fail with
   * chorusNetRemoteError. */
  chorusNetResult_t (*closeSend)(void* sendComm);
  chorusNetResult_t (*closeRecv)(void* recvComm);
  chorusNetResult_t (*closeListen)(void* listenComm);
} chorusNet_v1_t;

/* The symbol a plugin exports: `extern const chorusNet_v1_t chorusNetPlugin_v1;` */
#define CHORUS_NET_PLUGIN_SYMBOL_V1 "chorusNetPlugin_v1"

#ifdef __cplusplus
}
#endif

#endif /* CHORUS_NET_PLUGIN_H_ */
