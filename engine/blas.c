/*
** blas.c: what the engine knows about the BLAS library it links.
** Matrix products for prompt processing will go through cblas_sgemm here.
*/
#include <cblas.h>

#include "engine/engine.h"

/* Returns OpenBLAS's own description of its build (version, target core,
** threading), as reported by openblas_get_config(). */
const char *engine_blas_info(void)
{
    return openblas_get_config();
}
