//! Learning-rate schedule: `get_current_batch` and `get_current_rate` in src/network.c.
//!
//! Guards where Darknet would crash or hang (documented differences): `policy=step` with `step <= 0` (integer
//! division by zero in C) uses exponent 0; `policy=sgdr` with a zero cycle (`sgdr_cycle` and `max_batches` both 0,
//! an endless loop in C) uses a cycle of 1; `policy=poly` with `max_batches = 0` returns the base rate.

use std::cell::Cell;

use crate::cfg::{NetConfig, Policy};

/// `get_current_batch`: iterations done, `seen / (mini_batch · time_steps · subdivisions)`, where `seen` counts
/// images (`*net.seen += net.batch` per mini-batch) and Darknet's `net.batch` is `batch / subdivisions ·
/// time_steps`.
pub fn current_batch(net: &NetConfig, seen: u64) -> usize {
    let per_iteration = (net.mini_batch() * net.time_steps.max(1) * net.subdivisions.max(1)) as u64;
    (seen / per_iteration.max(1)) as usize
}

/// The π literal of Darknet's sgdr branch (`3.14159265`), kept as written so the cosine matches bit for bit.
#[allow(clippy::approx_constant)]
const DARKNET_SGDR_PI: f64 = 3.14159265;

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0x2545_F491_4F6C_DD1D) };
}

/// A deterministic uniform draw in [0, 1] (xorshift64*) for `policy=random` when the caller brings no generator.
fn internal_uniform() -> f32 {
    RNG.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32) / ((1u64 << 24) - 1) as f32
    })
}

/// `get_current_rate` for iteration `batch_num` (see [`current_batch`]). `policy=random` draws from an internal
/// deterministic generator; use [`current_rate_with`] to supply Darknet's `rand_uniform(0, 1)` stream.
pub fn current_rate(net: &NetConfig, batch_num: usize) -> f32 {
    current_rate_with(net, batch_num, &mut internal_uniform)
}

/// `get_current_rate` with the uniform [0, 1] draw of `policy=random` supplied by the caller.
pub fn current_rate_with(
    net: &NetConfig,
    batch_num: usize,
    uniform: &mut dyn FnMut() -> f32,
) -> f32 {
    let lr = net.learning_rate;
    let power = net.power as f64;
    if batch_num < net.burn_in {
        // pow((float)batch_num / burn_in, power): the ratio in float, the power in double.
        let ratio = batch_num as f32 / net.burn_in as f32;
        return (lr as f64 * (ratio as f64).powf(power)) as f32;
    }
    match net.policy {
        Policy::Constant => lr,
        Policy::Step => {
            let exponent = if net.step > 0 {
                batch_num as i64 / net.step
            } else {
                0
            };
            (lr as f64 * (net.scale as f64).powf(exponent as f64)) as f32
        }
        Policy::Steps => {
            let mut rate = lr;
            for (&step, &scale) in net.steps.iter().zip(&net.scales) {
                if step > batch_num as i64 {
                    return rate;
                }
                rate *= scale;
            }
            rate
        }
        Policy::Exp => (lr as f64 * (net.gamma as f64).powf(batch_num as f64)) as f32,
        Policy::Poly => {
            if net.max_batches == 0 {
                return lr;
            }
            let progress = batch_num as f32 / net.max_batches as f32;
            (lr as f64 * ((1.0 - progress) as f64).powf(power)) as f32
        }
        Policy::Random => (lr as f64 * (uniform() as f64).powf(power)) as f32,
        Policy::Sig => {
            // gamma * (batch_num - step) is float arithmetic in C; exp() is double.
            let z = net.gamma * (batch_num as i64 - net.step) as f32;
            (lr as f64 * (1.0 / (1.0 + (z as f64).exp()))) as f32
        }
        Policy::Sgdr => {
            let mut last_start = 0usize;
            let mut cycle = net.sgdr_cycle.max(1);
            while last_start + cycle < batch_num {
                last_start += cycle;
                cycle *= net.sgdr_mult.max(1);
            }
            // (float)(batch_num - start) * 3.14159265 / cycle: a double expression in C.
            let phase = (batch_num - last_start) as f32 as f64 * DARKNET_SGDR_PI / cycle as f64;
            let min = net.learning_rate_min;
            (min as f64 + 0.5 * (lr - min) as f64 * (1.0 + phase.cos())) as f32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfg::NetworkConfig;

    fn net(keys: &str) -> NetConfig {
        let text = format!(
            "[net]\nwidth=32\nheight=32\nchannels=3\n{keys}\n[maxpool]\nsize=2\nstride=2\n"
        );
        NetworkConfig::parse(&text, std::path::Path::new("t.cfg"))
            .unwrap()
            .net
    }

    fn close(a: f32, b: f64) -> bool {
        ((a as f64) - b).abs() <= 1e-6 * b.abs().max(1e-12)
    }

    #[test]
    fn current_batch_counts_full_batches() {
        let n = net("batch=64\nsubdivisions=16");
        assert_eq!(current_batch(&n, 0), 0);
        assert_eq!(current_batch(&n, 63), 0);
        assert_eq!(current_batch(&n, 64 * 10 + 4), 10);
    }

    #[test]
    fn burn_in_then_steps() {
        // yolov4-tiny's schedule: lr 0.00261, burn_in 1000, power 4 (default), steps 400000,450000 scales .1,.1.
        let n = net("learning_rate=0.00261\nburn_in=1000\nmax_batches=500200\npolicy=steps\nsteps=400000,450000\nscales=.1,.1");
        assert_eq!(current_rate(&n, 0), 0.0);
        // 0.00261 * (500/1000)^4 = 0.00261 / 16
        assert!(close(current_rate(&n, 500), 0.00261 / 16.0));
        assert!(close(current_rate(&n, 1000), 0.00261));
        assert!(close(current_rate(&n, 399_999), 0.00261));
        // steps[i] > batch_num stops: at exactly 400000 the first scale applies.
        assert!(close(current_rate(&n, 400_000), 0.00261 * 0.1));
        assert!(close(current_rate(&n, 450_000), 0.00261 * 0.1 * 0.1));
    }

    #[test]
    fn step_exp_poly_sig() {
        let s = net("learning_rate=0.1\npolicy=step\nstep=100\nscale=0.5");
        assert!(close(current_rate(&s, 99), 0.1));
        assert!(close(current_rate(&s, 250), 0.1 * 0.25)); // 250/100 = 2 (integer division)
        let e = net("learning_rate=0.1\npolicy=exp\ngamma=0.99");
        assert!(close(current_rate(&e, 10), 0.1 * 0.99f64.powi(10)));
        let p = net("learning_rate=0.1\npolicy=poly\npower=2\nmax_batches=1000");
        assert!(close(current_rate(&p, 250), 0.1 * 0.75 * 0.75));
        let g = net("learning_rate=0.1\npolicy=sigmoid\ngamma=0.5\nstep=10");
        assert!(close(current_rate(&g, 12), 0.1 / (1.0 + 1.0f64.exp())));
        assert!(close(current_rate(&g, 10), 0.05));
    }

    #[test]
    fn sgdr_cycles_grow_by_mult() {
        // cycle 100, mult 2: cycles [0,100], (100,300], (300,700] ... (the loop tests start + cycle < batch_num).
        let n = net("learning_rate=0.1\nlearning_rate_min=0.001\npolicy=sgdr\nsgdr_cycle=100\nsgdr_mult=2\nmax_batches=1000");
        let expect =
            |t: f64, cycle: f64| 0.001 + 0.5 * 0.099 * (1.0 + (t * DARKNET_SGDR_PI / cycle).cos());
        assert!(close(current_rate(&n, 0), 0.1));
        assert!(close(current_rate(&n, 50), expect(50.0, 100.0)));
        assert!(close(current_rate(&n, 100), expect(100.0, 100.0))); // still in the first cycle: rate = min
        assert!(close(current_rate(&n, 101), expect(1.0, 200.0)));
        assert!(close(current_rate(&n, 400), expect(100.0, 400.0)));
    }

    #[test]
    fn random_uses_the_supplied_draw() {
        let n = net("learning_rate=0.1\npolicy=random\npower=2");
        assert!(close(current_rate_with(&n, 5, &mut || 0.5), 0.025));
        let r = current_rate(&n, 5);
        assert!((0.0..=0.1).contains(&r));
    }
}
