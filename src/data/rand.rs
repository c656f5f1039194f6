//! glibc `rand()` and Darknet's random helpers (src/utils.c), so that augmentation draws the same numbers,
//! in the same order, as Darknet after `srand(seed)`.
//!
//! Every helper takes `&mut impl DarknetRand`: [`GlibcRand`] reproduces the global glibc stream (what
//! Darknet's single-thread semantics need), [`FastRand`] is a cheap per-worker generator for training that
//! is consumed in the same order but produces other numbers.

/// `RAND_MAX` of glibc: `rand()` returns 0..=2^31-1.
pub const RAND_MAX: u32 = 0x7fff_ffff;

/// A source of `rand()` values (0..=[`RAND_MAX`]). `label` names the next draws (e.g. `pass0.img1.r3_top`);
/// it costs nothing unless the generator records a log (see [`Recorder`]).
pub trait DarknetRand {
    /// One `rand()` call.
    fn rand(&mut self) -> u32;
    /// Names the meaning of the following draws (for draw logs); no effect on the stream.
    fn label(&mut self, _label: std::fmt::Arguments<'_>) {}
    /// Names a sub-draw of the current label (e.g. `.scale` / `.invert_coin` inside `rand_scale`).
    fn label_suffix(&mut self, _suffix: &str) {}
}

/// glibc's `rand()` after `srand(seed)`: the TYPE_3 additive feedback generator (degree 31, separation 3).
///
/// r[0] = seed (0 -> 1); r[i] = 16807*r[i-1] mod (2^31-1) for i in 1..31 (Schrage form, as glibc's
/// `__srandom_r`); r[i] = r[i-31] for i in 31..34; r[i] = r[i-31] + r[i-3] (mod 2^32) afterwards; the
/// first 310 outputs are discarded and output k is r[k+344] >> 1.
#[derive(Clone, Debug)]
pub struct GlibcRand {
    ring: [u32; 31],
    /// index i of the next r[i] to produce; r[i-31] lives at ring[i % 31].
    i: usize,
}

impl GlibcRand {
    /// `srand(seed)`.
    pub fn new(seed: u32) -> Self {
        let mut r = [0i64; 34];
        r[0] = if seed == 0 { 1 } else { seed as i32 as i64 };
        for i in 1..31 {
            // glibc computes this with 32-bit signed Schrage arithmetic on the seed word.
            let prev = r[i - 1] as i32;
            let hi = prev / 127_773;
            let lo = prev % 127_773;
            let mut word = 16_807i32
                .wrapping_mul(lo)
                .wrapping_sub(2_836i32.wrapping_mul(hi));
            if word < 0 {
                word = word.wrapping_add(2_147_483_647);
            }
            r[i] = word as i64;
        }
        for i in 31..34 {
            r[i] = r[i - 31];
        }
        let mut ring = [0u32; 31];
        for (i, v) in r.iter().enumerate().skip(3) {
            ring[i % 31] = *v as u32;
        }
        let mut g = Self { ring, i: 34 };
        for _ in 34..344 {
            g.step();
        }
        g
    }

    #[inline]
    fn step(&mut self) -> u32 {
        let i = self.i;
        let v = self.ring[i % 31].wrapping_add(self.ring[(i - 3) % 31]);
        self.ring[i % 31] = v;
        self.i += 1;
        v
    }
}

impl DarknetRand for GlibcRand {
    #[inline]
    fn rand(&mut self) -> u32 {
        self.step() >> 1
    }
}

/// The per-worker generator for training lives in [`crate::util`] (the weights' initialisation draws from it too).
pub use crate::util::FastRand;

impl DarknetRand for FastRand {
    #[inline]
    fn rand(&mut self) -> u32 {
        self.next_rand()
    }
}

/// Wraps a generator and records every draw with its current label (for `augment --reference`).
pub struct Recorder<R> {
    pub inner: R,
    pub log: Vec<(u32, String)>,
    base: String,
    current: String,
}

impl<R> Recorder<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            log: Vec::new(),
            base: String::new(),
            current: String::new(),
        }
    }
}

impl<R: DarknetRand> DarknetRand for Recorder<R> {
    fn rand(&mut self) -> u32 {
        let v = self.inner.rand();
        self.log.push((v, self.current.clone()));
        v
    }
    fn label(&mut self, label: std::fmt::Arguments<'_>) {
        self.base = label.to_string();
        self.current = self.base.clone();
    }
    fn label_suffix(&mut self, suffix: &str) {
        self.current = format!("{}{suffix}", self.base);
    }
}

/// `random_gen()` (utils.c 945): one `rand()` as unsigned.
#[inline]
pub fn random_gen<R: DarknetRand + ?Sized>(rng: &mut R) -> u32 {
    rng.rand()
}

/// `random_float()` (utils.c 959): `(float)rand() / (float)RAND_MAX` in float32. `(float)RAND_MAX` is 2^31
/// and `(float)rand()` rounds to 24 bits, so 1.0 is possible.
#[inline]
pub fn random_float<R: DarknetRand + ?Sized>(rng: &mut R) -> f32 {
    rng.rand() as f32 / RAND_MAX as f32
}

/// `rand_uniform(min, max)` (utils.c): `(float)rand()/RAND_MAX * (max-min) + min`, bounds swapped if reversed.
#[inline]
pub fn rand_uniform<R: DarknetRand + ?Sized>(rng: &mut R, min: f32, max: f32) -> f32 {
    let (min, max) = if max < min { (max, min) } else { (min, max) };
    rng.rand() as f32 / RAND_MAX as f32 * (max - min) + min
}

/// `rand_uniform_strong(min, max)` (utils.c 977): `random_float()*(max-min)+min`, bounds swapped if reversed.
#[inline]
pub fn rand_uniform_strong<R: DarknetRand + ?Sized>(rng: &mut R, min: f32, max: f32) -> f32 {
    let (min, max) = if max < min { (max, min) } else { (min, max) };
    random_float(rng) * (max - min) + min
}

/// `rand_scale(s)` (utils.c 892): `scale = rand_uniform_strong(1, s)`, then one more draw: odd -> `scale`,
/// even -> `1/scale` (computed in double, stored as float).
#[inline]
pub fn rand_scale<R: DarknetRand + ?Sized>(rng: &mut R, s: f32) -> f32 {
    rng.label_suffix(".scale");
    let scale = rand_uniform_strong(rng, 1.0, s);
    rng.label_suffix(".invert_coin");
    if random_gen(rng) % 2 != 0 {
        scale
    } else {
        (1.0f64 / scale as f64) as f32
    }
}

/// `rand_int(min, max)` (utils.c 819): `random_gen() % (max-min+1) + min`, bounds swapped if reversed.
#[inline]
pub fn rand_int<R: DarknetRand + ?Sized>(rng: &mut R, min: i32, max: i32) -> i32 {
    let (min, max) = if max < min { (max, min) } else { (min, max) };
    (random_gen(rng) % ((max - min + 1) as u32)) as i32 + min
}

/// `rand_precalc_random(min, max, r)` (utils.c 987): `r*(max-min)+min` in float32, no draw.
#[inline]
pub fn rand_precalc_random(min: f32, max: f32, r: f32) -> f32 {
    let (min, max) = if max < min { (max, min) } else { (min, max) };
    r * (max - min) + min
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_first_values_seed_1() {
        // glibc's documented stream for srand(1) (also rand_log.tsv of case A, rows 0-2).
        let mut g = GlibcRand::new(1);
        assert_eq!(
            [g.rand(), g.rand(), g.rand()],
            [1804289383, 846930886, 1681692777]
        );
    }

    #[test]
    fn seed_zero_is_seed_one() {
        let (mut a, mut b) = (GlibcRand::new(0), GlibcRand::new(1));
        for _ in 0..100 {
            assert_eq!(a.rand(), b.rand());
        }
    }

    #[test]
    fn random_float_can_reach_one() {
        struct Max;
        impl DarknetRand for Max {
            fn rand(&mut self) -> u32 {
                RAND_MAX
            }
        }
        assert_eq!(random_float(&mut Max), 1.0);
    }

    #[test]
    fn rand_scale_takes_two_draws_and_inverts_on_even() {
        struct Seq(Vec<u32>);
        impl DarknetRand for Seq {
            fn rand(&mut self) -> u32 {
                self.0.remove(0)
            }
        }
        let half = 1u32 << 30; // random_float = 0.5
        let mut s = Seq(vec![half, 3, half, 4]);
        assert_eq!(rand_scale(&mut s, 3.0), 2.0);
        assert_eq!(rand_scale(&mut s, 3.0), 0.5);
        assert!(s.0.is_empty());
    }

    #[test]
    fn rand_int_and_precalc() {
        struct C(u32);
        impl DarknetRand for C {
            fn rand(&mut self) -> u32 {
                self.0
            }
        }
        assert_eq!(rand_int(&mut C(251), 83, 332), 84);
        assert_eq!(rand_precalc_random(-10.0, 10.0, 0.25), -5.0);
    }
}
