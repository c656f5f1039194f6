/* Darknet-side generator of the head/layer references in tests/data/heads/ (see make_ref.sh and the README
 * there). Links Darknet's own objects (AlexeyAB/darknet 59596d7, CPU build).
 *
 *   harness <cfg> <image> <outdir> <seed> <last_conv_scale> <thresh>...
 *
 * 1. parse the cfg with batch 1; from srand(seed), draw every conv's weights (Darknet's init formula),
 *    non-trivial biases and BN statistics, scale the last conv's weights by last_conv_scale (so the head outputs
 *    are spread and boxes are not ties), and save_weights to <outdir>/net.weights;
 * 2. then exactly what `detector test` does: parse again, load_weights, fuse_conv_batchnorm,
 *    calculate_binary_weights, load_image (stb), resize_image or letterbox_image, network_predict;
 * 3. dump input.bin, every layer's l.output as layer_XXX_<type>.bin, manifest.json;
 * 4. per threshold: network_predict again (the region tree decode rewrites l.output; a [crnn] layer's hidden state
 *    is zeroed first, so it is again the first prediction after loading), get_network_boxes(thresh,
 *    hier .5, map 0, relative 1, letter), then NMS as test_detector (nms .45, the last detection layer's
 *    nms_kind) -> detections_<thresh>.json with the detections that have a prob > thresh before and after NMS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "darknet.h"
#include "network.h"
#include "parser.h"
#include "utils.h"
#include "image.h"
#include "box.h"

static void write_floats(const char *path, const float *x, int n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(x, sizeof(float), n, f);
    fclose(f);
}

/* The type names of the reference manifests (get_layer_string has no name for these two). */
static const char *type_name(layer l) {
    if (l.type == UPSAMPLE) return "upsample";
    if (l.type == REORG || l.type == REORG_OLD) return "reorg";
    if (l.type == CONTRASTIVE) return "contrastive";
    return get_layer_string(l.type);
}

/* make_contrastive_layer sets l.outputs = l.inputs but leaves out_c/out_h/out_w at 0: its input's shape stands in
 * (c*h*w = outputs), as candle-darknet records it. */
static int out_c(layer l) { return l.type == CONTRASTIVE ? l.c : l.out_c; }
static int out_h(layer l) { return l.type == CONTRASTIVE ? l.h : l.out_h; }
static int out_w(layer l) { return l.type == CONTRASTIVE ? l.w : l.out_w; }

static float U(float a, float b) { return a + (b - a) * ((float)rand() / RAND_MAX); }

/* Every parameter drawn here from srand(seed): make_region_layer, make_yolo_layer and make_gaussian_yolo_layer
 * call srand(time(0)), so the parser's own initialisation is not reproducible. */
static void randomize_conv(layer *l) {
    int j;
    /* Darknet's initialisation formula (make_convolutional_layer). */
    float scale = sqrtf(2.f / (l->size * l->size * l->c / l->groups));
    for (j = 0; j < l->nweights; ++j) l->weights[j] = scale * U(-1.f, 1.f);
    for (j = 0; j < l->n; ++j) {
        l->biases[j] = U(-0.2f, 0.2f);
        if (l->batch_normalize) {
            l->scales[j] = U(0.5f, 1.5f);
            l->rolling_mean[j] = U(-0.1f, 0.1f);
            l->rolling_variance[j] = U(0.5f, 1.5f);
        }
    }
}

static void randomize(network *net, float last_scale, int seed) {
    int i, j, last = -1;
    srand(seed);
    for (i = 0; i < net->n; ++i) if (net->layers[i].type == CONVOLUTIONAL) last = i;
    for (i = 0; i < net->n; ++i) {
        layer *l = &net->layers[i];
        if (l->type == CRNN) {
            /* The three convolutions of make_crnn_layer, in load_weights order. */
            randomize_conv(l->input_layer);
            randomize_conv(l->self_layer);
            randomize_conv(l->output_layer);
            continue;
        }
        if (l->type != CONVOLUTIONAL) continue;
        randomize_conv(l);
        if (i == last) for (j = 0; j < l->nweights; ++j) l->weights[j] *= last_scale;
    }
}

/* A [crnn] layer keeps its hidden state across network_predict calls (zero after loading): zeroing it makes
 * each prediction the first one after loading, as `detector test` computes a single image. */
static void reset_crnn_state(network net) {
    int i;
    for (i = 0; i < net.n; ++i) {
        layer l = net.layers[i];
        if (l.type == CRNN) memset(l.state, 0, sizeof(float) * l.hidden * l.batch * (l.steps + 1));
    }
}

static void dump_dets(const char *path, detection *dets, int n, float thresh, int classes, image im,
                      FILE *f, const char *stage) {
    int i, j, first = 1;
    fprintf(f, "  \"%s\": [\n", stage);
    for (i = 0; i < n; ++i) {
        int any = 0;
        for (j = 0; j < classes; ++j) if (dets[i].prob[j] > thresh) any = 1;
        if (!any) continue;
        box b = dets[i].bbox;
        fprintf(f, "%s    {\"det_index\": %d, \"bbox_rel_cxcywh\": [%.9g, %.9g, %.9g, %.9g], \"objectness\": %.9g, \"probs\": {",
                first ? "" : ",\n", i, b.x, b.y, b.w, b.h, dets[i].objectness);
        int pf = 1;
        for (j = 0; j < classes; ++j) if (dets[i].prob[j] > thresh) {
            fprintf(f, "%s\"%d\": %.9g", pf ? "" : ", ", j, dets[i].prob[j]);
            pf = 0;
        }
        fprintf(f, "}}");
        first = 0;
    }
    fprintf(f, "\n  ]");
    (void)path; (void)im;
}

int main(int argc, char **argv) {
    if (argc < 7) { fprintf(stderr, "usage: harness cfg image outdir seed last_conv_scale thresh...\n"); return 1; }
    char *cfg = argv[1], *imfile = argv[2], *out = argv[3];
    int seed = atoi(argv[4]);
    float last_scale = atof(argv[5]);
    char path[4096];
    /* darknet.c's main sets this in a CPU build; binary_align_weights inverts the packed weights when it is >= 0. */
    gpu_index = -1;

    network net = parse_network_cfg_custom(cfg, 1, 1);
    randomize(&net, last_scale, seed);
    snprintf(path, sizeof path, "%s/net.weights", out);
    save_weights(net, path);
    free_network(net);

    /* detector test (test_detector in src/detector.c) from here on. */
    net = parse_network_cfg_custom(cfg, 1, 1);
    load_weights(&net, path);
    fuse_conv_batchnorm(net);
    calculate_binary_weights(net);
    image im = load_image(imfile, 0, 0, net.c);
    image sized = net.letter_box ? letterbox_image(im, net.w, net.h) : resize_image(im, net.w, net.h);
    snprintf(path, sizeof path, "%s/input.bin", out);
    write_floats(path, sized.data, net.w * net.h * net.c);
    network_predict(net, sized.data);

    snprintf(path, sizeof path, "%s/manifest.json", out);
    FILE *m = fopen(path, "w");
    fprintf(m, "{\n  \"net_w\": %d, \"net_h\": %d, \"net_c\": %d, \"image_w\": %d, \"image_h\": %d,\n"
               "  \"letterbox\": %d, \"fused_conv_bn\": 1,\n  \"input\": {\"file\": \"input.bin\"},\n  \"layers\": [\n",
            net.w, net.h, net.c, im.w, im.h, net.letter_box);
    int i, k;
    for (i = 0; i < net.n; ++i) {
        layer l = net.layers[i];
        char file[256];
        snprintf(file, sizeof file, "layer_%03d_%s.bin", i, type_name(l));
        snprintf(path, sizeof path, "%s/%s", out, file);
        write_floats(path, l.output, l.outputs);
        fprintf(m, "    {\"index\": %d, \"type\": \"%s\", \"c\": %d, \"h\": %d, \"w\": %d, \"outputs\": %d, \"file\": \"%s\"}%s\n",
                i, type_name(l), out_c(l), out_h(l), out_w(l), l.outputs, file, i + 1 < net.n ? "," : "");
    }
    fprintf(m, "  ]\n}\n");
    fclose(m);

    layer l = net.layers[net.n - 1];
    for (k = 0; k < net.n; ++k) {
        layer lk = net.layers[k];
        if (lk.type == YOLO || lk.type == GAUSSIAN_YOLO || lk.type == REGION) l = lk;
    }
    float nms = .45f;
    int t;
    for (t = 6; t < argc; ++t) {
        float thresh = atof(argv[t]);
        reset_crnn_state(net);
        network_predict(net, sized.data);
        int nboxes = 0;
        detection *dets = get_network_boxes(&net, im.w, im.h, thresh, .5f, 0, 1, &nboxes, net.letter_box);
        snprintf(path, sizeof path, "%s/detections_%s.json", out, argv[t]);
        FILE *f = fopen(path, "w");
        fprintf(f, "{\n  \"thresh\": %.9g, \"hier_thresh\": 0.5, \"nms\": %.9g, \"nms_kind\": \"%s\", \"beta_nms\": %.9g,\n"
                   "  \"letterbox\": %d, \"image_w\": %d, \"image_h\": %d, \"classes\": %d, \"num_boxes_from_get_network_boxes\": %d,\n",
                thresh, nms, l.nms_kind == GREEDY_NMS ? "greedynms" : l.nms_kind == DIOU_NMS ? "diounms" : l.nms_kind == CORNERS_NMS ? "cornersnms" : "default", l.beta_nms, net.letter_box, im.w, im.h, l.classes, nboxes);
        dump_dets(path, dets, nboxes, thresh, l.classes, im, f, "before_nms");
        fprintf(f, ",\n");
        if (l.nms_kind == DEFAULT_NMS) do_nms_sort(dets, nboxes, l.classes, nms);
        else diounms_sort(dets, nboxes, l.classes, nms, l.nms_kind, l.beta_nms);
        dump_dets(path, dets, nboxes, thresh, l.classes, im, f, "after_nms");
        fprintf(f, "\n}\n");
        fclose(f);
        free_detections(dets, nboxes);
    }
    return 0;
}
