//! Training checkpoints: one safetensors file per checkpoint holding the model (`model.<tensor name>`, the
//! names of [`crate::weights`], rolling statistics included), the optimizer accumulators
//! (`opt.<param>.update`, [`crate::train::DarknetSgd::state`]) and, in the safetensors metadata under
//! `trainer_state`, the JSON [`TrainerState`] (iteration, `seen`, average loss, loss history, seed, data
//! stream position).
//!
//! Darknet itself only saves `.weights` (`save_weights` in `train_detector`: `_last`, `_XXXX`, `_final`) and
//! restarts momentum at zero on resume; a checkpoint here restores everything, so a killed run continues
//! exactly. Files are written with [`crate::util::write_atomic`] (temporary file, fsync, rename), so a
//! checkpoint is either complete or absent; [`latest`] only considers complete `checkpoint-NNNNNNNN.safetensors`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

/// Scalar state of the training loop.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    /// Iterations done (Darknet's `cur_iteration`).
    pub iteration: usize,
    /// Images seen (Darknet's `*net.seen`).
    pub seen: u64,
    /// Darknet's running average loss (`-1` before the first iteration).
    pub avg_loss: f32,
    /// `(iteration, loss, avg_loss)` of every iteration so far (for the chart).
    pub history: Vec<(usize, f32, f32)>,
    /// `(iteration, mAP@0.5)` of every evaluation so far.
    pub maps: Vec<(usize, f64)>,
    /// The data seed; with the per-batch stream the loader position is the iteration itself.
    pub seed: u64,
    /// Whether the single Darknet `rand()` stream was used (its position is not restorable).
    pub darknet_rng: bool,
    /// The cfg file's text hash, to refuse resuming with another cfg.
    pub cfg_hash: u64,
}

/// The file name of the checkpoint after `iteration` iterations.
pub fn file_name(iteration: usize) -> String {
    format!("checkpoint-{iteration:08}.safetensors")
}

/// Every complete checkpoint in `dir`, sorted by iteration.
pub fn list(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(num) = name
            .strip_prefix("checkpoint-")
            .and_then(|s| s.strip_suffix(".safetensors"))
        {
            if let Ok(it) = num.parse::<usize>() {
                out.push((it, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint in `dir`, if any.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list(dir)?.pop().map(|(_, p)| p))
}

/// Deletes temporary files left by a checkpoint write that was killed (`.checkpoint-*.tmp.<pid>`); they are
/// never read as checkpoints, this only reclaims the space.
pub fn remove_stale_temporaries(dir: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".checkpoint-") && name.contains(".tmp.") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Writes a checkpoint atomically and keeps only the newest `keep` (0 = keep all).
pub fn save(
    dir: &Path,
    state: &TrainerState,
    model: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    ema: &[(String, Tensor)],
    keep: usize,
) -> Result<PathBuf> {
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (prefix, list) in [("model.", model), ("opt.", optimizer), ("ema.", ema)] {
        for (name, t) in list {
            let v: Vec<f32> = t
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1()
                .with_context(|| format!("reading tensor {name} for the checkpoint"))?;
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            named.push((format!("{prefix}{name}"), t.dims().to_vec(), bytes));
        }
    }
    let views = named
        .iter()
        .map(|(n, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| anyhow::anyhow!("checkpoint tensor {n}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = HashMap::new();
    meta.insert("trainer_state".to_string(), serde_json::to_string(state)?);
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| anyhow::anyhow!("serialising the checkpoint: {e}"))?;
    let path = dir.join(file_name(state.iteration));
    crate::util::write_atomic(&path, &bytes)?;
    if keep > 0 {
        let all = list(dir)?;
        if all.len() > keep {
            for (_, p) in &all[..all.len() - keep] {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    Ok(path)
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub state: TrainerState,
    /// Tensors named as in [`crate::weights`].
    pub model: HashMap<String, Tensor>,
    /// Accumulators named `<param>.update`.
    pub optimizer: HashMap<String, Tensor>,
    /// The average of the weights of `ema_alpha` (empty without it or before it starts), named as `model`.
    pub ema: HashMap<String, Tensor>,
}

/// Reads a checkpoint written by [`save`].
pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors checkpoint: {e}", path.display()))?;
    let state_json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("trainer_state"))
        .with_context(|| format!("{}: no trainer_state metadata", path.display()))?;
    let state: TrainerState = serde_json::from_str(state_json)
        .with_context(|| format!("{}: bad trainer_state", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut model = HashMap::new();
    let mut optimizer = HashMap::new();
    let mut ema = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            bail!("{}: tensor {name} is not f32", path.display());
        }
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let t = Tensor::from_vec(v, view.shape(), device)?;
        if let Some(n) = name.strip_prefix("model.") {
            model.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix("opt.") {
            optimizer.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix("ema.") {
            ema.insert(n.to_string(), t);
        } else {
            bail!("{}: unexpected tensor {name}", path.display());
        }
    }
    Ok(Checkpoint {
        state,
        model,
        optimizer,
        ema,
    })
}

/// FNV-1a of a text (the cfg identity stored in [`TrainerState::cfg_hash`]).
pub fn text_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_latest() {
        let dir = std::env::temp_dir().join(format!("ckpt-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dev = Device::Cpu;
        let t = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &dev).unwrap();
        let mut st = TrainerState {
            iteration: 3,
            seen: 24,
            avg_loss: 1.5,
            history: vec![(1, 2.0, 2.0), (2, 1.0, 1.9)],
            maps: vec![],
            seed: 7,
            darknet_rng: false,
            cfg_hash: text_hash("x"),
        };
        save(
            &dir,
            &st,
            &[("a".into(), t.clone())],
            &[("a.update".into(), t.clone())],
            &[],
            2,
        )
        .unwrap();
        st.iteration = 5;
        save(
            &dir,
            &st,
            &[("a".into(), t.clone())],
            &[("a.update".into(), t.clone())],
            &[],
            2,
        )
        .unwrap();
        st.iteration = 9;
        let ema = [("a".to_string(), (&t * 2.0).unwrap())];
        let p = save(&dir, &st, &[("a".into(), t.clone())], &[], &ema, 2).unwrap();
        // A stray temporary file (an interrupted write) is never taken for a checkpoint.
        std::fs::write(dir.join(".checkpoint-00000010.safetensors.tmp.1"), b"junk").unwrap();
        assert_eq!(list(&dir).unwrap().len(), 2);
        assert_eq!(latest(&dir).unwrap().unwrap(), p);
        let c = load(&p, &dev).unwrap();
        assert_eq!(c.state, st);
        assert_eq!(
            c.model["a"].to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        assert!(c.optimizer.is_empty());
        assert_eq!(
            c.ema["a"].to_vec2::<f32>().unwrap(),
            vec![vec![2.0, 4.0], vec![6.0, 8.0]]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
