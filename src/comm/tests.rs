//! The protocol without `mpirun`: rank 0's [`Collector`] and the workers' [`WorkerLink`] as
//! threads over the in-process transport ([`super::local`]). Deadlines, `wait` against
//! `best-effort`, late messages drained and never used, malformed and stale messages as
//! erasures, a silent worker named at reconcile, stale reuse, and the check pieces.

use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::local::{self, LocalWorker};
use super::protocol::{Header, HEADER_LEN, TAG_ACK, TAG_RESULT, TAG_STOP};
use super::*;
use crate::comm::collector::LateArrival;
use crate::straggler::StragglerSchedule;

/// A worker job for tests: answers x with rank · x (and, asked for a check, one piece x).
struct Scale {
    len: usize,
}

impl WorkerJob for Scale {
    fn accepts(&self, phase: usize, len: usize) -> bool {
        phase == 0 && len == self.len
    }
    fn max_params_len(&self) -> usize {
        self.len
    }
    fn serve<T: WorkerTransport>(
        &mut self,
        params: &[f64],
        out: &mut Responder<'_, T>,
    ) -> Result<(), CommError> {
        let r = out.rank() as f64;
        out.send_result(0, self.len, |buf| scale_into(r, params, buf))?;
        if out.wants_check() {
            let piece = out.rank() - 1;
            out.send_check(piece, self.len, |buf| {
                buf.copy_from_slice(params);
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// `buf` = r · `params` (as far as both go).
fn scale_into(r: f64, params: &[f64], buf: &mut [f64]) -> Result<(), CommError> {
    for (b, x) in buf.iter_mut().zip(params) {
        *b = r * x;
    }
    Ok(())
}

/// At least `need` complete responders.
struct Count(usize);
impl Rule for Count {
    fn decodable(&self, round: &Round) -> bool {
        round.complete_responders() >= self.0
    }
}

fn spec(n: usize, len: usize, deadline_ms: u64, max_wait_ms: u64, on: OnDeadline) -> CollectorSpec {
    CollectorSpec {
        workers: n,
        parts: 1,
        result_len: vec![vec![len; n]],
        check_len: len,
        deadline: Duration::from_millis(deadline_ms),
        max_wait: Duration::from_millis(max_wait_ms),
        on_deadline: on,
        reuse_stale: false,
        overlap: false,
        compressed: None,
        relayed: Vec::new(),
    }
}

/// Start a [`Scale`] worker thread per endpoint under the straggler model `stragglers`.
fn serve_all(workers: Vec<LocalWorker>, len: usize, stragglers: &str) -> Vec<JoinHandle<i32>> {
    let n = workers.len();
    workers
        .into_iter()
        .map(|w| {
            let schedule = StragglerSchedule::parse(stragglers, n, 1).unwrap();
            std::thread::spawn(move || {
                WorkerLink::new(w, schedule, 1)
                    .serve(&mut Scale { len })
                    .unwrap()
                    .stop_code
            })
        })
        .collect()
}

fn no_idle() -> impl FnMut() -> Result<(), CommError> {
    || Ok(())
}

#[test]
fn decodes_from_the_first_set_and_drains_the_late_message_unused() {
    let (hub, workers) = local::world(3);
    let threads = serve_all(workers, 2, "fixed:3:300");
    let mut c = Collector::new(hub, spec(3, 2, 1000, 5000, OnDeadline::Wait));
    c.begin(0, 0, &[1.0, 2.0], 0);
    let t = Instant::now();
    let got = c.collect(&mut Count(2), None, &mut no_idle()).unwrap();
    assert_eq!(got, Collected::Decodable);
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "waited for the straggler"
    );
    c.end();
    assert_eq!(c.round().responders[0], vec![0, 1]);
    assert_eq!(c.payload(1, 0), &[2.0, 4.0]);
    assert!(c.round().arrival_s[2].is_nan());
    // Rank 3 is still busy with iteration 0: it is not given iteration 1 until its late result
    // arrives, which is drained, recorded, and not counted as a response to iteration 1.
    c.begin(1, 0, &[10.0, 20.0], 0);
    let got = c.collect(&mut Count(3), None, &mut no_idle()).unwrap();
    assert_eq!(got, Collected::Decodable);
    c.end();
    let late: Vec<LateArrival> = c.take_late();
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(
        (late[0].iteration, late[0].rank, late[0].used),
        (0, 3, false)
    );
    assert!(late[0].delay_s >= 0.29, "{late:?}");
    assert_eq!(c.round().late, 1);
    // The answer of rank 3 in iteration 1 is for x of iteration 1, not 0.
    assert_eq!(c.payload(2, 0), &[30.0, 60.0]);
    assert!(c.peak_rss_kib().iter().all(|v| v.is_nan()), "no ACK yet");
    assert!(c.shutdown(0, Duration::from_secs(5)).unwrap().is_empty());
    // Every worker's ACK carried its (here: the test process's) peak resident memory.
    let own = crate::comm::peak_rss_kib();
    assert!(own > 0.0);
    assert!(
        c.peak_rss_kib().iter().all(|&v| v > 0.0 && v <= own),
        "{:?} vs {own}",
        c.peak_rss_kib()
    );
    for h in threads {
        assert_eq!(h.join().unwrap(), 0);
    }
    assert!(c.never_answered().is_empty());
}

#[test]
fn best_effort_stops_at_the_deadline_and_wait_fails_naming_the_silent() {
    for (on, want_err) in [(OnDeadline::BestEffort, false), (OnDeadline::Wait, true)] {
        let (hub, workers) = local::world(3);
        let threads = serve_all(workers, 1, "fail:2@0");
        let mut c = Collector::new(hub, spec(3, 1, 50, 150, on));
        // The deadline counts from the post, inside `begin`: time from before it.
        let t = Instant::now();
        c.begin(0, 0, &[1.0], 0);
        let got = c.collect(&mut Count(3), None, &mut no_idle());
        let took = t.elapsed();
        c.end();
        if want_err {
            match got {
                Err(CommError::Timeout { silent, have, .. }) => {
                    assert_eq!(silent, vec![2]);
                    assert_eq!(have, 2);
                    assert!(took >= Duration::from_millis(150), "{took:?}");
                }
                other => panic!("wait: expected a timeout, got {other:?}"),
            }
        } else {
            assert_eq!(got.unwrap(), Collected::Deadline);
            assert!(took >= Duration::from_millis(50) && took < Duration::from_millis(140));
            assert_eq!(c.round().responders[0], vec![0, 2]);
        }
        // The failed worker is alive: it answers the STOP, and is named as never answering.
        assert!(c.shutdown(1, Duration::from_secs(5)).unwrap().is_empty());
        assert_eq!(c.never_answered(), vec![2]);
        for h in threads {
            assert_eq!(h.join().unwrap(), 1, "the STOP carries the job's exit code");
        }
    }
}

/// A rank-1 worker written by hand: it answers each parameter message with `reply(header,
/// payload)`'s messages, then acknowledges STOP with the count it sent (or not at all).
fn rogue(
    mut w: LocalWorker,
    reply: impl Fn(&Header, &[f64]) -> Vec<(i32, Vec<f64>)> + Send + 'static,
    ack: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut sent = 0;
        while let Some((tag, msg)) = w.recv_raw() {
            let h = Header::parse(&msg).unwrap();
            if tag == TAG_STOP {
                if ack {
                    w.send_raw(TAG_ACK, Header::ack_message(1, sent, 4096.0).to_vec());
                }
                return;
            }
            for (tag, m) in reply(&h, &msg[HEADER_LEN..]) {
                w.send_raw(tag, m);
                sent += 1;
            }
        }
    })
}

fn result_msg(h: Header, payload: &[f64]) -> Vec<f64> {
    let mut m = h.to_message().to_vec();
    m.extend_from_slice(payload);
    m
}

#[test]
fn malformed_and_stale_messages_are_erasures_counted_and_never_used() {
    let (hub, mut workers) = local::world(2);
    let honest = serve_all(workers.split_off(1), 1, "none");
    let bad = rogue(
        workers.pop().unwrap(),
        |h, x| {
            let good = |len| Header::result(h.iteration, 1, 0, 0, len);
            vec![
                // NaN payload, a wrong length, another iteration, another sender, an unknown
                // tag, a wrong kind on the result tag: six erasures.
                (TAG_RESULT, result_msg(good(1), &[f64::NAN])),
                (TAG_RESULT, result_msg(good(2), &[x[0], x[0]])),
                (
                    TAG_RESULT,
                    result_msg(Header::result(h.iteration + 7, 1, 0, 0, 1), x),
                ),
                (
                    TAG_RESULT,
                    result_msg(Header::result(h.iteration, 2, 0, 0, 1), x),
                ),
                (99, result_msg(good(1), x)),
                (TAG_RESULT, Header::ack_message(1, 0, 0.0).to_vec()),
            ]
        },
        true,
    );
    let mut c = Collector::new(hub, spec(2, 1, 200, 5000, OnDeadline::BestEffort));
    c.begin(0, 0, &[3.0], 0);
    let got = c.collect(&mut Count(2), None, &mut no_idle()).unwrap();
    assert_eq!(got, Collected::Deadline, "nothing from rank 1 may count");
    c.end();
    assert_eq!(c.round().responders[0], vec![1]);
    assert_eq!(c.round().rejected, 6);
    assert_eq!(c.rejected_by_worker(), vec![6, 0]);
    assert!(
        c.take_late().is_empty(),
        "an invalid message is not a late one"
    );
    assert!(c.shutdown(0, Duration::from_secs(5)).unwrap().is_empty());
    bad.join().unwrap();
    for h in honest {
        h.join().unwrap();
    }
}

/// With compressed results (`--compress`), a payload of the right length and finite values that
/// does not decompress (a top-k index out of range) is an erasure like any other invalid message;
/// a well-formed one is accepted.
#[test]
fn a_compressed_result_that_does_not_decompress_is_an_erasure() {
    use crate::compress::{Compressor, NoiseKey};
    // A vector of 5: the 3 largest values, then one word of three 3-bit indices.
    let c = Compressor::TopK { fraction: 0.5 };
    let wire_len = c.wire_len(5);
    assert_eq!(wire_len, 4);
    let (hub, mut workers) = local::world(2);
    let honest = rogue(
        workers.pop().unwrap(),
        move |h, _| {
            let mut wire = vec![0.0; wire_len];
            c.compress(&[1.0, -4.0, 0.5, 3.0, 0.0], NoiseKey::default(), &mut wire)
                .unwrap();
            let hd = Header::result(h.iteration, 2, 0, 0, wire_len);
            vec![(TAG_RESULT, result_msg(hd, &wire))]
        },
        false,
    );
    let bad = rogue(
        workers.pop().unwrap(),
        move |h, _| {
            // Indices 7, 1 and 2 in a vector of 5.
            let wire = [1.0, 2.0, 3.0, f64::from_bits(7 | (1 << 3) | (2 << 6))];
            let hd = Header::result(h.iteration, 1, 0, 0, wire_len);
            vec![(TAG_RESULT, result_msg(hd, &wire[..wire_len]))]
        },
        true,
    );
    let mut sp = spec(2, wire_len, 200, 5000, OnDeadline::BestEffort);
    sp.compressed = Some((c, 5));
    let mut c0 = Collector::new(hub, sp);
    c0.begin(0, 0, &[0.0], 0);
    let got = c0.collect(&mut Count(2), None, &mut no_idle()).unwrap();
    assert_eq!(got, Collected::Deadline);
    c0.end();
    assert_eq!(c0.round().responders[0], vec![1]);
    assert_eq!(c0.rejected_by_worker(), vec![1, 0]);
    let mut out = [0.0; 5];
    c.decompress(c0.payload(1, 0), &mut out).unwrap();
    assert_eq!(out, [1.0, -4.0, 0.0, 3.0, 0.0]);
    let _ = c0.shutdown(0, Duration::from_millis(300));
    bad.join().unwrap();
    honest.join().unwrap();
}

#[test]
fn a_worker_that_never_acknowledges_stop_is_named_within_the_bound() {
    let (hub, mut workers) = local::world(2);
    let honest = serve_all(workers.split_off(1), 1, "none");
    let mute = rogue(
        workers.pop().unwrap(),
        |h, x| {
            vec![(
                TAG_RESULT,
                result_msg(Header::result(h.iteration, 1, 0, 0, 1), x),
            )]
        },
        false,
    );
    let mut c = Collector::new(hub, spec(2, 1, 200, 5000, OnDeadline::Wait));
    c.begin(0, 0, &[1.0], 0);
    c.collect(&mut Count(2), None, &mut no_idle()).unwrap();
    let t = Instant::now();
    assert_eq!(c.shutdown(0, Duration::from_millis(200)).unwrap(), vec![1]);
    assert!(t.elapsed() < Duration::from_secs(2));
    mute.join().unwrap();
    for h in honest {
        h.join().unwrap();
    }
}

#[test]
fn an_interrupt_abandons_the_round() {
    let (hub, workers) = local::world(2);
    let threads = serve_all(workers, 1, "fixed:1,2:200");
    let mut c = Collector::new(hub, spec(2, 1, 1000, 5000, OnDeadline::Wait));
    let flag = AtomicBool::new(true);
    c.begin(0, 0, &[1.0], 0);
    let t = Instant::now();
    let got = c
        .collect(&mut Count(2), Some(&flag), &mut no_idle())
        .unwrap();
    assert_eq!(got, Collected::Interrupted);
    assert!(t.elapsed() < Duration::from_millis(100));
    // The abandoned round's messages are drained at shutdown.
    assert!(c.shutdown(0, Duration::from_secs(5)).unwrap().is_empty());
    assert_eq!(c.take_late().len(), 2);
    for h in threads {
        h.join().unwrap();
    }
}

#[test]
fn a_result_one_round_late_is_folded_in_with_reuse_stale() {
    let (hub, workers) = local::world(3);
    let threads = serve_all(workers, 1, "fixed:3:150");
    let mut s = spec(3, 1, 1000, 5000, OnDeadline::Wait);
    s.reuse_stale = true;
    let mut c = Collector::new(hub, s);
    c.begin(0, 0, &[1.0], 0);
    c.collect(&mut Count(2), None, &mut no_idle()).unwrap();
    c.end();
    c.begin(1, 0, &[2.0], 0);
    c.collect(&mut Count(3), None, &mut no_idle()).unwrap();
    c.end();
    // Rank 3's result of iteration 0 stood in for its response to iteration 1.
    assert_eq!(c.round().stale, 1);
    assert_eq!(c.round().stale_age[2], 1.0);
    assert_eq!(c.payload(2, 0), &[3.0]);
    let late = c.take_late();
    assert!(late.len() == 1 && late[0].used && late[0].iteration == 0);
    assert!(c.shutdown(0, Duration::from_secs(5)).unwrap().is_empty());
    for h in threads {
        h.join().unwrap();
    }
}

#[test]
fn check_pieces_arrive_with_the_round_that_asks_for_them() {
    let (hub, workers) = local::world(3);
    let threads = serve_all(workers, 2, "none");
    let mut c = Collector::new(hub, spec(3, 2, 1000, 5000, OnDeadline::Wait));
    c.begin(0, 0, &[1.0, -1.0], 3);
    c.collect(&mut Count(3), None, &mut no_idle()).unwrap();
    c.end();
    let have = c.await_checks(Duration::from_secs(2)).unwrap().to_vec();
    assert_eq!(have, vec![true, true, true]);
    assert_eq!(c.check(1), Some(&[1.0, -1.0][..]));
    assert!((0..3).all(|w| c.sent_check(w)));
    c.end_checks();
    // A round without a check asks for none.
    c.begin(1, 0, &[2.0, 2.0], 0);
    c.collect(&mut Count(3), None, &mut no_idle()).unwrap();
    c.end();
    assert!(c.check(0).is_none());
    assert!(c.shutdown(0, Duration::from_secs(5)).unwrap().is_empty());
    for h in threads {
        h.join().unwrap();
    }
}

#[test]
fn the_parameter_ring_serves_every_worker_the_current_round() {
    // Rank 0 posts from a shared buffer per round: each worker sees exactly the params of the
    // round it was given (checked through its answer).
    let (hub, workers) = local::world(4);
    let threads = serve_all(workers, 3, "exp:2");
    let mut c = Collector::new(hub, spec(4, 3, 1000, 5000, OnDeadline::Wait));
    for t in 0..20u64 {
        let x = [t as f64, 1.0, -(t as f64)];
        c.begin(t, 0, &x, 0);
        c.collect(&mut Count(4), None, &mut no_idle()).unwrap();
        c.end();
        for w in 0..4 {
            let r = (w + 1) as f64;
            assert_eq!(c.payload(w, 0), &[r * x[0], r * x[1], r * x[2]]);
        }
    }
    assert!(c.shutdown(0, Duration::from_secs(5)).unwrap().is_empty());
    for h in threads {
        h.join().unwrap();
    }
}

/// A worker job for the supports: answers the first `len` values of rank · x (x of 5 values).
struct Prefix {
    len: usize,
}

impl WorkerJob for Prefix {
    fn accepts(&self, phase: usize, len: usize) -> bool {
        phase == 0 && len == 5
    }
    fn max_params_len(&self) -> usize {
        5
    }
    fn serve<T: WorkerTransport>(
        &mut self,
        params: &[f64],
        out: &mut Responder<'_, T>,
    ) -> Result<(), CommError> {
        let r = out.rank() as f64;
        out.send_result(0, self.len, |buf| scale_into(r, params, buf))
    }
}

/// Issue 20 §2: every worker sends its support once at start-up; rank 0 receives them in any
/// order, and from then on checks each worker's results against its own length
/// (support + extra; an empty support keeps the dense length). The support messages count in
/// the reconciliation at STOP like any other. A malformed support is an error naming the rank.
#[test]
fn supports_are_exchanged_once_and_set_each_workers_result_length() {
    let (hub, workers) = local::world(3);
    let supports: Vec<Vec<u32>> = vec![vec![0, 3], vec![], vec![1, 2, 4]];
    let threads: Vec<JoinHandle<i32>> = workers
        .into_iter()
        .zip(supports.clone())
        .map(|(w, cols)| {
            let schedule = StragglerSchedule::parse("none", 3, 1).unwrap();
            std::thread::spawn(move || {
                let len = if cols.is_empty() { 5 } else { cols.len() + 1 };
                let mut link = WorkerLink::new(w, schedule, 1);
                link.send_support(&cols);
                link.serve(&mut Prefix { len }).unwrap().stop_code
            })
        })
        .collect();
    let mut c = Collector::new(hub, spec(3, 5, 1000, 5000, OnDeadline::Wait));
    let got = c.receive_supports(5, 1, Duration::from_secs(5)).unwrap();
    assert_eq!(got, supports);
    // Workers answer with their own lengths: 3, 5 (dense) and 4 values.
    c.begin(0, 0, &[1.0, 2.0, 3.0, 4.0, 5.0], 0);
    let got = c.collect(&mut Count(3), None, &mut no_idle()).unwrap();
    assert_eq!(got, Collected::Decodable);
    c.end();
    assert_eq!(c.payload(0, 0), &[1.0, 2.0, 3.0]);
    assert_eq!(c.payload(1, 0), &[2.0, 4.0, 6.0, 8.0, 10.0]);
    assert_eq!(c.payload(2, 0), &[3.0, 6.0, 9.0, 12.0]);
    assert_eq!(c.round().rejected, 0);
    let unreconciled = c.shutdown(0, Duration::from_secs(5)).unwrap();
    assert!(unreconciled.is_empty(), "{unreconciled:?}");
    for t in threads {
        assert_eq!(t.join().unwrap(), 0);
    }

    // A support that is not increasing is refused, naming its rank.
    let (hub, workers) = local::world(1);
    let schedule = StragglerSchedule::parse("none", 1, 1).unwrap();
    let mut link = WorkerLink::new(workers.into_iter().next().unwrap(), schedule, 1);
    link.send_support(&[2, 1]);
    let mut c = Collector::new(hub, spec(1, 5, 1000, 5000, OnDeadline::Wait));
    let e = c
        .receive_supports(5, 1, Duration::from_secs(5))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rank 1") && e.contains("support column 1"),
        "{e}"
    );
}

#[test]
fn a_tree_group_reaches_rank_zero_as_one_combined_result_and_reconciles() {
    let (hub, workers) = local::world(3);
    let len = 2;
    let mut threads = Vec::new();
    for w in workers {
        let schedule = StragglerSchedule::parse("none", 3, 1).unwrap();
        threads.push(std::thread::spawn(move || {
            let mut job = Scale { len };
            if w.rank() == 1 {
                let spec = GroupSpec {
                    ranks: vec![1, 2, 3],
                    len,
                    wait: Duration::from_secs(5),
                    shutdown: Duration::from_secs(5),
                    compress: None,
                };
                // Every member, weight 1: the sum of the three results.
                let all = |set: &[usize]| (set.len() == 3).then(|| vec![1.0; 3]);
                let link = WorkerLink::new(Leader::new(w, spec, all), schedule, 1);
                link.serve(&mut job).unwrap().stop_code
            } else {
                let link = WorkerLink::new(Relay::new(w, 1), schedule, 1);
                link.serve(&mut job).unwrap().stop_code
            }
        }));
    }
    let mut s = spec(3, len, 1000, 5000, OnDeadline::Wait);
    s.result_len = vec![vec![len + 1, len, len]];
    s.relayed = vec![false, true, true];
    let mut c = Collector::new(hub, s);
    for it in 0..3u64 {
        let x = [1.0 + it as f64, 2.0];
        c.begin(it, 0, &x, 0);
        let got = c.collect(&mut Count(1), None, &mut no_idle()).unwrap();
        assert_eq!(got, Collected::Decodable);
        c.end();
        // Only the leader answered rank 0: (1 + 2 + 3) · x and the member mask.
        assert_eq!(c.round().responders[0], vec![0]);
        assert_eq!(c.payload(0, 0), &[6.0 * x[0], 6.0 * x[1], 7.0]);
        assert_eq!(c.round().bytes_in, ((HEADER_LEN + len + 1) * 8) as f64);
    }
    assert!(c.shutdown(0, Duration::from_secs(5)).unwrap().is_empty());
    for t in threads {
        assert_eq!(t.join().unwrap(), 0);
    }
}
