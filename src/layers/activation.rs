//! Darknet's activation functions (src/activations.h, src/activations.c), written with candle tensor ops so
//! that they run on every device and have gradients.
//!
//! Formulas as in the C: leaky `x > 0 ? x : .1x`; logistic `1/(1+exp(-x))`; tanh `2/(1+exp(-2x)) - 1`;
//! mish `x * tanh(softplus(x))` with Darknet's softplus thresholds (`x > 20 → x`, `x < -20 → exp(x)`, else
//! `log(exp(x)+1)`); swish `x * logistic(x)`; hard-mish `x > 0 ? x : (x > -2 ? x²/2 + x : 0)`.

use candle_core::{Result, Tensor};

use crate::cfg::Activation;
use crate::export::graph::float;
use crate::export::OnnxGraph;

/// Applies `act` element-wise (`activate_array` and its swish/mish/hard-mish variants).
pub fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Linear => Ok(x.clone()),
        // max(x, .1x) equals Darknet's `x > 0 ? x : .1x` for every finite x and is ~15x faster than a select.
        Activation::Leaky => x.maximum(&(x * 0.1)?),
        Activation::Relu => x.relu(),
        Activation::Relu6 => x.clamp(0f32, 6f32),
        Activation::Relie => x.maximum(&(x * 0.01)?),
        Activation::Ramp => x.relu()? + (x * 0.1)?,
        Activation::Logistic => logistic(x),
        Activation::Loggy => (logistic(x)? * 2.0)? - 1.0,
        Activation::Tanh => darknet_tanh(x),
        Activation::Elu => {
            let neg = (x.minimum(0f32)?.exp()? - 1.0)?;
            x.relu()? + neg
        }
        Activation::Selu => {
            let pos = (x.relu()? * 1.0507)?;
            let neg = ((x.minimum(0f32)?.exp()? - 1.0)? * (1.0507 * 1.6732))?;
            pos + neg
        }
        Activation::Gelu => {
            // 0.5x(1 + tanh(0.797885x + 0.035677x³)) as in gelu_activate.
            let inner = ((x * 0.797885)? + (x.powf(3.0)? * 0.035677)?)?;
            (x * 0.5)? * (inner.tanh()? + 1.0)?
        }
        Activation::Swish => x * logistic(x)?,
        Activation::Mish => mish(x),
        Activation::HardMish => hard_mish(x),
    }
}

/// `logistic_activate`: 1 / (1 + exp(-x)).
pub fn logistic(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// `tanh_activate`: Darknet's tanh is 2/(1+exp(-2x)) - 1.
fn darknet_tanh(x: &Tensor) -> Result<Tensor> {
    (logistic(&(x * 2.0)?)? * 2.0)? - 1.0
}

/// `softplus_activate(x, 20)`.
fn softplus(x: &Tensor) -> Result<Tensor> {
    let threshold = 20f32;
    // Clamp before exp so the unused branches stay finite (their values are discarded by the selects).
    let xe = x.clamp(-threshold, threshold)?;
    let mid = (xe.exp()? + 1.0)?.log()?;
    let small = xe.exp()?;
    let is_big = x.gt(threshold)?;
    let is_small = x.lt(-threshold)?;
    is_big.where_cond(x, &is_small.where_cond(&small, &mid)?)
}

/// `activate_array_mish`: x · tanh(softplus(x)).
fn mish(x: &Tensor) -> Result<Tensor> {
    x * darknet_tanh(&softplus(x)?)?
}

/// `hard_mish_yashas`.
fn hard_mish(x: &Tensor) -> Result<Tensor> {
    let quad = ((x.sqr()? * 0.5)? + x)?;
    let zero = x.zeros_like()?;
    let pos = x.gt(0f32)?;
    let mid = x.gt(-2f32)?;
    pos.where_cond(x, &mid.where_cond(&quad, &zero)?)
}

/// The ONNX form of [`activate`] (`export`): every activation is expressible exactly. Where ONNX has the same
/// formula as a single op it is used (LeakyRelu, Relu, Sigmoid, Tanh, Elu, Selu); mish keeps Darknet's softplus
/// thresholds and hard-mish its branches through `Where`, and gelu spells out Darknet's tanh approximation.
pub fn activate_onnx(g: &mut OnnxGraph, x: &str, act: Activation) -> String {
    match act {
        Activation::Linear => x.to_string(),
        // `x > 0 ? x : .1f*x` is LeakyRelu(0.1); relie the same with .01f.
        Activation::Leaky => g.node("LeakyRelu", &[x], vec![float("alpha", 0.1)]),
        Activation::Relie => g.node("LeakyRelu", &[x], vec![float("alpha", 0.01)]),
        Activation::Relu => g.node("Relu", &[x], vec![]),
        Activation::Relu6 => {
            let (lo, hi) = (g.scalar(0.0), g.scalar(6.0));
            g.node("Clip", &[x, &lo, &hi], vec![])
        }
        // ramp: x*(x>0) + .1f*x.
        Activation::Ramp => {
            let r = g.node("Relu", &[x], vec![]);
            let t = g.binary_scalar("Mul", x, 0.1);
            g.node("Add", &[&r, &t], vec![])
        }
        Activation::Logistic => g.node("Sigmoid", &[x], vec![]),
        // loggy: 2/(1+exp(-x)) - 1.
        Activation::Loggy => {
            let s = g.node("Sigmoid", &[x], vec![]);
            let s2 = g.binary_scalar("Mul", &s, 2.0);
            g.binary_scalar("Sub", &s2, 1.0)
        }
        Activation::Tanh => g.node("Tanh", &[x], vec![]),
        // elu: (x >= 0)*x + (x < 0)*(exp(x)-1).
        Activation::Elu => g.node("Elu", &[x], vec![float("alpha", 1.0)]),
        // selu: 1.0507*x, or 1.0507*1.6732*(exp(x)-1) below 0.
        Activation::Selu => g.node(
            "Selu",
            &[x],
            vec![float("alpha", 1.6732), float("gamma", 1.0507)],
        ),
        // gelu_activate: 0.5x(1 + tanh(0.797885x + 0.035677x³)).
        Activation::Gelu => {
            let x2 = g.node("Mul", &[x, x], vec![]);
            let x3 = g.node("Mul", &[&x2, x], vec![]);
            let a = g.binary_scalar("Mul", x, 0.797885);
            let b = g.binary_scalar("Mul", &x3, 0.035677);
            let inner = g.node("Add", &[&a, &b], vec![]);
            let t = g.node("Tanh", &[&inner], vec![]);
            let t1 = g.binary_scalar("Add", &t, 1.0);
            let h = g.binary_scalar("Mul", x, 0.5);
            g.node("Mul", &[&h, &t1], vec![])
        }
        Activation::Swish => {
            let s = g.node("Sigmoid", &[x], vec![]);
            g.node("Mul", &[x, &s], vec![])
        }
        // ONNX's Mish (softplus without thresholds) differs from Darknet's by at most 4.1e-8, for x < -20 only.
        Activation::Mish if g.mish_op => g.node("Mish", &[x], vec![]),
        Activation::Mish => {
            let sp = softplus_onnx(g, x);
            let t = g.node("Tanh", &[&sp], vec![]);
            g.node("Mul", &[x, &t], vec![])
        }
        // hard_mish_yashas: x > 0 ? x : (x > -2 ? x*x/2 + x : 0).
        Activation::HardMish => {
            let (zero, m2) = (g.scalar(0.0), g.scalar(-2.0));
            let pos = g.node("Greater", &[x, &zero], vec![]);
            let mid = g.node("Greater", &[x, &m2], vec![]);
            let x2 = g.node("Mul", &[x, x], vec![]);
            let half = g.binary_scalar("Div", &x2, 2.0);
            let quad = g.node("Add", &[&half, x], vec![]);
            let inner = g.node("Where", &[&mid, &quad, &zero], vec![]);
            g.node("Where", &[&pos, x, &inner], vec![])
        }
    }
}

/// `softplus_activate(x, 20)` in ONNX: `x > 20 → x`, `x < -20 → exp(x)`, else `log(exp(x) + 1)`. The unused
/// branches may overflow to +inf, never NaN, and `Where` discards them.
fn softplus_onnx(g: &mut OnnxGraph, x: &str) -> String {
    let (hi, lo) = (g.scalar(20.0), g.scalar(-20.0));
    let big = g.node("Greater", &[x, &hi], vec![]);
    let small = g.node("Less", &[x, &lo], vec![]);
    let e = g.node("Exp", &[x], vec![]);
    let e1 = g.binary_scalar("Add", &e, 1.0);
    let mid = g.node("Log", &[&e1], vec![]);
    let low = g.node("Where", &[&small, &e, &mid], vec![]);
    g.node("Where", &[&big, x, &low], vec![])
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Scalar references written straight from src/activations.h.
    fn reference(act: Activation, x: f32) -> f32 {
        let logistic = |x: f32| 1.0 / (1.0 + (-x).exp());
        let tanh = |x: f32| 2.0 / (1.0 + (-2.0 * x).exp()) - 1.0;
        match act {
            Activation::Leaky => {
                if x > 0.0 {
                    x
                } else {
                    0.1 * x
                }
            }
            Activation::Logistic => logistic(x),
            Activation::Swish => x * logistic(x),
            Activation::Mish => {
                let sp = if x > 20.0 {
                    x
                } else if x < -20.0 {
                    x.exp()
                } else {
                    (x.exp() + 1.0).ln()
                };
                x * tanh(sp)
            }
            Activation::HardMish => {
                if x > 0.0 {
                    x
                } else if x > -2.0 {
                    x * x / 2.0 + x
                } else {
                    0.0
                }
            }
            Activation::Linear => x,
            Activation::Relu => x.max(0.0),
            _ => unreachable!(),
        }
    }

    #[test]
    fn matches_darknet_scalar_formulas() {
        let xs: Vec<f32> = vec![
            -80.0, -25.0, -20.5, -20.0, -3.0, -2.0, -1.5, -0.1, 0.0, 0.1, 1.0, 5.0, 19.9, 20.0,
            20.1, 50.0,
        ];
        let t = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
        for act in [
            Activation::Leaky,
            Activation::Logistic,
            Activation::Swish,
            Activation::Mish,
            Activation::HardMish,
            Activation::Linear,
            Activation::Relu,
        ] {
            let got = activate(&t, act).unwrap().to_vec1::<f32>().unwrap();
            for (x, g) in xs.iter().zip(got) {
                let want = reference(act, *x);
                assert!(
                    (g - want).abs() <= 1e-6 + 1e-6 * want.abs(),
                    "{act:?}({x}) = {g}, Darknet {want}"
                );
            }
        }
    }
}
