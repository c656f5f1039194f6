// Trains tools/ema_ref/net.cfg with Darknet's own train_network for iterations 1000..1006 (cur_iteration set to
// 999 first) and prints, after each, every convolution's live weights and its EMA arrays (src/network.c
// ema_update / ema_apply as train_network_waitkey schedules them). Output format: see tests/data/ema/README.md.
#include <stdio.h>
#include <stdlib.h>
#include "darknet.h"
#include "network.h"
#include "parser.h"
#include "data.h"
#include "utils.h"

static void dump(const char *name, const float *v, int n)
{
    printf("%s", name);
    for (int i = 0; i < n; ++i) printf(" %.9g", v ? v[i] : 0.0f);
    printf("\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: %s net.cfg\n", argv[0]); return 1; }
    srand(7);
    network net = parse_network_cfg(argv[1]);
    int rows = net.batch * net.subdivisions;
    data d = {0};
    d.X = make_matrix(rows, net.inputs);
    d.y = make_matrix(rows, net.outputs);
    *net.cur_iteration = 999;
    for (int it = 0; it < 7; ++it) {
        for (int r = 0; r < rows; ++r) {
            for (int c = 0; c < d.X.cols; ++c) d.X.vals[r][c] = rand_uniform(-1, 1);
            for (int c = 0; c < d.y.cols; ++c) d.y.vals[r][c] = rand_uniform(-1, 1);
        }
        train_network(net, d);
        printf("iteration %d\n", *net.cur_iteration);
        for (int i = 0; i < net.n; ++i) {
            layer l = net.layers[i];
            if (l.type != CONVOLUTIONAL) continue;
            char b[64];
            sprintf(b, "layers.%d.conv.weight", i); dump(b, l.weights, l.nweights);
            sprintf(b, "ema.layers.%d.conv.weight", i); dump(b, l.weights_ema, l.nweights);
            const char *bias = l.batch_normalize ? "bn.bias" : "conv.bias";
            sprintf(b, "layers.%d.%s", i, bias); dump(b, l.biases, l.n);
            sprintf(b, "ema.layers.%d.%s", i, bias); dump(b, l.biases_ema, l.n);
            if (l.batch_normalize) {
                sprintf(b, "layers.%d.bn.weight", i); dump(b, l.scales, l.n);
                sprintf(b, "ema.layers.%d.bn.weight", i); dump(b, l.scales_ema, l.n);
            }
        }
    }
    free_data(d);
    return 0;
}
