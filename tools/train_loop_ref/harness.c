// K iterations of train_detector's loop body (src/detector.c), run by Darknet itself, with one loader thread
// and a fixed srand: per iteration the multi-scale draw (if random), load_data_detection called exactly as the
// detector loop's loader thread calls it (load_thread with the same load_args), then train_network. Dumps
// the initial weights, and per iteration the scalars (loss, every yolo cost, rate, seen, size, hashes of the
// batch) and every conv tensor after the update.
//
// Built plain, this is Darknet's CPU training step as it is; with -DGRADIENT_FLOW_FIX see below.
//
// Usage: harness <cfg> <train list> <weights|-> <seed> <K> <outdir> [dump_x [dump_updates]]
//   <outdir>/initial.weights             save_weights of the network the loop starts from
//   <outdir>/iterations.jsonl            one JSON object per iteration
//   <outdir>/iter_NNN.safetensors        every conv tensor after update NNN (names as candle-darknet's)
//   <outdir>/iter_NNN_x.bin, _y.bin      the batch (only with dump_x = 1)
//   <outdir>/iter_NNN_updates.safetensors  weight/scale/bias_updates after update NNN (dump_updates = 1)
//
// Differences from a real `darknet detector train` run, all about the order of rand() calls: Darknet's loader
// runs in another thread, prefetching batch k+1 while batch k trains, and throws away its first prefetched
// batch at the first multi-scale resize; the main thread's rand_scale draw then races with the loader's draws
// of the shared glibc stream. Here the loop is sequential (draw, load, train), the order a single thread
// gives, with no discarded batch.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <math.h>
#include "darknet.h"
#include "network.h"
#include "parser.h"
#include "data.h"
#include "utils.h"
#include "list.h"

void *load_thread(void *ptr); // src/data.c (not in data.h)

#ifdef GRADIENT_FLOW_FIX
// Built with -DGRADIENT_FLOW_FIX (and linked first, with --allow-multiple-definition), the harness corrects
// two things in CPU Darknet's backward pass that make its gradient differ from the derivative of the loss
// (and from Darknet's CUDA build):
//  1. col2im_cpu_ext (src/col2im.c) starts with caffe_set(..., 0): a convolution's backward OVERWRITES the
//     previous layer's delta, discarding what routes/shortcuts of later layers had already added there.
//     Here it accumulates, as the CUDA build's cudnnConvolutionBackwardData with beta = 1 does.
//  2. forward_network zeroes l.delta only for layers with l.train set (convolutional, maxpool, shortcut):
//     route and upsample deltas are never reset and keep growing over all mini-batches. Here every
//     layer's delta is zeroed before each mini-batch (train_network_fixed), as forward_network_gpu does.
static inline int a_in(int a, int b) { return (unsigned)a < (unsigned)b; }
void col2im_cpu_ext(const float *data_col, const int channels, const int height, const int width,
                    const int kernel_h, const int kernel_w, const int pad_h, const int pad_w,
                    const int stride_h, const int stride_w, const int dilation_h, const int dilation_w,
                    float *data_im) {
    const int output_h = (height + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) / stride_h + 1;
    const int output_w = (width + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) / stride_w + 1;
    const int channel_size = height * width;
    int channel, kr, kc, orow, ocol;
    for (channel = channels; channel--; data_im += channel_size) {
        for (kr = 0; kr < kernel_h; kr++) {
            for (kc = 0; kc < kernel_w; kc++) {
                int ir = -pad_h + kr * dilation_h;
                for (orow = output_h; orow; orow--) {
                    if (!a_in(ir, height)) {
                        data_col += output_w;
                    } else {
                        int ic = -pad_w + kc * dilation_w;
                        for (ocol = output_w; ocol; ocol--) {
                            if (a_in(ic, width)) data_im[ir * width + ic] += *data_col;
                            data_col++;
                            ic += stride_w;
                        }
                    }
                    ir += stride_h;
                }
            }
        }
    }
}

// train_network (src/network.c) with every delta zeroed before each mini-batch.
static float train_network_fixed(network net, data d) {
    int batch = net.batch, n = d.X.rows / batch, i, k;
    float *X = (float *)xcalloc(batch * d.X.cols, sizeof(float));
    float *y = (float *)xcalloc(batch * d.y.cols, sizeof(float));
    float sum = 0;
    for (i = 0; i < n; ++i) {
        get_next_batch(d, batch, i * batch, X, y);
        net.current_subdivision = i;
        for (k = 0; k < net.n; ++k)
            if (net.layers[k].delta) memset(net.layers[k].delta, 0, sizeof(float) * net.layers[k].outputs * net.layers[k].batch);
        sum += train_network_datum(net, X, y);
    }
    (*net.cur_iteration) += 1;
    update_network(net);
    free(X);
    free(y);
    return sum / (n * batch);
}
#define TRAIN_NETWORK train_network_fixed
#else
#define TRAIN_NETWORK train_network
#endif

static uint64_t fnv1a(const float *a, size_t n) {
    const unsigned char *p = (const unsigned char *)a;
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i;
    for (i = 0; i < n * sizeof(float); ++i) { h ^= p[i]; h *= 0x100000001b3ULL; }
    return h;
}

typedef struct { char name[64]; int shape[4]; int dims; const float *data; size_t n; } tensor;

static void add(tensor *t, int *nt, const char *name, int layer, const float *d, int dims, int s0, int s1, int s2, int s3) {
    tensor *x = &t[(*nt)++];
    snprintf(x->name, sizeof(x->name), "layers.%d.%s", layer, name);
    x->dims = dims; x->shape[0] = s0; x->shape[1] = s1; x->shape[2] = s2; x->shape[3] = s3;
    x->n = (size_t)s0 * (dims > 1 ? s1 : 1) * (dims > 2 ? s2 : 1) * (dims > 3 ? s3 : 1);
    x->data = d;
}

// A safetensors file (8-byte header length, JSON header, raw little-endian f32 data).
static void write_safetensors(const char *path, tensor *t, int nt) {
    size_t cap = 256 + (size_t)nt * 160, len = 0, off = 0;
    char *hdr = (char *)calloc(cap, 1);
    int i, j;
    len += sprintf(hdr + len, "{");
    for (i = 0; i < nt; ++i) {
        len += sprintf(hdr + len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "", t[i].name);
        for (j = 0; j < t[i].dims; ++j) len += sprintf(hdr + len, "%s%d", j ? "," : "", t[i].shape[j]);
        len += sprintf(hdr + len, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].n * 4);
        off += t[i].n * 4;
    }
    len += sprintf(hdr + len, "}");
    while (len % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "cannot write %s\n", path); exit(1); }
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, len, f);
    for (i = 0; i < nt; ++i) fwrite(t[i].data, 4, t[i].n, f);
    fclose(f);
    free(hdr);
}

static void dump_weights(network net, const char *path) {
    tensor *t = (tensor *)calloc((size_t)net.n * 5, sizeof(tensor));
    int nt = 0, i;
    for (i = 0; i < net.n; ++i) {
        layer l = net.layers[i];
        if (l.type != CONVOLUTIONAL) continue;
        add(t, &nt, "conv.weight", i, l.weights, 4, l.n, l.c / l.groups, l.size, l.size);
        if (l.batch_normalize) {
            add(t, &nt, "bn.bias", i, l.biases, 1, l.n, 0, 0, 0);
            add(t, &nt, "bn.weight", i, l.scales, 1, l.n, 0, 0, 0);
            add(t, &nt, "bn.running_mean", i, l.rolling_mean, 1, l.n, 0, 0, 0);
            add(t, &nt, "bn.running_var", i, l.rolling_variance, 1, l.n, 0, 0, 0);
        } else {
            add(t, &nt, "conv.bias", i, l.biases, 1, l.n, 0, 0, 0);
        }
    }
    write_safetensors(path, t, nt);
    free(t);
}

// Darknet's accumulators after update NNN (u = momentum·(Σ −grad − decay·batch·w), update_convolutional_layer):
// full-precision gradients, where the weights after an update only resolve it to an ulp of the weight.
static void dump_updates(network net, const char *path) {
    tensor *t = (tensor *)calloc((size_t)net.n * 3, sizeof(tensor));
    int nt = 0, i;
    for (i = 0; i < net.n; ++i) {
        layer l = net.layers[i];
        if (l.type != CONVOLUTIONAL) continue;
        add(t, &nt, "conv.weight.update", i, l.weight_updates, 4, l.n, l.c / l.groups, l.size, l.size);
        if (l.batch_normalize) {
            add(t, &nt, "bn.bias.update", i, l.bias_updates, 1, l.n, 0, 0, 0);
            add(t, &nt, "bn.weight.update", i, l.scale_updates, 1, l.n, 0, 0, 0);
        } else {
            add(t, &nt, "conv.bias.update", i, l.bias_updates, 1, l.n, 0, 0, 0);
        }
    }
    write_safetensors(path, t, nt);
    free(t);
}

static void dump_bin(const char *path, const float *a, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, sizeof(float), n, f) != n) { fprintf(stderr, "cannot write %s\n", path); exit(1); }
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc < 7) { fprintf(stderr, "usage: harness cfg train_list weights|- seed K outdir [dump_x [dump_updates]]\n"); return 2; }
    char *cfgfile = argv[1], *train_images = argv[2], *weightfile = argv[3];
    unsigned seed = (unsigned)strtoul(argv[4], 0, 10);
    int K = atoi(argv[5]);
    const char *out = argv[6];
    int dump_x = argc > 7 && atoi(argv[7]);
    int dump_u = argc > 8 && atoi(argv[8]);
    char path[4096];

    // train_detector: parse (its random initialisation draws from rand()), load the weights.
    srand(seed);
    network net = parse_network_cfg(cfgfile);
    if (strcmp(weightfile, "-")) load_weights(&net, weightfile);
    snprintf(path, sizeof(path), "%s/initial.weights", out);
    save_weights(net, path);

    const int imgs = net.batch * net.subdivisions;
    layer l = net.layers[net.n - 1];
    int k;
    for (k = 0; k < net.n; ++k) {
        layer lk = net.layers[k];
        if (lk.type == YOLO || lk.type == GAUSSIAN_YOLO || lk.type == REGION) l = lk;
    }
    list *plist = get_paths(train_images);
    char **paths = (char **)list_to_array(plist);
    const int init_w = net.w, init_h = net.h;

    // The load_args of train_detector, with one loader thread.
    load_args args = { 0 };
    data buffer;
    args.w = net.w; args.h = net.h; args.c = net.c;
    args.paths = paths; args.n = imgs; args.m = plist->size;
    args.classes = l.classes; args.flip = net.flip; args.jitter = l.jitter; args.resize = l.resize;
    args.num_boxes = l.max_boxes; args.truth_size = l.truth_size;
    net.num_boxes = args.num_boxes;
    net.train_images_num = plist->size;
    args.d = &buffer; args.type = DETECTION_DATA; args.threads = 1;
    args.angle = net.angle; args.gaussian_noise = net.gaussian_noise; args.blur = net.blur;
    args.mixup = net.mixup; args.exposure = net.exposure; args.saturation = net.saturation;
    args.hue = net.hue; args.letter_box = net.letter_box; args.mosaic_bound = net.mosaic_bound;
    args.contrastive = net.contrastive; args.contrastive_jit_flip = net.contrastive_jit_flip;
    args.contrastive_color = net.contrastive_color;

    // train_detector re-seeds from time(0) here; the harness uses the fixed seed.
    srand(seed);
    snprintf(path, sizeof(path), "%s/iterations.jsonl", out);
    FILE *js = fopen(path, "w");
    if (!js) { fprintf(stderr, "cannot write %s\n", path); return 1; }
    float avg_loss = -1;
    int count = 0, it;
    for (it = 1; it <= K; ++it) {
        int resized = 0;
        float random_val = 0;
        if (l.random && count++ % 10 == 0) {
            float rand_coef = 1.4;
            if (l.random != 1.0) rand_coef = l.random;
            random_val = rand_scale(rand_coef);
            int dim_w = roundl(random_val*init_w / net.resize_step + 1) * net.resize_step;
            int dim_h = roundl(random_val*init_h / net.resize_step + 1) * net.resize_step;
            if (random_val < 1 && (dim_w > init_w || dim_h > init_h)) dim_w = init_w, dim_h = init_h;
            int max_dim_w = roundl(rand_coef*init_w / net.resize_step + 1) * net.resize_step;
            int max_dim_h = roundl(rand_coef*init_h / net.resize_step + 1) * net.resize_step;
            if (avg_loss < 0 || get_current_iteration(net) > net.max_batches - 100) {
                dim_w = max_dim_w;
                dim_h = max_dim_h;
            }
            if (dim_w < net.resize_step) dim_w = net.resize_step;
            if (dim_h < net.resize_step) dim_h = net.resize_step;
            args.w = dim_w;
            args.h = dim_h;
            resize_network(&net, dim_w, dim_h);
            resized = 1;
        }
        load_args *a = (load_args *)calloc(1, sizeof(load_args));
        *a = args;
        load_thread(a); // frees a; fills buffer exactly as the detector's loader thread
        data train = buffer;
        size_t nx = (size_t)train.X.rows * train.X.cols, ny = (size_t)train.y.rows * train.y.cols;
        float *xs = (float *)calloc(nx, sizeof(float)), *ys = (float *)calloc(ny, sizeof(float));
        int r;
        double xsum = 0;
        for (r = 0; r < train.X.rows; ++r) memcpy(xs + (size_t)r * train.X.cols, train.X.vals[r], train.X.cols * sizeof(float));
        for (r = 0; r < train.y.rows; ++r) memcpy(ys + (size_t)r * train.y.cols, train.y.vals[r], train.y.cols * sizeof(float));
        size_t q;
        int nboxes = 0;
        for (q = 0; q < nx; ++q) xsum += xs[q];
        for (q = 0; q < ny; q += 6) if (ys[q] != 0) ++nboxes;
        if (dump_x) {
            snprintf(path, sizeof(path), "%s/iter_%03d_x.bin", out, it); dump_bin(path, xs, nx);
            snprintf(path, sizeof(path), "%s/iter_%03d_y.bin", out, it); dump_bin(path, ys, ny);
        }

        float loss = TRAIN_NETWORK(net, train);
        if (avg_loss < 0 || avg_loss != avg_loss) avg_loss = loss;
        avg_loss = avg_loss*.9 + loss*.1;

        fprintf(js, "{\"iteration\":%d,\"cur_iteration\":%d,\"seen\":%llu,\"w\":%d,\"h\":%d,\"resized\":%d,"
                    "\"random_val\":%.9g,\"rate\":%.9g,\"loss\":%.9g,\"avg_loss\":%.9g,\"costs\":[",
                it, (int)get_current_iteration(net), (unsigned long long)*net.seen, net.w, net.h, resized,
                random_val, get_current_rate(net), loss, avg_loss);
        int first = 1;
        for (k = 0; k < net.n; ++k) {
            if (net.layers[k].type != YOLO) continue;
            fprintf(js, "%s{\"layer\":%d,\"cost\":%.9g}", first ? "" : ",", k, net.layers[k].cost[0]);
            first = 0;
        }
        fprintf(js, "],\"x_fnv\":\"%016llx\",\"y_fnv\":\"%016llx\",\"x_sum\":%.17g,\"boxes\":%d,\"n\":%d}\n",
                (unsigned long long)fnv1a(xs, nx), (unsigned long long)fnv1a(ys, ny), xsum, nboxes, train.X.rows);
        fflush(js);
        snprintf(path, sizeof(path), "%s/iter_%03d.safetensors", out, it);
        dump_weights(net, path);
        if (dump_u) {
            snprintf(path, sizeof(path), "%s/iter_%03d_updates.safetensors", out, it);
            dump_updates(net, path);
        }
        fprintf(stderr, "iteration %d: %dx%d loss %f rate %g\n", it, net.w, net.h, loss, get_current_rate(net));
        free(xs);
        free(ys);
        free_data(train);
    }
    fclose(js);
    return 0;
}
