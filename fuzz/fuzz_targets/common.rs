// Shared by the targets: a small detector cfg (conv, maxpool, conv, yolo) the weights targets load into.
use std::path::Path;

use candle_darknet::cfg::NetworkConfig;

pub const SMALL_CFG: &str = "[net]\nwidth=32\nheight=32\nchannels=3\n\n[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n[maxpool]\nsize=2\nstride=2\n\n[convolutional]\nfilters=24\nsize=1\nstride=1\npad=1\nactivation=linear\n\n[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=3\nnum=3\n";

pub fn small_cfg() -> NetworkConfig {
    NetworkConfig::parse(SMALL_CFG, Path::new("fuzz.cfg")).expect("the fuzz cfg parses")
}
