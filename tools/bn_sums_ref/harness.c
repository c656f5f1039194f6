/* Darknet's training-mode batch-norm statistics on a fixed input, from Darknet's own compiled code: links
 * src/blas.c of 59596d7 (compiled by make_ref.sh with the reference build's flags) and runs what
 * forward_batchnorm_layer does with state.train = 1 before normalising:
 *   mean_cpu, variance_cpu, scal_cpu(.9, rolling_*), axpy_cpu(.1, batch stat, rolling_*).
 * Prints the float bits of mean, variance, rolling mean and rolling variance, one line each.
 *
 * The input is generated here and, identically, by the Rust test (src/layers/batchnorm.rs,
 * `darknet_sums_match_darknet_blas`): a 32-bit LCG whose top 24 bits give exact floats in [0, 1), four
 * channels shaped like conv outputs (a gray-filled border: 70 % one value; a large offset with a small
 * spread; a skewed one; a leaky-ReLU one). Every float operation of the generator is exact or a single
 * rounding, so both sides produce the same bits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "blas.h"

/* blas.c refers to these (utils.c); nothing here reaches them except on allocation failure. */
void error(const char *const msg, const char *const filename, const char *const funcname, const int line)
{
    fprintf(stderr, "error: %s (%s:%s:%d)\n", msg, filename, funcname, line);
    exit(1);
}
void *xcalloc_location(const size_t nmemb, const size_t size, const char *const filename,
    const char *const funcname, const int line)
{
    void *p = calloc(nmemb, size);
    if (!p) error("calloc failed", filename, funcname, line);
    return p;
}

enum { BATCH = 4, FILTERS = 4, SPATIAL = 208 * 208 };

static uint32_t state = 12345u;
static float u01(void)
{
    state = state * 1664525u + 1013904223u;
    return (float)(state >> 8) * (1.0f / 16777216.0f);
}

static float value(int f)
{
    float t;
    switch (f) {
    case 0: /* gray fill: most of the map one value */
        t = u01();
        return t < 0.7f ? 0.3712f : u01() * 4.0f - 2.0f;
    case 1: /* large offset, small spread */
        return 100.0f + u01() * 8.0f;
    case 2: /* skewed */
        t = u01();
        return t * t * t * 50.0f;
    default: /* leaky */
        t = u01() * 2.0f - 1.0f;
        return t > 0.0f ? t : t * 0.1f;
    }
}

static void print_bits(const char *name, const float *v)
{
    printf("%s", name);
    for (int i = 0; i < FILTERS; ++i) {
        union { float f; uint32_t u; } b = { v[i] };
        printf(" %08x", b.u);
    }
    printf("\n");
}

int main(void)
{
    float *x = malloc(sizeof(float) * BATCH * FILTERS * SPATIAL);
    for (int b = 0; b < BATCH; ++b)
        for (int f = 0; f < FILTERS; ++f)
            for (int k = 0; k < SPATIAL; ++k) x[(b * FILTERS + f) * SPATIAL + k] = value(f);
    float mean[FILTERS], variance[FILTERS];
    float rolling_mean[FILTERS] = { 0.5f, 90.0f, 3.0f, 0.1f };
    float rolling_variance[FILTERS] = { 1.5f, 4.0f, 200.0f, 0.2f };
    /* forward_batchnorm_layer (src/batchnorm_layer.c), state.train branch. */
    mean_cpu(x, BATCH, FILTERS, SPATIAL, mean);
    variance_cpu(x, mean, BATCH, FILTERS, SPATIAL, variance);
    scal_cpu(FILTERS, .9, rolling_mean, 1);
    axpy_cpu(FILTERS, .1, mean, 1, rolling_mean, 1);
    scal_cpu(FILTERS, .9, rolling_variance, 1);
    axpy_cpu(FILTERS, .1, variance, 1, rolling_variance, 1);
    printf("batch %d filters %d spatial %d seed 12345\n", BATCH, FILTERS, SPATIAL);
    print_bits("mean", mean);
    print_bits("variance", variance);
    print_bits("rolling_mean", rolling_mean);
    print_bits("rolling_variance", rolling_variance);
    free(x);
    return 0;
}
