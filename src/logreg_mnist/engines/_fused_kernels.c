/* The kernel (_fused_kernel.h) instantiated once per (element type, instruction set), and the one
 * table every entry point dispatches through: the x86-64 baseline build (16-byte vectors) and,
 * where the compiler can (GCC on x86-64), a build for AVX2 + FMA, chosen at run time by what the
 * CPU supports (or LOGREG_MNIST_FUSED_SIMD=baseline, read once, for tests).
 */
#include "_fused.h"

#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

_Static_assert(KP_MAX % 8 == 0, "KP_MAX must be a whole number of vectors of every width");

/* ---- the barrier between the kernel's phases -----------------------------------------------------
 * OpenMP's own barrier spins for a while set only by the environment (libgomp: GOMP_SPINCOUNT,
 * OMP_WAIT_POLICY, read when it loads; about 3 ms by default). On a machine whose cores are busy
 * with other work, a thread spinning that long takes the time its partner needs, and an epoch
 * takes several times longer. So the threads of sgd meet here instead: a sense-reversing barrier
 * that spins BARRIER_SPINS times, then sleeps (a futex on Linux, else yields), fast on an idle
 * machine and polite on a busy one, with no setting of anyone's environment. */

#define BARRIER_SPINS 10000

struct barrier { int arrived, sense, sleepers; };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void sleep_while(int *addr, int value)  /* returns when *addr != value, or spuriously */
{
#ifdef __linux__
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
#else
    (void)addr; (void)value;
    sched_yield();
#endif
}

static void wake_all(int *addr)
{
#ifdef __linux__
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
#else
    (void)addr;
#endif
}

/* All nt threads of the team call this with their own *sense (0 at first); none returns before
 * all have arrived, and each then sees every write the others made before arriving. */
static void barrier_wait(struct barrier *bar, int nt, int *sense)
{
    if (nt == 1) return;
    const int mine = *sense = !*sense;
    if (__atomic_add_fetch(&bar->arrived, 1, __ATOMIC_ACQ_REL) == nt) {  /* the last to arrive */
        __atomic_store_n(&bar->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&bar->sense, mine, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&bar->sleepers, __ATOMIC_SEQ_CST)) wake_all(&bar->sense);
        return;
    }
    for (int i = 0; i < BARRIER_SPINS; i++) {
        if (__atomic_load_n(&bar->sense, __ATOMIC_ACQUIRE) == mine) return;
        cpu_relax();
    }
    __atomic_add_fetch(&bar->sleepers, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&bar->sense, __ATOMIC_SEQ_CST) != mine) sleep_while(&bar->sense, !mine);
    __atomic_sub_fetch(&bar->sleepers, 1, __ATOMIC_SEQ_CST);
}

/* ---- the instantiations ------------------------------------------------------------------------ */

#define KERNEL_SIMD baseline
#define KERNEL_AVX2 0
#define VBYTES 16
#define KERNEL_F64 0
#include "_fused_kernel.h"
#define KERNEL_F64 1
#include "_fused_kernel.h"
#undef KERNEL_SIMD
#undef KERNEL_AVX2
#undef VBYTES

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HAVE_AVX2 1
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define KERNEL_SIMD avx2
#define KERNEL_AVX2 1
#define VBYTES 32
#define KERNEL_F64 0
#include "_fused_kernel.h"
#define KERNEL_F64 1
#include "_fused_kernel.h"
#pragma GCC pop_options
#else
#define HAVE_AVX2 0
#endif

/* ---- the dispatch table -------------------------------------------------------------------------- */

static const struct kernel *const kernels[N_SIMD][N_REAL] = {
    [SIMD_BASELINE] = {&kernel_f32_baseline, &kernel_f64_baseline},
#if HAVE_AVX2
    [SIMD_AVX2] = {&kernel_f32_avx2, &kernel_f64_avx2},
#endif
};

const struct kernel *fused_kernel(int simd, int real)
{
    if (simd < 0 || simd >= N_SIMD || real < 0 || real >= N_REAL) return NULL;
    return kernels[simd][real];
}

int fused_simd_level(void)
{
    static int level = -1;
    if (level < 0) {
        const char *want = getenv("LOGREG_MNIST_FUSED_SIMD");
        level = SIMD_BASELINE;
#if HAVE_AVX2
        __builtin_cpu_init();
        if (!(want && strcmp(want, "baseline") == 0) && __builtin_cpu_supports("avx2")
            && __builtin_cpu_supports("fma"))
            level = SIMD_AVX2;
#else
        (void)want;
#endif
    }
    return level;
}

const char *fused_simd_name(int simd)
{
    return simd == SIMD_AVX2 ? "avx2+fma" : "baseline";
}
