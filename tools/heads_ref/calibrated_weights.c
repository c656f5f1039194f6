/* Random weights for a full-size cfg whose activations stay O(1) through every layer, written by Darknet's own
 * save_weights (so that Darknet and candle-darknet load the same file). Links Darknet's own objects (59596d7,
 * CPU build); see dump_cfg_layers.sh.
 *
 *   calibrated_weights <cfg> <image> <out.weights> <seed>
 *
 * From srand(seed), every convolution gets Darknet's initialisation formula (make_convolutional_layer:
 * sqrt(2/(size*size*c/groups)) * U(-1,1)) and biases U(-0.2,0.2). Uncalibrated batch norm (rolling mean 0,
 * variance 1) lets the activations shrink or grow by a constant factor per layer, which over a hundred layers
 * leaves them far from what a trained network computes; so, as ../shared/reference/mini-yolov4 was made, each
 * batch-normalised layer's statistics come from the image itself: its raw convolution output (run with Darknet's
 * inference forward, in network order, on the previous layers' calibrated outputs) gives per-channel mean and
 * variance, and rolling_mean = mean + U(-0.1,0.1)*std, rolling_variance = variance*U(0.7,1.4) + 1e-3,
 * scales U(0.5,1.5). The layer is then run again with those values and its activation, and the walk goes on. */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include "darknet.h"
#include "network.h"
#include "parser.h"
#include "utils.h"
#include "image.h"

static float U(float a, float b) { return a + (b - a) * ((float)rand() / RAND_MAX); }

/* Sets rolling_mean/rolling_variance/scales of a batch-normalised layer from its raw output (see the top). */
static void calibrate(layer *l, network_state state) {
    int c, j, n = l->out_h * l->out_w;
    ACTIVATION act = l->activation;
    for (c = 0; c < l->n; ++c) {
        l->rolling_mean[c] = 0;
        l->rolling_variance[c] = 1.f - .00001f; /* normalize_cpu divides by sqrtf(variance + .00001f) */
        l->scales[c] = 1;
    }
    float *bias = calloc(l->n, sizeof(float));
    float *keep = l->biases;
    l->biases = bias;
    l->activation = LINEAR;
    l->forward(*l, state);
    l->biases = keep;
    l->activation = act;
    free(bias);
    for (c = 0; c < l->n; ++c) {
        const float *x = l->output + (size_t)c * n;
        double s = 0, s2 = 0;
        for (j = 0; j < n; ++j) s += x[j];
        double mean = s / n;
        for (j = 0; j < n; ++j) s2 += (x[j] - mean) * (x[j] - mean);
        double var = s2 / (n > 1 ? n - 1 : 1);
        l->rolling_mean[c] = (float)(mean + U(-0.1f, 0.1f) * sqrt(var));
        l->rolling_variance[c] = (float)(var * U(0.7f, 1.4f) + 1e-3);
        l->scales[c] = U(0.5f, 1.5f);
    }
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: calibrated_weights cfg image out.weights seed\n"); return 1; }
    char *cfg = argv[1], *imfile = argv[2], *out = argv[3];
    int i, j;
    gpu_index = -1; /* as darknet.c's main in a CPU build */
    network net = parse_network_cfg_custom(cfg, 1, 1);
    srand(atoi(argv[4]));
    image im = load_image(imfile, 0, 0, net.c);
    image sized = net.letter_box ? letterbox_image(im, net.w, net.h) : resize_image(im, net.w, net.h);
    /* forward_network (src/network.c) with network_predict's state, one layer at a time. */
    network_state state = {0};
    state.net = net;
    state.input = sized.data;
    state.workspace = net.workspace;
    for (i = 0; i < net.n; ++i) {
        layer *l = &net.layers[i];
        state.index = i;
        if (l->type == CONVOLUTIONAL) {
            float scale = sqrtf(2.f / (l->size * l->size * l->c / l->groups));
            for (j = 0; j < l->nweights; ++j) l->weights[j] = scale * U(-1.f, 1.f);
            for (j = 0; j < l->n; ++j) l->biases[j] = U(-0.2f, 0.2f);
            if (l->batch_normalize) calibrate(l, state);
        }
        l->forward(*l, state);
        state.input = l->output;
    }
    save_weights(net, out);
    fprintf(stderr, "wrote %s (seed %s)\n", out, argv[4]);
    return 0;
}
