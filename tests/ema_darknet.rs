//! `ema_alpha` against Darknet's own `train_network` (tests/data/ema, tools/ema_ref): the live weights Darknet
//! dumped after each iteration are replayed through `train::ema::Ema`; its average must equal Darknet's
//! `weights_ema` / `biases_ema` / `scales_ema` bit for bit, and at the apply point (iteration 1004) Darknet's
//! live weights must be the average.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Device, Tensor};
use candle_darknet::train::ema::Ema;

/// `iteration N` followed by `name v...` lines.
fn read_dump() -> Vec<(usize, BTreeMap<String, Vec<f32>>)> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ema/darknet_ema.txt"
    );
    let text = std::fs::read_to_string(p).expect("tests/data/ema/darknet_ema.txt");
    let mut out: Vec<(usize, BTreeMap<String, Vec<f32>>)> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let name = f.next().expect("a name");
        if name == "iteration" {
            out.push((f.next().unwrap().parse().unwrap(), BTreeMap::new()));
        } else {
            let v = f.map(|x| x.parse::<f32>().unwrap()).collect();
            out.last_mut()
                .expect("iteration first")
                .1
                .insert(name.to_string(), v);
        }
    }
    out
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn ema_matches_darknet_train_network() {
    let dump = read_dump();
    assert_eq!(dump.len(), 7);
    let names: Vec<String> = dump[0]
        .1
        .keys()
        .filter(|k| !k.starts_with("ema."))
        .cloned()
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    // net.cfg: max_batches=2004, ema_alpha=0.9.
    let mut ema = Ema::with_names(0.9, 2004, names.clone());
    assert_eq!(ema.schedule(), (1002, 1004));
    let mut seen_update = 0;
    for (it, vals) in &dump {
        let live: HashMap<String, Tensor> = names
            .iter()
            .map(|n| {
                let v = &vals[n];
                (
                    n.clone(),
                    Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap(),
                )
            })
            .collect();
        let step = ema.step(*it, &live).unwrap();
        assert_eq!(step.initialized, *it == 1002, "iteration {it}");
        assert_eq!(step.applied, *it == 1004, "iteration {it}");
        assert_eq!(step.updated, *it == 1002 || *it == 1003, "iteration {it}");
        seen_update += step.updated as usize;
        let darknet_initialized = vals["ema.layers.0.conv.weight"].iter().any(|&x| x != 0.0);
        assert_eq!(
            ema.is_initialized().unwrap(),
            darknet_initialized,
            "iteration {it}"
        );
        if !darknet_initialized {
            continue;
        }
        for n in &names {
            let ours = values(&ema.average()[n]);
            let theirs = &vals[&format!("ema.{n}")];
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ours), bits(theirs), "iteration {it}: {n}");
            if *it == 1004 {
                // ema_apply: Darknet's live weights are now the average.
                assert_eq!(bits(&ours), bits(&vals[n]), "iteration {it}: live {n}");
            }
        }
    }
    assert_eq!(seen_update, 2);
    // The average moved away from the weights it was initialised with (the case is not trivial).
    assert_ne!(
        dump[2].1["ema.layers.1.conv.weight"],
        dump[4].1["ema.layers.1.conv.weight"]
    );
}
