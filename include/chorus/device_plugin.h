/* Chorus device plugin ABI, version 1 (frozen).
 *
 * A device plugin lets Chorus take buffers that live in an accelerator's memory (GPU, NPU, any
 * vendor) and order its collectives on that accelerator's streams. Chorus has three sources of
 * one, chosen by CHORUS_DEVICE_PLUGIN:
 *   "cuda"   built in: NVIDIA GPUs through the CUDA driver API, loaded with dlopen at run time
 *            (libcuda.so.1); nothing of CUDA is needed to build Chorus.
 *   "emu"    built in: an emulated device for tests and CI (docs/DEVICES.md).
 *   "none"   no device: every pointer is host memory.
 *   "auto"   (default) "cuda" where libcuda.so.1 loads and reports a device, else "none".
 *   anything else: a path to a shared object, or a name X meaning "libchorus-device-X.so" on the
 *            library search path, exporting the symbol `chorusDevicePlugin_v1` of type
 *            chorusDevice_v1_t.
 * One plugin serves the whole process; it is loaded on first need and never unloaded.
 *
 * This header is plain C and needs nothing but <stddef.h> and <stdint.h>: a plugin does not link
 * against libchorus. Version 1 is frozen: its layout, signatures and semantics never change. A
 * later version is a new struct under a new symbol.
 *
 * What Chorus does with it (docs/DEVICES.md has the data path): a collective whose buffers are
 * device memory is run through pinned host staging. On the device stream the call is ordered on
 * (the one a chorus stream was bound to with chorusStreamCreateFromDevice, else the plugin's
 * own), Chorus enqueues the device-to-host copies of the input in slices with an event after
 * each, then for every slice of the output a wait for a host word (waitValue) followed by the
 * host-to-device copy of that slice. The host side runs the collective on the staging memory,
 * starting on a slice as soon as its event has completed, and sets a slice's word once its
 * result is final. So copies overlap the network both ways, and work queued on the device stream
 * after the collective runs after its last copy, as a GPU collective's kernel would.
 *
 * Rules every function follows:
 *   - Returns chorusDevSuccess or an error code below (numerically equal to chorus.h's
 *     chorusResult_t values). It never waits for Chorus: waits happen on device streams
 *     (waitValue) or in eventSynchronize. Chorus polls eventQuery and enforces all deadlines.
 *   - Device streams are the plugin's own handles (a cudaStream_t for "cuda"); NULL is not a
 *     stream. Operations on one stream run in the order enqueued, each after the previous one
 *     has completed; operations on different streams are unordered unless an event joins them.
 *   - Copies may complete long after the enqueuing call returned: the source must not be
 *     written and the destination not read until an event recorded after the copy has
 *     completed. `dst` and `src` may each be device memory or memory from hostAlloc (plain host
 *     memory is allowed too, though a plugin may copy it synchronously).
 *   - waitValue(stream, word, value): operations enqueued on the stream after it do not start
 *     until *word >= value. `word` is 8-byte aligned memory from hostAlloc; the host writes it
 *     with a release store. Chorus always eventually writes every word it waits on, also when
 *     a collective fails, so a plugin need not time these waits out.
 *   - Events: record(event, stream) marks the point after everything enqueued on the stream so
 *     far; query reports whether that point has been passed (an event never recorded counts as
 *     passed); a later record moves the point.
 *   - reduce (optional, may be NULL): dst[i] = dst[i] OP src[i] for `count` elements of a
 *     chorus.h data type and operation (sum, prod, max, min; avg never reaches it), both
 *     pointers device memory, enqueued on the stream. Chorus's staged data path reduces on the
 *     host, where the data already are; the kernel is for paths that keep data on the device.
 *   - Thread safety: every function may be called from any thread, concurrently; a stream's
 *     operations are enqueued by one thread at a time.
 */
#ifndef CHORUS_DEVICE_PLUGIN_H_
#define CHORUS_DEVICE_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CHORUS_DEVICE_PLUGIN_ABI_VERSION 1
#define CHORUS_DEVICE_PLUGIN_SYMBOL "chorusDevicePlugin_v1"

typedef enum {
  chorusDevSuccess = 0,
  chorusDevSystemError = 1,     /* a driver or OS call failed */
  chorusDevInternalError = 2,   /* a bug in the plugin or its driver */
  chorusDevInvalidArgument = 3, /* a bad pointer, stream, size or device */
  chorusDevInvalidUsage = 4     /* not valid now (not initialised, unsupported) */
} chorusDevResult_t;

/* Where a pointer lives (pointerQuery). */
typedef enum {
  chorusDevMemHost = 0,   /* ordinary host memory, or memory this plugin does not know */
  chorusDevMemPinned = 1, /* host memory from hostAlloc: host-accessible, fast to copy */
  chorusDevMemDevice = 2  /* device memory: the host must not touch it */
} chorusDevMemKind_t;

typedef struct chorusDevice_v1 {
  /* CHORUS_DEVICE_PLUGIN_ABI_VERSION (1): checked when the plugin is loaded. */
  uint32_t abiVersion;
  /* Short name ("cuda", "emu"), used in logs and errors. */
  const char* name;
  /* Initialises the plugin and reports how many devices it drives (>= 0). Called once, before
   * anything else; a failure (or 0 devices where the user asked for this plugin) is reported. */
  chorusDevResult_t (*init)(int* ndevices);
  /* Where `ptr` lives and, for device memory, on which device. Must be cheap: Chorus asks for
   * every buffer of every call. */
  chorusDevResult_t (*pointerQuery)(const void* ptr, chorusDevMemKind_t* kind, int* device);
  /* Device memory of `bytes` bytes on `device` (bytes may be 0: a distinct non-NULL pointer). */
  chorusDevResult_t (*memAlloc)(int device, size_t bytes, void** ptr);
  chorusDevResult_t (*memFree)(void* ptr);
  /* Pinned host memory: the host reads and writes it, copies to and from devices are fast, and
   * waitValue may watch words in it. */
  chorusDevResult_t (*hostAlloc)(size_t bytes, void** ptr);
  chorusDevResult_t (*hostFree)(void* ptr);
  /* A stream on `device`. */
  chorusDevResult_t (*streamCreate)(int device, void** stream);
  chorusDevResult_t (*streamDestroy)(void* stream);
  /* Enqueues a copy of `bytes` bytes (any direction: host-to-device, device-to-host,
   * device-to-device, told apart by pointerQuery's rules). */
  chorusDevResult_t (*copyAsync)(void* dst, const void* src, size_t bytes, void* stream);
  chorusDevResult_t (*waitValue)(void* stream, const volatile uint64_t* word, uint64_t value);
  chorusDevResult_t (*eventCreate)(void** event);
  chorusDevResult_t (*eventDestroy)(void* event);
  chorusDevResult_t (*eventRecord)(void* event, void* stream);
  /* *done = 1 once the recorded point has been passed, else 0. */
  chorusDevResult_t (*eventQuery)(void* event, int* done);
  /* Blocks until the recorded point has been passed. */
  chorusDevResult_t (*eventSynchronize)(void* event);
  /* `stream` waits (on the device) for the event's recorded point. */
  chorusDevResult_t (*streamWaitEvent)(void* stream, void* event);
  /* Optional (NULL: none): dst = dst OP src on the device. datatype and op are chorus.h's
   * chorusDataType_t and chorusRedOp_t values; chorusDevInvalidUsage for a pair it lacks. */
  chorusDevResult_t (*reduce)(void* dst, const void* src, size_t count, int datatype, int op, void* stream);
} chorusDevice_v1_t;

#ifdef __cplusplus
}
#endif

#endif /* CHORUS_DEVICE_PLUGIN_H_ */
