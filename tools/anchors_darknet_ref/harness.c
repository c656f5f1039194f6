/* Differential reference for src/anchors: runs Darknet's own k-means functions (dist, closest_center,
 * kmeans_expectation, kmeans_maximization, free_matrix from src/matrix.c, anchors_data_comparator from
 * src/detector.c, commit 59596d7; extracted into fn.c / cmp.c by make_ref.sh, not copied here) from given
 * initial centres, then the average-IoU loop of calc_anchors, and prints iterations, avg IoU and anchors.
 * usage: harness boxes.bin init.bin n k   (little-endian float32 (w, h) pairs) */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
typedef struct matrix { int rows, cols; float **vals; } matrix;
static void *xcalloc(size_t n, size_t s) { return calloc(n, s); }
matrix make_matrix(int rows, int cols) {
    matrix m = {rows, cols, (float **)xcalloc(rows, sizeof(float *))};
    for (int i = 0; i < rows; ++i) m.vals[i] = (float *)xcalloc(cols, sizeof(float));
    return m;
}
float dist(float *x, float *y, int n);
#include "fm.c"
#include "fn.c"
#include "cmp.c"
typedef int (*cmp_fn)(const void *, const void *);

static float *read_pairs(const char *path, int n) {
    FILE *f = fopen(path, "rb");
    float *v = malloc(sizeof(float) * 2 * n);
    if (!f || fread(v, sizeof(float) * 2, n, f) != (size_t)n) { fprintf(stderr, "bad %s\n", path); exit(1); }
    fclose(f);
    return v;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: harness boxes.bin init.bin n k\n"); return 1; }
    int n = atoi(argv[3]), k = atoi(argv[4]);
    float *b = read_pairs(argv[1], n), *c = read_pairs(argv[2], k);
    matrix data = make_matrix(n, 2), centers = make_matrix(k, 2);
    for (int i = 0; i < n; ++i) { data.vals[i][0] = b[2 * i]; data.vals[i][1] = b[2 * i + 1]; }
    for (int i = 0; i < k; ++i) { centers.vals[i][0] = c[2 * i]; centers.vals[i][1] = c[2 * i + 1]; }
    int *assignments = xcalloc(n, sizeof(int));
    /* the part of do_kmeans after random_centers */
    if (k == 1) kmeans_maximization(data, assignments, centers);
    int it;
    for (it = 0; it < 1000 && !kmeans_expectation(data, assignments, centers); ++it)
        kmeans_maximization(data, assignments, centers);
    qsort((void *)centers.vals, k, 2 * sizeof(float), (cmp_fn)anchors_data_comparator);
    /* average IoU as calc_anchors computes it (float accumulation) */
    float avg_iou = 0;
    for (int q = 0; q < n; ++q) {
        float bw = b[2 * q], bh = b[2 * q + 1], min_dist = FLT_MAX, best_iou = 0;
        for (int j = 0; j < k; ++j) {
            float aw = centers.vals[j][0], ah = centers.vals[j][1];
            float inter = (bw < aw ? bw : aw) * (bh < ah ? bh : ah);
            float iou = inter / (bw * bh + aw * ah - inter);
            if (1 - iou < min_dist) { min_dist = 1 - iou; best_iou = iou; }
        }
        if (!(best_iou > 1 || best_iou < 0)) avg_iou += best_iou;
    }
    avg_iou = 100 * avg_iou / n;
    printf("iterations %d\navg_iou %.6f\n", it, avg_iou);
    for (int j = 0; j < k; ++j) printf("%.9g %.9g\n", centers.vals[j][0], centers.vals[j][1]);
    return 0;
}
