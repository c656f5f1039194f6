use super::*;
use crate::cpu::winograd::Tile;
use crate::layers::convolutional::{BatchNorm, Convolutional};
use candle_core::Device;
use std::sync::Arc;

/// Deterministic values in [-1, 1) (a 64-bit LCG).
fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Case {
    c: usize,
    h: usize,
    w: usize,
    filters: usize,
    size: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    dilation: usize,
    act: Activation,
    bn: bool,
}

/// Our kernel against the candle path (`conv2d` + broadcast bias/BN + candle activation) of the same layer,
/// batch 2.
fn check(case: &Case, seed: u64) {
    let dev = Device::Cpu;
    let cfg = ConvConfig {
        filters: case.filters,
        size: case.size,
        stride_x: case.stride,
        stride_y: case.stride,
        dilation: case.dilation,
        pad: case.pad,
        groups: case.groups,
        activation: case.act,
        batch_normalize: case.bn,
        share_index: None,
        flipped: false,
        xnor: false,
        bin_output: false,
    };
    let input = Shape::new(case.c, case.h, case.w);
    let out = |x: usize| (x + 2 * case.pad - case.size) / case.stride + 1;
    let output = Shape::new(case.filters, out(case.h), out(case.w));
    let wshape = (case.filters, case.c / case.groups, case.size, case.size);
    let nw = wshape.0 * wshape.1 * wshape.2 * wshape.3;
    let weight = Tensor::from_vec(rand_vec(nw, seed), wshape, &dev).unwrap();
    let f = case.filters;
    let vec_t = |v: Vec<f32>| Tensor::from_vec(v, (1, f, 1, 1), &dev).unwrap();
    let (bias, bn) = if case.bn {
        let var: Vec<f32> = rand_vec(f, seed + 3)
            .iter()
            .map(|v| v.abs() + 0.1)
            .collect();
        let bn = BatchNorm {
            scale: vec_t(rand_vec(f, seed + 1)),
            bias: vec_t(rand_vec(f, seed + 2)),
            running_mean: vec_t(rand_vec(f, seed + 4)),
            running_var: vec_t(var),
        };
        (None, Some(bn))
    } else {
        (
            Some(Tensor::from_vec(rand_vec(f, seed + 1), f, &dev).unwrap()),
            None,
        )
    };
    let pack = |winograd: WinogradChoice| {
        let packed = PackedConv::new(
            &cfg,
            input,
            output,
            &weight,
            bias.as_ref(),
            bn.as_ref().map(|bn| BnTensors {
                scale: &bn.scale,
                bias: &bn.bias,
                mean: &bn.running_mean,
                var: &bn.running_var,
                eps: crate::layers::convolutional::BN_EPS,
            }),
            &CpuOptions {
                winograd,
                ..Default::default()
            },
        )
        .unwrap()
        .expect("supported");
        Arc::new(packed)
    };
    let mut layer = Convolutional {
        cfg: cfg.clone(),
        input,
        output,
        weight: weight.clone(),
        bias: bias.clone(),
        bn: bn.clone(),
        xnor: None,
        cpu: None,
    };
    let x = Tensor::from_vec(
        rand_vec(2 * case.c * case.h * case.w, seed + 9),
        (2, case.c, case.h, case.w),
        &dev,
    )
    .unwrap();
    // The same input as a channel range of a wider tensor (what a `groups=2` route passes on at batch 2): read
    // in place, not copied (`planes::with_planes`).
    let pad = |n: usize, s: u64| {
        Tensor::from_vec(
            rand_vec(2 * n * case.h * case.w, s),
            (2, n, case.h, case.w),
            &dev,
        )
        .unwrap()
    };
    let wide = Tensor::cat(&[&pad(1, seed + 10), &x, &pad(3, seed + 11)], 1).unwrap();
    let view = wide.narrow(1, 1, case.c).unwrap();
    assert!(!view.is_contiguous());
    let want = layer.forward_candle(&x).unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
    let qualifies = case.size == 3
        && case.stride == 1
        && case.dilation == 1
        && case.groups == 1
        && case.c >= 8
        && case.filters >= 8
        && output.h.div_ceil(2) * output.w.div_ceil(2) >= 16;
    // Every CPU form: direct im2col + GEMM, and both Winograd tile sizes where the layer qualifies.
    for (choice, want_tile) in [
        (WinogradChoice::Off, None),
        (WinogradChoice::F2, qualifies.then_some(Tile::F2)),
        (WinogradChoice::F4, qualifies.then_some(Tile::F4)),
    ] {
        let packed = pack(choice);
        assert_eq!(packed.winograd_tile(), want_tile, "{choice:?}");
        layer.cpu = Some(packed);
        let got = layer.forward(&x).unwrap();
        assert_eq!(got.dims(), want.dims());
        let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let worst = g
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 2e-5 * scale,
            "{choice:?} c{} {}x{} f{} size{} s{} p{} g{} d{} {:?} bn={}: worst |diff| {worst} (scale {scale})",
            case.c,
            case.h,
            case.w,
            case.filters,
            case.size,
            case.stride,
            case.pad,
            case.groups,
            case.dilation,
            case.act,
            case.bn
        );
        eprintln!("{choice:?}: worst {worst:e} (scale {scale})");
        let from_view = layer.forward(&view).unwrap();
        let v = from_view.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            v == g,
            "{choice:?}: the channel-range view gives other values"
        );
    }
}

/// A 3×3 stride-1 pad-1 leaky layer with `f` filters and a bias.
fn leaky_3x3(f: usize) -> ConvConfig {
    ConvConfig {
        filters: f,
        size: 3,
        stride_x: 1,
        stride_y: 1,
        dilation: 1,
        pad: 1,
        groups: 1,
        activation: Activation::Leaky,
        batch_normalize: false,
        share_index: None,
        flipped: false,
        xnor: false,
        bin_output: false,
    }
}

/// A 3×3 leaky layer `c → f` on `hw × hw` maps with random weights and bias (seeds `seed`, `seed + 1`), packed
/// for the CPU with `winograd`.
fn leaky_layer(
    c: usize,
    hw: usize,
    f: usize,
    seed: u64,
    winograd: WinogradChoice,
) -> Convolutional {
    let dev = Device::Cpu;
    let cfg = leaky_3x3(f);
    let (input, output) = (Shape::new(c, hw, hw), Shape::new(f, hw, hw));
    let weight = Tensor::from_vec(rand_vec(f * c * 9, seed), (f, c, 3, 3), &dev).unwrap();
    let bias = Tensor::from_vec(rand_vec(f, seed + 1), f, &dev).unwrap();
    let opts = CpuOptions {
        winograd,
        ..Default::default()
    };
    let packed = PackedConv::new(&cfg, input, output, &weight, Some(&bias), None, &opts)
        .unwrap()
        .unwrap();
    Convolutional {
        cfg,
        input,
        output,
        weight,
        bias: Some(bias),
        bn: None,
        xnor: None,
        cpu: Some(Arc::new(packed)),
    }
}

/// `Auto` runs F(2×2) on a 13×13 map at batch 1 and switches to F(4×4) at batch 4 (64 tiles), both equal to
/// candle's conv2d.
#[test]
fn auto_switches_to_f4_for_batches() {
    let dev = Device::Cpu;
    let (c, hw, f) = (24, 13, 16);
    let layer = leaky_layer(c, hw, f, 11, WinogradChoice::Auto);
    let packed = layer.cpu.clone().unwrap();
    assert_eq!(packed.kernel_name(), "winograd-f2/f4");
    for batch in [1, 4] {
        let x = Tensor::from_vec(
            rand_vec(batch * c * hw * hw, 13 + batch as u64),
            (batch, c, hw, hw),
            &dev,
        )
        .unwrap();
        let want = layer
            .forward_candle(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = layer
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 2e-5 * scale,
            "batch {batch}: worst {worst} at scale {scale}"
        );
        // The F(4×4) weights exist once a batched call ran.
        let made = packed.batch_f4.as_ref().unwrap().u.get().is_some();
        assert_eq!(made, batch == 4, "batch {batch}");
    }
}

#[test]
fn matches_candle_conv2d() {
    use Activation::*;
    #[rustfmt::skip]
    let cases = [
        // c, h, w, filters, size, stride, pad, groups, dilation, act, bn
        (3, 17, 19, 16, 3, 1, 1, 1, 1, Leaky, false),
        (8, 13, 13, 40, 3, 1, 1, 1, 1, Mish, true),
        (8, 16, 15, 24, 3, 2, 1, 1, 1, Leaky, true),
        (16, 9, 11, 33, 1, 1, 0, 1, 1, Linear, false),
        (12, 10, 10, 12, 3, 1, 1, 2, 1, Swish, false),
        (12, 10, 10, 12, 3, 1, 1, 12, 1, Logistic, true),
        (6, 12, 12, 8, 3, 1, 1, 1, 2, Leaky, false),
        (4, 14, 13, 10, 5, 2, 2, 1, 1, Relu, false),
        (5, 8, 8, 7, 1, 2, 0, 1, 1, Tanh, false),
        // Maps narrower than the kernel reach (4×4 with 3×3/2, 5×5/2 and 1×1/2): segments with no input.
        (6, 4, 4, 8, 3, 2, 1, 1, 1, Leaky, false),
        (6, 4, 5, 8, 5, 2, 2, 1, 1, Leaky, false),
        (6, 3, 3, 8, 3, 1, 1, 1, 2, Leaky, false),
        (64, 13, 13, 96, 3, 1, 1, 1, 1, Leaky, false),
        (32, 40, 40, 48, 1, 1, 0, 1, 1, Mish, false),
        (16, 37, 41, 32, 3, 1, 1, 1, 1, Leaky, false),
        // Winograd on small odd maps (30 and 16 tiles per image: one chunk shared by the threads).
        (24, 9, 11, 16, 3, 1, 1, 1, 1, Leaky, true),
        (8, 7, 7, 12, 3, 1, 1, 1, 1, Mish, false),
        // Several pixel tiles per image (k = 576 → tiles of ~455 pixels).
        (64, 30, 31, 20, 3, 1, 1, 1, 1, Leaky, true),
        (64, 50, 47, 8, 3, 2, 1, 1, 1, Mish, false),
    ];
    for (i, &(c, h, w, filters, size, stride, pad, groups, dilation, act, bn)) in
        cases.iter().enumerate()
    {
        let case = Case {
            c,
            h,
            w,
            filters,
            size,
            stride,
            pad,
            groups,
            dilation,
            act,
            bn,
        };
        check(&case, 100 * i as u64);
    }
}

/// `cargo test --release --lib cpu::conv::tests::layer_speed -- --ignored --nocapture`: ms per forward of
/// single layers of yolov4-tiny at batch 1 with each form (best of 7 rounds; the machine is shared).
#[test]
#[ignore]
fn layer_speed() {
    let dev = Device::Cpu;
    for &(c, hw, f) in &[
        (512, 13, 512),
        (256, 26, 256),
        (128, 26, 128),
        (64, 104, 64),
        (384, 26, 256),
    ] {
        let x = Tensor::from_vec(rand_vec(c * hw * hw, 3), (1, c, hw, hw), &dev).unwrap();
        for choice in [WinogradChoice::Off, WinogradChoice::F2, WinogradChoice::F4] {
            let p = leaky_layer(c, hw, f, 1, choice).cpu.unwrap();
            let best = (0..7)
                .map(|_| {
                    let t = std::time::Instant::now();
                    for _ in 0..10 {
                        p.forward(&x).unwrap();
                    }
                    t.elapsed().as_secs_f64() / 10.0
                })
                .fold(f64::MAX, f64::min);
            // Cold: weights evicted from the caches before each forward (as in a network at batch 1).
            let mut junk = vec![1u8; 256 << 20];
            let cold = (0..7)
                .map(|i| {
                    junk.iter_mut()
                        .step_by(64)
                        .for_each(|b| *b = b.wrapping_add(i as u8));
                    let t = std::time::Instant::now();
                    p.forward(&x).unwrap();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min);
            eprintln!(
                "{c}x{hw}x{hw} -> {f}: {choice:?} {:.3} ms, cold {:.3} ms",
                best * 1e3,
                cold * 1e3
            );
        }
    }
}

/// A Winograd layer run while this thread already holds the shared buffers (as when a thread waiting in one
/// layer's parallel section runs another forward: a caller that parallelises over images with rayon) uses its
/// own buffers and gives the same result.
#[test]
fn winograd_reentered_on_one_thread() {
    let dev = Device::Cpu;
    let (c, hw, f) = (32, 13, 24);
    let packed = leaky_layer(c, hw, f, 21, WinogradChoice::Auto).cpu.unwrap();
    let x = Tensor::from_vec(rand_vec(c * hw * hw, 23), (1, c, hw, hw), &dev).unwrap();
    let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let alone = flat(packed.forward(&x).unwrap());
    let nested = super::winograd::SHARED.with(|cell| {
        let _held = cell.borrow_mut();
        flat(packed.forward(&x).unwrap())
    });
    assert_eq!(nested, alone);
}

/// `cargo test --release --lib cpu::conv::tests::direct_speed -- --ignored --nocapture`: ms per forward of the
/// direct (non-Winograd) layers of yolov4 at batch 1 that dominate its time: 1×1 layers on large maps (mish
/// and leaky) and 3×3 stride-2 layers (best of 7 rounds; the machine is shared).
#[test]
#[ignore]
fn direct_speed() {
    let dev = Device::Cpu;
    for &(c, hw, f, size, stride, act) in &[
        (64, 208, 64, 1, 1, Activation::Mish),
        (64, 208, 64, 1, 1, Activation::Linear),
        (128, 52, 128, 1, 1, Activation::Mish),
        (512, 26, 256, 1, 1, Activation::Leaky),
        (32, 416, 64, 3, 2, Activation::Mish),
        (32, 208, 64, 3, 2, Activation::Leaky),
        (64, 208, 128, 3, 2, Activation::Mish),
        (512, 26, 1024, 3, 2, Activation::Mish),
    ] {
        let (p, o) = square_layer((c, hw, f, size, stride), act, WinogradChoice::default(), 1);
        let x = Tensor::from_vec(rand_vec(c * hw * hw, 3), (1, c, hw, hw), &dev).unwrap();
        let best = (0..7)
            .map(|_| {
                let t = std::time::Instant::now();
                for _ in 0..5 {
                    p.forward(&x).unwrap();
                }
                t.elapsed().as_secs_f64() / 5.0
            })
            .fold(f64::MAX, f64::min);
        let gflop = 2.0 * (f * c * size * size * o * o) as f64 / 1e9;
        eprintln!(
            "{c}x{hw}x{hw} -> {f}x{o}x{o} {size}x{size}/{stride} {act:?}: {:.3} ms, {:.0} GFLOP/s",
            best * 1e3,
            gflop / best
        );
    }
}

/// A folded `[shortcut]` (`Post::Add`) and `[yolo]` (`Post::Yolo`) give exactly the separate passes — the conv's
/// output plus the other input, and `cpu::yolo::forward` of the conv's output — on every path that runs an
/// epilogue: the direct form (1×1, and a 3×3 stride-2 layer split over channels with a shared im2col), Winograd
/// F(2×2) and F(4×4), with a thread's own chunks and with the threads sharing a chunk, at batch 1 and 2.
#[test]
fn folded_layers_equal_separate_passes() {
    use crate::cpu::yolo::{self, EntryOp};
    let dev = Device::Cpu;
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let ops = [
        EntryOp::LogisticScaled,
        EntryOp::Scaled,
        EntryOp::Raw,
        EntryOp::Logistic,
    ];
    // (c, hw, f, size, stride, winograd)
    for &(c, hw, f, size, stride, wino) in &[
        (16, 20, 24, 1, 1, WinogradChoice::Off),
        (32, 26, 64, 3, 2, WinogradChoice::Off),
        (8, 13, 16, 3, 1, WinogradChoice::F2),
        (8, 52, 16, 3, 1, WinogradChoice::F4),
        (32, 26, 32, 3, 1, WinogradChoice::F4),
    ] {
        let (p, o) = square_layer((c, hw, f, size, stride), Activation::Leaky, wino, 5);
        for batch in [1, 2] {
            let x = Tensor::from_vec(rand_vec(batch * c * hw * hw, 7), (batch, c, hw, hw), &dev)
                .unwrap();
            let plain = p.forward(&x).unwrap();
            let from = rand_vec(batch * f * o * o, 8);
            let added = p
                .forward_post(std::slice::from_ref(&x), Some(&Post::Add(&from)))
                .unwrap();
            let want: Vec<f32> = flat(&plain).iter().zip(&from).map(|(a, b)| a + b).collect();
            let what = format!("{c}x{hw} -> {f} {size}x{size}/{stride} {wino:?} batch {batch}");
            assert_eq!(flat(&added), want, "shortcut folded into {what}");
            let post = Post::Yolo {
                ops: &ops,
                scale: 1.05,
                shift: -0.025,
            };
            let headed = p
                .forward_post(std::slice::from_ref(&x), Some(&post))
                .unwrap();
            let want = yolo::forward(&plain, &ops, 1.05, -0.025).unwrap();
            assert_eq!(flat(&headed), flat(&want), "yolo folded into {what}");
        }
        let short = vec![0f32; 3];
        assert!(p
            .forward_post(
                std::slice::from_ref(&plain_input(c, hw)),
                Some(&Post::Add(&short))
            )
            .is_err());
    }
}

fn plain_input(c: usize, hw: usize) -> Tensor {
    Tensor::from_vec(rand_vec(c * hw * hw, 9), (1, c, hw, hw), &Device::Cpu).unwrap()
}

/// A `size`×`size` stride-`stride` convolution `c → f` on `hw`×`hw` maps with `act`, random weights and bias
/// (seeds `seed`, `seed + 1`), packed with `winograd`; and its output side.
fn square_layer(
    (c, hw, f, size, stride): (usize, usize, usize, usize, usize),
    act: Activation,
    winograd: WinogradChoice,
    seed: u64,
) -> (PackedConv, usize) {
    let dev = Device::Cpu;
    let cfg = ConvConfig {
        size,
        stride_x: stride,
        stride_y: stride,
        pad: size / 2,
        activation: act,
        ..leaky_3x3(f)
    };
    let o = (hw + 2 * (size / 2) - size) / stride + 1;
    let weight = Tensor::from_vec(
        rand_vec(f * c * size * size, seed),
        (f, c, size, size),
        &dev,
    )
    .unwrap();
    let bias = Tensor::from_vec(rand_vec(f, seed + 1), f, &dev).unwrap();
    let opts = CpuOptions {
        winograd,
        ..Default::default()
    };
    let shapes = (Shape::new(c, hw, hw), Shape::new(f, o, o));
    let p = PackedConv::new(&cfg, shapes.0, shapes.1, &weight, Some(&bias), None, &opts)
        .unwrap()
        .unwrap();
    (p, o)
}

/// A direct layer that shares one im2col between its channel blocks, run while this thread already holds the
/// shared buffer (a forward nested in a parallel section), uses a buffer of its own and gives the same result.
#[test]
fn shared_im2col_reentered_on_one_thread() {
    let (p, _) = square_layer(
        (32, 26, 64, 3, 2),
        Activation::Leaky,
        WinogradChoice::Off,
        11,
    );
    let x = plain_input(32, 26);
    let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let alone = flat(p.forward(&x).unwrap());
    let nested = super::SHARED_COL.with(|cell| {
        let _held = cell.borrow_mut();
        flat(p.forward(&x).unwrap())
    });
    assert_eq!(nested, alone);
}
