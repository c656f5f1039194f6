//! The input of a CPU kernel as channel planes: one `[batch, c, h, w]` tensor, or the channel-wise
//! concatenation of several (`forward_route_layer`'s output, src/route_layer.c) read in place. A `[route]` whose
//! only reader is a convolution or a maxpool is not materialised: the reader takes its parts, and plane `ci` of
//! image `b` is found in the part that holds channel `ci` — the same values the concatenation would hold, so
//! results are bit-identical, without the copy (a route was ~6% of a yolov4-tiny forward, memory-bound).

use candle_core::{CpuStorage, Result, Storage, Tensor};

use crate::cfg::Shape;

/// The planes of a `[batch, c, h, w]` input made of channel parts (see the module doc).
pub struct Planes<'a> {
    /// Each part's data (`[batch, c_i, h, w]`, contiguous) and its channel count `c_i`.
    parts: Vec<(&'a [f32], usize)>,
    /// Floats per plane (`h·w`).
    hw: usize,
}

impl<'a> Planes<'a> {
    /// Plane `ci` (of the concatenated channels) of image `b`: `h·w` floats.
    #[inline]
    pub fn plane(&self, b: usize, ci: usize) -> &'a [f32] {
        let mut ci = ci;
        for &(x, c) in &self.parts {
            if ci < c {
                let o = (b * c + ci) * self.hw;
                return &x[o..o + self.hw];
            }
            ci -= c;
        }
        panic!("plane: channel beyond the input's channels")
    }

    /// The data of a single-part input (`[batch, c, h, w]`), `None` for a concatenation.
    pub fn single(&self) -> Option<&'a [f32]> {
        match self.parts.as_slice() {
            [(x, _)] => Some(x),
            _ => None,
        }
    }
}

/// Runs `f` on the planes of `parts` (CPU f32 tensors `[batch, c_i, h, w]` whose channels add up to
/// `shape.c`, with `shape`'s `h × w`), with the batch size; the parts are made contiguous first (a no-op when
/// they are). `name` is the kernel's name for errors.
pub fn with_planes<R>(
    name: &str,
    parts: &[Tensor],
    shape: Shape,
    f: impl FnOnce(&Planes, usize) -> Result<R>,
) -> Result<R> {
    let parts = parts
        .iter()
        .map(|t| t.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let Some(first) = parts.first() else {
        candle_core::bail!("{name}: no input");
    };
    let batch = first.dim(0)?;
    let mut c = 0;
    for t in &parts {
        let d = t.dims();
        if d.len() != 4 || d[0] != batch || d[2] != shape.h || d[3] != shape.w {
            candle_core::bail!(
                "{name}: input part {d:?}, expected [{batch}, c, {}, {}]",
                shape.h,
                shape.w
            );
        }
        c += d[1];
    }
    if c != shape.c {
        candle_core::bail!("{name}: input has {c} channels, expected {}", shape.c);
    }
    let guards: Vec<_> = parts.iter().map(|t| t.storage_and_layout()).collect();
    let mut planes = Planes {
        parts: Vec::with_capacity(parts.len()),
        hw: shape.h * shape.w,
    };
    for (g, t) in guards.iter().zip(&parts) {
        let (storage, layout) = (&*g.0, g.1);
        let Storage::Cpu(CpuStorage::F32(v)) = storage else {
            candle_core::bail!("{name}: CPU f32 input required");
        };
        let Some((a, z)) = layout.contiguous_offsets() else {
            candle_core::bail!("{name}: contiguous input required");
        };
        planes.parts.push((&v[a..z], t.dim(1)?));
    }
    f(&planes, batch)
}
