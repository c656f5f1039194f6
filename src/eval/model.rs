//! Running a detector over a whole dataset for evaluation, as `validate_detector` / `validate_detector_map`
//! (src/detector.c) do: each image through the cfg's preprocessing (stretch or letterbox), the network, and
//! `get_network_boxes` at a low threshold (Darknet uses .001 for `valid` and .005 for `map`; we keep the lower
//! one and the Darknet metric filters at .005 itself) with the cfg's NMS. Batching does not change results: every
//! image is decoded and post-processed on its own.

use std::time::Instant;

use anyhow::Result;

use super::dataset::Dataset;
use super::{Det, ImageDetections};
use crate::image::load_image;
use crate::inference::{DetectOptions, Detector};

/// Where the time went.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timing {
    pub images: usize,
    pub total_s: f64,
    pub network_s: f64,
}

impl Timing {
    pub fn images_per_s(&self) -> f64 {
        self.images as f64 / self.total_s.max(1e-9)
    }
    /// Share of the wall time spent outside the network forward (decode, resize, post-processing, NMS).
    pub fn outside_network(&self) -> f64 {
        1.0 - self.network_s / self.total_s.max(1e-9)
    }
}

/// Detects every image of `ds` (`batch` images per forward) and returns Darknet-ordered detections; an
/// image that cannot be decoded is an error naming it.
pub fn detect_dataset(
    det: &Detector,
    ds: &Dataset,
    opts: &DetectOptions,
    batch: usize,
    progress: bool,
) -> Result<(Vec<ImageDetections>, Timing)> {
    let mut ds = ds.clone();
    let (dets, timing, _) = detect_dataset_skipping(det, &mut ds, opts, batch, progress, true)?;
    Ok((dets, timing))
}

/// An image of the dataset that could not be decoded, and why.
pub type SkippedImage = (std::path::PathBuf, String);

/// [`detect_dataset`]; without `strict`, an image that cannot be decoded (truncated, corrupt) is skipped:
/// it gets no detections and its ground-truth boxes are removed from `ds`, so it counts in no metric.
/// (Darknet's `load_image` gives a blank 10x10 image instead and counts its objects as missed; leaving the
/// image out keeps one bad file from lowering recall.) The skipped images are returned in order.
pub fn detect_dataset_skipping(
    det: &Detector,
    ds: &mut Dataset,
    opts: &DetectOptions,
    batch: usize,
    progress: bool,
    strict: bool,
) -> Result<(Vec<ImageDetections>, Timing, Vec<SkippedImage>)> {
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(ds.images.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "eval {bar:40} {pos}/{len} images, {per_sec}, ETA {eta}",
            )
            .expect("valid template"),
        );
        b
    });
    let start = Instant::now();
    let mut timing = Timing::default();
    let mut out = Vec::with_capacity(ds.images.len());
    let mut skipped = Vec::new();
    let total = ds.images.len();
    let indices: Vec<usize> = (0..total).collect();
    for chunk in indices.chunks(batch.max(1)) {
        if crate::util::interrupted() {
            anyhow::bail!(
                "interrupted after {} of {total} images (no metrics: they need every image)",
                out.len(),
            );
        }
        let mut loaded = Vec::with_capacity(chunk.len());
        for &i in chunk {
            match load_image(&ds.images[i].path, 3) {
                Ok(im) => loaded.push((i, im)),
                Err(e) if strict => return Err(e.into()),
                Err(e) => {
                    let entry = &mut ds.images[i];
                    skipped.push((entry.path.clone(), format!("{e:#}")));
                    entry.boxes.clear();
                    out.push(ImageDetections {
                        image_index: i,
                        dets: Vec::new(),
                    });
                }
            }
        }
        let inputs: Vec<_> = loaded
            .iter()
            .map(|(_, im)| det.preprocess(im, opts))
            .collect();
        let t = Instant::now();
        let heads = if inputs.is_empty() {
            Vec::new()
        } else {
            det.forward(&inputs)?
        };
        timing.network_s += t.elapsed().as_secs_f64();
        for ((index, im), h) in loaded.iter().zip(heads) {
            let dets = det.postprocess(&h, im.w, im.h, opts)?;
            let mut flat = Vec::new();
            for d in &dets {
                for (class, &prob) in d.prob.iter().enumerate() {
                    if prob > 0.0 {
                        flat.push(Det {
                            class,
                            prob,
                            objectness: d.objectness,
                            bbox_rel_cxcywh: [d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h],
                        });
                    }
                }
            }
            out.push(ImageDetections {
                image_index: *index,
                dets: flat,
            });
        }
        if let Some(b) = &bar {
            b.inc(chunk.len() as u64);
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    out.sort_by_key(|d| d.image_index);
    timing.images = total;
    timing.total_s = start.elapsed().as_secs_f64();
    Ok((out, timing, skipped))
}
