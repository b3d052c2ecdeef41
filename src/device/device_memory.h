// What the C API's device-memory calls do (chorusMemAlloc/Free, chorusCommRegister/Deregister):
// allocations and registrations are remembered here, so that a pointer or handle Chorus did not
// hand out is refused with a clear error instead of being freed. docs/DEVICES.md.
#pragma once

#include <cstddef>

namespace chorus {

// chorusMemAlloc: the plugin's pinned memory, else page-aligned host memory.
void* sharedMemAlloc(size_t bytes);
// Throws chorusInvalidArgument for a pointer not from sharedMemAlloc (or already freed).
void sharedMemFree(void* ptr);

// chorusCommRegister: for device memory, sets staging memory of the buffer's size aside. The
// handle is remembered with its owner (a communicator's address).
void* registerBuffer(const void* owner, void* buff, size_t bytes);
// Throws chorusInvalidArgument for a handle registerBuffer did not return for this owner.
void deregisterBuffer(const void* owner, void* handle);

}  // namespace chorus
