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
 *    (chorusStreamSynchronize) or chorusStreamQuery returns chorusSuccess.
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
  chorusNumTypes = 10,
  /* Not types: they make every int a valid value of the enum, so that a bad value passed in
     is reported as chorusInvalidArgument rather than being undefined behaviour in C++. */
  chorusDataTypeMinEnum_ = -0x7fffffff - 1,
  chorusDataTypeMaxEnum_ = 0x7fffffff
} chorusDataType_t;

/** Reduction operators. chorusAvg sums, then divides by the rank count (integer types truncate). */
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

/** Waits for the communicator's pending work, then frees it. */
chorusResult_t chorusCommDestroy(chorusComm_t comm);

/** Stops all pending work of comm with an error, frees it, and always returns promptly. */
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
/** Synchronizes, then frees the stream. */
chorusResult_t chorusStreamDestroy(chorusStream_t stream);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // CHORUS_CHORUS_H_
