//! JPEG decoding that matches OpenCV's `cv::imread(path, IMREAD_COLOR)` bit for bit.
//!
//! Darknet's `load_image_mat_cv` (src/image_opencv.cpp 119) reads a training image with `cv::imread` and
//! converts it to RGB. OpenCV decodes JPEG with libjpeg-turbo: the accurate integer IDCT (`JDCT_ISLOW`),
//! "fancy" (triangular) chroma upsampling and libjpeg's fixed-point YCbCr->RGB tables. Pure-Rust decoders
//! (zune-jpeg, jpeg-decoder) use other IDCTs / upsamplers and differ in 2-17 % of the bytes (by up to 4 levels),
//! so we call libjpeg-turbo's own decoder, as vendored by `mozjpeg-sys` (built from C source with `cc`, no
//! system package, SIMD off: libjpeg-turbo's SIMD paths are bit-exact with its C paths).
//!
//! Like `imread` (without `IMREAD_IGNORE_ORIENTATION`), the EXIF Orientation tag of a JPEG is applied
//! ([`apply_exif_orientation`]). Deliberate difference: CMYK/YCCK JPEGs are rejected. Other formats go
//! through the `image` crate (PNG/BMP are lossless, so any decoder gives the same pixels).

use mozjpeg_sys as jpeg;
use std::path::{Path, PathBuf};

/// A training image that could not be loaded: which file and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct DecodeError {
    pub path: PathBuf,
    pub kind: DecodeErrorKind,
}

/// Why a training image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("cannot read image: {0}")]
    Io(std::io::Error),
    #[error("CMYK/YCCK JPEG is not supported")]
    CmykJpeg,
    #[error("unexpected {0} output components")]
    Components(i32),
    /// libjpeg's own message (from its `error_exit`).
    #[error("libjpeg: {0}")]
    Libjpeg(String),
    #[error("cannot decode image: {0}")]
    Image(image::ImageError),
    #[error("empty image")]
    Empty,
}

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
pub fn decode_jpeg_rgb(bytes: &[u8]) -> Result<RgbImage, DecodeErrorKind> {
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
            return Err(DecodeErrorKind::CmykJpeg);
        }
        cinfo.out_color_space = jpeg::J_COLOR_SPACE::JCS_RGB;
        cinfo.dct_method = jpeg::J_DCT_METHOD::JDCT_ISLOW;
        cinfo.do_fancy_upsampling = 1;
        jpeg::jpeg_start_decompress(&mut cinfo);
        let (w, h) = (cinfo.output_width as usize, cinfo.output_height as usize);
        if cinfo.output_components != 3 {
            return Err(DecodeErrorKind::Components(cinfo.output_components));
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
            Ok(p) => Err(DecodeErrorKind::Libjpeg(p.0)),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
}

/// Loads an image file as 8-bit RGB, as Darknet's `load_image_mat_cv` does (`imread` + `COLOR_BGR2RGB`).
/// JPEG files (by their SOI marker, not their name) use [`decode_jpeg_rgb`]; other formats the `image` crate.
pub fn load_rgb(path: &Path) -> Result<RgbImage, DecodeError> {
    let err = |kind| DecodeError {
        path: path.to_path_buf(),
        kind,
    };
    let bytes = std::fs::read(path).map_err(|e| err(DecodeErrorKind::Io(e)))?;
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let img = decode_jpeg_rgb(&bytes).map_err(err)?;
        return Ok(apply_exif_orientation(img, exif_orientation(&bytes)));
    }
    let img = image::load_from_memory(&bytes)
        .map_err(|e| err(DecodeErrorKind::Image(e)))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(err(DecodeErrorKind::Empty));
    }
    Ok(RgbImage {
        w,
        h,
        data: img.into_raw(),
    })
}

/// The EXIF Orientation (tag 0x0112 of IFD0 in the APP1 `Exif` segment) of a JPEG, 1 if absent or
/// unreadable (as OpenCV's `ExifReader`, which ignores malformed EXIF).
pub fn exif_orientation(jpeg: &[u8]) -> u16 {
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        let seg = jpeg.get(i + 4..i + 2 + len).unwrap_or(&[]);
        if marker == 0xE1 && seg.starts_with(b"Exif\0\0") {
            if let Some(o) = tiff_orientation(&seg[6..]) {
                return o;
            }
        }
        i += 2 + len;
    }
    1
}

fn tiff_orientation(t: &[u8]) -> Option<u16> {
    let le = match t.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u16> {
        let b = t.get(o..o + 2)?;
        Some(if le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    };
    let u32_at = |o: usize| -> Option<u32> {
        let b = t.get(o..o + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    };
    let ifd = u32_at(4)? as usize;
    let n = u16_at(ifd)? as usize;
    for k in 0..n {
        let e = ifd + 2 + 12 * k;
        if u16_at(e)? == 0x0112 {
            let v = u16_at(e + 8)?;
            return (1..=8).contains(&v).then_some(v);
        }
    }
    None
}

fn transpose(img: &RgbImage) -> RgbImage {
    let mut out = RgbImage {
        w: img.h,
        h: img.w,
        data: vec![0; img.data.len()],
    };
    for y in 0..img.h {
        for x in 0..img.w {
            let s = (y * img.w + x) * 3;
            let d = (x * out.w + y) * 3;
            out.data[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    out
}

fn flip(img: &RgbImage, horizontal: bool, vertical: bool) -> RgbImage {
    let mut out = img.clone();
    for y in 0..img.h {
        for x in 0..img.w {
            let sx = if horizontal { img.w - 1 - x } else { x };
            let sy = if vertical { img.h - 1 - y } else { y };
            let s = (sy * img.w + sx) * 3;
            let d = (y * img.w + x) * 3;
            out.data[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    out
}

/// OpenCV's `ExifTransform` (imgcodecs/src/loadsave.cpp): 2 flip x, 3 flip both, 4 flip y,
/// 5 transpose, 6 transpose + flip x, 7 transpose + flip both, 8 transpose + flip y.
pub fn apply_exif_orientation(img: RgbImage, orientation: u16) -> RgbImage {
    match orientation {
        2 => flip(&img, true, false),
        3 => flip(&img, true, true),
        4 => flip(&img, false, true),
        5 => transpose(&img),
        6 => flip(&transpose(&img), true, false),
        7 => flip(&transpose(&img), true, true),
        8 => flip(&transpose(&img), false, true),
        _ => img,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_jpeg_is_an_error_not_a_panic() {
        let e = decode_jpeg_rgb(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 2]).unwrap_err();
        assert!(matches!(e, DecodeErrorKind::Libjpeg(_)), "{e}");
        let e = load_rgb(Path::new("no/such.jpg")).unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::Io(_)), "{e}");
        assert!(
            e.to_string().starts_with("no/such.jpg: cannot read image"),
            "{e}"
        );
    }

    /// A minimal APP1 Exif segment (little-endian TIFF, one IFD0 entry: Orientation = `o`).
    fn app1(o: u16) -> Vec<u8> {
        let mut tiff = b"II*\0".to_vec();
        tiff.extend_from_slice(&8u32.to_le_bytes());
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&0x0112u16.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&o.to_le_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut seg = vec![0xFF, 0xE1];
        seg.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
        seg.extend_from_slice(b"Exif\0\0");
        seg.extend_from_slice(&tiff);
        seg
    }

    #[test]
    fn exif_orientation_is_read_and_applied() {
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend(app1(6));
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
        assert_eq!(exif_orientation(&jpeg), 6);
        assert_eq!(exif_orientation(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]), 1);
        // 2x1 image [a, b] rotated 90 degrees clockwise (orientation 6) is the 1x2 column [a; b].
        let img = RgbImage {
            w: 2,
            h: 1,
            data: vec![1, 1, 1, 2, 2, 2],
        };
        let r = apply_exif_orientation(img.clone(), 6);
        assert_eq!((r.w, r.h, r.data.clone()), (1, 2, vec![1, 1, 1, 2, 2, 2]));
        let r8 = apply_exif_orientation(img, 8);
        assert_eq!(r8.data, vec![2, 2, 2, 1, 1, 1]);
    }
}
