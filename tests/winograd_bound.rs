//! The stated error bound of our Winograd convolutions (docs/cpu-inference.md "Winograd error bound"): F(4×4, 3×3)
//! and F(2×2, 3×3), the default CPU kernels of 3×3 stride-1 layers, against the exact form (`--winograd off`:
//! im2col + GEMM, the arithmetic of Darknet's `im2col_cpu` + `gemm`), every layer of yolov4-tiny (official
//! weights) over the whole network at large sizes, on the worst input measured (uniform [0, 1) noise, what `export
//! --verify` feeds) and on a letterboxed photo.
//!
//! A Winograd tile sums transformed products, whose rounding grows with the magnitude of the products and not with
//! the result: near-zero outputs of a layer of large values can leave abs 1e-4 + rel 1e-4 (F(4×4) at 608 on noise:
//! 2.06e-4 at layer 2, 46 units of 2⁻²⁴·max|layer|). The bound is therefore the peer form of
//! [`Tolerance::peer`]: F(4×4) within 128 units of the layer's range, F(2×2) within 16; `--winograd off` (what
//! `export` verifies against, and `compare --winograd off`) has no such term.

mod common;
use common::official;

use candle_core::{Device, Tensor};
use candle_darknet::cfg::NetworkConfig;
use candle_darknet::compare::{diff_stats, Tolerance};
use candle_darknet::cpu::{CpuOptions, WinogradChoice};
use candle_darknet::export::verify_input;
use candle_darknet::image::{load_image, network_input};
use candle_darknet::network::{LoadOptions, Network};
use candle_darknet::weights::{darknet, NetWeights};

/// The stated bounds, in units of 2⁻²⁴ of each layer's largest value (twice the worst measured, next power of two).
const F4_BOUND: Tolerance = Tolerance::peer(128.0);
const F2_BOUND: Tolerance = Tolerance::peer(16.0);

/// Every layer's output with the given Winograd choice.
fn layers(
    cfg: &NetworkConfig,
    w: &NetWeights,
    x: &Tensor,
    winograd: WinogradChoice,
) -> Vec<Vec<f32>> {
    let opts = LoadOptions {
        cpu: CpuOptions {
            winograd,
            ..CpuOptions::default()
        },
        ..LoadOptions::default()
    };
    let net = Network::from_weights(cfg, w, &Device::Cpu, &opts).unwrap();
    net.forward_all(x)
        .unwrap()
        .iter()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

/// yolov4-tiny at `size` on noise and on bus.jpg letterboxed: each Winograd tile against the exact form.
fn check(size: usize) {
    let cfg = NetworkConfig::from_file(official("yolov4-tiny.cfg"))
        .unwrap()
        .with_size(size, size)
        .unwrap();
    let w = darknet::read(&cfg, &official("yolov4-tiny.weights")).unwrap();
    let bus = network_input(
        &load_image(&official("bus.jpg"), 3).unwrap(),
        size,
        size,
        true,
    );
    let inputs = [
        (
            "noise",
            verify_input(1, cfg.input_shape(), &Device::Cpu).unwrap(),
        ),
        (
            "bus.jpg letterboxed",
            Tensor::from_vec(bus.data, (1, 3, size, size), &Device::Cpu).unwrap(),
        ),
    ];
    for (what, x) in &inputs {
        let exact = layers(&cfg, &w, x, WinogradChoice::Off);
        for (tile, bound) in [
            (WinogradChoice::F4, F4_BOUND),
            (WinogradChoice::F2, F2_BOUND),
        ] {
            let got = layers(&cfg, &w, x, tile);
            let mut needed = (0f32, 0usize);
            for (i, (g, e)) in got.iter().zip(&exact).enumerate() {
                let d = diff_stats(g, e, bound);
                assert_eq!(
                    d.failing, 0,
                    "{size} {what} {tile:?}: layer {i}: {} of {} values beyond the bound (max abs {:.2e}, needed {:.1} units of range, bound {})",
                    d.failing, d.count, d.max_abs, d.needed_range_ulps, bound.range_ulps
                );
                if d.needed_range_ulps > needed.0 {
                    needed = (d.needed_range_ulps, i);
                }
            }
            println!(
                "{size}x{size} {what}, {tile:?}: every layer within the bound (needed {:.1} of {} units, layer {})",
                needed.0, bound.range_ulps, needed.1
            );
        }
    }
}

#[test]
fn winograd_error_within_the_stated_bound_at_608() {
    check(608);
}

#[test]
fn winograd_error_within_the_stated_bound_at_1280() {
    check(1280);
}
