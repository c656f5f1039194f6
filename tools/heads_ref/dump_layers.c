/* Darknet-side dump of every layer of a network with given weights on one image, in the ../shared/reference
 * format (input.bin, layer_XXX_<type>.bin, manifest.json), exactly as `detector test` runs it: parse with
 * batch 1, load_weights, fuse_conv_batchnorm, calculate_binary_weights, load_image (stb),
 * resize_image or letterbox_image, network_predict. Links Darknet's own objects (59596d7, CPU build).
 *
 *   dump_layers <cfg> <weights> <image> <outdir> */
#include <stdio.h>
#include <stdlib.h>
#include "darknet.h"
#include "network.h"
#include "parser.h"
#include "utils.h"
#include "image.h"

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
    return get_layer_string(l.type);
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: dump_layers cfg weights image outdir\n"); return 1; }
    char *cfg = argv[1], *weights = argv[2], *imfile = argv[3], *out = argv[4];
    char path[4096];
    gpu_index = -1; /* as darknet.c's main in a CPU build */
    network net = parse_network_cfg_custom(cfg, 1, 1);
    load_weights(&net, weights);
    fuse_conv_batchnorm(net);
    calculate_binary_weights(net);
    image im = load_image(imfile, 0, 0, net.c);
    image sized = net.letter_box ? letterbox_image(im, net.w, net.h) : resize_image(im, net.w, net.h);
    snprintf(path, sizeof path, "%s/input.bin", out);
    write_floats(path, sized.data, net.w * net.h * net.c);
    network_predict(net, sized.data);

    snprintf(path, sizeof path, "%s/manifest.json", out);
    FILE *m = fopen(path, "w");
    if (!m) { perror(path); return 1; }
    fprintf(m, "{\n  \"net_w\": %d, \"net_h\": %d, \"net_c\": %d, \"image_w\": %d, \"image_h\": %d,\n"
               "  \"letterbox\": %d, \"fused_conv_bn\": 1,\n  \"input\": {\"file\": \"input.bin\"},\n  \"layers\": [\n",
            net.w, net.h, net.c, im.w, im.h, net.letter_box);
    for (int i = 0; i < net.n; ++i) {
        layer l = net.layers[i];
        char file[256];
        snprintf(file, sizeof file, "layer_%03d_%s.bin", i, type_name(l));
        snprintf(path, sizeof path, "%s/%s", out, file);
        write_floats(path, l.output, l.outputs);
        fprintf(m, "    {\"index\": %d, \"type\": \"%s\", \"c\": %d, \"h\": %d, \"w\": %d, \"outputs\": %d, \"file\": \"%s\"}%s\n",
                i, type_name(l), l.out_c, l.out_h, l.out_w, l.outputs, file, i + 1 < net.n ? "," : "");
    }
    fprintf(m, "  ]\n}\n");
    fclose(m);
    return 0;
}
