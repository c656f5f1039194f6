//! Darknet cfg files → typed network description (`parse_network_cfg_custom` in src/parser.c).
//!
//! [`reader`] splits text into sections with line numbers, [`net`] reads `[net]`, [`options`] holds what every
//! layer's parser shares, and [`error`] the typed error. Each layer type's config and `parse_X` live with the
//! layer in [`crate::layers`] (re-exported here); this module runs them in order and infers every layer's shape
//! the way the `make_*_layer` functions do, so that a cfg that parses here builds a network without further
//! checks.

pub mod error;
pub mod net;
pub mod options;
pub mod reader;

use std::path::{Path, PathBuf};

pub use crate::layers::convolutional::ConvConfig;
pub use crate::layers::dropout::DropoutConfig;
pub use crate::layers::maxpool::MaxpoolConfig;
pub use crate::layers::region::RegionConfig;
pub use crate::layers::reorg::ReorgConfig;
pub use crate::layers::route::RouteConfig;
pub use crate::layers::sam::SamConfig;
pub use crate::layers::scale_channels::ScaleChannelsConfig;
pub use crate::layers::shortcut::{ShortcutConfig, ShortcutWeights, WeightsNormalization};
pub use crate::layers::upsample::UpsampleConfig;
pub use crate::layers::yolo::{IouLoss, NmsKind, YoloConfig};
pub use crate::layers::{LayerConfig, LayerType};
pub use error::{CfgError, CfgErrorKind, CfgResult};
pub use net::{NetConfig, Policy};
pub use options::Activation;
pub use reader::{read_cfg, Section};

/// A feature map shape (Darknet's `c, h, w`; batch excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Self { c, h, w }
    }
    pub fn numel(&self) -> usize {
        self.c * self.h * self.w
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} x {} x {}", self.w, self.h, self.c)
    }
}

/// One layer of the network: its config, where it came from, and its shapes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerSpec {
    pub index: usize,
    /// Line of the `[section]` header in the cfg file.
    pub line: usize,
    pub config: LayerConfig,
    pub input: Shape,
    pub output: Shape,
    /// `stopbackward=1`: training does not propagate gradients below this layer.
    pub stopbackward: bool,
}

impl LayerSpec {
    /// Billions of floating point operations of one forward pass, as Darknet counts them (`l.bflops`:
    /// 2 × weights × output pixels for convolutions, 0 for the rest).
    pub fn bflops(&self) -> f64 {
        self.config.as_layer_type().bflops(self)
    }

    /// The line of Darknet's layer table for this layer, after the index.
    pub fn info(&self) -> String {
        self.config.as_layer_type().info(self)
    }
}

/// A parsed cfg: `[net]` plus the layers, with shapes for the current network size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NetworkConfig {
    pub file: PathBuf,
    pub net: NetConfig,
    pub layers: Vec<LayerSpec>,
    /// Unused keys (Darknet's `option_unused`), as `file:line: warning: ...`.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl NetworkConfig {
    pub fn from_file(path: impl AsRef<Path>) -> CfgResult<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CfgError::new(path, 0, CfgErrorKind::Io(e)))?;
        Self::parse(&text, path)
    }

    /// Parses cfg text; `file` names the source in messages.
    pub fn parse(text: &str, file: &Path) -> CfgResult<Self> {
        let sections = read_cfg(text, file)?;
        let Some((first, rest)) = sections.split_first() else {
            return Err(CfgError::new(file, 0, CfgErrorKind::NoSections));
        };
        if first.name != "net" && first.name != "network" {
            return Err(first.error(CfgErrorKind::FirstSectionNotNet(first.name.clone())));
        }
        let net = NetConfig::parse(first)?;
        let mut warnings = first.unused_warnings();
        let mut configs = Vec::with_capacity(rest.len());
        for (index, s) in rest.iter().enumerate() {
            let config = LayerConfig::parse(s, index)?;
            let stopbackward = s.int_or("stopbackward", 0)? != 0;
            // `parse_network_cfg` reads these for every layer; they change nothing at inference.
            options::read_inert(
                s,
                &[
                    "clip",
                    "onlyforward",
                    "dont_update",
                    "burnin_update",
                    "train_only_bn",
                    "dontload",
                    "dontloadscales",
                    "learning_rate",
                    "stream",
                    "wait_stream",
                ],
            );
            warnings.extend(s.unused_warnings());
            configs.push((s.line, config, stopbackward));
        }
        if configs.is_empty() {
            return Err(first.error(CfgErrorKind::NoLayers));
        }
        // Checked before the layers are parsed further or sized: each costs at least its output map.
        if rest.len() > crate::limits::MAX_LAYERS {
            return Err(rest[crate::limits::MAX_LAYERS].invalid(format!(
                "the cfg has {} layers, beyond the limit {} (docs/limits.md)",
                rest.len(),
                crate::limits::MAX_LAYERS
            )));
        }
        let layers = infer_shapes(&configs, &net, file)?;
        Ok(NetworkConfig {
            file: file.to_path_buf(),
            net,
            layers,
            warnings,
        })
    }

    /// The same network at another input size (Darknet's `resize_network`); shapes are inferred again.
    pub fn with_size(&self, width: usize, height: usize) -> CfgResult<Self> {
        for (what, v) in [("width", width), ("height", height)] {
            if v == 0 || v > crate::limits::MAX_SIDE {
                let message = format!(
                    "network {what} {v} is outside 1..={} (docs/limits.md)",
                    crate::limits::MAX_SIDE
                );
                return Err(CfgError::new(
                    &self.file,
                    0,
                    CfgErrorKind::Invalid {
                        section: "net".into(),
                        message,
                    },
                ));
            }
        }
        let mut net = self.net.clone();
        net.width = width;
        net.height = height;
        let configs: Vec<_> = self
            .layers
            .iter()
            .map(|l| (l.line, l.config.clone(), l.stopbackward))
            .collect();
        let layers = infer_shapes(&configs, &net, &self.file)?;
        Ok(NetworkConfig {
            file: self.file.clone(),
            net,
            layers,
            warnings: self.warnings.clone(),
        })
    }

    pub fn input_shape(&self) -> Shape {
        Shape::new(self.net.channels, self.net.height, self.net.width)
    }

    pub fn total_bflops(&self) -> f64 {
        self.layers.iter().map(|l| l.bflops()).sum()
    }

    /// Indices of the detection heads (`[yolo]`, `[Gaussian_yolo]`, `[region]`).
    pub fn head_indices(&self) -> Vec<usize> {
        self.layers
            .iter()
            .filter(|l| l.config.is_head())
            .map(|l| l.index)
            .collect()
    }

    /// Darknet's layer table (`parse_network_cfg` prints it while building), with BFLOPs.
    pub fn layer_table(&self) -> String {
        let mut out =
            String::from("   layer   filters  size/strd(dil)      input                output\n");
        for l in &self.layers {
            out.push_str(&format!("{:4} {}\n", l.index, l.info()));
        }
        out.push_str(&format!("Total BFLOPS {:.3} \n", self.total_bflops()));
        out
    }
}

/// A layer's output within the limits (checked before anything is sized by it, and before `numel` could
/// overflow): not empty, each side at most [`crate::limits::MAX_SIDE`], channels at most
/// [`crate::limits::MAX_CHANNELS`] times 16 (routes concatenate), and one map at most
/// [`crate::limits::MAX_MAP_ELEMENTS`] elements.
fn check_shape(output: Shape, input: Shape) -> Result<(), String> {
    use crate::limits::{MAX_CHANNELS, MAX_MAP_ELEMENTS, MAX_SIDE};
    if output.w > MAX_SIDE || output.h > MAX_SIDE || output.c > 16 * MAX_CHANNELS {
        return Err(format!(
            "output shape {output} (input {input}) is beyond the limits: sides up to {MAX_SIDE}, channels up to {} (docs/limits.md)",
            16 * MAX_CHANNELS
        ));
    }
    let n = (output.c as u128) * (output.h as u128) * (output.w as u128);
    if n == 0 {
        return Err(format!("output shape {output} is empty (input {input})"));
    }
    if n > MAX_MAP_ELEMENTS as u128 {
        return Err(format!(
            "output shape {output} (input {input}) has {n} elements, beyond the limit {MAX_MAP_ELEMENTS} per image (docs/limits.md)"
        ));
    }
    Ok(())
}

/// Output shape of every layer, as the `make_*_layer` functions compute it.
fn infer_shapes(
    configs: &[(usize, LayerConfig, bool)],
    net: &NetConfig,
    file: &Path,
) -> CfgResult<Vec<LayerSpec>> {
    let mut out: Vec<LayerSpec> = Vec::with_capacity(configs.len());
    let mut input = Shape::new(net.channels, net.height, net.width);
    for (index, (line, config, stopbackward)) in configs.iter().enumerate() {
        let e = |message: String| {
            let kind = CfgErrorKind::Shape {
                layer_type: config.type_name(),
                index,
                message,
            };
            CfgError::new(file, *line, kind)
        };
        let output = config
            .as_layer_type()
            .output_shape(input, &out)
            .map_err(&e)?;
        check_shape(output, input).map_err(&e)?;
        out.push(LayerSpec {
            index,
            line: *line,
            config: config.clone(),
            input,
            output,
            stopbackward: *stopbackward,
        });
        input = output;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> PathBuf {
        crate::util::shared_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
    }

    #[test]
    fn yolov4_tiny_shapes_match_darknet_manifest() {
        let dir = shared().join("reference/yolov4-tiny-bus416");
        let cfg = NetworkConfig::from_file(dir.join("yolov4-tiny.cfg")).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), cfg.layers.len());
        for (l, m) in cfg.layers.iter().zip(layers) {
            assert_eq!(
                l.config.type_name(),
                m["type"].as_str().unwrap(),
                "layer {}",
                l.index
            );
            let s = Shape::new(
                m["c"].as_u64().unwrap() as usize,
                m["h"].as_u64().unwrap() as usize,
                m["w"].as_u64().unwrap() as usize,
            );
            assert_eq!(l.output, s, "layer {}", l.index);
        }
        // Darknet prints 6.910 BFLOPs for yolov4-tiny at 416.
        assert!(
            (cfg.total_bflops() - 6.910).abs() < 0.01,
            "{}",
            cfg.total_bflops()
        );
    }

    #[test]
    fn unknown_layer_type_names_line() {
        let e = NetworkConfig::parse(
            "[net]\nwidth=8\nheight=8\nchannels=3\n\n[bogus]\nx=1\n",
            Path::new("x.cfg"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("x.cfg:6"), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn route_to_future_layer_is_an_error() {
        let e = NetworkConfig::parse(
            "[net]\nwidth=8\nheight=8\nchannels=3\n[route]\nlayers=3\n",
            Path::new("r.cfg"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("r.cfg:5"), "{e}");
    }

    #[test]
    fn errors_are_typed_with_file_line_and_kind() {
        let e = NetworkConfig::parse(
            "[net]\nwidth=8\nheight=8\nchannels=3\n[route]\nlayers=3\n",
            Path::new("r.cfg"),
        )
        .unwrap_err();
        assert_eq!((e.file.as_path(), e.line), (Path::new("r.cfg"), 5));
        assert!(
            matches!(
                e.kind,
                CfgErrorKind::BadReference {
                    raw: 3,
                    index: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = NetworkConfig::parse(
            "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nbinary=1\n",
            Path::new("x.cfg"),
        )
        .unwrap_err();
        assert_eq!(e.line, 7);
        assert!(
            matches!(e.kind, CfgErrorKind::UnsupportedOption { .. }),
            "{e:?}"
        );
        let e = NetworkConfig::parse(
            "[net]\nwidth=8\nheight=8\nchannels=3\n[yolo]\nclasses=2\n",
            Path::new("y.cfg"),
        )
        .unwrap_err();
        assert!(
            matches!(
                e.kind,
                CfgErrorKind::Shape {
                    layer_type: "yolo",
                    index: 0,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
