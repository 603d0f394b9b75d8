// LD_PRELOAD shim used only for the informational "repack kernels" measurement in README.md:
// refuses the AMX tile-data permission request so that ggml leaves its AMX backend off while keeping
// the repacked CPU kernels (on machines that report AMX but crash in it).
//   gcc -O2 -shared -fPIC -o /tmp/noamx.so tests/reference/noamx_shim.c -ldl
//   LD_PRELOAD=/tmp/noamx.so /opt/refenv/bin/python tests/reference/make_llama_goldens.py --extra-bufts --out-dir /tmp/x
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>
long syscall(long n, ...) {
    va_list ap; va_start(ap, n);
    long a[6]; for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (n == SYS_arch_prctl && a[0] == 0x1023 /* ARCH_REQ_XCOMP_PERM */) { errno = EPERM; return -1; }
    static long (*real)(long, ...) = 0;
    if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
