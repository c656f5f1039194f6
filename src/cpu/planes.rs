//! The input of a CPU kernel as channel planes: one `[batch, c, h, w]` tensor, or the channel-wise
//! concatenation of several (`forward_route_layer`'s output, src/route_layer.c) read in place. A `[route]` whose
//! only reader is a convolution or a maxpool is not materialised: the reader takes its parts, and plane `ci` of
//! image `b` is found in the part that holds channel `ci` — the same values the concatenation would hold, so
//! results are bit-identical, without the copy (a route was ~6% of a yolov4-tiny forward, memory-bound).

use candle_core::{CpuStorage, Result, Storage, Tensor};

use crate::cfg::Shape;

/// The planes of a `[batch, c, h, w]` input made of channel parts (see the module doc).
pub struct Planes<'a> {
    /// Each part: its data from its first plane on, its channel count `c_i`, and the floats from one image to
    /// the next (`c_i·h·w` when dense; more for a channel range of a larger tensor, e.g. the `groups=2`
    /// half that a `[route]` passes on at batch > 1).
    parts: Vec<(&'a [f32], usize, usize)>,
    /// Floats per plane (`h·w`).
    hw: usize,
}

impl<'a> Planes<'a> {
    /// Plane `ci` (of the concatenated channels) of image `b`: `h·w` floats.
    #[inline]
    pub fn plane(&self, b: usize, ci: usize) -> &'a [f32] {
        let mut ci = ci;
        for &(x, c, image) in &self.parts {
            if ci < c {
                let o = b * image + ci * self.hw;
                return &x[o..o + self.hw];
            }
            ci -= c;
        }
        panic!("plane: channel beyond the input's channels")
    }

    /// The data of a single-part input and the floats from one image to the next (its planes are `h·w`
    /// apart within an image), `None` for a concatenation.
    pub fn single(&self) -> Option<(&'a [f32], usize)> {
        match self.parts.as_slice() {
            [(x, _, image)] => Some((x, *image)),
            _ => None,
        }
    }
}

/// Where the planes of `t` (`[batch, c, h, w]` with `layout`) lie in its storage `v` without a copy: the slice
/// from its first plane and the floats from one image to the next, when each image's `c` planes are dense
/// (any channel range of a contiguous tensor); `None` otherwise.
fn plane_view<'a>(v: &'a [f32], layout: &candle_core::Layout) -> Option<(&'a [f32], usize)> {
    let (d, st) = (layout.dims(), layout.stride());
    let (batch, c, h, w) = (d[0], d[1], d[2], d[3]);
    let dense_image = st[3] == 1 && st[2] == w && st[1] == h * w;
    if !dense_image || batch == 0 || c * h * w == 0 {
        return layout
            .contiguous_offsets()
            .map(|(a, z)| (&v[a..z], c * h * w));
    }
    let image = if batch == 1 { c * h * w } else { st[0] };
    let start = layout.start_offset();
    let end = start + (batch - 1) * image + c * h * w;
    v.get(start..end).map(|x| (x, image))
}

/// Runs `f` on the planes of `parts` (CPU f32 tensors `[batch, c_i, h, w]` whose channels add up to
/// `shape.c`, with `shape`'s `h × w`), with the batch size; a part that is not a channel range of a
/// contiguous tensor is made contiguous first. `name` is the kernel's name for errors.
pub fn with_planes<R>(
    name: &str,
    parts: &[Tensor],
    shape: Shape,
    f: impl FnOnce(&Planes, usize) -> Result<R>,
) -> Result<R> {
    // Channel ranges of a contiguous tensor are read where they are; anything else is made contiguous.
    let parts = parts
        .iter()
        .map(|t| {
            let (g, layout) = t.storage_and_layout();
            let in_place = match (&*g, layout.dims().len()) {
                (Storage::Cpu(CpuStorage::F32(v)), 4) => plane_view(v, layout).is_some(),
                _ => false,
            };
            drop(g);
            if in_place {
                Ok(t.clone())
            } else {
                t.contiguous()
            }
        })
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
        let Some((x, image)) = plane_view(v, layout) else {
            candle_core::bail!("{name}: input planes not dense");
        };
        planes.parts.push((x, t.dim(1)?, image));
    }
    f(&planes, batch)
}
