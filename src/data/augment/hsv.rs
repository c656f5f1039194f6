//! The HSV jitter of `image_data_augmentation` (image_opencv.cpp 1247-1262) on 8-bit images:
//! `cvtColor(RGB2HSV)` (OpenCV `RGB2HSV_b`, integer), scale S and V, shift H, `cvtColor(HSV2RGB)`
//! (OpenCV `HSV2RGB_b`, float), following modules/imgproc/src/color_hsv.simd.hpp.

use crate::data::decode::RgbImage;

const HSV_SHIFT: i32 = 12;

/// OpenCV's `RGB2HSV_b` lookup tables: `sdiv[v] = round((255<<12)/v)`, `hdiv[d] = round((180<<12)/(6d))`.
pub(crate) struct HsvTables {
    sdiv: [i32; 256],
    hdiv: [i32; 256],
}

pub(crate) fn hsv_tables() -> &'static HsvTables {
    static T: std::sync::OnceLock<HsvTables> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = HsvTables {
            sdiv: [0; 256],
            hdiv: [0; 256],
        };
        for i in 1..256 {
            t.sdiv[i] = ((255 << HSV_SHIFT) as f64 / i as f64).round_ties_even() as i32;
            t.hdiv[i] = ((180 << HSV_SHIFT) as f64 / (6.0 * i as f64)).round_ties_even() as i32;
        }
        t
    })
}

/// OpenCV `RGB2HSV_b` with hrange 180: V = max, S = round(diff*255/V) via tables, H in 0..180 (integer
/// arithmetic with 12-bit fixed point, `h += 180` if negative).
#[inline]
pub fn rgb_to_hsv_u8(r: u8, g: u8, b: u8) -> [u8; 3] {
    rgb_to_hsv_with(hsv_tables(), r, g, b)
}

/// [`rgb_to_hsv_u8`] with the tables at hand.
#[inline(always)]
pub(crate) fn rgb_to_hsv_with(t: &HsvTables, r: u8, g: u8, b: u8) -> [u8; 3] {
    let (r, g, b) = (r as i32, g as i32, b as i32);
    let v = r.max(g).max(b);
    let vmin = r.min(g).min(b);
    let diff = v - vmin;
    let vr = if v == r { -1 } else { 0 };
    let vg = if v == g { -1 } else { 0 };
    let s = (diff * t.sdiv[v as usize] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
    let mut h = (vr & (g - b)) + (!vr & ((vg & (b - r + 2 * diff)) + (!vg & (r - g + 4 * diff))));
    h = (h * t.hdiv[diff as usize] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
    if h < 0 {
        h += 180;
    }
    [h.clamp(0, 255) as u8, s as u8, v as u8]
}

/// Pixels per iteration of OpenCV's vectorised `HSV2RGB_b` loop with AVX2 (4 x 8 float lanes); a row's
/// last `w % 32` pixels take the scalar path.
pub const HSV2RGB_SIMD_PIXELS: usize = 32;

/// The `-mfma` build of OpenCV fuses `1 - s*h` and `1 - s*(1-h)` (measured: only this form reproduces
/// the Darknet reference; the unfused form misses ~0.1 % of the bytes).
#[inline]
fn tabs(vf: f32, sf: f32, hf: f32) -> [f32; 4] {
    [
        vf,
        vf * (1.0 - sf),
        vf * (-sf).mul_add(hf, 1.0),
        vf * (-sf).mul_add(1.0 - hf, 1.0),
    ]
}

const SECTOR: [[usize; 3]; 6] = [
    [1, 3, 0],
    [1, 0, 2],
    [3, 0, 1],
    [0, 2, 1],
    [0, 1, 3],
    [2, 1, 0],
];

/// OpenCV `HSV2RGB_b` (hrange 180), vectorised path: s, v scaled by `1/255.f`; `h *= 6/180.f`;
/// `pre = trunc(h)`, `h -= pre`, sector = `pre - trunc(pre*(1/6.f))*6` (H >= 180 wraps); sector table;
/// each channel `trunc(c*255)` (truncation, not rounding, in this path).
#[inline]
pub fn hsv_to_rgb_u8(h: u8, s: u8, v: u8) -> [u8; 3] {
    let hscale = 6.0f32 / 180.0;
    let sf = s as f32 * (1.0f32 / 255.0);
    let vf = v as f32 * (1.0f32 / 255.0);
    let hh = h as f32 * hscale;
    let pre = hh.trunc();
    let frac = hh - pre;
    let sector = pre - (pre * (1.0f32 / 6.0)).trunc() * 6.0;
    let tab = tabs(vf, sf, frac);
    let idx = SECTOR[sector as usize];
    let q = |c: f32| (c * 255.0).trunc().clamp(0.0, 255.0) as u8;
    [q(tab[idx[2]]), q(tab[idx[1]]), q(tab[idx[0]])]
}

/// OpenCV `HSV2RGB_b` scalar tail (`HSV2RGB_native`): `fmod(h*6/180, 6)`, `floor`, s == 0 gives grey,
/// channels rounded half-even (`saturate_cast<uchar>(c*255.f)`).
#[inline]
pub fn hsv_to_rgb_u8_scalar(h: u8, s: u8, v: u8) -> [u8; 3] {
    let hscale = 6.0f32 / 180.0;
    let sf = s as f32 * (1.0f32 / 255.0);
    let vf = v as f32 * (1.0f32 / 255.0);
    let q = |c: f32| (c * 255.0).round_ties_even().clamp(0.0, 255.0) as u8;
    if sf == 0.0 {
        return [q(vf); 3];
    }
    let hh = (h as f32 * hscale) % 6.0;
    let mut sector = hh.floor() as i32;
    let mut frac = hh - sector as f32;
    if !(0..6).contains(&sector) {
        sector = 0;
        frac = 0.0;
    }
    let tab = tabs(vf, sf, frac);
    let idx = SECTOR[sector as usize];
    [q(tab[idx[2]]), q(tab[idx[1]]), q(tab[idx[0]])]
}

/// `saturate_cast<uchar>(round_half_even(float(x) * k))`: `Mat *= k` on an 8-bit plane.
#[inline]
pub fn scale_u8(x: u8, k: f32) -> u8 {
    (x as f32 * k).round_ties_even().clamp(0.0, 255.0) as u8
}

/// The whole jitter: S *= dsat, V *= dexp (each rounded half-even and saturated), H += round(179*dhue)
/// saturated to 0..255 (not wrapped: HSV2RGB then treats H >= 180 as H - 180).
/// The conversion back runs row by row as in `cvtColor`: the first `w - w % 32` pixels of a row use the
/// vectorised form, the rest the scalar form.
pub fn hsv_jitter(img: &mut RgbImage, dhue: f32, dsat: f32, dexp: f32) {
    let shift = ((179.0f32 * dhue) as f64).round_ties_even() as i32;
    let simd_px = img.w / HSV2RGB_SIMD_PIXELS * HSV2RGB_SIMD_PIXELS;
    let row_len = img.w * 3;
    for row in img.data.chunks_exact_mut(row_len.max(3)) {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let [h, s, v] = rgb_to_hsv_u8(px[0], px[1], px[2]);
            let s = scale_u8(s, dsat);
            let v = scale_u8(v, dexp);
            let h = (h as i32 + shift).clamp(0, 255) as u8;
            let rgb = if x < simd_px {
                hsv_to_rgb_u8(h, s, v)
            } else {
                hsv_to_rgb_u8_scalar(h, s, v)
            };
            px.copy_from_slice(&rgb);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_colours() {
        assert_eq!(rgb_to_hsv_u8(255, 0, 0), [0, 255, 255]);
        assert_eq!(rgb_to_hsv_u8(0, 255, 0), [60, 255, 255]);
        assert_eq!(rgb_to_hsv_u8(0, 0, 255), [120, 255, 255]);
        assert_eq!(rgb_to_hsv_u8(7, 7, 7), [0, 0, 7]);
        assert_eq!(hsv_to_rgb_u8(0, 255, 255), [255, 0, 0]);
        assert_eq!(hsv_to_rgb_u8(120, 255, 255), [0, 0, 255]);
        // H >= 180 wraps: 180 behaves as 0.
        assert_eq!(hsv_to_rgb_u8(180, 255, 255), [255, 0, 0]);
        assert_eq!(hsv_to_rgb_u8_scalar(180, 255, 255), [255, 0, 0]);
    }

    #[test]
    fn vector_path_truncates_scalar_path_rounds() {
        // s = v = 1/255: v*(1-s)*255 = 0.996 -> 0 (trunc) in the vector path, 1 in the scalar path.
        assert_eq!(hsv_to_rgb_u8(0, 1, 1), [1, 0, 0]);
        assert_eq!(hsv_to_rgb_u8_scalar(0, 1, 1), [1, 1, 1]);
    }

    #[test]
    fn scale_rounds_half_even() {
        assert_eq!(scale_u8(5, 0.5), 2);
        assert_eq!(scale_u8(7, 0.5), 4);
        assert_eq!(scale_u8(200, 1.5), 255);
    }
}
