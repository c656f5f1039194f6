//! The pixel operations of Darknet's `image_data_augmentation` (src/image_opencv.cpp 1205), each a
//! reproduction of the OpenCV 8-bit routine it calls: crop with mean fill, `cv::resize` INTER_LINEAR,
//! `cv::flip`, RGB<->HSV jitter; plus the mosaic assembly of `load_data_detection`.

pub mod crop;
pub mod flip;
pub mod fused;
pub mod hsv;
pub mod mosaic;
pub mod resize;

use super::decode::RgbImage;
use super::detection::{lap, StageTimes};
use std::time::Instant;

/// The per-image random numbers of the "augmentation_calculated" block (data.c 1118-1152).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageDraws {
    pub resize_r1: f32,
    pub resize_r2: f32,
    pub r: [f32; 4],
    pub flip: bool,
    pub dhue: f32,
    pub dsat: f32,
    pub dexp: f32,
}

/// The crop rectangle of one image (data.c 1106-1231), before `image_data_augmentation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropRect {
    pub pleft: i32,
    pub pright: i32,
    pub ptop: i32,
    pub pbot: i32,
}

/// The source rectangle of `image_data_augmentation`: `pleft`, `ptop`, `swidth`, `sheight` (it may reach
/// outside the image; the outside is mean-filled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelCrop {
    pub left: i32,
    pub top: i32,
    pub width: i32,
    pub height: i32,
}

/// Darknet's `image_data_augmentation` (image_opencv.cpp 1205) without blur/noise: crop the rectangle
/// `crop` with mean padding, resize to `size` = (w, h) (8-bit INTER_LINEAR), flip horizontally with
/// `draws.flip`, then HSV jitter if any of `dhue != 0`, `dsat != 1`, `dexp != 1`.
pub fn image_data_augmentation(
    img: &RgbImage,
    size: (usize, usize),
    crop: &PixelCrop,
    draws: &ImageDraws,
    times: &mut StageTimes,
) -> RgbImage {
    let mut t = Instant::now();
    let (w, h) = size;
    let PixelCrop {
        left: pleft,
        top: ptop,
        width: swidth,
        height: sheight,
    } = *crop;
    let ImageDraws {
        flip,
        dhue,
        dsat,
        dexp,
        ..
    } = *draws;
    let sized = if pleft == 0 && ptop == 0 && swidth as usize == img.w && sheight as usize == img.h
    {
        resize::resize_linear_u8(img, w, h)
    } else {
        let cropped = crop::crop_mean_fill(img, pleft, ptop, swidth, sheight);
        resize::resize_linear_u8(&cropped, w, h)
    };
    let mut sized = if flip {
        flip::flip_horizontal(&sized)
    } else {
        sized
    };
    times.crop_resize += lap(&mut t);
    if dsat != 1.0 || dexp != 1.0 || dhue != 0.0 {
        hsv::hsv_jitter(&mut sized, dhue, dsat, dexp);
    }
    times.hsv += lap(&mut t);
    sized
}

/// Darknet's `mat_to_image` (image_opencv.cpp 349): planar CHW float32, `u8 * (1/255.f)` (the `-Ofast`
/// build multiplies by the reciprocal; `u8 / 255.f` differs by 1 ulp in places).
pub fn to_chw_f32(img: &RgbImage, out: &mut [f32]) {
    let plane = img.w * img.h;
    let k = 1.0f32 / 255.0;
    for (p, px) in img.data.chunks_exact(3).enumerate() {
        out[p] = px[0] as f32 * k;
        out[plane + p] = px[1] as f32 * k;
        out[2 * plane + p] = px[2] as f32 * k;
    }
}
