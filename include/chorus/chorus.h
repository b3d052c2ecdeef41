/*
 * Chorus: collective communication for large, heterogeneous training clusters.
 *
 * A plain C ABI shaped like NCCL's. Every call returns a chorusResult_t; the text of the last
 * failure on a communicator is chorusGetLastError(comm) (chorusGetLastError(NULL) gives the
 * last failure of the calling thread, for calls that failed before a communicator existed).
 *
 * ---------------------------------------------------------------------------------------------
 * Ordering and completion contract
 * ---------------------------------------------------------------------------------------------
 * 1. Every rank of a communicator must issue the same collectives in the same order, with the
 *    same count, datatype and op. Chorus matches calls by their order, not by a tag.
 * 2. A call given a stream is enqueued and may return before any data has moved. Calls on one
 *    stream run one after another, in the order they were enqueued. The send buffer must not be
 *    written and the receive buffer must not be read until the stream is synchronized
 *    (chorusStreamSynchronize) or chorusStreamQuery returns chorusSuccess. A stream holds at
 *    most 1024 waiting calls: a call on a full stream blocks until half of them have started
 *    (as a GPU stream's launch queue does), so calls on several streams must be issued in an
 *    order that the ranks agree on.
 * 3. A call given a NULL stream returns only when its result is in recvbuf (or has failed).
 * 4. Errors of enqueued calls are reported by chorusStreamSynchronize/chorusStreamQuery and by
 *    chorusCommGetAsyncError; once a collective on a communicator failed, the communicator is
 *    broken: destroy or abort it.
 *
 * Correct:
 *     chorusAllReduce(buf, buf, n, chorusFloat32, chorusSum, comm, stream);
 *     chorusStreamSynchronize(stream);      // result is now in buf
 *     use(buf);
 *
 * Incorrect (reads the buffer while the collective may still be running):
 *     chorusAllReduce(buf, buf, n, chorusFloat32, chorusSum, comm, stream);
 *     use(buf);                             // WRONG: may see partial sums
 *     chorusStreamSynchronize(stream);
 *
 * Every wait inside Chorus has a deadline (CHORUS_TIMEOUT, seconds): a dead or stopped peer
 * becomes chorusRemoteError or chorusTimeout on every surviving rank, never a hang.
 *
 * Arguments are checked before anything is sent. A count whose buffer could not fit the
 * address space (2^56 bytes: count x element size, times nranks for the gathered, scattered
 * and all-to-all buffers; displacement + count for each block of the V forms), or a buffer
 * that would wrap past its end, is chorusInvalidArgument naming the product that overflows.
 */
#ifndef CHORUS_CHORUS_H_
#define CHORUS_CHORUS_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CHORUS_MAJOR 0
#define CHORUS_MINOR 1
#define CHORUS_PATCH 0
/** Version as one integer: major * 10000 + minor * 100 + patch. */
#define CHORUS_VERSION_CODE (CHORUS_MAJOR * 10000 + CHORUS_MINOR * 100 + CHORUS_PATCH)

/** Result of every Chorus call. */
typedef enum {
  chorusSuccess = 0,          /**< The call did what it was asked. */
  chorusSystemError = 1,      /**< An operating-system call failed (socket, shm, fork...). */
  chorusInternalError = 2,    /**< A bug in Chorus or a protocol violation. */
  chorusInvalidArgument = 3,  /**< A bad argument: NULL pointer, unknown type, overflow... */
  chorusInvalidUsage = 4,     /**< A call that is not valid now: destroyed comm, mismatch... */
  chorusRemoteError = 5,      /**< A peer failed, died or closed its connection. */
  chorusInProgress = 6,       /**< Not an error: the operation has not finished yet. */
  chorusTimeout = 7,          /**< A wait ran past its deadline (CHORUS_TIMEOUT). */
  chorusNumResults = 8
} chorusResult_t;

/** Element types. fp16/bf16 are reduced through float and rounded to nearest even. */
typedef enum {
  chorusInt8 = 0,
  chorusChar = 0,
  chorusUint8 = 1,
  chorusInt32 = 2,
  chorusInt = 2,
  chorusUint32 = 3,
  chorusInt64 = 4,
  chorusUint64 = 5,
  chorusFloat16 = 6,
  chorusHalf = 6,
  chorusFloat32 = 7,
  chorusFloat = 7,
  chorusFloat64 = 8,
  chorusDouble = 8,
  chorusBfloat16 = 9,
  chorusFloat8e4m3 = 10, /**< OCP fp8 E4M3 (no infinities; 0x7f/0xff are NaN; overflow saturates to +-448), reduced through float */
  chorusFloat8e5m2 = 11, /**< OCP fp8 E5M2 (IEEE-like: overflow gives +-inf), reduced through float */
  chorusNumTypes = 12,
  /* Not types: they make every int a valid value of the enum, so that a bad value passed in
     is reported as chorusInvalidArgument rather than being undefined behaviour in C++. */
  chorusDataTypeMinEnum_ = -0x7fffffff - 1,
  chorusDataTypeMaxEnum_ = 0x7fffffff
} chorusDataType_t;

/**
 * Reduction operators. chorusAvg sums, then divides by the rank count (integer types truncate).
 * Values from chorusNumOps up are operators made by chorusRedOpCreatePreMulSum on one
 * communicator (valid only there).
 */
typedef enum {
  chorusSum = 0,
  chorusProd = 1,
  chorusMax = 2,
  chorusMin = 3,
  chorusAvg = 4,
  chorusNumOps = 5,
  chorusRedOpMinEnum_ = -0x7fffffff - 1, /* not ops: see chorusDataTypeMinEnum_ */
  chorusRedOpMaxEnum_ = 0x7fffffff
} chorusRedOp_t;

#define CHORUS_UNIQUE_ID_BYTES 128
/** Opaque rendezvous token: the root's address and a random secret. Send it to every rank. */
typedef struct {
  char internal[CHORUS_UNIQUE_ID_BYTES];
} chorusUniqueId;

typedef struct chorusComm* chorusComm_t;
typedef struct chorusStream* chorusStream_t;

/** Library version as CHORUS_VERSION_CODE. */
chorusResult_t chorusGetVersion(int* version);

/** Static text for a result code (never NULL). */
const char* chorusGetErrorString(chorusResult_t result);

/**
 * Text of the last error seen on comm (file:line trail included), or "" when there was none.
 * With comm == NULL: the last error of the calling thread. The pointer stays valid until the
 * next Chorus call on that communicator / thread.
 */
const char* chorusGetLastError(chorusComm_t comm);

/**
 * Creates a unique id on the calling process and starts the rendezvous service for one
 * communicator's initialization on it (a background thread that lives until every rank has
 * checked in or CHORUS_TIMEOUT has passed). Call it once per communicator, on one process.
 * Do not fork() that process while the rendezvous is pending (the child would inherit the
 * thread's locks and listening socket): fork first, then create the id, e.g. in rank 0.
 */
chorusResult_t chorusGetUniqueId(chorusUniqueId* uniqueId);

/**
 * Collective over nranks processes/threads: joins the communicator described by id as rank.
 * Blocks until every rank has joined or the deadline passed.
 */
chorusResult_t chorusCommInitRank(chorusComm_t* comm, int nranks, chorusUniqueId id, int rank);

/**
 * Per-communicator settings for chorusCommInitRankConfig (NCCL's ncclConfig_t pattern).
 * Always start from CHORUS_CONFIG_INITIALIZER, then set the fields you want: a field left at
 * its initializer value (CHORUS_CONFIG_UNDEF_*) takes the process-wide default from the
 * environment (docs/ENV.md). Fields may be appended in later versions; `size` and `version`
 * let the library tell which fields a caller's struct has.
 */
typedef struct {
  size_t size;           /**< sizeof(chorusConfig_t) as the caller compiled it (set by the initializer) */
  unsigned int magic;    /**< CHORUS_CONFIG_MAGIC (set by the initializer) */
  unsigned int version;  /**< CHORUS_VERSION_CODE the caller compiled against (set by the initializer) */
  /** Seconds any single wait of this communicator (init, collectives, destroy) may take before it
      fails with chorusTimeout; CHORUS_CONFIG_UNDEF_DOUBLE = CHORUS_TIMEOUT. Inherited by splits. */
  double timeoutSec;
} chorusConfig_t;

#define CHORUS_CONFIG_MAGIC 0xc4042u
#define CHORUS_CONFIG_UNDEF_DOUBLE (-1.0)
#define CHORUS_CONFIG_INITIALIZER \
  { sizeof(chorusConfig_t), CHORUS_CONFIG_MAGIC, CHORUS_VERSION_CODE, CHORUS_CONFIG_UNDEF_DOUBLE }

/**
 * chorusCommInitRank with per-communicator settings. config may be NULL (= the initializer).
 * A config not made from CHORUS_CONFIG_INITIALIZER, or a value out of range, is
 * chorusInvalidArgument naming the field.
 */
chorusResult_t chorusCommInitRankConfig(chorusComm_t* comm, int nranks, chorusUniqueId id, int rank,
                                        const chorusConfig_t* config);

/**
 * Creates ndev ranks in this process, one per thread, and returns their communicators in
 * comms[0..ndev). devlist names the device of each rank and may be NULL (CPU ranks).
 */
chorusResult_t chorusCommInitAll(chorusComm_t* comms, int ndev, const int* devlist);

/**
 * Chorus extension: joins a communicator described by a launcher's environment: Open MPI
 * (OMPI_COMM_WORLD_RANK/SIZE), Slurm (SLURM_PROCID/NTASKS) or torchrun (RANK, WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT). See docs/ENV.md for how the root address and secret are found.
 */
chorusResult_t chorusCommInitFromEnv(chorusComm_t* comm);

/**
 * Waits for the communicator's pending work, then frees it. Inside an open group
 * (chorusGroupStart) that holds a call on comm it is chorusInvalidUsage and changes nothing:
 * call chorusGroupEnd first, or chorusCommAbort to drop those calls. Calls that another thread
 * recorded on comm in its open group are not waited for: that thread's chorusGroupEnd fails
 * for them with chorusInvalidUsage.
 */
chorusResult_t chorusCommDestroy(chorusComm_t comm);

/**
 * Stops all pending work of comm with an error, frees it, and always returns promptly. Calls
 * the calling thread recorded on comm in its open group are dropped (and logged); the group's
 * calls on other communicators still run at chorusGroupEnd. Calls other threads recorded on
 * comm make their chorusGroupEnd fail with chorusInvalidUsage.
 */
chorusResult_t chorusCommAbort(chorusComm_t comm);

/** The first error an enqueued call hit on comm (chorusSuccess when none). */
chorusResult_t chorusCommGetAsyncError(chorusComm_t comm, chorusResult_t* asyncError);

chorusResult_t chorusCommCount(const chorusComm_t comm, int* count);
chorusResult_t chorusCommUserRank(const chorusComm_t comm, int* rank);

/**
 * Reduces count elements of sendbuf across all ranks with op and leaves the result in every
 * rank's recvbuf. In place when sendbuf == recvbuf. Other overlaps are invalid.
 */
chorusResult_t chorusAllReduce(const void* sendbuf, void* recvbuf, size_t count,
                               chorusDataType_t datatype, chorusRedOp_t op, chorusComm_t comm,
                               chorusStream_t stream);

/**
 * Copies root's sendbuf (count elements) into every rank's recvbuf. sendbuf is read on root
 * only (others may pass NULL); in place on root when sendbuf == recvbuf.
 */
chorusResult_t chorusBroadcast(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, int root,
                               chorusComm_t comm, chorusStream_t stream);

/**
 * Reduces count elements across ranks into root's recvbuf. recvbuf is written on root only
 * (others may pass NULL); in place on root when sendbuf == recvbuf.
 */
chorusResult_t chorusReduce(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, chorusRedOp_t op,
                            int root, chorusComm_t comm, chorusStream_t stream);

/**
 * Gathers sendcount elements from every rank into every rank's recvbuf (nranks * sendcount
 * elements, rank r's block at r * sendcount). In place when sendbuf == recvbuf + rank * sendcount.
 */
chorusResult_t chorusAllGather(const void* sendbuf, void* recvbuf, size_t sendcount, chorusDataType_t datatype,
                               chorusComm_t comm, chorusStream_t stream);

/**
 * Reduces nranks * recvcount elements across ranks and leaves block r (recvcount elements at
 * r * recvcount) on rank r. In place when recvbuf == sendbuf + rank * recvcount.
 */
chorusResult_t chorusReduceScatter(const void* sendbuf, void* recvbuf, size_t recvcount, chorusDataType_t datatype,
                                   chorusRedOp_t op, chorusComm_t comm, chorusStream_t stream);

/**
 * Every rank sends block j (count elements at j * count of sendbuf) to rank j; block i of
 * recvbuf (at i * count) comes from rank i. Not in place (sendbuf and recvbuf must not overlap).
 */
chorusResult_t chorusAlltoAll(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, chorusComm_t comm,
                              chorusStream_t stream);

/**
 * Root collects count elements from every rank: rank i's block lands at i * count of root's
 * recvbuf (nranks * count elements; others may pass NULL). In place on root when
 * sendbuf == recvbuf + root * count.
 */
chorusResult_t chorusGather(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, int root,
                            chorusComm_t comm, chorusStream_t stream);

/**
 * Root sends block i (count elements at i * count of its sendbuf) to rank i's recvbuf. sendbuf
 * is read on root only. In place on root when recvbuf == sendbuf + root * count.
 */
chorusResult_t chorusScatter(const void* sendbuf, void* recvbuf, size_t count, chorusDataType_t datatype, int root,
                             chorusComm_t comm, chorusStream_t stream);

/**
 * Chorus extension (no NCCL equivalent). Rank r contributes sendcount == recvcounts[r]
 * elements; every rank receives them at recvbuf + displs[r] (elements). recvcounts and displs
 * have nranks entries and must be the same on every rank; blocks must not overlap. In place
 * when sendbuf == recvbuf + displs[rank].
 */
chorusResult_t chorusAllGatherV(const void* sendbuf, size_t sendcount, void* recvbuf, const size_t* recvcounts,
                                const size_t* displs, chorusDataType_t datatype, chorusComm_t comm, chorusStream_t stream);

/**
 * Chorus extension. Reduces sendbuf across ranks; rank r receives the recvcounts[r] elements
 * of block r, which starts at sendbuf + displs[r] (displs == NULL: blocks packed in rank
 * order). recvcounts/displs must be the same on every rank; blocks must not overlap. In place
 * when recvbuf == sendbuf + displs[rank].
 */
chorusResult_t chorusReduceScatterV(const void* sendbuf, void* recvbuf, const size_t* recvcounts, const size_t* displs,
                                    chorusDataType_t datatype, chorusRedOp_t op, chorusComm_t comm, chorusStream_t stream);

/**
 * Chorus extension. Rank r sends sendcounts[j] elements from sendbuf + sdispls[j] to rank j,
 * and receives recvcounts[i] elements from rank i at recvbuf + rdispls[i]. sendcounts[j] on r
 * must equal recvcounts[r] on j. Not in place.
 */
chorusResult_t chorusAlltoAllV(const void* sendbuf, const size_t* sendcounts, const size_t* sdispls, void* recvbuf,
                               const size_t* recvcounts, const size_t* rdispls, chorusDataType_t datatype, chorusComm_t comm,
                               chorusStream_t stream);

/**
 * Point to point: sends count elements to peer, which must post a matching chorusRecv (same
 * count and datatype). Sends from one rank to one peer match that peer's receives in order.
 * Outside a group, a send may block until the peer receives: pair them with
 * chorusGroupStart/End to avoid a deadlock.
 */
chorusResult_t chorusSend(const void* sendbuf, size_t count, chorusDataType_t datatype, int peer, chorusComm_t comm,
                          chorusStream_t stream);
chorusResult_t chorusRecv(void* recvbuf, size_t count, chorusDataType_t datatype, int peer, chorusComm_t comm,
                          chorusStream_t stream);

/** Chorus extension: returns once every rank of comm has entered the barrier (stream-ordered). */
chorusResult_t chorusBarrier(chorusComm_t comm, chorusStream_t stream);

/**
 * Groups: calls between chorusGroupStart and chorusGroupEnd (per thread; groups nest) are
 * only recorded; chorusGroupEnd issues them together, one merged operation per communicator,
 * so any set of matching sends and receives inside one group completes without deadlock.
 * Argument errors are reported by the call that made them (and the group is then cancelled
 * at chorusGroupEnd with that error: nothing in it is issued). Calls on different communicators
 * in one group run one communicator after another, in the order each communicator was first
 * used; a failure on one does not keep the others from being issued. chorusGroupEnd returns
 * the first error, and each error is also the chorusGetLastError(comm) of the communicator it
 * concerns (a cancelled group's reason: of every communicator in the group).
 *
 * A thread must end its groups before it exits. A thread that exits with calls recorded breaks
 * their communicators: the error (logged, and the next call's chorusInvalidUsage on them) names
 * the dropped calls, and their connections are aborted so that the peers waiting for those
 * calls fail at once instead of at their deadline.
 */
chorusResult_t chorusGroupStart(void);
chorusResult_t chorusGroupEnd(void);

/** chorusCommSplit color meaning "not in any new communicator" (*newcomm becomes NULL). */
#define CHORUS_SPLIT_NOCOLOR (-1)
/**
 * Collective over comm: ranks with the same color form a new communicator, ranked by key
 * (ties by rank in comm). color must be >= 0 or CHORUS_SPLIT_NOCOLOR.
 */
chorusResult_t chorusCommSplit(chorusComm_t comm, int color, int key, chorusComm_t* newcomm);

/**
 * Going on after a failure without restarting the job (modelled on NCCL's ncclCommShrink and
 * MPI ULFM's MPIX_Comm_shrink). Called by every surviving rank of comm - typically after a
 * collective returned chorusRemoteError or chorusTimeout - it agrees with the other survivors,
 * over the ranks' health services (no data transport is trusted), on which ranks are gone: dead
 * ones, ones that do not answer (stopped, cut off), ones that have not called it within
 * CHORUS_SHRINK_TIMEOUT seconds, and the excludeCount ranks of excludeRanks (may be NULL when
 * 0). *newcomm becomes a communicator of the rest, ranked in comm's order. A survivor that dies
 * during the shrink is left out too (the round is retried). comm itself stays broken: destroy
 * it (chorusCommAbort never waits) after the shrink. Returns chorusInvalidUsage on a rank that
 * was left out; chorusRemoteError / chorusTimeout when no survivor could coordinate. Example:
 *   if (chorusAllReduce(...) != chorusSuccess) {
 *     chorusComm_t next;
 *     if (chorusCommShrink(comm, NULL, 0, &next) == chorusSuccess) { chorusCommAbort(comm); comm = next; }
 *   }
 */
chorusResult_t chorusCommShrink(chorusComm_t comm, const int* excludeRanks, int excludeCount, chorusComm_t* newcomm);

/**
 * The cluster-wide hang report of comm, gathered now from every rank's health service (a
 * binomial tree from rank 0, within CHORUS_DIAG_TIMEOUT seconds): one line that names the ranks
 * that are behind and where they are, e.g. "rank 15 (host h3, pid 1234) last finished #41 and
 * has not entered #42; ranks 0-14,16-31 wait in chorusAllReduce #42 (on rank 15)". Ranks that
 * cannot be reached are named as such. The line is copied into report (at most reportBytes
 * bytes including the terminating NUL; report may be NULL) and printed at WARN with one line
 * per group of ranks. Callable from any thread, also while another thread is stuck in a call on
 * comm; no other rank has to call it. The same report is added to every chorusTimeout error, and
 * CHORUS_DIAG_SIGNAL=USR1 prints it when the process gets that signal.
 */
chorusResult_t chorusCommDiagnose(chorusComm_t comm, char* report, size_t reportBytes);

/** Where the scalar of chorusRedOpCreatePreMulSum lives: host memory (read when the op is created). */
typedef enum { chorusScalarDevice = 0, chorusScalarHostImmediate = 1 } chorusScalarResidence_t;
/**
 * Creates a reduction operator on comm: sum of (scalar * input) over ranks. The scalar has the
 * given datatype and is read once, at creation (both residences: CPU ranks have only host
 * memory). The op may be used only with that datatype on that communicator.
 */
chorusResult_t chorusRedOpCreatePreMulSum(chorusRedOp_t* op, void* scalar, chorusDataType_t datatype,
                                          chorusScalarResidence_t residence, chorusComm_t comm);
chorusResult_t chorusRedOpDestroy(chorusRedOp_t op, chorusComm_t comm);

/** A new in-order execution queue (backed by a worker thread). */
chorusResult_t chorusStreamCreate(chorusStream_t* stream);
/**
 * Waits until every call enqueued on stream has finished (running queued calls on the calling
 * thread where it can). Returns the first error any call on this stream ever hit: stream
 * errors are sticky, like the communicator that failed.
 */
chorusResult_t chorusStreamSynchronize(chorusStream_t stream);
/** chorusSuccess when idle, chorusInProgress while work is queued, or the first error. */
chorusResult_t chorusStreamQuery(chorusStream_t stream);
/**
 * Synchronizes, then frees the stream. Inside an open group that holds a call on stream it is
 * chorusInvalidUsage and changes nothing (call chorusGroupEnd first); calls another thread's
 * open group recorded on it make that group's chorusGroupEnd fail with chorusInvalidUsage.
 */
chorusResult_t chorusStreamDestroy(chorusStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Device memory (docs/DEVICES.md; the plugin ABI is include/chorus/device_plugin.h)
 * ---------------------------------------------------------------------------------------------
 * With a device plugin loaded (CHORUS_DEVICE_PLUGIN: cuda, emu, or a plugin's path; "auto", the
 * default, takes cuda where a GPU is found), every collective and send/recv accepts device
 * buffers, and host and device buffers may be mixed in one call. Chorus moves device data
 * through pinned host memory in slices, overlapping the copies with the network.
 * - On a NULL stream, or a stream from chorusStreamCreate, the call is "done when it returns"
 *   (or when the stream is synchronized): the results are in device memory by then. Work the
 *   program queued on device streams before the call must be complete when it is made.
 * - On a stream from chorusStreamCreateFromDevice, the call is ordered on that device stream as
 *   a GPU library's kernel would be: it reads its input after the work queued there before it,
 *   and work queued there after it runs after its results are in place. The call returns at
 *   once; synchronizing the device stream (or the chorus stream) waits for it.
 */
struct chorusDevice_v1;
/** The device plugin in use (loading it per CHORUS_DEVICE_PLUGIN if not yet), or NULL for none.
 *  Programs use it to allocate device memory and streams of the same device as Chorus. */
chorusResult_t chorusGetDevicePlugin(const struct chorusDevice_v1** plugin);
/** A chorus stream bound to a device stream of the plugin (e.g. a cudaStream_t). Destroying it
 *  does not destroy the device stream. chorusInvalidUsage without a device plugin. */
chorusResult_t chorusStreamCreateFromDevice(chorusStream_t* stream, void* deviceStream);
/**
 * Registers [buff, buff + size) with comm for repeated use, as NCCL's ncclCommRegister: for
 * device memory Chorus sets its staging memory aside now, so that no call on the buffer waits
 * for a pinned allocation. Optional: calls on unregistered buffers work too (the staging memory
 * is pooled after first use). *handle is for chorusCommDeregister.
 */
chorusResult_t chorusCommRegister(const chorusComm_t comm, void* buff, size_t size, void** handle);
chorusResult_t chorusCommDeregister(const chorusComm_t comm, void* handle);
/**
 * Memory that the device and the transports can both use without copies: the plugin's pinned
 * host memory (mapped into the device's address space where the device supports it), or
 * page-aligned host memory without a plugin. Chorus treats it as host memory. Free it with
 * chorusMemFree.
 */
chorusResult_t chorusMemAlloc(void** ptr, size_t size);
chorusResult_t chorusMemFree(void* ptr);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // CHORUS_CHORUS_H_
