//! A deterministic simulation of delivery: seeded random event streams,
//! lane counts and batch sizes, sent through [`Delivery`] to a simulated
//! peer (Canopsis, a JSON receiver or Mattermost) whose answers the real
//! sinks judge, in virtual time (nothing sleeps).
//!
//! The peer is faulty for a while, then healthy. While faulty it answers
//! each request at random with: full success, Canopsis's partial
//! `failed_events` (echoes modified as Canopsis does, sometimes beyond
//! recognition), every event failed, 5xx, 429 with Retry-After, 400
//! that proves nothing, 413 past a body limit for a while, a timeout (the request taken or not) or a hang; a
//! JSON receiver also refuses everything for a window. Some events are bad
//! (they break Canopsis's rules; a receiver or Mattermost refuses them
//! every time). After each run:
//! - each request carries each object's events in input order, and no
//!   request leaves an object in an older state than the newest the peer
//!   took (what is resent after a partial answer runs to the newest);
//! - when a batch is confirmed, each of its events was taken or
//!   dead-lettered, and each object's last word at the peer is its last
//!   event of the batch that is not bad; broker's acknowledgements (every
//!   event up to the first one not confirmed, across the lanes) only cover
//!   events taken or dead-lettered, and in the end cover them all;
//! - only bad events are dead-lettered;
//! - once the peer is healthy, no pause is taken, and everything is
//!   confirmed within the last pause begun before.
//!
//! `SIM_SEED=n` replays one seed; `SIM_SEEDS=n` sets how many run.

use super::{Answer, Delivery, Kind, Peer, Step};
use crate::backoff::MAX_BACKOFF;
use crate::batch::Part;
use crate::config::Framing;
use crate::sink::{canopsis, mattermost, webhook, Verdict};
use crate::transport::Response;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Input {
    o: u64,
    n: u64,
    bad: bool,
}

/// The document of an input, as the sink would carry it.
fn document(kind: Kind, e: Input) -> String {
    match kind {
        Kind::Canopsis => {
            let state = if e.bad { json!("abc") } else { json!(e.n % 4) };
            json!({"event_type":"check","state":state,"connector":"centreon","connector_name":"c1",
                "component":format!("host{}", e.o),"resource":"svc","long_output":e.n,"o":e.o,"n":e.n})
            .to_string()
        }
        _ => json!({"text":format!("{}/{}", e.o, e.n),"o":e.o,"n":e.n,"bad":e.bad}).to_string(),
    }
}

fn parse(doc: &[u8]) -> Input {
    let v: Value = serde_json::from_slice(doc).expect("a document of the simulation");
    Input {
        o: v["o"].as_u64().unwrap(),
        n: v["n"].as_u64().unwrap(),
        bad: v["bad"].as_bool().unwrap_or(v["state"] == "abc"),
    }
}

fn events_of(kind: Kind, body: &[u8]) -> Vec<Input> {
    match kind {
        Kind::Mattermost => vec![parse(body)],
        Kind::Canopsis => Framing::Array
            .items(body)
            .unwrap()
            .into_iter()
            .map(parse)
            .collect(),
        Kind::Documents(f) => f.items(body).unwrap().into_iter().map(parse).collect(),
    }
}

/// The simulated peer, and what it saw.
struct World {
    kind: Kind,
    rng: Rng,
    /// Faulty before, healthy from then on.
    heal: Duration,
    /// A JSON receiver refuses everything in this window; Canopsis, more
    /// than `too_large` events at once.
    refuse_all: (Duration, Duration),
    too_large: usize,
    /// The batch being sent was split: its first half may leave an object
    /// older until the second is taken (checked when it is confirmed).
    split: bool,
    /// Requests that left an object older than the newest taken.
    regressions: u64,
    /// Per object: the newest event taken, the last taken.
    newest: HashMap<u64, u64>,
    last: HashMap<u64, u64>,
    taken: HashMap<(u64, u64), u32>,
    dead: HashMap<(u64, u64), u32>,
}

impl World {
    /// The peer takes `events`, in order; `whole` when they are all the
    /// request carried (a partial answer may leave an object older: the
    /// peer's doing, which the resend must repair); `told` when its answer
    /// tells the sender (a request taken but never answered may be split
    /// afterwards, and its first half leave an object older until the
    /// second half is taken: only the confirmation check covers that).
    fn take(&mut self, events: &[Input], whole: bool, told: bool) -> Result<(), String> {
        let whole = whole && !self.split;
        let mut last_here: HashMap<u64, u64> = HashMap::new();
        for e in events {
            if e.bad && self.kind == Kind::Canopsis {
                return Err(format!("Canopsis got {e:?}, which breaks its rules"));
            }
            if let Some(prev) = last_here.insert(e.o, e.n) {
                if prev >= e.n {
                    return Err(format!(
                        "object {}: {} sent after {prev} in one request",
                        e.o, e.n
                    ));
                }
            }
            *self.taken.entry((e.o, e.n)).or_default() += 1;
            self.last.insert(e.o, e.n);
        }
        for (o, n) in last_here {
            let newest = self.newest.entry(o).or_default();
            if n < *newest {
                self.regressions += 1;
            }
            if whole && n < *newest {
                return Err(format!(
                    "{:?}: object {o}: the peer is left at {n} while it took {newest} already",
                    self.kind
                ));
            }
            if told {
                *newest = (*newest).max(n);
            }
        }
        Ok(())
    }

    /// The answer to `body` sent at `now`: how long it takes, and what
    /// comes back.
    fn answer(
        &mut self,
        now: Duration,
        body: &[u8],
    ) -> Result<(Duration, Result<Response, String>), String> {
        let latency = Duration::from_millis(1 + self.rng.below(50));
        let events = events_of(self.kind, body);
        let bad = events.iter().any(|e| e.bad);
        let ok = |status: u16, body: String| Ok(Response::new(status, body));
        if matches!(self.kind, Kind::Documents(_))
            && now >= self.refuse_all.0
            && now < self.refuse_all.1.min(self.heal)
        {
            return Ok((latency, ok(400, "{\"error\":\"no codec\"}".into())));
        }
        // A proxy's body limit, for a while: too many events at once.
        if self.kind == Kind::Canopsis
            && events.len() > self.too_large
            && now >= self.refuse_all.0
            && now < self.refuse_all.1.min(self.heal)
        {
            return Ok((
                latency,
                ok(413, "{\"error\":\"request entity too large\"}".into()),
            ));
        }
        if now >= self.heal || !self.rng.chance(65) {
            return Ok((latency, self.healthy(&events, bad)?));
        }
        let roll = self.rng.below(100);
        let answer = match (self.kind, roll) {
            (Kind::Canopsis, 0..=29) if !events.is_empty() => {
                let failed_all = roll >= 22;
                let mut sent = Vec::new();
                let mut failed = Vec::new();
                let first = self.rng.below(events.len() as u64) as usize;
                for (i, e) in events.iter().enumerate() {
                    let fails = failed_all || i == first || (i > first && self.rng.chance(20));
                    if fails {
                        failed.push(*e);
                    } else {
                        sent.push(*e);
                    }
                }
                self.take(&sent, false, true)?;
                let echo: Vec<Value> = failed
                    .iter()
                    .map(|e| {
                        let mut v: Value = serde_json::from_str(&document(self.kind, *e)).unwrap();
                        v["author"] = json!("root");
                        v["role"] = json!("admin");
                        v["long_output"] = json!("");
                        if self.rng.chance(10) {
                            v["output"] = json!("beyond recognition");
                        }
                        v
                    })
                    .collect();
                let body = json!({"sent_events": vec![json!({}); sent.len()], "failed_events": echo, "retry_events": []});
                ok(200, body.to_string())
            }
            (_, 0..=44) => ok(500 + self.rng.below(4) as u16, "oops".into()),
            (_, 45..=59) => {
                let mut r = Response::new(429, String::new());
                r.retry_after = Some(Duration::from_secs(1 + self.rng.below(5)));
                Ok(r)
            }
            (_, 60..=69) => {
                if self.rng.chance(50) && !(bad && self.kind != Kind::Canopsis) {
                    self.take(&events, true, false)?;
                }
                return Ok((Duration::from_secs(30), Err("timed out".into())));
            }
            (_, 70..=74) => return Ok((Duration::from_secs(60), Err("hung until stopped".into()))),
            (Kind::Canopsis, _) => ok(400, "{\"error\":\"request has invalid structure\"}".into()),
            (Kind::Mattermost, 75..=84) => ok(400, "<html>Bad Request</html>".into()),
            (Kind::Mattermost, _) => ok(
                400,
                "{\"id\":\"web.incoming_webhook.invalid.app_error\",\"message\":\"Invalid webhook.\"}".into(),
            ),
            (Kind::Documents(_), _) => ok(503, String::new()),
        };
        Ok((latency, answer))
    }

    /// A healthy peer's answer: bad events refused (Canopsis never gets
    /// one), the others taken.
    fn healthy(&mut self, events: &[Input], bad: bool) -> Result<Result<Response, String>, String> {
        if bad {
            return Ok(Ok(match self.kind {
                Kind::Mattermost => Response::new(
                    400,
                    "{\"id\":\"web.incoming_webhook.text.app_error\",\"message\":\"No text specified\"}".into(),
                ),
                _ => Response::new(400, "{\"error\":\"bad document\"}".into()),
            }));
        }
        self.take(events, true, true)?;
        let body = match self.kind {
            Kind::Canopsis => json!({"sent_events": vec![json!({}); events.len()], "failed_events": [], "retry_events": []}).to_string(),
            _ => "ok".into(),
        };
        Ok(Ok(Response::new(200, body)))
    }

    fn judge(&self, resp: &Response) -> Verdict {
        match self.kind {
            Kind::Canopsis => canopsis::judge_events(resp),
            Kind::Documents(_) => webhook::judge(resp),
            Kind::Mattermost => mattermost::judge(resp),
        }
    }
}

/// The worker's pause after a failure, as [`crate::backoff`] and
/// `Worker::failed` pick it (without jitter).
fn pause(attempt: &mut u32, config_fault: bool, hint: Option<Duration>) -> Duration {
    let step = (Duration::from_millis(20) * (1u32 << (*attempt).min(12))).min(MAX_BACKOFF);
    *attempt += 1;
    let mut delay = match hint {
        Some(h) => h.min(MAX_BACKOFF).max(step),
        None => step,
    };
    if config_fault {
        delay = delay.max(Duration::from_secs(30));
    }
    delay
}

struct Lane {
    batches: VecDeque<Vec<Input>>,
    clock: Duration,
    current: Option<(Vec<Input>, Delivery)>,
    attempt: u32,
    /// When its last request was sent.
    sent_at: Duration,
    /// Its batch was split.
    split: bool,
}

/// What a run went through, for the summary line.
#[derive(Default, Debug)]
struct Tally {
    requests: u64,
    pauses: u64,
    dead: u64,
    events: u64,
    regressions: u64,
}

fn requests_of(kind: Kind, batch: &[Input]) -> VecDeque<Part> {
    let docs: Vec<String> = batch.iter().map(|e| document(kind, *e)).collect();
    match kind {
        Kind::Mattermost => docs.into_iter().map(|d| (d.into_bytes(), 1)).collect(),
        Kind::Canopsis => VecDeque::from([(
            Framing::Array.join(docs.iter().map(|d| d.as_bytes())),
            docs.len(),
        )]),
        Kind::Documents(f) => {
            VecDeque::from([(f.join(docs.iter().map(|d| d.as_bytes())), docs.len())])
        }
    }
}

fn run(seed: u64) -> Result<Tally, String> {
    let mut rng = Rng::new(seed);
    let kind = match rng.below(4) {
        0 | 1 => Kind::Canopsis,
        2 => Kind::Documents(if rng.chance(50) {
            Framing::Array
        } else {
            Framing::Lines
        }),
        _ => Kind::Mattermost,
    };
    let peer = Peer {
        kind,
        name: "the peer",
        where_to_look: "everything",
    };
    let lanes_n = if kind == Kind::Mattermost {
        1
    } else {
        1 + rng.below(4) as usize
    };
    let objects = 1 + rng.below(6);
    let count = 1 + rng.below(60);
    let max_batch = 1 + rng.below(20) as usize;
    let bad_percent = rng.below(15);
    let mut next_n: HashMap<u64, u64> = HashMap::new();
    let mut per_lane: Vec<Vec<Input>> = vec![Vec::new(); lanes_n];
    let mut last_good: HashMap<u64, u64> = HashMap::new();
    // Broker's view: events in order, confirmed by their lane, and
    // acknowledged once every event before them is confirmed.
    let mut stream: Vec<Input> = Vec::new();
    for _ in 0..count {
        let o = rng.below(objects);
        let n = next_n.entry(o).or_default();
        *n += 1;
        let e = Input {
            o,
            n: *n,
            bad: rng.chance(bad_percent),
        };
        if !e.bad {
            last_good.insert(o, e.n);
        }
        stream.push(e);
        per_lane[(o as usize) % lanes_n].push(e);
    }
    let mut lanes: Vec<Lane> = per_lane
        .into_iter()
        .map(|events| {
            let mut batches = VecDeque::new();
            let mut rest = events.as_slice();
            while !rest.is_empty() {
                let size = (1 + rng.below(max_batch as u64) as usize).min(rest.len());
                batches.push_back(rest[..size].to_vec());
                rest = &rest[size..];
            }
            Lane {
                batches,
                clock: Duration::ZERO,
                current: None,
                attempt: 0,
                sent_at: Duration::ZERO,
                split: false,
            }
        })
        .collect();
    let heal = Duration::from_millis(rng.below(600_000));
    let window_start = Duration::from_millis(rng.below(heal.as_millis() as u64 + 1));
    let mut world = World {
        kind,
        rng: Rng::new(seed ^ 0x5eed),
        heal,
        refuse_all: (
            window_start,
            window_start + Duration::from_millis(rng.below(120_000)),
        ),
        too_large: 1 + rng.below(8) as usize,
        split: false,
        regressions: 0,
        newest: HashMap::new(),
        last: HashMap::new(),
        taken: HashMap::new(),
        dead: HashMap::new(),
    };
    let seq_of: HashMap<(u64, u64), usize> = stream
        .iter()
        .enumerate()
        .map(|(seq, e)| ((e.o, e.n), seq))
        .collect();
    let mut confirmed = vec![false; stream.len()];
    let mut acked = 0;
    let base = Instant::now();
    let mut tally = Tally {
        events: count,
        ..Tally::default()
    };
    // The longest a lane may have to wait, once the peer is healthy, for a
    // pause or request begun before.
    let grace = MAX_BACKOFF + Duration::from_secs(61);
    let mut steps = 0u64;
    let trace = std::env::var("SIM_TRACE").is_ok();
    while let Some(i) = (0..lanes.len())
        .filter(|&i| lanes[i].current.is_some() || !lanes[i].batches.is_empty())
        .min_by_key(|&i| lanes[i].clock)
    {
        steps += 1;
        if steps > 200_000 {
            return Err("stalled: no end after 200000 steps".into());
        }
        let lane = &mut lanes[i];
        if lane.current.is_none() {
            let batch = lane.batches.pop_front().unwrap();
            let d = Delivery::new(peer, requests_of(kind, &batch));
            lane.current = Some((batch, d));
        }
        let (batch, d) = lane.current.as_mut().unwrap();
        let now = base + lane.clock;
        match d.next(now) {
            Step::Done => {
                let mut last_here: HashMap<u64, u64> = HashMap::new();
                for e in batch.iter() {
                    let key = (e.o, e.n);
                    let handled = world.taken.contains_key(&key) || world.dead.contains_key(&key);
                    if !handled {
                        return Err(format!("confirmed {e:?}, neither taken nor dead-lettered"));
                    }
                    if !e.bad {
                        last_here.insert(e.o, e.n);
                    }
                }
                for (o, n) in last_here {
                    if world.last.get(&o) != Some(&n) {
                        return Err(format!(
                            "batch confirmed with object {o} at {:?} at the peer, not {n}",
                            world.last.get(&o)
                        ));
                    }
                }
                if lane.clock
                    > heal
                        + grace
                        + Duration::from_secs(5)
                        + Duration::from_millis(60) * tally.requests as u32
                {
                    return Err(format!(
                        "a batch was confirmed at {:?}, long after the peer healed at {heal:?}",
                        lane.clock
                    ));
                }
                for e in batch.iter() {
                    confirmed[seq_of[&(e.o, e.n)]] = true;
                }
                while acked < stream.len() && confirmed[acked] {
                    let e = stream[acked];
                    let key = (e.o, e.n);
                    if !world.taken.contains_key(&key) && !world.dead.contains_key(&key) {
                        return Err(format!(
                            "acknowledged {e:?}, neither taken nor dead-lettered"
                        ));
                    }
                    acked += 1;
                }
                lane.current = None;
                lane.split = false;
            }
            // The only note: a request split in two.
            Step::Note(_) => lane.split = true,
            Step::DeadLetter { event, proof } => {
                let e = parse(&event);
                if !e.bad {
                    return Err(format!("{e:?} dead-lettered without proof: {proof}"));
                }
                *world.dead.entry((e.o, e.n)).or_default() += 1;
                tally.dead += 1;
            }
            Step::Pause {
                config_fault, hint, ..
            } => {
                if lane.sent_at >= heal {
                    return Err(format!(
                        "paused at {:?} after a request sent to a healthy peer",
                        lane.clock
                    ));
                }
                tally.pauses += 1;
                lane.clock += pause(&mut lane.attempt, config_fault, hint);
            }
            Step::Send { body, count } => {
                tally.requests += 1;
                lane.sent_at = lane.clock;
                world.split = lane.split;
                let (latency, resp) = world.answer(lane.clock, body)?;
                if trace {
                    let evs: Vec<(u64, u64, bool)> = events_of(kind, body)
                        .iter()
                        .map(|e| (e.o, e.n, e.bad))
                        .collect();
                    eprintln!(
                        "lane {i} t={:?} sent {evs:?} -> {:?}",
                        lane.clock,
                        resp.as_ref()
                            .map(|r| (r.status, r.body.chars().take(80).collect::<String>()))
                    );
                }
                lane.clock += latency;
                let answer = match resp {
                    Ok(resp) => {
                        let verdict = world.judge(&resp);
                        if verdict == Verdict::Delivered && count > 0 {
                            lane.attempt = 0;
                        }
                        Answer::Peer(verdict)
                    }
                    Err(reason) => Answer::Failed {
                        reason,
                        config_fault: false,
                    },
                };
                d.answered(base + lane.clock, answer);
            }
        }
    }
    if acked != stream.len() {
        return Err(format!("{} of {} events acknowledged", acked, stream.len()));
    }
    for (o, n) in &last_good {
        if world.last.get(o) != Some(n) {
            return Err(format!(
                "object {o} left at {:?} at the peer, its last event is {n}",
                world.last.get(o)
            ));
        }
    }
    tally.regressions = world.regressions;
    Ok(tally)
}

#[test]
fn thousands_of_seeded_runs_keep_order_proof_and_progress() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(3000);
            (1..=n).collect()
        }
    };
    let mut total = Tally::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        match run(seed) {
            Ok(t) => {
                total.requests += t.requests;
                total.pauses += t.pauses;
                total.dead += t.dead;
                total.events += t.events;
                total.regressions += t.regressions;
            }
            Err(e) => failures.push(format!("seed {seed}: {e} (replay: SIM_SEED={seed})")),
        }
    }
    println!(
        "simulation: {} seeds, {} events, {} requests, {} pauses, {} dead-lettered with proof, {} transient regressions (split halves, unanswered requests, partial answers), {} failed",
        seeds.len(),
        total.events,
        total.requests,
        total.pauses,
        total.dead,
        total.regressions,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
