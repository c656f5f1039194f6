#![no_main]
// Image lists and `.data` files, read from a file as the commands do (first byte picks which).
use candle_darknet::dataset::{read_list, DataCfg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("cd-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(if kind & 1 == 0 { "x.txt" } else { "x.data" });
    if std::fs::write(&p, body).is_err() {
        return;
    }
    if kind & 1 == 0 {
        let _ = read_list(&p);
    } else if let Ok(d) = DataCfg::read(&p) {
        let _ = d.classes();
        let _ = d.train_list();
        let _ = d.names();
    }
});
