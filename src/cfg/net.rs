//! The `[net]` section, as `parse_net_options` in src/parser.c reads it: input size and every training key,
//! kept typed for the inference, data and training modules.

use super::error::CfgResult;
use super::options::read_inert;
use super::options::usize_of;

use super::reader::Section;

/// Learning-rate policy (`get_policy` in src/parser.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Constant,
    Step,
    Exp,
    Poly,
    Steps,
    Sig,
    Random,
    Sgdr,
}

/// Typed `[net]` options with Darknet's defaults.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NetConfig {
    /// `batch` as written in the cfg (before Darknet divides it by `subdivisions`).
    pub batch: usize,
    pub subdivisions: usize,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub max_batches: usize,
    pub learning_rate: f32,
    pub learning_rate_min: f32,
    pub momentum: f32,
    pub decay: f32,
    pub burn_in: usize,
    pub power: f32,
    pub policy: Policy,
    pub step: i64,
    pub scale: f32,
    pub gamma: f32,
    pub steps: Vec<i64>,
    pub scales: Vec<f32>,
    pub sgdr_cycle: usize,
    pub sgdr_mult: usize,
    pub adam: bool,
    pub b1: f32,
    pub b2: f32,
    pub eps: f32,
    pub angle: f32,
    pub aspect: f32,
    pub saturation: f32,
    pub exposure: f32,
    pub hue: f32,
    pub flip: bool,
    pub blur: i64,
    pub gaussian_noise: i64,
    /// Darknet's `mixup` code: 0 none, 1 mixup, 2 cutmix, 3 mosaic, 4 cutmix+mosaic.
    pub mixup: i64,
    pub letter_box: bool,
    pub mosaic_bound: bool,
    pub label_smooth_eps: f32,
    pub resize_step: usize,
    pub ema_alpha: f32,
    pub track: bool,
    pub time_steps: usize,
    pub contrastive: bool,
}

fn policy_from(name: &str, s: &Section) -> CfgResult<Policy> {
    Ok(match name {
        "random" => Policy::Random,
        "poly" => Policy::Poly,
        "constant" => Policy::Constant,
        "step" => Policy::Step,
        "exp" => Policy::Exp,
        "sigmoid" => Policy::Sig,
        "steps" => Policy::Steps,
        "sgdr" => Policy::Sgdr,
        // Darknet prints a warning and uses constant; an unknown policy silently changes training, so refuse.
        other => return Err(s.invalid(format!("unknown learning-rate policy '{other}'"))),
    })
}

impl NetConfig {
    /// `parse_net_options` (src/parser.c).
    pub fn parse(s: &Section) -> CfgResult<Self> {
        let max_batches = s.int_or("max_batches", 0)?.max(0) as usize;
        // Darknet clamps a batch below 1 to 1 (and so do we); above the limit is refused.
        let batch = usize_of(s.int_or("batch", 1)?.max(1), s, "batch", 1)?;
        let subdivisions = s.int_or("subdivisions", 1)?.max(1) as usize;
        if subdivisions > batch {
            // Darknet's mini-batch `batch / subdivisions` would be 0 images.
            return Err(s.at_key(
                "subdivisions",
                format!("subdivisions={subdivisions} is more than batch={batch} (a mini-batch of 0 images)"),
            ));
        }
        let policy = policy_from(&s.str_or("policy", "constant"), s)?;
        let mut cfg = NetConfig {
            batch,
            subdivisions,
            width: usize_of(s.int_or("width", 0)?.max(0), s, "width", 0)?,
            height: usize_of(s.int_or("height", 0)?.max(0), s, "height", 0)?,
            channels: usize_of(s.int_or("channels", 0)?.max(0), s, "channels", 0)?,
            max_batches,
            learning_rate: s.float_or("learning_rate", 0.001)?,
            learning_rate_min: s.float_or("learning_rate_min", 0.00001)?,
            sgdr_cycle: s.int_or("sgdr_cycle", max_batches as i64)?.max(0) as usize,
            sgdr_mult: s.int_or("sgdr_mult", 2)?.max(0) as usize,
            momentum: s.float_or("momentum", 0.9)?,
            decay: s.float_or("decay", 0.0001)?,
            time_steps: s.int_or("time_steps", 1)?.max(1) as usize,
            track: s.int_or("track", 0)? != 0,
            adam: s.int_or("adam", 0)? != 0,
            b1: 0.9,
            b2: 0.999,
            eps: 0.000001,
            flip: s.int_or("flip", 1)? != 0,
            blur: s.int_or("blur", 0)?,
            gaussian_noise: s.int_or("gaussian_noise", 0)?,
            mixup: s.int_or("mixup", 0)?,
            letter_box: s.int_or("letter_box", 0)? != 0,
            mosaic_bound: s.int_or("mosaic_bound", 0)? != 0,
            contrastive: s.int_or("contrastive", 0)? != 0,
            label_smooth_eps: s.float_or("label_smooth_eps", 0.0)?,
            resize_step: s.float_or("resize_step", 32.0)? as usize,
            ema_alpha: s.float_or("ema_alpha", 0.0)?,
            angle: s.float_or("angle", 0.0)?,
            aspect: s.float_or("aspect", 1.0)?,
            saturation: s.float_or("saturation", 1.0)?,
            exposure: s.float_or("exposure", 1.0)?,
            hue: s.float_or("hue", 0.0)?,
            power: s.float_or("power", 4.0)?,
            policy,
            burn_in: s.int_or("burn_in", 0)?.max(0) as usize,
            step: 1,
            scale: 1.0,
            gamma: 1.0,
            steps: Vec::new(),
            scales: Vec::new(),
        };
        let cutmix = s.int_or("cutmix", 0)? != 0;
        let mosaic = s.int_or("mosaic", 0)? != 0;
        cfg.mixup = match (mosaic, cutmix) {
            (true, true) => 4,
            (false, true) => 2,
            (true, false) => 3,
            (false, false) => cfg.mixup,
        };
        if cfg.adam {
            cfg.b1 = s.float_or("B1", 0.9)?;
            cfg.b2 = s.float_or("B2", 0.999)?;
            cfg.eps = s.float_or("eps", 0.000001)?;
        }
        read_policy_keys(&mut cfg, s)?;
        // Keys Darknet reads but that change nothing here; marking them read keeps the unused-key warnings useful.
        read_inert(s, INERT_KEYS);
        if cfg.width == 0 || cfg.height == 0 || cfg.channels == 0 {
            return Err(s.invalid("needs width, height and channels"));
        }
        Ok(cfg)
    }

    /// The mini-batch Darknet trains with: `batch / subdivisions`.
    pub fn mini_batch(&self) -> usize {
        (self.batch / self.subdivisions).max(1)
    }
}

/// The keys of the learning-rate policy (`parse_net_options`: `step`/`scale`, `steps`/`scales`, `gamma`).
fn read_policy_keys(cfg: &mut NetConfig, s: &Section) -> CfgResult<()> {
    let policy = cfg.policy;
    match policy {
        Policy::Step => {
            cfg.step = s.int_or("step", 1)?;
            cfg.scale = s.float_or("scale", 1.0)?;
        }
        Policy::Steps | Policy::Sgdr => {
            let steps = s.int_list("steps")?;
            let scales = s.float_list("scales")?;
            if policy == Policy::Steps && (steps.is_none() || scales.is_none()) {
                return Err(s.invalid("policy=steps needs both steps= and scales="));
            }
            cfg.steps = steps.unwrap_or_default();
            // `parse_net_options` reads one scale per step, 1.0 where scales= runs out.
            let given = scales.unwrap_or_default();
            cfg.scales = (0..cfg.steps.len())
                .map(|i| given.get(i).copied().unwrap_or(1.0))
                .collect();
        }
        Policy::Exp => cfg.gamma = s.float_or("gamma", 1.0)?,
        Policy::Sig => {
            cfg.gamma = s.float_or("gamma", 1.0)?;
            cfg.step = s.int_or("step", 1)?;
        }
        _ => {}
    }
    Ok(())
}

/// `[net]` keys Darknet reads that change nothing here.
const INERT_KEYS: &[&str] = &[
    "inputs",
    "max_crop",
    "min_crop",
    "sequential_subdivisions",
    "try_fix_nan",
    "weights_reject_freq",
    "equidistant_point",
    "badlabels_rejection_percentage",
    "num_sigmas_reject_badlabels",
    "use_cuda_graph",
    "loss_scale",
    "dynamic_minibatch",
    "optimized_memory",
    "workspace_size_limit_MB",
    "augment_speed",
    "contrastive_jit_flip",
    "contrastive_color",
    "unsupervised",
    "attention",
    "adversarial_lr",
    "max_chart_loss",
    "show_receptive_field",
    "seq_scales",
    "cutmix",
    "mosaic",
];
