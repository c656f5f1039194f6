//! Darknet cfg files → typed network description (`parse_network_cfg_custom` in src/parser.c).
//!
//! [`reader`] splits text into sections with line numbers, [`net`] reads `[net]`, [`layers`] holds one typed
//! config per layer type, and this module resolves layer references and infers every layer's shape the way the
//! `make_*_layer` functions do, so that a cfg that parses here builds a network without further checks.

pub mod layers;
pub mod net;
pub mod reader;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use layers::*;
pub use net::{NetConfig, Policy};
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
        match &self.config {
            LayerConfig::Convolutional(c) => {
                let nweights = (self.input.c / c.groups) * c.filters * c.size * c.size;
                2.0 * nweights as f64 * (self.output.h * self.output.w) as f64 / 1e9
            }
            _ => 0.0,
        }
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
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading cfg {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses cfg text; `file` names the source in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let sections = read_cfg(text, file)?;
        let Some((first, rest)) = sections.split_first() else {
            bail!("{}: the cfg has no sections", file.display());
        };
        if first.name != "net" && first.name != "network" {
            bail!(
                "{}: first section must be [net] or [network], found [{}]",
                first.location(),
                first.name
            );
        }
        let net = NetConfig::parse(first)?;
        let mut warnings = first.unused_warnings();
        let mut configs = Vec::with_capacity(rest.len());
        for (index, s) in rest.iter().enumerate() {
            let config = parse_layer(s, index)?;
            let stopbackward = s.int_or("stopbackward", 0)? != 0;
            for k in [
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
            ] {
                let _ = s.find(k);
            }
            warnings.extend(s.unused_warnings());
            configs.push((s.line, config, stopbackward));
        }
        if configs.is_empty() {
            bail!("{}: the cfg has no layers after [net]", file.display());
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
    pub fn with_size(&self, width: usize, height: usize) -> Result<Self> {
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
            .filter(|l| matches!(l.config, LayerConfig::Yolo(_) | LayerConfig::Region(_)))
            .map(|l| l.index)
            .collect()
    }

    /// Darknet's layer table (`parse_network_cfg` prints it while building), with BFLOPs.
    pub fn layer_table(&self) -> String {
        let mut out =
            String::from("   layer   filters  size/strd(dil)      input                output\n");
        for l in &self.layers {
            out.push_str(&format!("{:4} {}\n", l.index, describe(l)));
        }
        out.push_str(&format!("Total BFLOPS {:.3} \n", self.total_bflops()));
        out
    }
}

fn describe(l: &LayerSpec) -> String {
    let (i, o) = (l.input, l.output);
    let io = format!(
        "{:4} x{:4} x{:4} -> {:4} x{:4} x{:4}",
        i.w, i.h, i.c, o.w, o.h, o.c
    );
    match &l.config {
        LayerConfig::Convolutional(c) => {
            let g = if c.groups > 1 {
                format!("{:2}/{:4}", c.groups, c.filters)
            } else {
                format!("   {:4}", c.filters)
            };
            let dil = if c.dilation > 1 {
                format!("({})", c.dilation)
            } else {
                "   ".into()
            };
            format!(
                "conv  {g}    {:2} x{:2}/{:2}{dil} {io} {:.3} BF",
                c.size,
                c.size,
                c.stride_x,
                l.bflops()
            )
        }
        LayerConfig::Maxpool(m) => {
            let name = if m.avg { "avg  " } else { "max  " };
            format!(
                "{name}           {:2}x{:2}/{:2}    {io}",
                m.size, m.size, m.stride_x
            )
        }
        LayerConfig::Route(r) => {
            let ls: Vec<String> = r.layers.iter().map(|x| x.to_string()).collect();
            let g = if r.groups > 1 {
                format!(" {}/{}", r.group_id, r.groups)
            } else {
                String::new()
            };
            format!(
                "route  {}{g} {:>24} -> {:4} x{:4} x{:4}",
                ls.join(" "),
                "",
                o.w,
                o.h,
                o.c
            )
        }
        LayerConfig::Shortcut(s) => {
            let ls: Vec<String> = s.from.iter().map(|x| x.to_string()).collect();
            format!(
                "Shortcut Layer: {}, wt = {:?}, wn = {:?}, outputs: {io}",
                ls.join(", "),
                s.weights_type,
                s.weights_normalization
            )
        }
        LayerConfig::Upsample(u) if u.stride < 0 => {
            format!("downsample          {:2}x  {io}", -u.stride)
        }
        LayerConfig::Upsample(u) => format!("upsample                {:2}x  {io}", u.stride),
        LayerConfig::Yolo(_) => format!("yolo                          {io}"),
        LayerConfig::Region(_) => format!("detection (region)            {io}"),
        LayerConfig::Avgpool => format!("avg                           {io}"),
        LayerConfig::Reorg(r) => format!(
            "{}              /{:2}  {io}",
            if r.old { "reorg_old" } else { "reorg    " },
            r.stride
        ),
        LayerConfig::ScaleChannels(s) => format!("scale Layer: {:4}             {io}", s.from),
        LayerConfig::Sam(s) => format!("scale Layer: {:4} (sam)       {io}", s.from),
        LayerConfig::Dropout(d) => format!("dropout     p = {:.2}           {io}", d.probability),
        LayerConfig::Empty => format!("empty                         {io}"),
    }
}

/// Dispatches on the section name as `string_to_layer_type` does; unknown or unsupported types are errors.
fn parse_layer(s: &Section, index: usize) -> Result<LayerConfig> {
    Ok(match s.name.as_str() {
        "convolutional" | "conv" => LayerConfig::Convolutional(parse_conv(s, index)?),
        "maxpool" | "max" => LayerConfig::Maxpool(parse_maxpool(s, false)?),
        "local_avgpool" | "local_avg" => LayerConfig::Maxpool(parse_maxpool(s, true)?),
        "route" => LayerConfig::Route(parse_route(s, index)?),
        "shortcut" => LayerConfig::Shortcut(parse_shortcut(s, index)?),
        "upsample" => LayerConfig::Upsample(parse_upsample(s)?),
        "yolo" => LayerConfig::Yolo(parse_yolo(s, false)?),
        "Gaussian_yolo" => LayerConfig::Yolo(parse_yolo(s, true)?),
        "region" => LayerConfig::Region(parse_region(s)?),
        "avgpool" | "avg" => LayerConfig::Avgpool,
        "reorg" => LayerConfig::Reorg(parse_reorg(s, true)?),
        "reorg3d" => LayerConfig::Reorg(parse_reorg(s, false)?),
        "scale_channels" => LayerConfig::ScaleChannels(parse_scale_channels(s, index)?),
        "sam" => LayerConfig::Sam(parse_sam(s, index)?),
        "dropout" => LayerConfig::Dropout(parse_dropout(s)?),
        "empty" | "silence" => LayerConfig::Empty,
        known @ ("crop" | "cost" | "detection" | "local" | "activation" | "crnn" | "gru"
        | "lstm" | "conv_lstm" | "history" | "rnn" | "conn" | "connected" | "lrn"
        | "normalization" | "batchnorm" | "soft" | "softmax" | "contrastive"
        | "implicit") => {
            bail!(
                "{}: layer type [{known}] (layer {index}) is not supported by candle-darknet",
                s.location()
            )
        }
        other => bail!(
            "{}: unknown layer type [{other}] (layer {index})",
            s.location()
        ),
    })
}

fn err_at(file: &Path, line: usize, index: usize, ty: &str, msg: String) -> anyhow::Error {
    anyhow::anyhow!("{}:{line}: [{ty}] (layer {index}): {msg}", file.display())
}

/// Output shape of every layer, as the `make_*_layer` functions compute it.
fn infer_shapes(
    configs: &[(usize, LayerConfig, bool)],
    net: &NetConfig,
    file: &Path,
) -> Result<Vec<LayerSpec>> {
    let mut out: Vec<LayerSpec> = Vec::with_capacity(configs.len());
    let mut input = Shape::new(net.channels, net.height, net.width);
    for (index, (line, config, stopbackward)) in configs.iter().enumerate() {
        let e = |msg: String| err_at(file, *line, index, config.type_name(), msg);
        let output = layer_output_shape(config, input, &out).map_err(|m| e(m))?;
        if output.numel() == 0 {
            return Err(e(format!("output shape {output} is empty (input {input})")));
        }
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

fn layer_output_shape(
    config: &LayerConfig,
    i: Shape,
    prev: &[LayerSpec],
) -> std::result::Result<Shape, String> {
    let image = |what: &str| -> std::result::Result<(), String> {
        if i.numel() == 0 {
            Err(format!("the layer before {what} must output an image"))
        } else {
            Ok(())
        }
    };
    Ok(match config {
        LayerConfig::Convolutional(c) => {
            image("[convolutional]")?;
            if i.c % c.groups != 0 {
                return Err(format!(
                    "input channels {} not divisible by groups={}",
                    i.c, c.groups
                ));
            }
            if let Some(s) = c.share_index {
                match &prev[s].config {
                    LayerConfig::Convolutional(o) if o.filters == c.filters && o.size == c.size && o.groups == c.groups && prev[s].input.c == i.c => {}
                    _ => return Err(format!("share_index={s} does not point to a convolutional layer with the same weight shape")),
                }
            }
            // convolutional_out_height: dilation does not enter Darknet's output size.
            let oh = (i.h + 2 * c.pad)
                .checked_sub(c.size)
                .map(|v| v / c.stride_y + 1);
            let ow = (i.w + 2 * c.pad)
                .checked_sub(c.size)
                .map(|v| v / c.stride_x + 1);
            match (oh, ow) {
                (Some(h), Some(w)) => Shape::new(c.filters, h, w),
                _ => return Err(format!("kernel {} larger than padded input {i}", c.size)),
            }
        }
        LayerConfig::Maxpool(m) => {
            image("[maxpool]")?;
            if m.maxpool_depth {
                Shape::new(m.out_channels, i.h, i.w)
            } else {
                let oh = (i.h + m.padding)
                    .checked_sub(m.size)
                    .map(|v| v / m.stride_y + 1);
                let ow = (i.w + m.padding)
                    .checked_sub(m.size)
                    .map(|v| v / m.stride_x + 1);
                match (oh, ow) {
                    (Some(h), Some(w)) => Shape::new(i.c, h, w),
                    _ => return Err(format!("window {} larger than padded input {i}", m.size)),
                }
            }
        }
        LayerConfig::Route(r) => {
            let first = prev[r.layers[0]].output;
            let mut c = 0;
            for &l in &r.layers {
                let s = prev[l].output;
                if (s.h, s.w) != (first.h, first.w) {
                    return Err(format!(
                        "routed layers differ in size: layer {} is {}, layer {l} is {s}",
                        r.layers[0], first
                    ));
                }
                if s.c % r.groups != 0 {
                    return Err(format!(
                        "layer {l} has {} channels, not divisible by groups={}",
                        s.c, r.groups
                    ));
                }
                c += s.c;
            }
            Shape::new(c / r.groups, first.h, first.w)
        }
        LayerConfig::Shortcut(s) => {
            for &f in &s.from {
                let o = prev[f].output;
                if (o.h, o.w) != (i.h, i.w) && s.from.len() > 1 {
                    return Err(format!(
                        "multi-input shortcut needs equal sizes: input {i}, layer {f} is {o}"
                    ));
                }
            }
            i
        }
        LayerConfig::Upsample(u) => {
            let s = u.stride.unsigned_abs() as usize;
            if u.stride > 0 {
                Shape::new(i.c, i.h * s, i.w * s)
            } else {
                Shape::new(i.c, i.h / s, i.w / s)
            }
        }
        LayerConfig::Yolo(y) => {
            let want = y.mask.len() * y.entries();
            if i.c != want {
                return Err(format!(
                    "input has {} channels but mask ({} anchors) x (classes {} + {}) = {want}: filters= of the [convolutional] before does not match classes=/mask=",
                    i.c,
                    y.mask.len(),
                    y.classes,
                    y.entries() - y.classes
                ));
            }
            i
        }
        LayerConfig::Region(r) => {
            let want = r.num * (r.coords + 1 + r.classes);
            if i.c != want {
                return Err(format!(
                    "input has {} channels but num x (coords + 1 + classes) = {want}",
                    i.c
                ));
            }
            i
        }
        LayerConfig::Avgpool => Shape::new(i.c, 1, 1),
        LayerConfig::Reorg(r) => {
            let s = r.stride;
            if r.reverse {
                if i.c % (s * s) != 0 {
                    return Err(format!(
                        "reverse reorg needs channels divisible by {}",
                        s * s
                    ));
                }
                Shape::new(i.c / (s * s), i.h * s, i.w * s)
            } else {
                if i.h % s != 0 || i.w % s != 0 {
                    return Err(format!("reorg stride {s} does not divide input {i}"));
                }
                Shape::new(i.c * s * s, i.h / s, i.w / s)
            }
        }
        LayerConfig::ScaleChannels(sc) => {
            let from = prev[sc.from].output;
            let ok = if sc.scale_wh {
                i.h == from.h && i.w == from.w && i.c == 1
            } else {
                i.c == from.c && i.h == 1 && i.w == 1
            };
            if !ok {
                return Err(format!(
                    "input {i} cannot scale layer {} output {from}",
                    sc.from
                ));
            }
            from
        }
        LayerConfig::Sam(sa) => {
            let from = prev[sa.from].output;
            if from != i {
                return Err(format!(
                    "input {i} and layer {} output {from} differ",
                    sa.from
                ));
            }
            from
        }
        LayerConfig::Dropout(_) | LayerConfig::Empty => i,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> PathBuf {
        let m = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let p = m.join("../shared");
        if p.exists() {
            p
        } else {
            PathBuf::from("/work/shared")
        }
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
}
