//! CPU inference kernels: the convolution Darknet runs as `im2col_cpu_ext` + `gemm` in
//! `forward_convolutional_layer` (src/convolutional_layer.c), with its bias, batch norm and activation fused into
//! the GEMM's epilogue ([`conv`], [`activation`]). Used automatically by
//! [`crate::layers::convolutional::Convolutional::forward`] when the tensors are on the CPU and no gradient is
//! tracked; CUDA and autograd keep candle's `conv2d`. [`CpuOptions`] (in the network's `LoadOptions`; the
//! CLI's `--no-cpu-kernels` and `--winograd`) choose the kernels or turn them off, for comparisons.

pub mod activation;
pub mod conv;
pub mod gemm;
pub mod planes;
pub mod pool;
pub mod shortcut;
pub mod upsample;
pub mod winograd;
pub mod yolo;

/// The instruction set the CPU kernels run with, chosen once at run time: the best the CPU supports among
/// those this build was compiled for (AVX-512 only with the `avx512` cargo feature, on by default; building
/// without it forces the AVX2 kernels on an AVX-512 machine, for comparisons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F (+ AVX2, FMA): our kernels at 16 lanes (and the `gemm` crate's AVX-512 microkernels in candle's
    /// matmul, which training on the CPU uses).
    Avx512,
    /// AVX2 + FMA: 8 lanes.
    Avx2,
    /// The target's baseline (SSE2 on x86-64; other architectures).
    Baseline,
}

impl Isa {
    /// The name `bench` prints.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Baseline => "baseline",
        }
    }
}

/// The instruction set of this process's CPU kernels (see [`Isa`]).
pub fn isa() -> Isa {
    use std::sync::OnceLock;
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let v3 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if v3 && cfg!(feature = "avx512") && is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if v3 {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    })
}

/// Defines `unsafe fn $name(args) -> ret` that runs the `#[inline(always)]` function `$generic` compiled for
/// [`isa()`]: copies of it built with AVX-512F and with AVX2+FMA enabled (so that LLVM vectorises its loops at
/// 16 or 8 lanes), or the baseline. The copies perform the same operations in the same order (Rust never
/// contracts a multiply and an add into an FMA by itself), so every ISA gives bit-identical results.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis unsafe fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? = $generic:path) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                match $crate::cpu::isa() {
                    $crate::cpu::Isa::Avx512 => return v4($($arg),*),
                    $crate::cpu::Isa::Avx2 => return v3($($arg),*),
                    $crate::cpu::Isa::Baseline => {}
                }
            }
            $generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod busy_pool_tests {
    use rayon::prelude::*;

    /// `f`'s result comes back, its parallel loops complete (with the other workers polling), and a panic in
    /// `f` reaches the caller instead of leaving the polling tasks running forever.
    #[test]
    fn returns_and_propagates_panics() {
        for _ in 0..50 {
            let sum: u64 = super::on_busy_pool(|| (0..10_000u64).into_par_iter().sum());
            assert_eq!(sum, 10_000 * 9_999 / 2);
        }
        let r = std::panic::catch_unwind(|| super::on_busy_pool(|| panic!("inside f")));
        assert!(r.is_err());
        assert_eq!(super::on_busy_pool(|| 7), 7);
    }
}

/// Deterministic test data shared by the kernels' unit tests.
#[cfg(test)]
pub(crate) mod test_data {
    /// `n` values in [-1, 1) from a xorshift64 generator seeded with `seed`.
    pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }
}

/// Which Winograd tile 3×3 stride-1 convolutions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WinogradChoice {
    /// F(4×4, 3×3) where it needs a quarter fewer multiplies than F(2×2, 3×3) (small maps waste part of a 4×4
    /// tile), F(2×2) otherwise.
    #[default]
    Auto,
    /// Always F(2×2, 3×3).
    F2,
    /// Always F(4×4, 3×3).
    F4,
    /// Never: the direct im2col + GEMM form.
    Off,
}

/// Settings of the CPU inference path, chosen when the network is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuOptions {
    /// Use these kernels for convolution, maxpool and the yolo head on the CPU (otherwise candle's ops, the
    /// reference form; it is also what CUDA and training run).
    pub enabled: bool,
    /// Winograd tile size of 3×3 stride-1 convolutions.
    pub winograd: WinogradChoice,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            enabled: true,
            winograd: WinogradChoice::Auto,
        }
    }
}

impl std::str::FromStr for WinogradChoice {
    type Err = String;

    /// `auto`, `f2`, `f4` or `off` (the CLI's `--winograd`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(WinogradChoice::Auto),
            "f2" | "2" => Ok(WinogradChoice::F2),
            "f4" | "4" => Ok(WinogradChoice::F4),
            "off" | "0" => Ok(WinogradChoice::Off),
            _ => Err(format!("'{s}': expected auto, f2, f4 or off")),
        }
    }
}

/// Floats in a working set that the kernels keep within one core's L2 cache (an im2col tile, a Winograd chunk's
/// V and M): half this core's L2 as Linux reports it (`/sys/devices/system/cpu/cpu0/cache/index2`), 2^18 floats
/// (1 MiB) when it cannot be read. 1 MiB was measured best on the 2 MiB-L2 Xeon this project is developed on
/// (¼ and ½ of it measured the same there); an AMD EPYC has 512 KiB of L2 per core, where 1 MiB tiles would not
/// fit (not measured).
pub fn l2_floats() -> usize {
    use std::sync::OnceLock;
    static FLOATS: OnceLock<usize> = OnceLock::new();
    *FLOATS.get_or_init(|| {
        l2_bytes()
            .map(|b| (b / 2 / 4).clamp(1 << 14, 1 << 20))
            .unwrap_or(1 << 18)
    })
}

/// This core's unified level-2 cache size in bytes, from Linux's sysfs (`None` elsewhere or when unreadable).
fn l2_bytes() -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    // Entries other than the `indexN` folders (`uevent`) have no `level`: skipped.
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let read = |f: &str| std::fs::read_to_string(entry.path().join(f)).ok();
        let unified_l2 = read("level")?.trim() == "2" && read("type")?.trim() != "Instruction";
        unified_l2.then(|| parse_cache_size(read("size")?.trim()))?
    })
}

/// `2048K`, `1M`, `512` (bytes) as sysfs writes cache sizes.
fn parse_cache_size(s: &str) -> Option<usize> {
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = num.parse().ok()?;
    match unit {
        "" => Some(n),
        "K" => n.checked_mul(1 << 10),
        "M" => n.checked_mul(1 << 20),
        _ => None,
    }
}

#[cfg(test)]
mod cache_tests {
    #[test]
    fn cache_sizes_parse() {
        assert_eq!(super::parse_cache_size("2048K"), Some(2 << 20));
        assert_eq!(super::parse_cache_size("1M"), Some(1 << 20));
        assert_eq!(super::parse_cache_size("512"), Some(512));
        assert_eq!(super::parse_cache_size("12X"), None);
        assert_eq!(super::parse_cache_size(""), None);
        // Where Linux reports a level-2 cache, it is found (the folder also holds a `uevent` file).
        let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache/index2");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        if read("level").trim() == "2" && read("type").trim() == "Unified" {
            assert_eq!(
                super::l2_bytes(),
                super::parse_cache_size(read("size").trim())
            );
        }
    }
}

/// Runs `f` on the values of `t` when it is a contiguous CPU f32 tensor (a view into its storage, no copy);
/// `Ok(None)` otherwise.
pub fn with_f32_slice<R>(
    t: &candle_core::Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<Option<R>> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, z))) => {
            f(&v[a..z]).map(Some)
        }
        _ => Ok(None),
    }
}

/// Runs `f` on one of rayon's workers while the pool's other workers wait for its parallel loops by polling
/// for work instead of sleeping, and returns its result; the caller must not be a rayon worker itself.
///
/// Why: a rayon worker that finds no work yields a few dozen times and then sleeps; the next parallel loop must
/// wake it (a futex call, and on a virtual machine an inter-processor interrupt), and starts with one thread
/// until it is running. A forward has such a gap between most of its kernels (the layer's own bookkeeping, a
/// kernel's unbalanced tail), so the workers slept and were woken ~20 times per yolov4-tiny forward. Here each
/// other worker runs a task that steals the pool's jobs as soon as they appear until `f` returns — the
/// spin-waiting that OpenMP runtimes do between parallel regions. The polling costs that core's time while
/// `f` runs serial code.
pub fn on_busy_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    let mut out = None;
    rayon::scope(|s| {
        let main = rayon::current_thread_index();
        for _ in 1..rayon::current_num_threads() {
            let done = &done;
            s.spawn(move |_| {
                // A worker waiting inside `f` may run this task itself (it pops its own queue while it waits
                // for a stolen job): then it must return at once, or `f`, lower on its stack, would never end.
                if rayon::current_thread_index() == main {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        // Set when `f` returns or unwinds: the scope waits for the polling tasks, which end on it.
        let _release = SetOnDrop(&done);
        out = Some(f());
    });
    out.expect("the scope ran f")
}

/// Sets its flag when dropped ([`on_busy_pool`]'s end, also on a panic).
struct SetOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Makes glibc keep freed memory in the heap for reuse (`mallopt(M_MMAP_MAX, 0)`, `M_TRIM_THRESHOLD` = max):
/// every forward allocates its activation buffers afresh, and by default buffers over glibc's mmap threshold
/// are mapped and unmapped on every call, so each forward pays the page faults and the kernel's zeroing again
/// (measured: yolov4-tiny 416 batch 8, 2 threads, ~10% of the forward time). The process keeps its peak heap
/// (the peak RSS was lower in that measurement: 225 vs 263 MiB). Process-global, so left to the application;
/// the CLI calls it. No effect outside glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
