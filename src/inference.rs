//! Inference as `darknet detector test` runs it: load an image (stb_image), resize or letterbox it to the
//! network size, forward the network with fused conv+BN, decode the yolo heads and apply the last head's NMS.
//! [`Detector`] ties [`crate::image`], [`crate::network`] and [`crate::detect`] together for the CLI and for
//! library users.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use crate::cfg::{LayerConfig, NetworkConfig, NmsKind};
use crate::detect::{self, Detection, GaussianYoloOutput, HeadOutput, RegionOutput, YoloOutput};
use crate::image::{network_input, Image};
use crate::layers::region::RegionConfig;
use crate::layers::yolo::YoloConfig;
use crate::network::{LoadOptions, Network};
use crate::weights::{self, NetWeights};

/// Post-processing settings (Darknet's `detector test` defaults: thresh .25, hier .5, nms .45).
#[derive(Debug, Clone, Copy)]
pub struct DetectOptions {
    pub thresh: f32,
    pub nms: f32,
    /// Use `letterbox_image` instead of the plain stretch (also on when the cfg says `letter_box=1`).
    pub letterbox: bool,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            thresh: 0.25,
            nms: 0.45,
            letterbox: false,
        }
    }
}

/// A loaded detector.
pub struct Detector {
    pub net: Network,
    pub names: Vec<String>,
    heads: Vec<Head>,
}

/// What the decoder needs to know about one detection layer.
struct Head {
    index: usize,
    kind: HeadKind,
    /// `nms_kind` / `beta_nms` of the layer (`[region]` has neither: Darknet's calloc'd layer says
    /// `DEFAULT_NMS`).
    nms_kind: NmsKind,
    beta_nms: f32,
}

enum HeadKind {
    Yolo(YoloConfig),
    Region(RegionConfig),
}

impl Head {
    /// `l.biases`: the anchors as flat (w, h) pairs.
    fn flat_anchors(&self) -> Vec<f32> {
        let pairs = match &self.kind {
            HeadKind::Yolo(y) => &y.anchors,
            HeadKind::Region(r) => &r.anchors,
        };
        pairs.iter().flat_map(|&(w, h)| [w, h]).collect()
    }

    fn classes(&self) -> usize {
        match &self.kind {
            HeadKind::Yolo(y) => y.classes,
            HeadKind::Region(r) => r.classes,
        }
    }
}

/// The 80 class names of Darknet's `data/coco.names` (the default when a cfg has 80 classes).
pub use crate::models::COCO_NAMES;

fn heads_of(cfg: &NetworkConfig) -> Result<Vec<Head>> {
    let mut heads = Vec::new();
    for l in &cfg.layers {
        match &l.config {
            LayerConfig::Yolo(y) => heads.push(Head {
                index: l.index,
                kind: HeadKind::Yolo(y.clone()),
                nms_kind: y.nms_kind,
                beta_nms: y.beta_nms,
            }),
            LayerConfig::Region(r) => heads.push(Head {
                index: l.index,
                kind: HeadKind::Region(r.clone()),
                nms_kind: NmsKind::Default,
                beta_nms: 0.0,
            }),
            _ => {}
        }
    }
    if heads.is_empty() {
        bail!(
            "{}: the cfg has no [yolo], [Gaussian_yolo] or [region] layer, so it is not a detector",
            cfg.file.display()
        );
    }
    Ok(heads)
}

/// Class names: from a names file, else Darknet's coco.names for 80 classes, else `class_<i>`.
pub fn default_names(classes: usize, names_file: Option<&Path>) -> Result<Vec<String>> {
    if let Some(p) = names_file {
        let names = detect::read_names(p)?;
        if names.len() < classes {
            bail!(
                "{}: {} names for {classes} classes",
                p.display(),
                names.len()
            );
        }
        return Ok(names);
    }
    if classes == 80 {
        return Ok(COCO_NAMES.lines().map(str::to_string).collect());
    }
    Ok((0..classes).map(|i| format!("class_{i}")).collect())
}

impl Detector {
    /// Loads a cfg and weights (`.weights` or `.safetensors`) with fused conv+BN, as `detector test` does.
    pub fn load(
        cfg_path: &Path,
        weights_path: &Path,
        names: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        Self::load_with(
            cfg_path,
            weights_path,
            names,
            device,
            &LoadOptions::default(),
        )
    }

    /// [`Self::load`] with the network built by `load` ([`Self::from_parts_with`]).
    pub fn load_with(
        cfg_path: &Path,
        weights_path: &Path,
        names: Option<&Path>,
        device: &Device,
        load: &LoadOptions,
    ) -> Result<Self> {
        let cfg = NetworkConfig::from_file(cfg_path)?;
        let w = weights::load_any_with(&cfg, weights_path, load.allow_nonfinite)?;
        Self::from_parts_with(cfg, &w, names, device, load)
    }

    pub fn from_parts(
        cfg: NetworkConfig,
        w: &NetWeights,
        names: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        Self::from_parts_with(cfg, w, names, device, &LoadOptions::default())
    }

    /// [`Self::from_parts`] with the network built by `load` (fused BN is what `detector test` runs; `load.cpu`
    /// chooses the CPU kernels).
    pub fn from_parts_with(
        cfg: NetworkConfig,
        w: &NetWeights,
        names: Option<&Path>,
        device: &Device,
        load: &LoadOptions,
    ) -> Result<Self> {
        let heads = heads_of(&cfg)?;
        let names = default_names(heads.last().map_or(0, Head::classes), names)?;
        let net = Network::from_weights(&cfg, w, device, load)?;
        Ok(Detector { net, names, heads })
    }

    pub fn cfg(&self) -> &NetworkConfig {
        &self.net.cfg
    }

    /// Letterbox if asked or if the cfg's `[net]` says `letter_box=1` (as `test_detector` decides).
    pub fn uses_letterbox(&self, opts: &DetectOptions) -> bool {
        opts.letterbox || self.net.cfg.net.letter_box
    }

    /// The network input for one image (`resize_image` or `letterbox_image`).
    pub fn preprocess(&self, im: &Image, opts: &DetectOptions) -> Image {
        let n = &self.net.cfg.net;
        network_input(im, n.width, n.height, self.uses_letterbox(opts))
    }

    /// Runs the network on preprocessed inputs and returns the raw head outputs per image, per head.
    pub fn forward(&self, inputs: &[Image]) -> Result<Vec<Vec<Vec<f32>>>> {
        let n = &self.net.cfg.net;
        let mut data = Vec::with_capacity(inputs.len() * n.channels * n.height * n.width);
        for im in inputs {
            if (im.c, im.h, im.w) != (n.channels, n.height, n.width) {
                bail!(
                    "input is {}x{}x{}, the network wants {}x{}x{}",
                    im.c,
                    im.h,
                    im.w,
                    n.channels,
                    n.height,
                    n.width
                );
            }
            data.extend_from_slice(&im.data);
        }
        let x = Tensor::from_vec(
            data,
            (inputs.len(), n.channels, n.height, n.width),
            &self.net.device,
        )?;
        let outs = self.net.forward_heads(&x)?;
        let mut per_image = vec![Vec::with_capacity(outs.len()); inputs.len()];
        for (_, t) in outs {
            let t = t.to_device(&Device::Cpu)?;
            for (b, slot) in per_image.iter_mut().enumerate() {
                slot.push(t.get(b)?.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        Ok(per_image)
    }

    /// Decodes one image's head outputs into detections before NMS (`get_network_boxes`), and the NMS settings
    /// of the last head.
    fn decode(
        &self,
        outputs: &[Vec<f32>],
        im_w: usize,
        im_h: usize,
        opts: &DetectOptions,
    ) -> Result<(Vec<Detection>, detect::PostprocessOptions)> {
        let cfg = &self.net.cfg;
        let anchors: Vec<Vec<f32>> = self.heads.iter().map(Head::flat_anchors).collect();
        let heads: Vec<HeadOutput> = self
            .heads
            .iter()
            .zip(outputs)
            .zip(&anchors)
            .map(|((h, out), anchors)| {
                let s = cfg.layers[h.index].output;
                match &h.kind {
                    HeadKind::Yolo(y) if y.gaussian => {
                        HeadOutput::GaussianYolo(GaussianYoloOutput {
                            output: out,
                            w: s.w,
                            h: s.h,
                            classes: y.classes,
                            anchors,
                            mask: &y.mask,
                            yolo_point: y.yolo_point,
                        })
                    }
                    HeadKind::Yolo(y) => HeadOutput::Yolo(YoloOutput {
                        output: out,
                        w: s.w,
                        h: s.h,
                        classes: y.classes,
                        anchors,
                        mask: &y.mask,
                        new_coords: y.new_coords,
                    }),
                    HeadKind::Region(r) => HeadOutput::Region(RegionOutput {
                        output: out,
                        w: s.w,
                        h: s.h,
                        num: r.num,
                        classes: r.classes,
                        anchors,
                        classfix: r.classfix,
                        tree: r.tree.as_deref(),
                    }),
                }
            })
            .collect();
        let last = self.heads.last().context("no heads")?;
        let post = detect::PostprocessOptions {
            thresh: opts.thresh,
            letter: self.uses_letterbox(opts),
            nms_thresh: opts.nms,
            nms_kind: last.nms_kind,
            beta_nms: last.beta_nms,
        };
        let map = detect::BoxMapping::relative(
            (im_w, im_h),
            (cfg.net.width, cfg.net.height),
            post.letter,
        );
        Ok((detect::fill_network_boxes(&heads, &map, post.thresh)?, post))
    }

    /// The detections of one image's head outputs before NMS (`get_network_boxes` as `detector test` calls
    /// it: relative boxes on the `im_w` x `im_h` image).
    pub fn boxes(
        &self,
        outputs: &[Vec<f32>],
        im_w: usize,
        im_h: usize,
        opts: &DetectOptions,
    ) -> Result<Vec<Detection>> {
        Ok(self.decode(outputs, im_w, im_h, opts)?.0)
    }

    /// Decodes one image's head outputs into detections after NMS (`get_network_boxes` + the last head's NMS).
    pub fn postprocess(
        &self,
        outputs: &[Vec<f32>],
        im_w: usize,
        im_h: usize,
        opts: &DetectOptions,
    ) -> Result<Vec<Detection>> {
        let (mut dets, post) = self.decode(outputs, im_w, im_h, opts)?;
        let classes = self.heads.last().map_or(0, Head::classes);
        detect::apply_nms(
            &mut dets,
            classes,
            post.nms_thresh,
            post.nms_kind,
            post.beta_nms,
        );
        Ok(dets)
    }

    /// The whole pipeline for a batch of decoded images.
    pub fn detect(&self, images: &[Image], opts: &DetectOptions) -> Result<Vec<Vec<Detection>>> {
        let inputs: Vec<Image> = images.iter().map(|im| self.preprocess(im, opts)).collect();
        let outs = self.forward(&inputs)?;
        images
            .iter()
            .zip(outs)
            .map(|(im, o)| self.postprocess(&o, im.w, im.h, opts))
            .collect()
    }
}
