// Darknet's own loader throughput: calls load_data_detection (AlexeyAB/darknet 59596d7, src/data.c 1041,
// OPENCV branch) in a loop on T threads, as `augment --bench` does for ours, and prints images/s.
//   harness ROOT SIZE MOSAIC THREADS BATCH WARMUP_S SECONDS SEED PATH...
// ROOT: directory the PATHs (and their .txt labels) are relative to (Darknet opens them as given).
// Parameters as in the augmentation references: jitter .3, hue .1, saturation 1.5, exposure 1.5, flip,
// no blur/noise, classes 80, max_boxes 200, letter_box 0. MOSAIC=1 passes use_mixup=3 (Darknet's mosaic; its
// coin enables it for about half the calls). One thread: srand(SEED) and one stream, the batches of
// `augment --bench` with one thread draw for draw. Several threads share glibc rand(), as Darknet's loader
// threads do. Result line: `darknet_loader size S mosaic M threads T images I seconds X images_per_s Y`.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "darknet.h"

// Not in darknet.h (src/data.h); exported from libdarknet.so.
data load_data_detection(int n, char **paths, int m, int w, int h, int c, int boxes, int truth_size,
                         int classes, int use_flip, int gaussian_noise, int use_blur, int use_mixup,
                         float jitter, float resize, float hue, float saturation, float exposure,
                         int mini_batch, int track, int augment_speed, int letter_box, int mosaic_bound,
                         int contrastive, int contrastive_jit_flip, int contrastive_color, int show_imgs);

static int g_size, g_mosaic, g_batch, g_m;
static char **g_paths;
static double g_warm_end, g_end;
static int g_go; // set (release) once g_end is written
static pthread_barrier_t g_barrier;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void one_call(void) {
    data d = load_data_detection(g_batch, g_paths, g_m, g_size, g_size, 3, 200, 6, 80, 1, 0, 0,
                                 g_mosaic ? 3 : 0, 0.3f, 1.0f, 0.1f, 1.5f, 1.5f, g_batch, 0, 0, 0, 0, 0,
                                 0, 0, 0);
    free_data(d);
}

static void *worker(void *arg) {
    long *images = (long *)arg;
    do one_call(); while (now_s() < g_warm_end);
    pthread_barrier_wait(&g_barrier);
    // g_end is set by the main thread after the barrier.
    while (!__atomic_load_n(&g_go, __ATOMIC_ACQUIRE)) {}
    while (now_s() < g_end) {
        one_call();
        *images += g_batch;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 10) {
        fprintf(stderr, "usage: %s ROOT SIZE MOSAIC THREADS BATCH WARMUP_S SECONDS SEED PATH...\n", argv[0]);
        return 2;
    }
    if (chdir(argv[1]) != 0) { perror(argv[1]); return 1; }
    g_size = atoi(argv[2]);
    g_mosaic = atoi(argv[3]);
    int threads = atoi(argv[4]);
    g_batch = atoi(argv[5]);
    double warm = atof(argv[6]), secs = atof(argv[7]);
    unsigned seed = (unsigned)strtoul(argv[8], NULL, 10);
    g_paths = argv + 9;
    g_m = argc - 9;
    if (threads < 1 || g_batch < 1 || g_size < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
    srand(seed);
    pthread_t *tid = calloc(threads, sizeof(pthread_t));
    long *images = calloc(threads, sizeof(long));
    pthread_barrier_init(&g_barrier, NULL, threads + 1);
    g_warm_end = now_s() + warm;
    for (int t = 0; t < threads; ++t) pthread_create(&tid[t], NULL, worker, &images[t]);
    pthread_barrier_wait(&g_barrier);
    double start = now_s();
    g_end = start + secs;
    __atomic_store_n(&g_go, 1, __ATOMIC_RELEASE);
    long total = 0;
    for (int t = 0; t < threads; ++t) { pthread_join(tid[t], NULL); total += images[t]; }
    double el = now_s() - start;
    fflush(stdout);
    printf("darknet_loader size %d mosaic %d threads %d images %ld seconds %.3f images_per_s %.2f\n", g_size,
           g_mosaic, threads, total, el, total / el);
    return 0;
}
