//! The crop step of `image_data_augmentation` (image_opencv.cpp 1214-1233).

use crate::data::decode::RgbImage;

/// `cv::mean(img)` converted to 8 bits as `Mat::setTo` does: per-channel mean of all pixels (double),
/// rounded half to even (`saturate_cast<uchar>`).
pub fn mean_u8(img: &RgbImage) -> [u8; 3] {
    let sum = channel_sums(&img.data[..img.w * img.h * 3]);
    let n = (img.w * img.h).max(1) as f64;
    sum.map(|s| round_half_even(s as f64 / n).clamp(0.0, 255.0) as u8)
}

/// Per-channel sums of interleaved RGB bytes. Blocks of 48 bytes (16 pixels) are added lane by lane into
/// 48 u32 accumulators (a loop that vectorises), flushed into u64 sums before they could overflow.
fn channel_sums(data: &[u8]) -> [u64; 3] {
    const LANES: usize = 48;
    // 65536 blocks of at most 255 per lane stay below 2^24.
    const FLUSH: usize = LANES * 65536;
    let mut sum = [0u64; 3];
    for part in data.chunks(FLUSH) {
        let mut acc = [0u32; LANES];
        let blocks = part.chunks_exact(LANES);
        let rest = blocks.remainder();
        for b in blocks {
            for (a, &v) in acc.iter_mut().zip(b) {
                *a += v as u32;
            }
        }
        for (k, &a) in acc.iter().enumerate() {
            sum[k % 3] += a as u64;
        }
        for (k, &v) in rest.iter().enumerate() {
            sum[k % 3] += v as u64;
        }
    }
    sum
}

/// `cvRound` (round half to even), as used by OpenCV's `saturate_cast` from floating point.
#[inline]
pub fn round_half_even(v: f64) -> f64 {
    v.round_ties_even()
}

/// Darknet's crop: a `swidth`x`sheight` image filled with `cv::mean(img)`, into which the intersection
/// of the rectangle (x in [pleft, pleft+swidth), y in [ptop, ptop+sheight)) with the image is copied at
/// (max(0,-pleft), max(0,-ptop)). Negative offsets or a rectangle past the edge mean padding.
pub fn crop_mean_fill(
    img: &RgbImage,
    pleft: i32,
    ptop: i32,
    swidth: i32,
    sheight: i32,
) -> RgbImage {
    let (sw, sh) = (swidth.max(0) as usize, sheight.max(0) as usize);
    let mut out = RgbImage::filled(sw, sh, mean_u8(img));
    let x0 = pleft.max(0);
    let y0 = ptop.max(0);
    let x1 = (pleft + swidth).min(img.w as i32);
    let y1 = (ptop + sheight).min(img.h as i32);
    if x1 <= x0 || y1 <= y0 {
        return out;
    }
    let (dx, dy) = ((x0 - pleft) as usize, (y0 - ptop) as usize);
    let row_bytes = (x1 - x0) as usize * 3;
    for y in y0..y1 {
        let src = (y as usize * img.w + x0 as usize) * 3;
        let dst = ((y - y0) as usize + dy) * sw * 3 + dx * 3;
        out.data[dst..dst + row_bytes].copy_from_slice(&img.data[src..src + row_bytes]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_even() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-2.5), -2.0);
        assert_eq!(round_half_even(2.4999), 2.0);
    }

    #[test]
    fn channel_sums_equal_a_plain_sum() {
        let data: Vec<u8> = (0..3 * 1000 + 3 * 7)
            .map(|i| (i * 37 % 256) as u8)
            .collect();
        let mut plain = [0u64; 3];
        for (k, &v) in data.iter().enumerate() {
            plain[k % 3] += v as u64;
        }
        assert_eq!(channel_sums(&data), plain);
    }

    #[test]
    fn crop_pads_with_mean_and_places_intersection() {
        // 2x1 image: (0,0,0) and (10,20,31) -> mean (5, 10, 15.5->16).
        let img = RgbImage {
            w: 2,
            h: 1,
            data: vec![0, 0, 0, 10, 20, 31],
        };
        let c = crop_mean_fill(&img, -1, 0, 4, 2);
        assert_eq!((c.w, c.h), (4, 2));
        assert_eq!(c.px(0, 0), [5, 10, 16]);
        assert_eq!(c.px(1, 0), [0, 0, 0]);
        assert_eq!(c.px(2, 0), [10, 20, 31]);
        assert_eq!(c.px(3, 0), [5, 10, 16]);
        assert_eq!(c.px(1, 1), [5, 10, 16]);
    }
}
