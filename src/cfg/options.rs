//! What every layer's `parse_X` shares (src/parser.c, src/activations.c): the activation names, layer references
//! (`index < 0 => current + index`), refusing options we do not implement, and checked integer reads.

use super::error::{CfgErrorKind, CfgResult};
use super::reader::{atof, Section};

/// Activation functions (`get_activation` in src/activations.c) that the detector cfgs and common cfgs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Linear,
    Leaky,
    Relu,
    Relu6,
    Logistic,
    Loggy,
    Tanh,
    Elu,
    Selu,
    Gelu,
    Mish,
    HardMish,
    Swish,
    Relie,
    Ramp,
}

impl Activation {
    /// `get_activation`; deliberate difference: an unknown name is an error (Darknet silently uses ReLU).
    pub fn parse(name: &str, s: &Section) -> CfgResult<Self> {
        Ok(match name {
            "linear" => Self::Linear,
            "leaky" => Self::Leaky,
            "relu" => Self::Relu,
            "relu6" => Self::Relu6,
            "logistic" => Self::Logistic,
            "loggy" => Self::Loggy,
            "tanh" => Self::Tanh,
            "elu" => Self::Elu,
            "selu" => Self::Selu,
            "gelu" => Self::Gelu,
            "mish" => Self::Mish,
            "hard_mish" => Self::HardMish,
            "swish" => Self::Swish,
            "relie" => Self::Relie,
            "ramp" => Self::Ramp,
            other => return Err(s.invalid(format!("activation '{other}' is not supported"))),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Leaky => "leaky",
            Self::Relu => "relu",
            Self::Relu6 => "relu6",
            Self::Logistic => "logistic",
            Self::Loggy => "loggy",
            Self::Tanh => "tanh",
            Self::Elu => "elu",
            Self::Selu => "selu",
            Self::Gelu => "gelu",
            Self::Mish => "mish",
            Self::HardMish => "hard_mish",
            Self::Swish => "swish",
            Self::Relie => "relie",
            Self::Ramp => "ramp",
        }
    }
}

/// Resolves a possibly negative layer reference as Darknet does (`index < 0 => current + index`) and checks it
/// points to an earlier layer.
pub(crate) fn resolve_index(raw: i64, current: usize, s: &Section, key: &str) -> CfgResult<usize> {
    let abs = if raw < 0 { current as i64 + raw } else { raw };
    if abs < 0 || abs >= current as i64 {
        return Err(s.error(CfgErrorKind::BadReference {
            section: s.name.clone(),
            index: current,
            key: key.to_string(),
            raw,
            abs,
        }));
    }
    Ok(abs as usize)
}

/// Options that change a layer's computation in ways we do not implement: refuse them with their line.
pub(crate) fn refuse_nonzero(s: &Section, keys: &[&str]) -> CfgResult<()> {
    for k in keys {
        if let Some(kv) = s.find(k) {
            if atof(&kv.value).unwrap_or(1.0) != 0.0 {
                return Err(s.error_at(
                    kv.line,
                    CfgErrorKind::UnsupportedOption {
                        section: s.name.clone(),
                        key: kv.key.clone(),
                        value: kv.value.clone(),
                    },
                ));
            }
        }
    }
    Ok(())
}

/// `v` as a count that must be at least `min` and at most the key's limit ([`crate::limits::cfg_key_max`]),
/// checked before anything is sized by it.
pub(crate) fn usize_of(v: i64, s: &Section, key: &str, min: i64) -> CfgResult<usize> {
    if v < min {
        return Err(s.at_key(key, format!("{key}={v} must be at least {min}")));
    }
    let max = crate::limits::cfg_key_max(key);
    if v > max {
        return Err(s.at_key(
            key,
            format!("{key}={v} is beyond the limit {max} (docs/limits.md)"),
        ));
    }
    Ok(v as usize)
}

/// `anchors=` as (w, h) pairs. Deliberate difference: an odd count (Darknet reads the missing height from past
/// the list) and a non-finite or negative value are errors at the key's line.
pub(crate) fn anchor_pairs(values: &[f32], s: &Section) -> CfgResult<Vec<(f32, f32)>> {
    if !values.len().is_multiple_of(2) {
        return Err(s.at_key(
            "anchors",
            format!(
                "anchors has {} values, not (width, height) pairs",
                values.len()
            ),
        ));
    }
    if values.len() > 2 * crate::limits::MAX_ANCHORS {
        return Err(s.at_key(
            "anchors",
            format!(
                "anchors has {} pairs, beyond the limit {} (docs/limits.md)",
                values.len() / 2,
                crate::limits::MAX_ANCHORS
            ),
        ));
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(s.at_key(
            "anchors",
            format!("anchor value {v} is not a finite size >= 0"),
        ));
    }
    Ok(values.chunks(2).map(|c| (c[0], c[1])).collect())
}

/// Marks keys as read that Darknet reads but that change nothing here (training or GPU knobs), so they do not
/// show up as unused-key warnings.
pub(crate) fn read_inert(s: &Section, keys: &[&str]) {
    for k in keys {
        let _ = s.find(k);
    }
}
