// Dumps Darknet's get_current_rate for a list of iterations, and the parameters after three
// update_convolutional_layer calls, for each cfg given. Output: JSON in the file named by the first argument. See gen_rates.sh.
#include <stdio.h>
#include <stdlib.h>
#include "darknet.h"
#include "network.h"
#include "parser.h"
#include "convolutional_layer.h"

static FILE *out;

static float val(int k, int i) { return 0.1f * (float)((k * 7 + i * 3) % 11) - 0.5f; }

static void dump(const char *name, const float *a, int n, int last) {
    fprintf(out, "\"%s\": [", name);
    for (int i = 0; i < n; ++i) fprintf(out, "%s%.9g", i ? ", " : "", a[i]);
    fprintf(out, "]%s", last ? "" : ", ");
}

int main(int argc, char **argv) {
    static const int iters[] = {0, 1, 5, 10, 19, 20, 49, 50, 99, 100, 101, 150, 299, 300, 301, 400, 401, 699, 700,
                                999, 1000, 1001, 1300, 2000, 2500, 4999, 5000, 399999, 400000, 449999, 450000,
                                459999, 460000, 500000};
    const int n_iters = sizeof(iters) / sizeof(iters[0]);
    if (argc < 3) { fprintf(stderr, "usage: rate_update_harness out.json cfg...\n"); return 2; }
    out = fopen(argv[1], "w");
    if (!out) return 1;
    fprintf(out, "{");
    for (int c = 2; c < argc; ++c) {
        network net = parse_network_cfg_custom(argv[c], 0, 0);
        fprintf(out, "%s\"%s\": {\"iters\": [", c > 2 ? ", " : "", argv[c]);
        for (int i = 0; i < n_iters; ++i) fprintf(out, "%s%d", i ? ", " : "", iters[i]);
        fprintf(out, "], \"rates\": [");
        for (int i = 0; i < n_iters; ++i) {
            *net.seen = (uint64_t)iters[i] * net.batch * net.subdivisions;
            fprintf(out, "%s%.9g", i ? ", " : "", get_current_rate(net));
        }
        fprintf(out, "], ");
        // Three updates of the conv layer with fixed accumulated negative gradients.
        layer l = net.layers[0];
        for (int i = 0; i < l.nweights; ++i) { l.weights[i] = val(1, i); l.weight_updates[i] = 0; }
        for (int i = 0; i < l.n; ++i) {
            l.biases[i] = val(2, i); l.scales[i] = 1 + val(3, i);
            l.bias_updates[i] = l.scale_updates[i] = 0;
        }
        int batch = net.batch * net.subdivisions;
        for (int k = 0; k < 3; ++k) {
            for (int i = 0; i < l.nweights; ++i) l.weight_updates[i] += val(10 + k, i);
            for (int i = 0; i < l.n; ++i) { l.bias_updates[i] += val(20 + k, i); l.scale_updates[i] += val(30 + k, i); }
            *net.seen = (uint64_t)(1000 + k) * batch;
            update_convolutional_layer(l, batch, get_current_rate(net), net.momentum, net.decay);
        }
        fprintf(out, "\"update_rates\": [");
        for (int k = 0; k < 3; ++k) { *net.seen = (uint64_t)(1000 + k) * batch; fprintf(out, "%s%.9g", k ? ", " : "", get_current_rate(net)); }
        fprintf(out, "], ");
        dump("weights", l.weights, l.nweights, 0);
        dump("weight_updates", l.weight_updates, l.nweights, 0);
        dump("biases", l.biases, l.n, 0);
        dump("bias_updates", l.bias_updates, l.n, 0);
        dump("scales", l.scales, l.n, 0);
        dump("scale_updates", l.scale_updates, l.n, 1);
        fprintf(out, "}");
    }
    fprintf(out, "}\n");
    fclose(out);
    return 0;
}
