//! JPEG decoding that matches OpenCV's `cv::imread(path, IMREAD_COLOR)` bit for bit.
//!
//! Darknet's `load_image_mat_cv` (src/image_opencv.cpp 119) reads a training image with `cv::imread` and
//! converts it to RGB. OpenCV decodes JPEG with libjpeg-turbo: the accurate integer IDCT (`JDCT_ISLOW`),
//! "fancy" (triangular) chroma upsampling and libjpeg's fixed-point YCbCr->RGB tables. Pure-Rust decoders
//! (zune-jpeg, jpeg-decoder) use other IDCTs / upsamplers and differ in 2-17 % of the bytes (by up to 4 levels),
//! so we call libjpeg-turbo's own decoder, as vendored by `mozjpeg-sys` (built from C source with `cc`, no
//! system package, SIMD off: libjpeg-turbo's SIMD paths are bit-exact with its C paths).
//!
//! Deliberate differences from `imread`: no EXIF orientation handling and no CMYK/YCCK input (both are
//! rejected or ignored with the behaviour stated at [`decode_jpeg_rgb`]); other formats go through the
//! `image` crate (PNG/BMP are lossless, so any decoder gives the same pixels).

use anyhow::{bail, Context, Result};
use mozjpeg_sys as jpeg;
use std::path::Path;

/// An 8-bit interleaved RGB image (`h` rows of `w` pixels, 3 bytes each): the layout of Darknet's
/// RGB `cv::Mat` after `load_image_mat_cv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub w: usize,
    pub h: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A `w`x`h` image with every pixel set to `fill`.
    pub fn filled(w: usize, h: usize, fill: [u8; 3]) -> Self {
        let mut data = Vec::with_capacity(w * h * 3);
        for _ in 0..w * h {
            data.extend_from_slice(&fill);
        }
        Self { w, h, data }
    }

    /// The three bytes of pixel (x, y).
    #[inline]
    pub fn px(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.w + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// Panic payload used to leave libjpeg through its `error_exit` hook (libjpeg would call `exit()`).
struct JpegPanic(String);

unsafe extern "C-unwind" fn error_exit(cinfo: &mut jpeg::jpeg_common_struct) {
    let buf = [0u8; 80];
    if let Some(fmt) = (*cinfo.err).format_message {
        fmt(cinfo, &buf);
    }
    // libjpeg wrote into buf through the pointer; keep the compiler from assuming it is unchanged.
    let buf = std::hint::black_box(buf);
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let msg = String::from_utf8_lossy(&buf[..end]).into_owned();
    std::panic::resume_unwind(Box::new(JpegPanic(msg)));
}

unsafe extern "C-unwind" fn silent_message(_cinfo: &mut jpeg::jpeg_common_struct, _level: i32) {}

/// Decodes JPEG bytes to RGB exactly like OpenCV 4.x `imread(IMREAD_COLOR)` + `COLOR_BGR2RGB`:
/// libjpeg-turbo with `JDCT_ISLOW`, fancy upsampling, output colour space RGB (grayscale sources are
/// expanded by libjpeg's gray->RGB converter, as OpenCV asks for a 3-channel output). CMYK/YCCK JPEGs are
/// rejected with an error.
pub fn decode_jpeg_rgb(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let result = std::panic::catch_unwind(|| unsafe {
        let mut err: jpeg::jpeg_error_mgr = std::mem::zeroed();
        let mut cinfo: jpeg::jpeg_decompress_struct = std::mem::zeroed();
        let err_ptr: *mut jpeg::jpeg_error_mgr = jpeg::jpeg_std_error(&mut err);
        // Set the hooks through the pointer libjpeg keeps (jpeg_std_error fills in the defaults).
        (*err_ptr).error_exit = Some(error_exit);
        (*err_ptr).emit_message = Some(silent_message);
        cinfo.common.err = err_ptr;
        jpeg::jpeg_create_decompress(&mut cinfo);
        // A guard destroys the decompressor on every path, including unwinding out of error_exit.
        struct Guard(*mut jpeg::jpeg_decompress_struct);
        impl Drop for Guard {
            fn drop(&mut self) {
                unsafe { jpeg::jpeg_destroy_decompress(&mut *self.0) };
            }
        }
        let _guard = Guard(&mut cinfo);
        jpeg::jpeg_mem_src(&mut cinfo, bytes.as_ptr(), bytes.len() as _);
        jpeg::jpeg_read_header(&mut cinfo, 1);
        if cinfo.num_components == 4 {
            return Err("CMYK/YCCK JPEG is not supported".to_string());
        }
        cinfo.out_color_space = jpeg::J_COLOR_SPACE::JCS_RGB;
        cinfo.dct_method = jpeg::J_DCT_METHOD::JDCT_ISLOW;
        cinfo.do_fancy_upsampling = 1;
        jpeg::jpeg_start_decompress(&mut cinfo);
        let (w, h) = (cinfo.output_width as usize, cinfo.output_height as usize);
        if cinfo.output_components != 3 {
            return Err(format!(
                "unexpected {} output components",
                cinfo.output_components
            ));
        }
        let mut data = vec![0u8; w * h * 3];
        while (cinfo.output_scanline as usize) < h {
            let row = cinfo.output_scanline as usize;
            let mut ptr = data[row * w * 3..].as_mut_ptr();
            jpeg::jpeg_read_scanlines(&mut cinfo, &mut ptr, 1);
        }
        jpeg::jpeg_finish_decompress(&mut cinfo);
        Ok(RgbImage { w, h, data })
    });
    match result {
        Ok(r) => r,
        Err(payload) => match payload.downcast::<JpegPanic>() {
            Ok(p) => Err(format!("libjpeg: {}", p.0)),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
}

/// Loads an image file as 8-bit RGB, as Darknet's `load_image_mat_cv` does (`imread` + `COLOR_BGR2RGB`).
/// JPEG files (by their SOI marker, not their name) use [`decode_jpeg_rgb`]; other formats the `image` crate.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read image {}", path.display()))?;
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return decode_jpeg_rgb(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let img = image::load_from_memory(&bytes)
        .with_context(|| format!("cannot decode image {}", path.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        bail!("{}: empty image", path.display());
    }
    Ok(RgbImage {
        w,
        h,
        data: img.into_raw(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_jpeg_is_an_error_not_a_panic() {
        let e = decode_jpeg_rgb(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 2]).unwrap_err();
        assert!(e.contains("libjpeg"), "{e}");
    }
}
