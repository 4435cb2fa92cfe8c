//! Unit tests of the results writer and readers.
use super::*;

fn meta(n: usize) -> RunMeta {
    RunMeta {
        code: Vec::new(),
        env: Vec::new(),
        config: Vec::new(),
        config_toml: String::new(),
        code_matrix: Array2::eye(n),
        n_workers: n,
        n_layers: 0,
        adapt: false,
    }
}

fn rec(i: usize, n: usize) -> IterationRecord {
    let mut r = IterationRecord::new(n);
    r.set(Metric::Iteration, i as f64);
    r.set(Metric::TrainLoss, 1.0 / (i as f64 + 1.0));
    for (w, v) in r.worker_mut(WorkerMetric::ArrivalS).iter_mut().enumerate() {
        *v = (10 * i + w) as f64;
    }
    r
}

#[test]
fn buffered_rows_reach_the_file_on_flush_and_finish_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.h5");
    let n = 3;
    let mut w = RunWriter::create(&path, &meta(n), None).unwrap();
    for i in 0..5 {
        w.append(&rec(i, n)).unwrap();
    }
    // The first row is written at once; the next ones are buffered (well within the flush
    // interval) and counted.
    assert_eq!(w.rows(), 5);
    assert_eq!(w.rows, 1);
    w.flush().unwrap();
    assert_eq!(w.rows, 5);
    for i in 5..8 {
        w.append(&rec(i, n)).unwrap();
    }
    w.finish(&FinalRecord {
        status: "complete".into(),
        w_final: Array1::zeros(2),
        ..FinalRecord::default()
    })
    .unwrap();
    let rows = read_rows(&path, None).unwrap();
    assert_eq!(rows.len(), 8);
    let it = rows.column(Metric::Iteration);
    assert!(it.iter().enumerate().all(|(i, &v)| v == i as f64));
    let loss = rows.column(Metric::TrainLoss);
    assert!((loss[7] - 1.0 / 8.0).abs() < 1e-15);
    let r6 = rows.row(6);
    assert_eq!(r6.worker(WorkerMetric::ArrivalS), [60.0, 61.0, 62.0]);
}

#[test]
fn a_resumed_writer_keeps_the_initial_rows_before_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a.h5");
    let mut w = RunWriter::create(&first, &meta(2), None).unwrap();
    for i in 0..4 {
        w.append(&rec(i, 2)).unwrap();
    }
    w.finish(&FinalRecord::default()).unwrap();
    let kept = read_rows(&first, Some(3)).unwrap();
    let second = dir.path().join("b.h5");
    let mut w = RunWriter::create(&second, &meta(2), Some(&kept)).unwrap();
    assert_eq!(w.rows(), 3);
    w.append(&rec(3, 2)).unwrap();
    w.finish(&FinalRecord::default()).unwrap();
    let rows = read_rows(&second, None).unwrap();
    let it = rows.column(Metric::Iteration);
    assert_eq!(it.to_vec(), vec![0.0, 1.0, 2.0, 3.0]);
}

/// A file written before a per-worker metric existed (here: without `/timing/stale_age`)
/// reads that metric as absent (no columns, as readers expect), and its rows carry it as NaN
/// so a resumed writer can append them.
#[test]
fn rows_of_a_file_without_a_newer_metric_can_be_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.h5");
    let mut w = RunWriter::create(&old, &meta(3), None).unwrap();
    for i in 0..3 {
        w.append(&rec(i, 3)).unwrap();
    }
    w.finish(&FinalRecord::default()).unwrap();
    {
        let f = hdf5::File::open_rw(&old).unwrap();
        f.unlink("timing/stale_age").unwrap();
    }
    let kept = read_rows(&old, None).unwrap();
    assert!(!kept.has(WorkerMetric::StaleAge));
    assert_eq!(kept.worker(WorkerMetric::StaleAge).ncols(), 0);
    let r = kept.row(1);
    let ages = r.worker(WorkerMetric::StaleAge);
    assert!(ages.len() == 3 && ages.iter().all(|v| v.is_nan()));
    assert_eq!(r.worker(WorkerMetric::ArrivalS), [10.0, 11.0, 12.0]);
    let new = dir.path().join("new.h5");
    let mut w = RunWriter::create(&new, &meta(3), Some(&kept)).unwrap();
    w.append(&rec(3, 3)).unwrap();
    w.finish(&FinalRecord::default()).unwrap();
    assert_eq!(read_rows(&new, None).unwrap().len(), 4);
}

/// Late arrivals go to `/late`, survive a resume, and are read back with the rows they were
/// received during.
#[test]
fn late_arrivals_are_written_and_kept_across_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.h5");
    let late = |during: u64| LateRow {
        received_during: during,
        iteration: during - 1,
        rank: 2,
        phase: 0,
        part: 0,
        delay_s: 0.3,
        compute_s: 0.01,
        injected_s: 0.28,
        used: false,
    };
    let mut w = RunWriter::create(&path, &meta(2), None).unwrap();
    for i in 0..4 {
        w.append(&rec(i, 2)).unwrap();
        if i > 0 {
            w.append_late(&late(i as u64));
        }
    }
    w.finish(&FinalRecord::default()).unwrap();
    let rows = read_rows(&path, None).unwrap();
    assert_eq!(rows.late, vec![late(1), late(2), late(3)]);
    let kept = read_rows(&path, Some(2)).unwrap();
    assert_eq!(kept.late, vec![late(1)]);
    let again = dir.path().join("again.h5");
    let w = RunWriter::create(&again, &meta(2), Some(&kept)).unwrap();
    w.finish(&FinalRecord::default()).unwrap();
    assert_eq!(read_rows(&again, None).unwrap().late, vec![late(1)]);
}

/// `status` is stored exactly as named (h5py compares it with `==`), at creation, at the end
/// and after a recovery; a file with the old space-padded status still reads trimmed.
#[test]
fn status_is_stored_unpadded_and_padded_files_still_read() {
    let raw = |p: &Path| -> String {
        let f = hdf5::File::open(p).unwrap();
        let a = f.attr("status").unwrap();
        a.read_scalar::<VarLenUnicode>()
            .unwrap()
            .as_str()
            .to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.h5");
    let mut w = RunWriter::create(&path, &meta(2), None).unwrap();
    w.append(&rec(0, 2)).unwrap();
    w.flush().unwrap();
    assert_eq!(raw(&path), "running");
    w.finish(&FinalRecord {
        status: "complete".into(),
        ..FinalRecord::default()
    })
    .unwrap();
    assert_eq!(raw(&path), "complete");
    assert_eq!(read_str_attr(&path, "", "status").unwrap(), "complete");

    // A killed job's file (status `running`) recovers to exactly `recovered`.
    let killed = dir.path().join("killed.h5");
    let mut w = RunWriter::create(&killed, &meta(2), None).unwrap();
    w.append(&rec(0, 2)).unwrap();
    w.flush().unwrap();
    std::mem::forget(w);
    let r = recover(&killed).unwrap();
    assert_eq!((r.status_before.as_str(), r.rows), ("running", 1));
    assert_eq!(raw(&killed), "recovered");

    // Files written before: `running` padded to 12 characters.
    let old = dir.path().join("old.h5");
    {
        let f = hdf5::File::create(&old).unwrap();
        let v: VarLenUnicode = "running     ".parse().unwrap();
        f.new_attr::<VarLenUnicode>()
            .create("status")
            .and_then(|a| a.write_scalar(&v))
            .unwrap();
    }
    assert_eq!(raw(&old), "running     ");
    assert_eq!(read_str_attr(&old, "", "status").unwrap(), "running");
    assert_eq!(status(&open(&old).unwrap()).as_deref(), Some("running"));
}

#[test]
fn per_layer_rows_round_trip_and_other_runs_have_no_layers_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.h5");
    let (n, layers) = (2, 3);
    let admm = RunMeta {
        n_layers: layers,
        adapt: false,
        ..meta(n)
    };
    let row = |i: usize| {
        let mut r = IterationRecord::with_layers(n, layers);
        r.set(Metric::Iteration, i as f64);
        r.set(Metric::Objective, 10.0 - i as f64);
        for (l, v) in r
            .layer_mut(LayerMetric::PrimalResidual)
            .iter_mut()
            .enumerate()
        {
            *v = (i * 10 + l) as f64;
        }
        r
    };
    let mut w = RunWriter::create(&path, &admm, None).unwrap();
    for i in 0..4 {
        w.append(&row(i)).unwrap();
    }
    // A row for another number of layers is refused.
    assert!(w.append(&IterationRecord::with_layers(n, 2)).is_err());
    w.finish(&FinalRecord::default()).unwrap();
    let rows = read_rows(&path, None).unwrap();
    assert_eq!((rows.len(), rows.layers(), rows.workers()), (4, layers, n));
    assert_eq!(rows.layer(LayerMetric::PrimalResidual)[[3, 2]], 32.0);
    assert!(rows.layer(LayerMetric::Tau)[[0, 0]].is_nan());
    assert_eq!(rows.column(Metric::Objective)[2], 8.0);
    // A resumed file keeps the per-layer rows it continues from.
    let again = dir.path().join("again.h5");
    let kept = read_rows(&path, Some(2)).unwrap();
    let mut w = RunWriter::create(&again, &admm, Some(&kept)).unwrap();
    w.append(&row(2)).unwrap();
    w.finish(&FinalRecord::default()).unwrap();
    let back = read_rows(&again, None).unwrap();
    assert_eq!(
        back.layer(LayerMetric::PrimalResidual),
        rows.layer(LayerMetric::PrimalResidual)
            .slice(ndarray::s![..3, ..])
    );
    // Every other job writes no /layers.
    let plain = dir.path().join("plain.h5");
    RunWriter::create(&plain, &meta(n), None)
        .unwrap()
        .finish(&FinalRecord::default())
        .unwrap();
    assert_eq!(read_rows(&plain, None).unwrap().layers(), 0);
    assert!(open(&plain).unwrap().group("layers").is_err());
}

#[test]
fn adapt_switches_round_trip_and_a_run_without_adapt_has_no_group() {
    let dir = tempfile::tempdir().unwrap();
    let switches = vec![
        AdaptSwitch {
            iteration: 14,
            old_s: 0,
            new_s: 2,
            gain: 0.625,
            reason: "predicted 30 ms with s = 2 against 80 ms with s = 0".into(),
            deadline_ms: None,
        },
        AdaptSwitch {
            iteration: 39,
            old_s: 2,
            new_s: 1,
            gain: 0.25,
            reason: "back".into(),
            deadline_ms: None,
        },
        // A change of the deadline only (--adapt-deadline).
        AdaptSwitch {
            iteration: 44,
            old_s: 1,
            new_s: 1,
            gain: f64::NAN,
            reason: "deadline".into(),
            deadline_ms: Some((500.0, 3.25)),
        },
    ];
    for (name, adapt) in [
        ("none.h5", None),
        ("empty.h5", Some(Vec::new())),
        ("two.h5", Some(switches)),
    ] {
        let path = dir.path().join(name);
        let mut w = RunWriter::create(&path, &meta(2), None).unwrap();
        w.append(&rec(0, 2)).unwrap();
        w.finish(&FinalRecord {
            status: "complete".into(),
            adapt: adapt.clone(),
            ..FinalRecord::default()
        })
        .unwrap();
        // Debug form: a deadline-only row's gain is NaN.
        assert_eq!(
            format!("{:?}", read_adapt(&path).unwrap()),
            format!("{adapt:?}"),
            "{name}"
        );
    }
}

#[test]
fn adapt_switches_appended_during_the_run_survive_a_kill_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let adaptive = RunMeta {
        adapt: true,
        ..meta(2)
    };
    // A reason longer than the live column, with multi-byte characters across the cut.
    let long = format!("predicted {}", "s→2 ".repeat(200));
    let switch = |iteration: u64, reason: &str| AdaptSwitch {
        iteration,
        old_s: 0,
        new_s: 2,
        gain: 0.5,
        reason: reason.into(),
        deadline_ms: Some((500.0, 2.5)),
    };

    let killed = dir.path().join("killed.h5");
    let mut w = RunWriter::create(&killed, &adaptive, None).unwrap();
    w.append(&rec(0, 2)).unwrap();
    w.append_adapt(&switch(1, &long)).unwrap();
    w.append(&rec(1, 2)).unwrap();
    // The row after a switch is written at once with the switch, whatever the interval.
    assert_eq!(w.rows, 2);
    w.append(&rec(2, 2)).unwrap();
    assert_eq!(w.rows, 2);
    std::mem::forget(w);
    let live = read_adapt(&killed).unwrap().unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].iteration, live[0].old_s, live[0].new_s), (1, 0, 2));
    assert_eq!(live[0].gain, 0.5);
    assert!(live[0].reason.len() <= ADAPT_REASON_BYTES);
    assert!(live[0].reason.len() > ADAPT_REASON_BYTES - 4);
    assert!(long.starts_with(&live[0].reason));
    // `gradcode recover` keeps the switch log, in the final form (count attribute).
    recover(&killed).unwrap();
    assert_eq!(read_adapt(&killed).unwrap().unwrap(), live);
    let f = open(&killed).unwrap();
    let n = f.group("adapt").unwrap().attr("switches").unwrap();
    assert_eq!(n.read_scalar::<u64>().unwrap(), 1);

    // A run that ends writes the switches appended, whole; none: the count and no columns.
    for (name, switches) in [
        ("ended.h5", vec![switch(3, &long), switch(7, "back")]),
        ("none.h5", Vec::new()),
    ] {
        let path = dir.path().join(name);
        let mut w = RunWriter::create(&path, &adaptive, None).unwrap();
        for (i, s) in switches.iter().enumerate() {
            w.append_adapt(s).unwrap();
            w.append(&rec(i, 2)).unwrap();
        }
        w.finish(&FinalRecord {
            status: "complete".into(),
            ..FinalRecord::default()
        })
        .unwrap();
        assert_eq!(read_adapt(&path).unwrap().unwrap(), switches, "{name}");
        let f = open(&path).unwrap();
        assert_eq!(
            f.group("adapt").unwrap().link_exists("reason"),
            !switches.is_empty()
        );
    }
    // A file created without /adapt refuses a switch.
    let plain = dir.path().join("plain.h5");
    let mut w = RunWriter::create(&plain, &meta(2), None).unwrap();
    assert!(w.append_adapt(&switch(0, "x")).is_err());
}
