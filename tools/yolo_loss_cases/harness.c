// Runs Darknet's forward_yolo_layer (training branch) on a one-layer network and dumps l.output, l.delta and
// l.cost. Build against an AlexeyAB/darknet 59596d7 CPU tree (see gen.sh). Usage:
//   harness <cfg> <input.bin: raw yolo input, batch*outputs floats> <truth.bin: batch*max*6 floats> <outdir>
#include <stdio.h>
#include <stdlib.h>
#include "darknet.h"
#include "network.h"
#include "parser.h"
#include "yolo_layer.h"

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(1); }
    float *a = (float *)calloc(n, sizeof(float));
    if (fread(a, sizeof(float), n, f) != n) { fprintf(stderr, "%s: short read\n", path); exit(1); }
    fclose(f);
    return a;
}

static void write_floats(const char *dir, const char *name, const float *a, size_t n) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, sizeof(float), n, f) != n) { fprintf(stderr, "cannot write %s\n", path); exit(1); }
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: harness cfg input truth outdir\n"); return 2; }
    network net = parse_network_cfg_custom(argv[1], 0, 0);
    layer l = net.layers[0];
    if (l.type != YOLO) { fprintf(stderr, "layer 0 is not yolo\n"); return 1; }
    size_t n_out = (size_t)l.outputs * l.batch;
    size_t n_truth = (size_t)l.truths * l.batch;
    float *input = read_floats(argv[2], n_out);
    float *truth = read_floats(argv[3], n_truth);
    network_state state = {0};
    state.net = net;
    state.index = 0;
    state.train = 1;
    state.input = input;
    state.truth = truth;
    forward_yolo_layer(l, state);
    write_floats(argv[4], "output.bin", l.output, n_out);
    write_floats(argv[4], "delta.bin", l.delta, n_out);
    char path[1024];
    snprintf(path, sizeof(path), "%s/result.json", argv[4]);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"cost\": %.9g, \"batch\": %d, \"w\": %d, \"h\": %d, \"net_w\": %d, \"net_h\": %d, "
               "\"truths_per_image\": %d, \"total_bbox\": %d, \"rewritten_bbox\": %d}\n",
            l.cost[0], l.batch, l.w, l.h, net.w, net.h, l.truths, *net.total_bbox, *net.rewritten_bbox);
    fclose(f);
    return 0;
}
