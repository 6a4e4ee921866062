/*
** kernels.c: picks the kernel set this CPU runs (see kernels.h).
**
** The choice is made once, under pthread_once, and kept in a static pointer
** that only that call writes; everything after reads it. Order of
** preference: AVX-512, AVX-VNNI, AVX2, portable C. A set is usable when the
** CPU (and the OS, which __builtin_cpu_supports checks via XGETBV) supports
** every extension its code is compiled for:
**   AVX2      avx2, fma, f16c
**   AVX-VNNI  avx_vnni (CPUID leaf 7 subleaf 1, EAX bit 4), plus AVX2's
**   AVX-512   avx512f, avx512bw, avx512vl, avx512dq, plus AVX2's
** A CPU can have AVX-512 without AVX-VNNI (Skylake-X, Ice Lake), so each
** level is checked on its own. KBCHAT_ISA=scalar|avx2|avxvnni|avx512 lowers
** the choice, never raises it: it takes the best usable set at or below the
** one asked for (avxvnni on a CPU without it gives AVX2); other values are
** ignored.
*/
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>

#include "engine/kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>

/* AVX-VNNI: CPUID leaf 7 subleaf 1, EAX bit 4 (older compilers know no
** name for it). The OS side (YMM state) is covered by the avx2 check. */
static int cpu_has_avx_vnni(void)
{
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4)) != 0;
}
#endif

#if defined(__x86_64__) && defined(__clang__)

/* Clang's __builtin_cpu_supports does not know "f16c": ask CPUID leaf 1
** (ECX bit 29). The OS side (YMM state) is covered by the avx2 check. */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#elif defined(__x86_64__)
static int cpu_has_f16c(void)
{
    return __builtin_cpu_supports("f16c");
}
#endif

/* Whether this CPU (and OS) runs the kernels of `isa`. */
static int cpu_runs(KbIsa isa)
{
    if (isa == KB_ISA_SCALAR) return 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    switch (isa) {
    case KB_ISA_AVX2: return avx2;
    case KB_ISA_AVXVNNI: return avx2 && cpu_has_avx_vnni();
    case KB_ISA_AVX512:
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    default: return 0;
    }
#else
    return 0;
#endif
}

/* Returns the best instruction set at or below `ceiling` this CPU runs. */
static KbIsa cpu_best_isa(KbIsa ceiling)
{
    int isa = ceiling;
    while (isa > KB_ISA_SCALAR && !cpu_runs((KbIsa)isa)) isa--;
    return (KbIsa)isa;
}

/* Returns the set KBCHAT_ISA asks for, or KB_ISA_COUNT when the variable is
** unset or holds something else. */
static KbIsa env_isa(void)
{
    const char *v = getenv("KBCHAT_ISA");
    if (v == NULL) return KB_ISA_COUNT;
    if (strcasecmp(v, "scalar") == 0) return KB_ISA_SCALAR;
    if (strcasecmp(v, "avx2") == 0) return KB_ISA_AVX2;
    if (strcasecmp(v, "avxvnni") == 0) return KB_ISA_AVXVNNI;
    if (strcasecmp(v, "avx512") == 0) return KB_ISA_AVX512;
    return KB_ISA_COUNT;
}

/* Returns the table of `isa` without asking whether the CPU runs it. The
** SIMD tables only exist on x86. */
static const KbKernels *isa_table(KbIsa isa)
{
    switch (isa) {
    case KB_ISA_SCALAR: return &kb_kernels_scalar;
#if defined(__x86_64__)
    case KB_ISA_AVX2: return &kb_kernels_avx2;
    case KB_ISA_AVXVNNI: return &kb_kernels_avxvnni;
    case KB_ISA_AVX512: return &kb_kernels_avx512;
#endif
    default: return NULL;
    }
}

/* See kernels.h: NULL for an unknown id or a set this CPU cannot run. */
const KbKernels *kb_kernels_for(KbIsa isa)
{
    if ((int)isa < 0 || isa >= KB_ISA_COUNT || !cpu_runs(isa)) return NULL;
    return isa_table(isa);
}

static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;
static const KbKernels *chosen; /* written once by choose_kernels */

/* The pthread_once routine: the best set, lowered by KBCHAT_ISA. */
static void choose_kernels(void)
{
    const KbIsa wanted = env_isa();
    chosen = isa_table(cpu_best_isa(wanted < KB_ISA_COUNT ? wanted : KB_ISA_AVX512));
}

/* See kernels.h: the first call decides, every later one reads. */
const KbKernels *kb_kernels(void)
{
    pthread_once(&chosen_once, choose_kernels);
    return chosen;
}
