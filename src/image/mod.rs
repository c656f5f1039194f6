//! Images as Darknet holds them, and the preprocessing `darknet detector test` applies before the network.
//!
//! Mirrors Darknet's `image` struct and helpers in `src/image.c` (AlexeyAB/darknet 59596d7): a float image
//! in planar CHW layout (`data[c*h*w + y*w + x]`) with values in [0,1]. The submodules mirror one C function
//! family each:
//! - [`load`]: `load_image` / `load_image_stb` (stb_image decode, `/255.`, interleaved → planar),
//! - [`resize`]: `resize_image` (separable bilinear stretch),
//! - [`letterbox`]: `letterbox_image`, `embed_image`, `fill_image`,
//! - [`draw`]: `draw_detections_v3`'s drawing of one box and label, `get_color`, `draw_box_width`, `save_image`
//!   (which detections, in which order, with which text: `detect::draw_detections`).
//!
//! See `docs/preprocessing.md` for every formula.

pub mod draw;
pub mod letterbox;
pub mod load;
pub mod resize;

pub use draw::{class_color, draw_labelled_box, get_color, save_image};
pub use letterbox::{embed_image, letterbox_image, letterbox_size};
pub use load::{decode_image, load_image, load_image_resized, unit_from_u8};
pub use resize::resize_image;

use anyhow::{bail, Result};

/// The network input `test_detector` builds from a decoded image: `letterbox_image(im, net_w, net_h)` when
/// `letter_box` (`-letter_box` / `letter_box=1` in `[net]`), else `resize_image(im, net_w, net_h)`.
pub fn network_input(im: &Image, net_w: usize, net_h: usize, letter_box: bool) -> Image {
    if letter_box {
        letterbox_image(im, net_w, net_h)
    } else {
        resize_image(im, net_w, net_h)
    }
}

/// A planar (CHW) float image, Darknet's `image` (`w`, `h`, `c`, `data`).
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub w: usize,
    pub h: usize,
    pub c: usize,
    /// `c*h*w` values, channel-major, then row, then column.
    pub data: Vec<f32>,
}

impl Image {
    /// A zero-filled image: Darknet's `make_image` (calloc).
    pub fn new(w: usize, h: usize, c: usize) -> Self {
        Image {
            w,
            h,
            c,
            data: vec![0.0; w * h * c],
        }
    }

    /// An image with every value `v`: `make_image` followed by `fill_image`.
    pub fn filled(w: usize, h: usize, c: usize, v: f32) -> Self {
        Image {
            w,
            h,
            c,
            data: vec![v; w * h * c],
        }
    }

    /// Wraps an existing CHW buffer, checking its length.
    pub fn from_data(w: usize, h: usize, c: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != w * h * c {
            bail!(
                "image buffer has {} values, expected {}x{}x{} = {}",
                data.len(),
                c,
                h,
                w,
                w * h * c
            );
        }
        Ok(Image { w, h, c, data })
    }

    /// `get_pixel`: the value at column `x`, row `y`, channel `k` (caller keeps it in range).
    #[inline]
    pub fn get(&self, x: usize, y: usize, k: usize) -> f32 {
        self.data[k * self.h * self.w + y * self.w + x]
    }

    /// `set_pixel`, which in Darknet silently ignores coordinates outside the image.
    #[inline]
    pub fn set(&mut self, x: i64, y: i64, k: usize, v: f32) {
        if x < 0 || y < 0 || k >= self.c || x as usize >= self.w || y as usize >= self.h {
            return;
        }
        let i = k * self.h * self.w + y as usize * self.w + x as usize;
        self.data[i] = v;
    }

    /// Interleaved 8-bit pixels as Darknet's `save_image_options` writes them: `(unsigned char)(255*v)`,
    /// i.e. truncation toward zero. Values outside [0,1] are clamped first (the C cast would be undefined).
    pub fn to_interleaved_u8(&self) -> Vec<u8> {
        let plane = self.w * self.h;
        let mut out = vec![0u8; plane * self.c];
        for k in 0..self.c {
            for i in 0..plane {
                let v = (255.0 * self.data[k * plane + i]).clamp(0.0, 255.0);
                out[i * self.c + k] = v as u8;
            }
        }
        out
    }
}
