//! What `train_detector` (src/detector.c) settles before its loop: the training list, the checks on the
//! `[yolo]` heads, the initial weights (or a checkpoint's), the optimizer, the augmentation settings and the
//! multi-scale size schedule. Each step is one function used by [`crate::train::trainer::Trainer::new`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;

use crate::cfg::{LayerConfig, NetworkConfig, YoloConfig};
use crate::data::detection::AugmentConfig;
use crate::data::loader::{batch_seed, SizeSchedule};
use crate::data::rand::{rand_scale, FastRand};
use crate::dataset::{read_names, DataCfg, ImageList};
use crate::network::TrainableNetwork;
use crate::train::checkpoint::{self, TrainerState};
use crate::train::{current_batch, DarknetSgd, ParamKind};
use crate::weights::NetWeights;

use super::progress::TrainEvent;

/// The multi-scale draw of `train_detector` for the iteration block starting at `iteration`.
pub fn multiscale_size(
    net: &NetworkConfig,
    random: f32,
    iteration: usize,
    first: bool,
    max_batches: usize,
    seed: u64,
) -> (usize, usize) {
    let (init_w, init_h) = (net.net.width as f64, net.net.height as f64);
    let step = net.net.resize_step.max(1) as f64;
    let coef = if random != 1.0 { random } else { 1.4 };
    let mut rng = FastRand::new(batch_seed(seed ^ 0x5EED_517E, (iteration / 10) as u64));
    let val = rand_scale(&mut rng, coef) as f64;
    let round = |v: f64| (v / step + 1.0).round() * step;
    let (mut w, mut h) = (round(val * init_w), round(val * init_h));
    if val < 1.0 && (w > init_w || h > init_h) {
        (w, h) = (init_w, init_h);
    }
    if first || iteration + 100 > max_batches {
        (w, h) = (round(coef as f64 * init_w), round(coef as f64 * init_h));
    }
    (w.max(step) as usize, h.max(step) as usize)
}

/// The network size of every iteration: the cfg's, or with `random` the draw of the block of 10 iterations
/// that holds it (the first block of a fresh run is the largest size, as `train_detector`).
pub fn size_schedule(
    cfg: &NetworkConfig,
    random: f32,
    fresh_start: bool,
    max_batches: usize,
    seed: u64,
) -> SizeSchedule {
    let cfg = cfg.clone();
    Arc::new(move |k| {
        let k = k as usize;
        if random == 0.0 {
            return (cfg.net.width, cfg.net.height);
        }
        let block = k - k % 10;
        multiscale_size(
            &cfg,
            random,
            block,
            fresh_start && block == 0,
            max_batches,
            seed,
        )
    })
}

/// The `.data` file to train from: `data` itself, or for a COCO instances json its copy in Darknet's layout
/// (labels beside image links), written once under `out_dir`.
pub fn darknet_data(data: &Path, images: Option<&Path>, out_dir: &Path) -> Result<PathBuf> {
    if !data
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        return Ok(data.to_path_buf());
    }
    let ds = crate::eval::dataset::Dataset::from_coco_json(data, images, None)?;
    ds.write_darknet(&out_dir.join("coco-as-darknet"))
}

/// The training list of a `.data` file (paths by [`crate::dataset`]'s rule), which must not be empty.
pub fn train_list(data: &DataCfg) -> Result<ImageList> {
    let list = ImageList::train_of(data)?;
    if list.is_empty() {
        bail!("{}: no training images", list.list.display());
    }
    Ok(list)
}

/// The last `[yolo]` layer (Darknet takes `jitter`, `resize`, `max_boxes`, `classes` and `random` from it),
/// after checking that every head has the same `max` and that `names=` agrees with its `classes`.
pub fn checked_last_yolo(cfg: &NetworkConfig, data: &DataCfg) -> Result<YoloConfig> {
    let yolo = cfg
        .layers
        .iter()
        .rev()
        .find_map(|l| match &l.config {
            LayerConfig::Yolo(y) => Some(y.clone()),
            _ => None,
        })
        .with_context(|| format!("{}: no [yolo] layer to train", cfg.file.display()))?;
    if let Some(other) = cfg.layers.iter().find_map(|l| match &l.config {
        LayerConfig::Yolo(y) if y.max_boxes != yolo.max_boxes => Some(y.max_boxes),
        _ => None,
    }) {
        bail!(
            "the [yolo] layers disagree on max ({} vs {other}); one truth array serves all",
            yolo.max_boxes
        );
    }
    if data.get("names").is_some() {
        let names = data.names();
        let k = read_names(&names)?.len();
        if k != yolo.classes {
            bail!(
                "{}: {k} names, but the cfg's last [yolo] has classes={}",
                names.display(),
                yolo.classes
            );
        }
    }
    Ok(yolo)
}

/// `load_data_detection`'s settings from the cfg's `[net]` and last `[yolo]`.
pub fn augment_config(cfg: &NetworkConfig, yolo: &YoloConfig) -> AugmentConfig {
    AugmentConfig {
        w: cfg.net.width,
        h: cfg.net.height,
        jitter: yolo.jitter,
        hue: cfg.net.hue,
        saturation: cfg.net.saturation,
        exposure: cfg.net.exposure,
        flip: cfg.net.flip,
        mosaic: cfg.net.mixup == 3,
        letter_box: cfg.net.letter_box,
        resize: yolo.resize,
        max_boxes: yolo.max_boxes,
        classes: yolo.classes,
    }
}

/// Initial weights: a (possibly partial) `.weights`/safetensors file, or Darknet's random initialisation.
/// A partial file is reported through `report`.
pub fn initial_weights(
    cfg: &NetworkConfig,
    path: Option<&Path>,
    seed: u64,
    report: &mut dyn FnMut(TrainEvent),
) -> Result<NetWeights> {
    let Some(p) = path else {
        let convs = crate::weights::parameter_layers(cfg)
            .into_iter()
            .map(|(i, n, per, bn)| {
                let w = crate::weights::darknet::darknet_init(i, n, per, bn, seed);
                (i, w)
            })
            .collect();
        return Ok(NetWeights {
            header: crate::weights::Header::current(0),
            convs,
        });
    };
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    if crate::weights::safetensors::looks_like_safetensors(&bytes) {
        let w = crate::weights::safetensors::from_bytes(cfg, &bytes, p)?;
        w.check_finite(p)?;
        return Ok(w);
    }
    let (w, loaded) = crate::weights::darknet::from_bytes_partial(cfg, &bytes, p, seed)?;
    w.check_finite(p)?;
    let total = w.convs.len();
    if loaded < total {
        report(TrainEvent::Warning(format!(
            "{}: {loaded} of {total} convolutional layers loaded, the rest initialised randomly",
            p.display()
        )));
    }
    Ok(w)
}

/// Where a run starts: weights, optimizer state and loop state.
pub struct Start {
    pub weights: NetWeights,
    pub optimizer: Option<HashMap<String, Tensor>>,
    /// The checkpoint's average of the weights (`ema_alpha`), if it holds one.
    pub ema: HashMap<String, Tensor>,
    pub state: TrainerState,
    /// The checkpoint resumed from, if any.
    pub resumed: Option<PathBuf>,
}

/// The newest checkpoint in `out_dir` (with `resume`), else the initial weights at `current_batch(seen)`.
pub fn start(
    cfg: &NetworkConfig,
    cfg_hash: u64,
    opts: &super::trainer::TrainOptions,
    report: &mut dyn FnMut(TrainEvent),
) -> Result<Start> {
    let latest = if opts.resume {
        checkpoint::latest(&opts.out_dir)?
    } else {
        None
    };
    let Some(p) = latest else {
        let weights = initial_weights(cfg, opts.weights.as_deref(), opts.seed, report)?;
        let seen = if opts.clear { 0 } else { weights.header.seen };
        let state = TrainerState {
            iteration: current_batch(&cfg.net, seen),
            seen,
            avg_loss: -1.0,
            history: vec![],
            maps: vec![],
            seed: opts.seed,
            darknet_rng: opts.darknet_rng,
            cfg_hash,
        };
        return Ok(Start {
            weights,
            optimizer: None,
            ema: HashMap::new(),
            state,
            resumed: None,
        });
    };
    let ck = checkpoint::load(&p, &opts.device)?;
    if ck.state.cfg_hash != cfg_hash {
        bail!(
            "{}: written for another cfg than {}",
            p.display(),
            opts.cfg.display()
        );
    }
    if ck.state.darknet_rng {
        report(TrainEvent::Warning(
            "the run used --darknet-rng; its data stream restarts on resume".into(),
        ));
    }
    let header = crate::weights::Header::current(ck.state.seen);
    let weights = NetWeights::from_tensors(cfg, header, &ck.model)?;
    report(TrainEvent::Resumed {
        checkpoint: p.clone(),
        iteration: ck.state.iteration,
    });
    Ok(Start {
        weights,
        optimizer: Some(ck.optimizer),
        ema: ck.ema,
        state: ck.state,
        resumed: Some(p),
    })
}

/// Darknet's SGD over the network's parameters: weight decay on convolution weights only. With
/// `freeze_bn_biases` the biases of batch-normalised convolutions are left out (Darknet's CPU build: see
/// [`super::trainer::TrainOptions::freeze_bn_biases`]).
pub fn optimizer_for(
    net: &TrainableNetwork,
    cfg: &NetworkConfig,
    freeze_bn_biases: bool,
) -> Result<DarknetSgd> {
    let params = net
        .parameters()
        .into_iter()
        .filter(|(name, _)| !(freeze_bn_biases && name.ends_with(".bn.bias")))
        .map(|(name, var)| {
            let kind = if name.ends_with("conv.weight") {
                ParamKind::Weights
            } else {
                ParamKind::NoDecay
            };
            (name, var, kind)
        })
        .collect();
    DarknetSgd::new(params, cfg.net.momentum, cfg.net.decay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiscale_follows_train_detector() {
        let text = "[net]\nwidth=416\nheight=416\nchannels=3\n[convolutional]\nfilters=18\nsize=1\nactivation=linear\n\
                    [yolo]\nmask=0,1,2\nanchors=10,10, 20,20, 30,30\nclasses=1\nnum=3\nrandom=1\n";
        let cfg = NetworkConfig::parse(text, Path::new("m.cfg")).unwrap();
        // First block of a fresh run and the last 100 iterations: the largest size, round(1.4·416/32 + 1)·32.
        assert_eq!(multiscale_size(&cfg, 1.0, 0, true, 1000, 1), (608, 608));
        assert_eq!(multiscale_size(&cfg, 1.0, 950, false, 1000, 1), (608, 608));
        for it in (10..800).step_by(10) {
            let (w, h) = multiscale_size(&cfg, 1.0, it, false, 1000, 1);
            assert_eq!(w, h);
            assert!(w % 32 == 0 && (320..=608).contains(&w), "{w}");
            // Deterministic per block.
            assert_eq!(multiscale_size(&cfg, 1.0, it, false, 1000, 1), (w, h));
        }
    }
}
