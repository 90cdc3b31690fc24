#ifndef VIGIL_CPREFETCH_H
#define VIGIL_CPREFETCH_H

/// A hint that memory at `address` is about to be read: the processor starts loading its cache
/// line and goes on (no fault, no wait, even for an invalid address). Swift has no spelling for
/// it; the function is inlined into the Swift caller.
static inline __attribute__((always_inline)) void vigil_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
