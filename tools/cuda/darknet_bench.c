/* GPU peer timing for tools/cuda/device-check.sh: Darknet's own inference path, as `detector test` runs it
 * (load_network_custom at the given batch: parse, load weights, fuse conv+BN; then network_predict_ptr, which
 * copies the input to the GPU, runs forward_network_gpu, synchronises and pulls the last layer's output).
 * Linked by tools/cuda/build-darknet-gpu.sh with the objects of Darknet 59596d7 built GPU=1 CUDNN=1.
 *
 * usage: darknet_bench CFG WEIGHTS|- BATCH RUNS WARMUP
 * prints one JSON line: {"batch":B,"runs":R,"median_ms":..,"p10_ms":..,"p90_ms":..,"images_per_s":..}
 * ("-" for WEIGHTS keeps Darknet's random initialisation: the timing does not depend on the values).
 * Built without -DGPU (DARKNET_GPU=0) it times Darknet's CPU path: only for testing the script without a GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "darknet.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s CFG WEIGHTS|- BATCH RUNS WARMUP\n", argv[0]);
        return 2;
    }
    char *weights = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
    int batch = atoi(argv[3]), runs = atoi(argv[4]), warmup = atoi(argv[5]);
    if (batch < 1 || runs < 1 || warmup < 0) {
        fprintf(stderr, "darknet_bench: BATCH and RUNS must be >= 1, WARMUP >= 0\n");
        return 2;
    }
#ifdef GPU
    gpu_index = 0; /* darknet.c's default for -i */
    cuda_set_device(gpu_index);
#else
    gpu_index = -1; /* the CPU build (tools/cuda/device-check.sh --dry-run) */
#endif
    network *net = load_network_custom(argv[1], weights, 0, batch);
    size_t n = (size_t)net->w * net->h * net->c * batch;
    float *input = malloc(n * sizeof(float));
    double *ms = malloc(runs * sizeof(double));
    if (!input || !ms) {
        fprintf(stderr, "darknet_bench: out of memory\n");
        return 1;
    }
    srand(1);
    for (size_t i = 0; i < n; ++i) input[i] = rand() / (float)RAND_MAX;
    for (int i = 0; i < warmup; ++i) network_predict_ptr(net, input);
    for (int i = 0; i < runs; ++i) {
        double t = now_ms();
        network_predict_ptr(net, input); /* ends with a stream synchronise and a device-to-host copy */
        ms[i] = now_ms() - t;
    }
    qsort(ms, runs, sizeof(double), cmp_double);
    double median = ms[(runs - 1) / 2];
    printf("\n{\"batch\":%d,\"runs\":%d,\"w\":%d,\"h\":%d,\"median_ms\":%.4f,\"p10_ms\":%.4f,\"p90_ms\":%.4f,"
           "\"images_per_s\":%.2f}\n",
           batch, runs, net->w, net->h, median, ms[(runs - 1) / 10], ms[(runs - 1) * 9 / 10],
           batch * 1000.0 / median);
    free_network_ptr(net);
    free(input);
    free(ms);
    return 0;
}
