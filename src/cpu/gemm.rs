//! Single-threaded `C = A·B` for the convolutions, with `A` (the weights, `m × k`) packed once at load: Darknet's
//! `gemm_nn` (src/gemm.c) computes the same sums, `C[i][j] = Σ_k A[i][k]·B[k][j]`, in another order.
//!
//! Why not a general GEMM library: the layers of a detector multiply the same weights by a new `B` on every
//! call, and a general GEMM packs `A` again each time; on 13×13 maps (`n` = 49 Winograd tiles) that packing
//! cost about as much as the arithmetic (measured with the `gemm` crate: 16 GEMMs of 512×512×49 ran at ~160
//! GFLOP/s on two cores where wide ones ran at ~340).
//!
//! Layout: `A` is cut into panels of [`MR`] rows stored k-major (`panel[k][r]`, zero rows past `m`), so the
//! microkernel reads one contiguous [`MR`]-vector per `k`; `B` (`k × n`, row stride `ldb`) and `C` (row stride
//! `ldc`) are read and written in place, with masked loads and stores for the last columns (or, for 1-3 columns
//! past whole vectors, one FMA per column along the panel's rows). The microkernel keeps an `MR × NV·LANES` block
//! of `C` in registers (6 × 64 with AVX-512, 6 × 16 with AVX2) and runs over a block of [`KC`] rows of `B`, copied
//! to a buffer that stays in the L1 cache while every panel of `A` passes over it.

use super::Isa;

/// Rows of `A` per panel (and of `C` per microkernel call).
pub const MR: usize = 6;
/// Rows of `B` per block: a packed block of `KC × 64` floats is 32 KiB, inside the L1 cache of current cores
/// (measured 64, 128 and 256 within noise of each other).
const KC: usize = 128;

/// Floats after the last panel of a [`PackedA`], so that the last k of the last panel can be read as a vector of 8
/// (its `MR` = 6 values and two more, unused). A masked load of only the six made the narrow columns of a block
/// 2.5 times slower than their FMAs (measured: 49 columns 15% slower than 48; with this, 3-7%): it crossed a
/// cache line at most k.
const PANEL_PAD: usize = 8 - MR;

/// `A` (`m × k`, row-major) packed into panels of [`MR`] rows.
#[derive(Debug, Clone)]
pub struct PackedA {
    m: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Packs row-major `a` (`m × k`, row stride `lda`).
    pub fn new(a: &[f32], m: usize, k: usize, lda: usize) -> Self {
        let panels = m.div_ceil(MR);
        // PANEL_PAD floats past the last panel: a panel's MR values of one k are read as one 8-float vector.
        let mut data = vec![0f32; panels * k * MR + PANEL_PAD];
        for r in 0..m {
            for (kk, v) in a[r * lda..r * lda + k].iter().enumerate() {
                data[Self::index(panels, k, r, kk)] = *v;
            }
        }
        PackedA { m, k, data }
    }

    /// Where element (`r`, `kk`) lives: blocks of [`KC`] columns, each holding every panel in turn (panel-major,
    /// then k, then the panel's [`MR`] rows). For one block of k the panels follow each other, so a GEMM reads
    /// the weights as one sequential stream: at batch 1 the Winograd weights of a 13×13 layer (16 MB) come from
    /// memory, and the hardware prefetchers only keep up with such streams (measured: 2.4 ms vs 1.4 ms for a
    /// 256→256 26×26 layer with the panels k-major across blocks).
    fn index(panels: usize, k: usize, r: usize, kk: usize) -> usize {
        let (k0, kc) = (kk / KC * KC, KC.min(k - kk / KC * KC));
        (k0 * panels + (r / MR) * kc + (kk - k0)) * MR + r % MR
    }

    /// The start of panel `p`'s rows for the block of k starting at `k0` (`kc` = its length).
    fn panel(&self, p: usize, k0: usize, kc: usize) -> *const f32 {
        let panels = self.m.div_ceil(MR);
        // SAFETY: within `data` for p < panels, k0 < k (the block holds panels·kc·MR values).
        unsafe { self.data.as_ptr().add((k0 * panels + p * kc) * MR) }
    }
}

/// Applied to each finished block of `C` (up to [`MR`] consecutive rows, a piece of each), while it is in the L1
/// cache: `(row index in A of the first row, column of C where the pieces start, the rows' values)` (a
/// convolution's bias/normalisation and activation: one pass fewer over its output). One call per block, not per row: on 1×1 layers with 64 input
/// channels a call per 64-float row cost about as much as the activation itself.
pub type Epilogue<'a> = &'a (dyn Fn(usize, usize, &mut [&mut [f32]]) + Sync);

/// Where the rows of `B` are: `k` rows at a fixed stride, or one pointer per row (a 1×1 convolution whose input
/// is a `[route]` read in place, [`super::planes`]).
#[derive(Clone, Copy)]
pub enum BRows<'a> {
    /// Row `kk` at `ptr + kk·ld`.
    Strided(*const f32, usize),
    /// Row `kk` at `rows[kk]`.
    Each(&'a [*const f32]),
}

impl BRows<'_> {
    /// The start of row `kk`.
    ///
    /// # Safety
    /// `kk` < the `k` of the GEMM (`Each`: `kk < rows.len()`), and the rows are valid as [`gemm`] requires.
    #[inline(always)]
    unsafe fn row(&self, kk: usize) -> *const f32 {
        match *self {
            BRows::Strided(p, ld) => p.add(kk * ld),
            BRows::Each(rows) => *rows.get_unchecked(kk),
        }
    }
}

/// `C[r][j] = Σ_kk A[r0 + r][kk] · B[kk][j]` for `r < mlen`, `j < n`: rows `r0..r0 + mlen` of `a` (`r0` a
/// multiple of [`MR`]), `B` with row stride `ldb`, `C` with row stride `ldc` (overwritten, never read first).
///
/// # Safety
/// `b` must be valid for reads of `k` rows of `n` floats at stride `ldb`, `c` for writes of `mlen` rows of `n`
/// floats at stride `ldc` (they may be uninitialised; nothing else may access them meanwhile), and `c` must not
/// overlap `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    a: &PackedA,
    r0: usize,
    mlen: usize,
    n: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    gemm_isa(
        super::isa(),
        a,
        r0,
        mlen,
        n,
        BRows::Strided(b, ldb),
        c,
        ldc,
        None,
    )
}

/// [`gemm`] for `B`'s rows at `b`, then `epi` on every finished block of `C` (each element of rows `0..mlen`,
/// columns `0..n` exactly once, with row index `r0 + r`).
///
/// # Safety
/// As [`gemm`], for `k` rows of `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_epilogue(
    a: &PackedA,
    r0: usize,
    mlen: usize,
    n: usize,
    b: BRows,
    c: *mut f32,
    ldc: usize,
    epi: Epilogue,
) {
    if let BRows::Each(rows) = b {
        assert!(
            rows.len() >= a.k,
            "gemm: {} rows for k = {}",
            rows.len(),
            a.k
        );
    }
    gemm_isa(super::isa(), a, r0, mlen, n, b, c, ldc, Some(epi))
}

/// [`gemm`] with the kernels of `isa`, which the CPU must support.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_isa(
    isa: Isa,
    a: &PackedA,
    r0: usize,
    mlen: usize,
    n: usize,
    b: BRows,
    c: *mut f32,
    ldc: usize,
    epi: Option<Epilogue>,
) {
    assert!(
        r0.is_multiple_of(MR) && r0 + mlen <= a.m,
        "gemm: rows {r0}..{} of {}",
        r0 + mlen,
        a.m
    );
    if mlen == 0 || n == 0 {
        return;
    }
    match isa {
        // The buffer is borrowed here, outside the `target_feature` functions: a closure inside them would be
        // compiled without those features (measured: the intrinsics became calls, 100× slower).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::BUF
            .with(|buf| x86::gemm_avx512(a, r0, mlen, n, b, c, ldc, epi, &mut buf.borrow_mut())),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::BUF
            .with(|buf| x86::gemm_avx2(a, r0, mlen, n, b, c, ldc, epi, &mut buf.borrow_mut())),
        _ => gemm_scalar(a, r0, mlen, n, b, c, ldc, epi),
    }
}

/// The portable form: the same blocking, one column at a time.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_scalar(
    a: &PackedA,
    r0: usize,
    mlen: usize,
    n: usize,
    b: BRows,
    c: *mut f32,
    ldc: usize,
    epi: Option<Epilogue>,
) {
    let (k, panels) = (a.k, a.m.div_ceil(MR));
    for r in 0..mlen {
        let cr = c.add(r * ldc);
        for j in 0..n {
            let mut s = 0f32;
            for kk in 0..k {
                s += a.data[PackedA::index(panels, k, r0 + r, kk)] * *b.row(kk).add(j);
            }
            *cr.add(j) = s;
        }
        if let Some(epi) = epi {
            epi(r0 + r, 0, &mut [std::slice::from_raw_parts_mut(cr, n)]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BRows, Epilogue, PackedA, KC, MR};
    use std::arch::x86_64::*;

    /// The vector operations the microkernel needs, for one register width.
    pub(super) trait Simd: Copy {
        const LANES: usize;
        /// Vectors per row of the microkernel's C block.
        const NV: usize;
        type Mask: Copy;
        unsafe fn zero() -> Self;
        unsafe fn splat(x: f32) -> Self;
        unsafe fn load(p: *const f32) -> Self;
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
        unsafe fn add(a: Self, b: Self) -> Self;
        unsafe fn store(p: *mut f32, v: Self);
        /// A mask of the first `n` lanes (`1 ≤ n ≤ LANES`).
        unsafe fn mask(n: usize) -> Self::Mask;
        unsafe fn load_masked(p: *const f32, m: Self::Mask) -> Self;
        unsafe fn store_masked(p: *mut f32, v: Self, m: Self::Mask);
    }

    #[derive(Clone, Copy)]
    pub(super) struct V512(__m512);
    #[derive(Clone, Copy)]
    pub(super) struct V256(__m256);

    impl Simd for V512 {
        const LANES: usize = 16;
        const NV: usize = 4;
        type Mask = __mmask16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            V512(_mm512_setzero_ps())
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            V512(_mm512_set1_ps(x))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            V512(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            V512(_mm512_fmadd_ps(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            V512(_mm512_add_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: Self) {
            _mm512_storeu_ps(p, v.0)
        }
        #[inline(always)]
        unsafe fn mask(n: usize) -> __mmask16 {
            ((1u32 << n) - 1) as __mmask16
        }
        #[inline(always)]
        unsafe fn load_masked(p: *const f32, m: __mmask16) -> Self {
            V512(_mm512_maskz_loadu_ps(m, p))
        }
        #[inline(always)]
        unsafe fn store_masked(p: *mut f32, v: Self, m: __mmask16) {
            _mm512_mask_storeu_ps(p, m, v.0)
        }
    }

    impl Simd for V256 {
        const LANES: usize = 8;
        const NV: usize = 2;
        type Mask = __m256i;
        #[inline(always)]
        unsafe fn zero() -> Self {
            V256(_mm256_setzero_ps())
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            V256(_mm256_set1_ps(x))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            V256(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            V256(_mm256_fmadd_ps(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            V256(_mm256_add_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: Self) {
            _mm256_storeu_ps(p, v.0)
        }
        #[inline(always)]
        unsafe fn mask(n: usize) -> __m256i {
            // Lane i is on when i < n (the sign bit of each 32-bit lane selects it).
            let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
        }
        #[inline(always)]
        unsafe fn load_masked(p: *const f32, m: __m256i) -> Self {
            V256(_mm256_maskload_ps(p, m))
        }
        #[inline(always)]
        unsafe fn store_masked(p: *mut f32, v: Self, m: __m256i) {
            _mm256_maskstore_ps(p, m, v.0)
        }
    }

    /// One `MR × NV·LANES` block of C (`rows ≤ MR` of them stored; the last vector masked to `tail` lanes when
    /// `tail < LANES`), and `T` ≤ [`NARROW`] more columns after whole vectors: `C (=|+=) Σ_{kk<kc} A_panel[kk] ⊗
    /// B[kk]`. `ACC`: add to C instead of overwriting it.
    ///
    /// The `T` columns run along the panel's rows as [`narrow_group`] does (one FMA of the panel's `MR` values
    /// per column and k, the same sums in the same order), here in the loop that already reads the panel: a
    /// separate pass read the panel again from the L2 cache for a column or two, and made the 49 columns of a
    /// Winograd GEMM at batch 1 cost 21% more than 48 (measured 175 vs 208 GFLOP/s single-threaded).
    ///
    /// # Safety
    /// `a` valid for `kc·MR` reads, and 2 more when `T > 0` (a [`PackedA`] panel is: `PANEL_PAD`); `b` for `kc`
    /// rows of `NV·LANES` (+ `T` when `T > 0`) floats at stride `ldb`; `c` for `rows` rows of
    /// `(NV-1)·LANES + tail` (`NV·LANES + T` when `T > 0`) floats at stride `ldc` (read too when `ACC`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel<V: Simd, const NV: usize, const ACC: bool, const T: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        tail: usize,
    ) {
        let mask = V::mask(tail);
        let full = tail == V::LANES;
        let mut acc = [[V::zero(); NV]; MR];
        let mut narrow = [_mm256_setzero_ps(); T];
        for kk in 0..kc {
            let br = b.add(kk * ldb);
            let bv: [V; NV] = std::array::from_fn(|v| V::load(br.add(v * V::LANES)));
            let ar = a.add(kk * MR);
            // The weights stream from memory at batch 1: fetch the panels ahead (PF_DIST floats: about two
            // panels of a KC block), one cache line per iteration (an iteration uses MR·4 = 24 bytes).
            _mm_prefetch::<_MM_HINT_T0>(ar.wrapping_add(PF_DIST) as *const i8);
            for (r, accr) in acc.iter_mut().enumerate() {
                let av = V::splat(*ar.add(r));
                for v in 0..NV {
                    accr[v] = V::fma(av, bv[v], accr[v]);
                }
            }
            if T > 0 {
                // Lanes 6 and 7 (the next k's values, or PANEL_PAD) are never stored.
                let av = _mm256_loadu_ps(ar);
                for (q, x) in narrow.iter_mut().enumerate() {
                    *x = _mm256_fmadd_ps(av, _mm256_set1_ps(*br.add(NV * V::LANES + q)), *x);
                }
            }
        }
        if T > 0 {
            store_narrow::<ACC>(&narrow, c.add(NV * V::LANES), ldc, rows);
        }
        for (r, accr) in acc.iter().enumerate().take(rows) {
            let cr = c.add(r * ldc);
            for (v, x) in accr.iter().enumerate() {
                let p = cr.add(v * V::LANES);
                if v + 1 < NV || full {
                    let x = if ACC { V::add(V::load(p), *x) } else { *x };
                    V::store(p, x);
                } else {
                    let x = if ACC {
                        V::add(V::load_masked(p, mask), *x)
                    } else {
                        *x
                    };
                    V::store_masked(p, x, mask);
                }
            }
        }
    }

    /// Every `MR`-row panel of rows `r0..r0+mlen` against columns `j..j+width` of one `kc` block of B (`c` points
    /// at column `j`), and the `T` columns after them ([`kernel`]).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn panels<V: Simd, const NV: usize, const T: usize>(
        a: &PackedA,
        r0: usize,
        mlen: usize,
        k0: usize,
        kc: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        (j, width): (usize, usize),
        epi: Option<Epilogue>,
    ) {
        let tail = width - (NV - 1) * V::LANES;
        // The epilogue runs after the last block of k, on the rows the kernel has just stored.
        let epi = epi.filter(|_| k0 + kc == a.k);
        let mut r = 0;
        while r < mlen {
            let rows = MR.min(mlen - r);
            let ap = a.panel((r0 + r) / MR, k0, kc);
            let cp = c.add(r * ldc);
            if k0 == 0 {
                kernel::<V, NV, false, T>(kc, ap, b, ldb, cp, ldc, rows, tail);
            } else {
                kernel::<V, NV, true, T>(kc, ap, b, ldb, cp, ldc, rows, tail);
            }
            if let Some(epi) = epi {
                // SAFETY: the kernel has just written these `width + T` floats of rows r..r + rows (valid and
                // disjoint, ldc >= width + T, as the caller of `gemm` guarantees); nothing else accesses them.
                let mut block: [&mut [f32]; MR] = std::array::from_fn(|i| {
                    if i < rows {
                        std::slice::from_raw_parts_mut(cp.add(i * ldc), width + T)
                    } else {
                        &mut []
                    }
                });
                epi(r0 + r, j, &mut block[..rows]);
            }
            r += MR;
        }
    }

    /// Most columns past the last whole vector of a block that run along A's rows ([`kernel`]'s `T`, or
    /// [`narrow_panels`] for a block of fewer than one vector; see [`blocks`]).
    const NARROW: usize = 3;
    // `narrow_panels` and `kernel` load a panel's k values as the first 6 of 8 lanes (PANEL_PAD = 2).
    const _: () = assert!(MR == 6);

    /// Every `MR`-row panel of rows `r0..r0+mlen` against `T` ≤ [`NARROW`] columns of one `kc` block of B (`b`,
    /// row stride `ldb`; `c` at column `col` of C) that has no whole vector before them (a block of fewer columns
    /// than one vector: the last column of 49 with AVX2's 16-column blocks), vectorised along the panels' rows:
    /// per k one (8-float, `PANEL_PAD`) load of each
    /// panel's `MR` values and `T` FMAs with the broadcast B values, where a masked vector costs `MR` FMAs. Four
    /// panels at a time, so that four FMA chains hide each other's latency. The sums are the microkernel's, in
    /// the same order (an FMA per k, then added to C after the first block of k): bit-identical results.
    ///
    /// # Safety
    /// As [`panels`] for `T` columns.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn narrow_panels<const T: usize>(
        a: &PackedA,
        r0: usize,
        mlen: usize,
        k0: usize,
        kc: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        col: usize,
        epi: Option<Epilogue>,
    ) {
        let panels = mlen.div_ceil(MR);
        let mut p = 0;
        while p < panels {
            let r = p * MR;
            // One call per group size (the panel count is a const generic: the accumulators stay in registers).
            macro_rules! group {
                ($p:literal) => {
                    narrow_group::<T, $p>(
                        a,
                        r0 + r,
                        mlen - r,
                        k0,
                        kc,
                        b,
                        ldb,
                        c.add(r * ldc),
                        ldc,
                        col,
                        epi,
                    )
                };
            }
            match panels - p {
                1 => group!(1),
                2 => group!(2),
                3 => group!(3),
                _ => group!(4),
            }
            p += 4;
        }
    }

    /// [`narrow_panels`] for the `P` ≤ 4 panels starting at row `r0` (`mlen` rows from there, maybe more than
    /// these panels hold).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn narrow_group<const T: usize, const P: usize>(
        a: &PackedA,
        r0: usize,
        mlen: usize,
        k0: usize,
        kc: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        col: usize,
        epi: Option<Epilogue>,
    ) {
        let ap: [*const f32; P] = std::array::from_fn(|i| a.panel(r0 / MR + i, k0, kc));
        let mut acc = [[_mm256_setzero_ps(); T]; P];
        for kk in 0..kc {
            let br = b.add(kk * ldb);
            let bv: [__m256; T] = std::array::from_fn(|q| _mm256_set1_ps(*br.add(q)));
            for (x, pa) in acc.iter_mut().zip(&ap) {
                // Lanes 6 and 7 (the next k's values, or PANEL_PAD) are never stored.
                let av = _mm256_loadu_ps(pa.add(kk * MR));
                for (y, bq) in x.iter_mut().zip(&bv) {
                    *y = _mm256_fmadd_ps(av, *bq, *y);
                }
            }
        }
        let last = k0 + kc == a.k;
        for (i, x) in acc.iter().enumerate() {
            let rows = MR.min(mlen.saturating_sub(i * MR));
            if rows == 0 {
                break;
            }
            let cp = c.add(i * MR * ldc);
            if k0 == 0 {
                store_narrow::<false>(x, cp, ldc, rows);
            } else {
                store_narrow::<true>(x, cp, ldc, rows);
            }
            if let (Some(epi), true) = (epi, last) {
                // SAFETY: as in `panels`: these T floats of rows i·MR..i·MR + rows were just written.
                let mut block: [&mut [f32]; MR] = std::array::from_fn(|r| {
                    if r < rows {
                        std::slice::from_raw_parts_mut(cp.add(r * ldc), T)
                    } else {
                        &mut []
                    }
                });
                epi(r0 + i * MR, col, &mut block[..rows]);
            }
        }
    }

    /// Stores (`ACC`: adds) `T` columns held along a panel's rows (lane r = row r) to the first `rows` rows of
    /// C at `c` (row stride `ldc`).
    #[inline(always)]
    unsafe fn store_narrow<const ACC: bool>(cols: &[__m256], c: *mut f32, ldc: usize, rows: usize) {
        for (q, y) in cols.iter().enumerate() {
            let mut v = [0f32; 8];
            _mm256_storeu_ps(v.as_mut_ptr(), *y);
            for (r, v) in v.iter().enumerate().take(rows) {
                let p = c.add(r * ldc + q);
                *p = if ACC { *p + *v } else { *v };
            }
        }
    }

    /// Copies rows `k0..k0 + kc` of `b`, columns `j..j + width`, to `dst` as rows of `width` rounded up to whole
    /// vectors, zero-padded, with vector loads and stores (a `copy_from_slice` per row became a `memmove` call
    /// per 49-64 floats: 7% of the forward).
    #[inline(always)]
    unsafe fn pack_b<V: Simd>(
        b: BRows,
        k0: usize,
        j: usize,
        kc: usize,
        width: usize,
        dst: *mut f32,
    ) {
        let (full, tail) = (width / V::LANES, width % V::LANES);
        let padded = width.div_ceil(V::LANES) * V::LANES;
        let mask = V::mask(tail.max(1));
        for kk in 0..kc {
            let (src, d) = (b.row(k0 + kk).add(j), dst.add(kk * padded));
            for v in 0..full {
                // A volatile store: LLVM cannot turn the row into a `memcpy` call (a call per 256-byte row was
                // 6% of a yolov4-tiny forward; with the copy inline the forward is 1-2.5% faster). SAFETY: `d`
                // is in the 64-byte-aligned block at a multiple of `LANES` floats (`padded` is whole vectors),
                // so aligned for `V`, and inside it (kk < kc ≤ KC, v < full ≤ padded / LANES).
                let x = V::load(src.add(v * V::LANES));
                std::ptr::write_volatile(d.add(v * V::LANES) as *mut V, x);
            }
            if tail > 0 {
                let x = V::load_masked(src.add(full * V::LANES), mask);
                V::store(d.add(full * V::LANES), x);
            }
        }
    }

    /// A block of B copied to contiguous rows of [`BW`] floats: rows of B far apart in memory (a row stride of
    /// 1024 floats maps them to one L1 set) would evict each other before every panel of A has used them.
    #[repr(C, align(64))]
    pub(super) struct BBlock([f32; KC * BW]);

    thread_local! {
        /// This thread's packed block of B, reused by every call (zero-filling a fresh one each call cost 1.4%).
        pub(super) static BUF: std::cell::RefCell<Box<BBlock>> =
            std::cell::RefCell::new(Box::new(BBlock([0f32; KC * BW])));
    }

    /// How far ahead of the microkernel's reads of A to prefetch, in floats.
    const PF_DIST: usize = 2 * KC * MR;

    /// Widest column block (4 AVX-512 vectors).
    const BW: usize = 64;

    /// The blocked loops: `KC` rows of B at a time; within them, blocks of `NV·LANES` columns, copied to a
    /// contiguous buffer (zero-padded to whole vectors) and passed by every panel of A while in L1; the last
    /// columns by a kernel of as few vectors as they need.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_blocked<V: Simd>(
        a: &PackedA,
        r0: usize,
        mlen: usize,
        n: usize,
        b: BRows,
        c: *mut f32,
        ldc: usize,
        epi: Option<Epilogue>,
        buf: &mut BBlock,
    ) {
        debug_assert!(V::NV * V::LANES <= BW);
        blocks::<V>(a, r0, mlen, n, b, c, ldc, epi, &mut buf.0)
    }

    /// The loops of [`gemm_blocked`] with the packed-B buffer `buf`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn blocks<V: Simd>(
        a: &PackedA,
        r0: usize,
        mlen: usize,
        n: usize,
        b: BRows,
        c: *mut f32,
        ldc: usize,
        epi: Option<Epilogue>,
        buf: &mut [f32; KC * BW],
    ) {
        let block = V::NV * V::LANES;
        let mut k0 = 0;
        while k0 < a.k {
            let kc = KC.min(a.k - k0);
            let mut j = 0;
            while j < n {
                let width = block.min(n - j);
                let nv = width.div_ceil(V::LANES);
                let padded = nv * V::LANES;
                pack_b::<V>(b, k0, j, kc, width, buf.as_mut_ptr());
                let (bj, cj) = (buf.as_ptr(), c.add(j));
                // The last few columns past whole vectors run along A's rows (`narrow`) instead of in a mostly
                // masked vector: 49 Winograd tiles (26×26 and 13×13 maps at batch 1) cost four vectors' FMAs for
                // 49 columns, 48 + 1 costs three and a sixth. With whole vectors before them, in the same loop.
                let tail = width % V::LANES;
                let (vectors, narrow) = if tail > 0 && tail <= NARROW {
                    (width - tail, tail)
                } else {
                    (width, 0)
                };
                // One instance per (vectors, narrow columns): both are const generics, so that the accumulators
                // stay in registers.
                macro_rules! run {
                    ($nv:literal, $t:literal) => {
                        panels::<V, $nv, $t>(
                            a,
                            r0,
                            mlen,
                            k0,
                            kc,
                            bj,
                            padded,
                            cj,
                            ldc,
                            (j, vectors),
                            epi,
                        )
                    };
                }
                match (vectors.div_ceil(V::LANES), narrow) {
                    (0, 0) => {}
                    (0, 1) => narrow_panels::<1>(a, r0, mlen, k0, kc, bj, padded, cj, ldc, j, epi),
                    (0, 2) => narrow_panels::<2>(a, r0, mlen, k0, kc, bj, padded, cj, ldc, j, epi),
                    (0, _) => narrow_panels::<3>(a, r0, mlen, k0, kc, bj, padded, cj, ldc, j, epi),
                    (1, 0) => run!(1, 0),
                    (1, 1) => run!(1, 1),
                    (1, 2) => run!(1, 2),
                    (1, _) => run!(1, 3),
                    (2, 0) => run!(2, 0),
                    (2, 1) => run!(2, 1),
                    (2, 2) => run!(2, 2),
                    (2, _) => run!(2, 3),
                    (3, 0) => run!(3, 0),
                    (3, 1) => run!(3, 1),
                    (3, 2) => run!(3, 2),
                    (3, _) => run!(3, 3),
                    (4, 0) => run!(4, 0),
                    // A block is at most BW = 4 AVX-512 vectors wide: no narrow columns after four vectors.
                    _ => unreachable!("gemm: a block of {width} columns"),
                }
                j += width;
            }
            k0 += kc;
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gemm_avx512(
        a: &PackedA,
        r0: usize,
        mlen: usize,
        n: usize,
        b: BRows,
        c: *mut f32,
        ldc: usize,
        epi: Option<Epilogue>,
        buf: &mut BBlock,
    ) {
        gemm_blocked::<V512>(a, r0, mlen, n, b, c, ldc, epi, buf)
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gemm_avx2(
        a: &PackedA,
        r0: usize,
        mlen: usize,
        n: usize,
        b: BRows,
        c: *mut f32,
        ldc: usize,
        epi: Option<Epilogue>,
        buf: &mut BBlock,
    ) {
        gemm_blocked::<V256>(a, r0, mlen, n, b, c, ldc, epi, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_data::rand_vec;

    /// Every shape class (row and column remainders, several K blocks, sub-ranges of rows) against an f64 sum.
    #[test]
    fn matches_f64_reference() {
        for &(m, n, k, r0, mlen) in &[
            (1, 1, 1, 0, 1),
            (6, 16, 3, 0, 6),
            (7, 17, 27, 0, 7),
            (13, 49, 300, 6, 7),
            (64, 100, 576, 0, 64),
            (32, 43264 / 64, 27, 12, 20),
            (255, 169, 512, 0, 255),
            (20, 129, 600, 18, 2),
        ] {
            let a = rand_vec(m * k, (m * k) as u64);
            let ldb = n + 3;
            let b = rand_vec(k * ldb, (k + n) as u64);
            let packed = PackedA::new(&a, m, k, k);
            let ldc = n + 5;
            // Every ISA this CPU has, down to the portable form.
            let isas = [Isa::Avx512, Isa::Avx2, Isa::Baseline];
            for &isa in isas.iter().skip_while(|&&i| i != super::super::isa()) {
                let mut c = vec![f32::NAN; mlen * ldc];
                // SAFETY: b holds k rows of ldb ≥ n floats, c holds mlen rows of ldc ≥ n floats.
                unsafe {
                    gemm_isa(
                        isa,
                        &packed,
                        r0,
                        mlen,
                        n,
                        BRows::Strided(b.as_ptr(), ldb),
                        c.as_mut_ptr(),
                        ldc,
                        None,
                    )
                };
                for r in 0..mlen {
                    for j in 0..ldc {
                        let got = c[r * ldc + j];
                        if j >= n {
                            assert!(got.is_nan(), "wrote past the last column");
                            continue;
                        }
                        let want: f64 = (0..k)
                            .map(|kk| a[(r0 + r) * k + kk] as f64 * b[kk * ldb + j] as f64)
                            .sum();
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (k as f64).sqrt(),
                            "{isa:?} {m}x{n}x{k} rows {r0}+{r} col {j}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod narrow_tests {
    use super::*;
    use crate::cpu::test_data::rand_vec;

    /// The last 1-3 columns, which run along A's rows (in the microkernel after whole vectors, or on their own),
    /// get exactly the values that the vector microkernel gives them when more columns follow (the same FMAs in
    /// the same order), with several blocks of k, row remainders and the epilogue.
    #[test]
    fn narrow_columns_equal_vector_columns() {
        for &(m, n, k, r0, mlen) in &[
            (7, 1usize, 27, 0, 7),
            (13, 17, 300, 6, 7),
            (64, 49, 576, 0, 64),
            (20, 130, 129, 18, 2),
            (11, 66, 64, 0, 11),
            // Narrow columns after 1-3 whole vectors, in the microkernel (AVX-512: 16+2, 32+3, 48+2; AVX2: 8+3,
            // 8+2, 8+1 in the last 16-column block).
            (8, 18, 64, 0, 8),
            (9, 35, 200, 0, 9),
            (12, 50, 130, 6, 6),
            (14, 11, 40, 0, 14),
            (6, 42, 300, 0, 6),
            (10, 25, 129, 0, 10),
        ] {
            let wide = n.div_ceil(16) * 16 + 16;
            let a = rand_vec(m * k, 3);
            let b = rand_vec(k * wide, 4);
            let p = PackedA::new(&a, m, k, k);
            let (mut narrow, mut vector) = (vec![0f32; mlen * n], vec![0f32; mlen * wide]);
            let epi = |row: usize, _col: usize, rows: &mut [&mut [f32]]| {
                for (i, v) in rows.iter_mut().enumerate() {
                    v.iter_mut().for_each(|x| *x = *x * 0.5 + (row + i) as f32);
                }
            };
            // Every vector instruction set this CPU has (the portable form has no microkernel).
            let isas = [Isa::Avx512, Isa::Avx2];
            for &isa in isas.iter().skip_while(|&&i| i != super::super::isa()) {
                // SAFETY: b holds k rows of `wide` ≥ n floats; the outputs hold mlen rows of n and `wide`.
                unsafe {
                    let rows = BRows::Strided(b.as_ptr(), wide);
                    let (np, vp) = (narrow.as_mut_ptr(), vector.as_mut_ptr());
                    gemm_isa(isa, &p, r0, mlen, n, rows, np, n, Some(&epi));
                    gemm_isa(isa, &p, r0, mlen, wide, rows, vp, wide, Some(&epi));
                }
                for r in 0..mlen {
                    assert_eq!(
                        narrow[r * n..(r + 1) * n],
                        vector[r * wide..r * wide + n],
                        "{isa:?} {m}x{n}x{k} rows {r0}+{r}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod rows_tests {
    use super::*;
    use crate::cpu::test_data::rand_vec;

    /// `BRows::Each` with B's rows scattered (reversed, in separate buffers) gives exactly `gemm` on the same
    /// rows stored contiguously: the same sums in the same order.
    #[test]
    fn rows_equal_strided() {
        for &(m, n, k) in &[(7, 17, 27), (64, 100, 300), (13, 49, 129)] {
            let a = rand_vec(m * k, 1);
            let b = rand_vec(k * n, 2);
            let p = PackedA::new(&a, m, k, k);
            let scattered: Vec<Vec<f32>> = (0..k)
                .rev()
                .map(|kk| b[kk * n..(kk + 1) * n].to_vec())
                .collect();
            let rows: Vec<*const f32> = (0..k).map(|kk| scattered[k - 1 - kk].as_ptr()).collect();
            let (mut c1, mut c2) = (vec![0f32; m * n], vec![1f32; m * n]);
            // SAFETY: b is k × n dense, each row of `rows` holds n floats, c1/c2 hold m × n.
            unsafe {
                gemm(&p, 0, m, n, b.as_ptr(), n, c1.as_mut_ptr(), n);
                gemm_epilogue(
                    &p,
                    0,
                    m,
                    n,
                    BRows::Each(&rows),
                    c2.as_mut_ptr(),
                    n,
                    &|_, _, _: &mut [&mut [f32]]| {},
                );
            }
            assert_eq!(c1, c2, "{m}x{n}x{k}");
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// `cargo test --release --lib cpu::gemm::speed -- --ignored --nocapture`: single-thread GFLOP/s.
    #[test]
    #[ignore]
    fn gflops() {
        for &(m, n, k) in &[
            (512, 49, 512),
            (512, 48, 512),
            (512, 64, 512),
            (256, 49, 384),
            (64, 676, 64),
            (64, 1024, 288),
            (32, 1024, 27),
            (128, 676, 128),
            (256, 169, 512),
        ] {
            let a = vec![0.5f32; m * k];
            let b = vec![0.25f32; k * n];
            let mut c = vec![0f32; m * n];
            let p = PackedA::new(&a, m, k, k);
            // Best of 7 rounds of ~0.1 GFLOP each (the machine is shared).
            let reps = (1e8 / (2.0 * (m * n * k) as f64)) as usize + 1;
            let best = (0..7)
                .map(|_| {
                    let t = std::time::Instant::now();
                    for _ in 0..reps {
                        // SAFETY: b is k × n, c is m × n, both dense; a has m rows.
                        unsafe { gemm(&p, 0, m, n, b.as_ptr(), n, c.as_mut_ptr(), n) };
                    }
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min);
            let g = 2.0 * (m * n * k * reps) as f64 / best / 1e9;
            eprintln!("{m}x{n}x{k}: {g:.1} GFLOP/s");
        }
    }
}
