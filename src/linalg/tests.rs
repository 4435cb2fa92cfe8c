use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::cond::{all_subsets, sample_subsets};
use super::*;

fn randn(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| StandardNormal.sample(&mut rng))
}

fn rel_err(a: ArrayView2<f64>, b: ArrayView2<f64>) -> f64 {
    let d = &a - &b;
    let num = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    let den = b
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    num / den
}

/// Every family decodes A·x from every admissible set at small n, to its conditioning.
#[test]
fn every_family_decodes_every_subset_small_n() {
    for family in Family::ALL {
        for (n, k) in [(3, 2), (5, 3), (6, 4), (8, 5), (8, 8)] {
            let code = MdsCode::new(family, n, k).unwrap();
            let a = randn(23, 7, 1);
            let x = randn(7, 1, 2);
            let truth = a.dot(&x);
            let enc = code.encode(a.view());
            let results: Vec<Array2<f64>> = enc.blocks.iter().map(|blk| blk.dot(&x)).collect();
            let mut decodable = 0;
            for f in all_subsets(n, k) {
                if !code.is_decodable(&f) {
                    assert_eq!(family, Family::Replication, "{family} ({n},{k}) {f:?}");
                    continue;
                }
                decodable += 1;
                // reverse arrival order too: decoding must not depend on order
                let mut order = f.clone();
                order.reverse();
                let res: Vec<(usize, ArrayView2<f64>)> =
                    order.iter().map(|&w| (w, results[w].view())).collect();
                let d = code.decode(&res, a.nrows()).unwrap();
                let err = rel_err(d.value.view(), truth.view());
                assert!(
                    err <= 1e-13 * d.cond.max(1.0),
                    "{family} ({n},{k}) {f:?}: err {err:e}, cond {:e}",
                    d.cond
                );
                let c = code.subset_cond(&f).unwrap();
                assert!(
                    (c - d.cond).abs() <= 1e-6 * c,
                    "{family} ({n},{k}) {f:?}: structured cond {c} vs SVD {}",
                    d.cond
                );
            }
            assert!(decodable > 0);
        }
    }
}

/// Replication decodes exactly when every block is covered, with cond 1.
#[test]
fn replication_needs_cover() {
    let code = MdsCode::new(Family::Replication, 6, 3).unwrap();
    assert!(code.is_decodable(&[0, 1, 2]));
    assert!(code.is_decodable(&[3, 1, 5]));
    assert!(!code.is_decodable(&[0, 3, 1]));
    assert!(code.is_decodable(&[0, 3, 1, 2]));
    assert_eq!(code.subset_cond(&[3, 4, 2]).unwrap(), 1.0);
}

#[test]
fn bad_parameters_are_errors() {
    assert!(MdsCode::new(Family::Rotation, 3, 4).is_err());
    assert!(MdsCode::new(Family::Vandermonde, 3, 0).is_err());
    assert!("nope".parse::<Family>().is_err());
    assert_eq!("mds-rotation".parse::<Family>().unwrap(), Family::Rotation);
    let code = MdsCode::new(Family::Chebyshev, 5, 3).unwrap();
    let r = randn(1, 1, 1);
    let err = code.decode(&[(0, r.view()), (1, r.view())], 1).unwrap_err();
    assert!(
        matches!(
            err,
            LinalgError::BelowThreshold {
                have: 2,
                need: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(code
        .decode(&[(0, r.view()), (0, r.view()), (1, r.view())], 1)
        .is_err());
}

/// The measured worst cond of each family (printed by `cargo test -- --nocapture`).
#[test]
fn cond_growth_and_stable_bounds() {
    // real Vandermonde blows up; the guide measured 7e4 (12,10) and 2e10 (24,20)
    let v12 = survey(
        &MdsCode::new(Family::Vandermonde, 12, 10).unwrap(),
        10_000,
        1,
    )
    .unwrap();
    let v24 = survey(
        &MdsCode::new(Family::Vandermonde, 24, 20).unwrap(),
        2_000,
        1,
    )
    .unwrap();
    println!("vandermonde (12,10) worst {:.3e}", v12.worst);
    println!("vandermonde (24,20) worst {:.3e}", v24.worst);
    assert!(v12.worst > 1e4);
    assert!(v24.worst > 1e8, "{}", v24.worst);
    // stable embeddings at (31, 28), all C(31, 3) = 4495 subsets: measured worst 4.04e2 for
    // rotation and circulant (bound 1e4 asserted), 4.25e4 for the Cauchy systematic code (bound
    // 1e5: its streaming decoder only ever solves s × s systems, s ≤ n − k)
    for (family, bound) in [
        (Family::Rotation, 1e4),
        (Family::Circulant, 1e4),
        (Family::Systematic, 1e5),
    ] {
        let s = survey(&MdsCode::new(family, 31, 28).unwrap(), 10_000, 1).unwrap();
        println!(
            "{family} (31,28) worst {:.3e} mean {:.3e} exhaustive {}",
            s.worst, s.mean, s.exhaustive
        );
        assert!(s.exhaustive);
        assert!(s.worst < bound, "{family}: {}", s.worst);
    }
}

/// The structured cond of the embeddings equals a direct SVD of the real generator rows.
#[test]
fn structured_cond_matches_real_svd() {
    for family in [Family::Rotation, Family::Circulant] {
        let code = MdsCode::new(family, 11, 8).unwrap();
        for f in sample_subsets(11, 8, 20, 3) {
            let fast = code.subset_cond(&f).unwrap();
            let slow = cond(code.submatrix(&f).view()).unwrap();
            assert!(
                (fast - slow).abs() <= 1e-8 * slow,
                "{family} {f:?}: {fast} vs {slow}"
            );
        }
    }
}

/// The streaming decoder solves only for the missing systematic blocks.
#[test]
fn systematic_streaming_touches_only_missing_blocks() {
    let (n, k) = (9, 6);
    let code = MdsCode::new(Family::Systematic, n, k).unwrap();
    let a = randn(30, 5, 4);
    let x = randn(5, 1, 5);
    let truth = a.dot(&x);
    let enc = code.encode(a.view());
    let results: Vec<Array2<f64>> = enc.blocks.iter().map(|b| b.dot(&x)).collect();

    // everything systematic arrives: no solve, no updates, exact copy
    let mut dec = StreamingDecoder::new(&code, a.nrows()).unwrap();
    for (w, r) in results.iter().enumerate().take(k) {
        dec.add_result(w, r.view()).unwrap();
    }
    let d = dec.try_decode().unwrap().unwrap();
    let b = enc.block_rows;
    for (j, r) in results.iter().enumerate().take(k) {
        let hi = ((j + 1) * b).min(a.nrows());
        if j * b < hi {
            let got = d.value.slice(ndarray::s![j * b..hi, ..]);
            assert_eq!(got, r.slice(ndarray::s![..hi - j * b, ..]));
        }
    }
    assert_eq!(dec.stats().solves, 0);
    assert_eq!(dec.stats().block_updates, 0);
    assert!(rel_err(d.value.view(), truth.view()) < 1e-14);

    // workers 1 and 4 missing; parity 8 arrives early, 6 late, then the rest
    let mut dec = StreamingDecoder::new(&code, a.nrows()).unwrap();
    let order = [8, 0, 2, 3, 6, 5, 7];
    let mut decoded = None;
    for &w in &order {
        dec.add_result(w, results[w].view()).unwrap();
        if let Some(d) = dec.try_decode().unwrap() {
            decoded = Some(d);
            break;
        }
    }
    let d = decoded.unwrap();
    assert_eq!(dec.missing(), vec![1, 4]);
    let st = dec.stats();
    assert_eq!(st.solves, 1);
    assert_eq!(st.solve_dim, 2);
    // parity 8: 4 known blocks subtracted as they came (0, 2, 3, 5 → 4 updates); parity 6
    // arrived after 0, 2, 3 (3 updates) and got 5 on arrival (1 update): 8 in all.
    assert_eq!(st.block_updates, 8);
    assert!(rel_err(d.value.view(), truth.view()) < 1e-12);
    // known blocks are returned exactly as received
    let b = enc.block_rows;
    for j in [0, 2, 3, 5] {
        let got = d.value.slice(ndarray::s![j * b..(j + 1) * b, ..]);
        assert_eq!(got, results[j].view());
    }
    assert!(dec.add_result(8, results[8].view()).is_err());
}

/// The streaming decoder agrees with the generic decoder on every admissible set.
#[test]
fn systematic_streaming_every_subset() {
    let (n, k) = (8, 5);
    let code = MdsCode::new(Family::Systematic, n, k).unwrap();
    let a = randn(17, 3, 6);
    let x = randn(3, 1, 7);
    let truth = a.dot(&x);
    let enc = code.encode(a.view());
    let results: Vec<Array2<f64>> = enc.blocks.iter().map(|b| b.dot(&x)).collect();
    for f in all_subsets(n, k) {
        let mut dec = StreamingDecoder::new(&code, a.nrows()).unwrap();
        for &w in f.iter().rev() {
            assert!(dec.try_decode().unwrap().is_none());
            dec.add_result(w, results[w].view()).unwrap();
        }
        let d = dec.try_decode().unwrap().unwrap();
        let missing = f.iter().filter(|&&w| w >= k).count();
        assert_eq!(dec.stats().solve_dim, missing, "{f:?}");
        assert!(rel_err(d.value.view(), truth.view()) < 1e-12, "{f:?}");
    }
}

#[test]
fn polynomial_codes_decode_products() {
    let a = randn(12, 9, 10);
    let b = randn(12, 7, 11);
    let truth = a.t().dot(&b);
    for family in PolyFamily::ALL {
        let (n, m, p) = (10, 3, 2);
        let code = PolyCode::new(family, n, m, p).unwrap();
        let shares = code.encode(a.view(), b.view()).unwrap();
        let out: Vec<Array2<f64>> = shares.iter().map(|s| s.compute()).collect();
        let t = code.threshold();
        assert_eq!(t, if family == PolyFamily::MatDot { 5 } else { 6 });
        for (trial, f) in sample_subsets(n, t, 40, 12).into_iter().enumerate() {
            let mut f = f;
            if trial % 2 == 1 {
                f.reverse();
            }
            let res: Vec<(usize, ArrayView2<f64>)> =
                f.iter().map(|&w| (w, out[w].view())).collect();
            let d = code.decode(&res, 9, 7).unwrap();
            let err = rel_err(d.value.view(), truth.view());
            assert!(err < 1e-8, "{family} {f:?}: err {err:e} cond {:e}", d.cond);
        }
        let res: Vec<(usize, ArrayView2<f64>)> = (0..t - 1).map(|w| (w, out[w].view())).collect();
        assert!(matches!(
            code.decode(&res, 9, 7),
            Err(LinalgError::BelowThreshold { .. })
        ));
    }
}

/// poly-rotation stays well conditioned where real nodes do not (mp = 20 of n = 24).
#[test]
fn poly_rotation_is_stable() {
    let (n, m, p) = (24, 5, 4);
    let real = PolyCode::new(PolyFamily::PolyReal, n, m, p).unwrap();
    let rot = PolyCode::new(PolyFamily::PolyRotation, n, m, p).unwrap();
    let (mut wr, mut wo) = (0.0f64, 0.0f64);
    for f in sample_subsets(n, m * p, 200, 13) {
        wr = wr.max(real.subset_cond(&f).unwrap());
        wo = wo.max(rot.subset_cond(&f).unwrap());
    }
    println!("poly (24, mp=20): real worst {wr:.3e}, rotation worst {wo:.3e}");
    assert!(wr > 1e8);
    assert!(wo < 1e4);
    let a = randn(8, 10, 14);
    let b = randn(8, 8, 15);
    let truth = a.t().dot(&b);
    let out: Vec<Array2<f64>> = rot
        .encode(a.view(), b.view())
        .unwrap()
        .iter()
        .map(|s| s.compute())
        .collect();
    for f in sample_subsets(n, m * p, 20, 16) {
        let res: Vec<(usize, ArrayView2<f64>)> = f.iter().map(|&w| (w, out[w].view())).collect();
        let d = rot.decode(&res, 10, 8).unwrap();
        assert!(rel_err(d.value.view(), truth.view()) < 1e-10);
    }
}

#[test]
fn lcc_decodes_and_enforces_threshold() {
    let k = 3;
    let blocks: Vec<Array2<f64>> = (0..k).map(|j| randn(4, 3, 20 + j as u64)).collect();
    for f in [
        LccFunction::Gram,
        LccFunction::Elementwise(vec![0.5, -1.0, 0.0, 2.0]),
    ] {
        let deg = f.degree();
        let t = (k - 1) * deg + 1;
        let n = t + 3;
        let lcc = Lcc::new(n, k, f.clone()).unwrap();
        assert_eq!(lcc.threshold(), t);
        let inputs = lcc.encode(&blocks).unwrap();
        let out: Vec<Array2<f64>> = inputs.iter().map(|u| lcc.compute(u.view())).collect();
        for sub in sample_subsets(n, t, 30, 21) {
            let res: Vec<(usize, ArrayView2<f64>)> =
                sub.iter().map(|&w| (w, out[w].view())).collect();
            let d = lcc.decode(&res).unwrap();
            for (j, v) in d.values.iter().enumerate() {
                let truth = f.apply(blocks[j].view());
                let err = rel_err(v.view(), truth.view());
                assert!(
                    err < 1e-10,
                    "{f:?} {sub:?} block {j}: {err:e} (Λ {})",
                    d.lebesgue
                );
            }
        }
        let res: Vec<(usize, ArrayView2<f64>)> = (0..t - 1).map(|w| (w, out[w].view())).collect();
        let err = lcc.decode(&res).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("recovery threshold is {t}")), "{msg}");
        // too few workers at construction
        assert!(Lcc::new(t - 1, k, f).is_err());
    }
}

/// The job's per-worker encoding (hyperslab rows of the needed blocks only, CSR kept sparse for
/// selecting rows) gives results that decode to A·x for every family, dense and CSR, with the
/// last n − k workers missing.
#[test]
fn job_worker_encoding_decodes_dense_and_csr() {
    use super::job::{encode_worker, iteration_vector, worker_ranges, BlockLayout, CodedBlock};
    use crate::data::{CsrMatrix, Features};
    let (rows, cols) = (37, 9);
    let dense = randn(rows, cols, 5);
    // Sparse copy: zero out about two thirds of the entries.
    let mut sp = dense.clone();
    sp.indexed_iter_mut()
        .for_each(|((i, j), v)| *v = if (i * 7 + j * 3) % 3 == 0 { *v } else { 0.0 });
    let (mut indptr, mut indices, mut data) = (vec![0usize], Vec::new(), Vec::new());
    for row in sp.rows() {
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                indices.push(j as u32);
                data.push(v);
            }
        }
        indptr.push(indices.len());
    }
    let csr = CsrMatrix::new(rows, cols, indptr, indices, data).unwrap();
    let x = iteration_vector(3, 1, cols);
    assert_eq!(x, iteration_vector(3, 1, cols));
    assert_ne!(x, iteration_vector(3, 2, cols));
    for (a, feats) in [
        (dense.clone(), Features::Dense(dense.clone())),
        (sp.clone(), Features::Sparse(csr)),
    ] {
        let truth = a.dot(&x);
        for family in Family::ALL {
            let (n, k) = (6, 4);
            let code = MdsCode::new(family, n, k).unwrap();
            let layout = BlockLayout::new(&code, rows, cols).unwrap();
            let mut results = Vec::new();
            for w in 0..n {
                let parts: Vec<Features> = worker_ranges(&code, &layout, w)
                    .into_iter()
                    .map(|r| feats.slice_rows(r))
                    .collect();
                let refs: Vec<&Features> = parts.iter().collect();
                let held = Features::vstack(&refs).unwrap();
                let block = encode_worker(&code, &layout, w, held).unwrap();
                if matches!(family, Family::Replication) || (family == Family::Systematic && w < k)
                {
                    assert!(matches!(block, CodedBlock::Plain { .. }), "{family} w{w}");
                    assert_eq!(block.is_sparse(), feats.is_sparse());
                }
                let mut out = vec![0.0; layout.result_len(&code)];
                block.matvec_into(x.view(), &mut out).unwrap();
                results.push((w, Array2::from_shape_vec((out.len(), 1), out).unwrap()));
            }
            // Replication needs every block covered: drop the last n − k (a covering set stays).
            let on_time: Vec<(usize, ArrayView2<f64>)> =
                results[..k].iter().map(|(w, m)| (*w, m.view())).collect();
            let dec = code.decode(&on_time, rows).unwrap();
            let err = super::job::rel_err(dec.value.column(0), truth.view());
            assert!(
                err <= super::job::validation_tol(dec.cond),
                "{family}: err {err:e} cond {}",
                dec.cond
            );
        }
    }
}

/// The systematic rotation code: identity on the first k workers, any k workers decode, the
/// streaming decoder (r = 2) agrees with the truth on every admissible set and solves only for
/// the missing blocks; its worst cond stays far below the Cauchy parity's.
#[test]
fn systematic_rotation_streams_every_subset() {
    let (n, k) = (8, 5);
    let code = MdsCode::new(Family::SystematicRotation, n, k).unwrap();
    assert_eq!(code.blocks_per_worker(), 2);
    let g = code.generator();
    for i in 0..2 * k {
        for j in 0..2 * k {
            assert_eq!(g[[i, j]], f64::from(u8::from(i == j)));
        }
    }
    let a = randn(41, 3, 8);
    let x = randn(3, 1, 9);
    let truth = a.dot(&x);
    let enc = code.encode(a.view());
    let results: Vec<Array2<f64>> = enc.blocks.iter().map(|b| b.dot(&x)).collect();
    for f in all_subsets(n, k) {
        let mut dec = StreamingDecoder::new(&code, a.nrows()).unwrap();
        for &w in f.iter().rev() {
            assert!(dec.try_decode().unwrap().is_none());
            dec.add_result(w, results[w].view()).unwrap();
        }
        let d = dec.try_decode().unwrap().unwrap();
        let missing = f.iter().filter(|&&w| w >= k).count();
        assert_eq!(dec.stats().solve_dim, 2 * missing, "{f:?}");
        assert!(rel_err(d.value.view(), truth.view()) < 1e-12, "{f:?}");
        let views: Vec<(usize, ArrayView2<f64>)> =
            f.iter().map(|&w| (w, results[w].view())).collect();
        let g = code.decode(&views, a.nrows()).unwrap();
        assert!(rel_err(g.value.view(), truth.view()) < 1e-12, "{f:?}");
    }
    let rot = survey(
        &MdsCode::new(Family::SystematicRotation, 31, 28).unwrap(),
        10_000,
        1,
    )
    .unwrap();
    let cauchy = survey(
        &MdsCode::new(Family::Systematic, 31, 28).unwrap(),
        10_000,
        1,
    )
    .unwrap();
    println!(
        "systematic-rotation (31,28) worst {:.3e}, Cauchy systematic {:.3e}",
        rot.worst, cauchy.worst
    );
    assert!(rot.exhaustive && rot.worst < cauchy.worst / 10.0);
}
