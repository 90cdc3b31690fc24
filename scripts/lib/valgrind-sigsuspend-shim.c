/* Valgrind 3.19's rt_sigsuspend wrapper edits the caller's mask in place; libdispatch's
   _dispatch_sigsuspend passes a static const (read-only) mask, so valgrind SIGSEGVs.
   Pass a writable copy instead. Harness-only workaround; no project code is touched. */
#define _GNU_SOURCE
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
int sigsuspend(const sigset_t *mask) {
  sigset_t copy = *mask;
  return (int)syscall(SYS_rt_sigsuspend, &copy, (size_t)(_NSIG / 8));
}
