// One training forward + backward of a small network (conv+BN+leaky -> conv linear -> yolo) through Darknet's
// own forward_network / backward_network, no update. Dumps the initial parameters, input, truth, every layer's
// output, the yolo delta and every conv layer's weight/bias/scale updates (accumulated negative gradients).
// Usage: backward_harness <cfg> <outdir>
#include <stdio.h>
#include <stdlib.h>
#include "darknet.h"
#include "network.h"
#include "parser.h"
#include "utils.h"

static void dump(const char *dir, const char *name, int layer, const float *a, size_t n) {
    char path[1024];
    if (layer >= 0) snprintf(path, sizeof(path), "%s/layer%d_%s.bin", dir, layer, name);
    else snprintf(path, sizeof(path), "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, sizeof(float), n, f) != n) { fprintf(stderr, "cannot write %s\n", path); exit(1); }
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: backward_harness cfg outdir\n"); return 2; }
    srand(20261127);
    network net = parse_network_cfg_custom(argv[1], 0, 0);
    const char *out = argv[2];
    int i;
    // Non-trivial BN parameters and biases (Darknet initialises scales to 1 and biases to 0).
    for (i = 0; i < net.n; ++i) {
        layer l = net.layers[i];
        if (l.type != CONVOLUTIONAL) continue;
        int k;
        for (k = 0; k < l.n; ++k) {
            l.biases[k] = rand_uniform(-0.2f, 0.2f);
            if (l.batch_normalize) l.scales[k] = rand_uniform(0.5f, 1.5f);
        }
    }
    size_t n_in = (size_t)net.inputs * net.batch;
    float *input = (float *)calloc(n_in, sizeof(float));
    for (i = 0; i < (int)n_in; ++i) input[i] = rand_uniform(0, 1);
    layer yl = net.layers[net.n - 1];
    size_t n_truth = (size_t)yl.truths * net.batch;
    float *truth = (float *)calloc(n_truth, sizeof(float));
    // Image 0: three boxes; image 1: two boxes (x, y, w, h, class, track id).
    float boxes[2][3][6] = {{{0.30f, 0.40f, 0.35f, 0.50f, 0, 0}, {0.70f, 0.65f, 0.20f, 0.15f, 1, 0}, {0.52f, 0.20f, 0.60f, 0.30f, 1, 0}},
                            {{0.45f, 0.55f, 0.50f, 0.45f, 1, 0}, {0.15f, 0.80f, 0.10f, 0.20f, 0, 0}, {0, 0, 0, 0, 0, 0}}};
    int b, t;
    for (b = 0; b < net.batch; ++b)
        for (t = 0; t < 3; ++t)
            for (i = 0; i < 6; ++i) truth[b * yl.truths + t * 6 + i] = boxes[b][t][i];
    dump(out, "input", -1, input, n_in);
    dump(out, "truth", -1, truth, n_truth);
    for (i = 0; i < net.n; ++i) {
        layer l = net.layers[i];
        if (l.type != CONVOLUTIONAL) continue;
        dump(out, "weights", i, l.weights, l.nweights);
        dump(out, "biases", i, l.biases, l.n);
        if (l.batch_normalize) {
            dump(out, "scales", i, l.scales, l.n);
            dump(out, "rolling_mean", i, l.rolling_mean, l.n);
            dump(out, "rolling_variance", i, l.rolling_variance, l.n);
        }
    }
    network_state state = {0};
    state.net = net;
    state.input = input;
    state.truth = truth;
    state.train = 1;
    state.delta = 0;
    forward_network(net, state);
    state.input = input;
    state.delta = 0;
    backward_network(net, state);
    for (i = 0; i < net.n; ++i) {
        layer l = net.layers[i];
        dump(out, "output", i, l.output, (size_t)l.outputs * l.batch);
        if (l.type == YOLO) dump(out, "delta", i, l.delta, (size_t)l.outputs * l.batch);
        if (l.type != CONVOLUTIONAL) continue;
        dump(out, "weight_updates", i, l.weight_updates, l.nweights);
        dump(out, "bias_updates", i, l.bias_updates, l.n);
        if (l.batch_normalize) {
            dump(out, "scale_updates", i, l.scale_updates, l.n);
            dump(out, "rolling_mean_after", i, l.rolling_mean, l.n);
            dump(out, "rolling_variance_after", i, l.rolling_variance, l.n);
        }
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/result.json", out);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"batch\": %d, \"yolo_cost\": %.9g}\n", net.batch, yl.cost[0]);
    fclose(f);
    return 0;
}
