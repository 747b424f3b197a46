//! A small seeded UDP relay on 127.0.0.1, between a sender and a receiver, standing in for a bad
//! network (the machines have no `tc netem`). Datagrams go both ways (SRT has ACK/NAK traffic back):
//! the "client" side is whoever sends to [`Relay::addr`] first, the other side is `target`.
//!
//! Impairments, each switchable while it runs through [`Relay::set`]: random loss, fixed delay,
//! jitter (which reorders), loss bursts, and a blackout (everything dropped). Counters say what
//! it did. Benches include this file with `#[path]`, so it uses only std and `rand`.
#![allow(dead_code)]

use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What the relay does to the datagrams it forwards, in both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    /// Probability (0..=1) that a datagram is lost.
    pub loss: f64,
    /// Added to every datagram, one way.
    pub delay: Duration,
    /// Extra delay drawn uniformly in `0..jitter` per datagram; datagrams overtake each other.
    pub jitter: Duration,
    /// Probability (0..=1) that a datagram starts a burst of `burst_len` lost datagrams.
    pub burst: f64,
    pub burst_len: u32,
    /// Everything is dropped while set.
    pub blackout: bool,
}

impl Impairment {
    pub fn loss(loss: f64, delay: Duration) -> Impairment {
        Impairment {
            loss,
            delay,
            ..Impairment::default()
        }
    }
}

/// What the relay did, per direction (`up`: client → target, `down`: target → client).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayCounts {
    pub up_in: u64,
    pub up_out: u64,
    pub down_in: u64,
    pub down_out: u64,
    pub lost_random: u64,
    pub lost_burst: u64,
    pub lost_blackout: u64,
}

#[derive(Default)]
struct Counters {
    up_in: AtomicU64,
    up_out: AtomicU64,
    down_in: AtomicU64,
    down_out: AtomicU64,
    lost_random: AtomicU64,
    lost_burst: AtomicU64,
    lost_blackout: AtomicU64,
}

struct Queued {
    due: Instant,
    order: u64,
    up: bool,
    data: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // BinaryHeap is a max-heap: the earliest due comes out first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.order).cmp(&(self.due, self.order))
    }
}

struct Shared {
    impairment: Mutex<Impairment>,
    rng: Mutex<(StdRng, u32)>,
    counters: Counters,
    queue: Mutex<(BinaryHeap<Queued>, u64)>,
    wake: Condvar,
    client: Mutex<Option<SocketAddr>>,
    stop: AtomicBool,
}

pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay forwarding to `target`; its own address is [`Relay::addr`].
    pub fn start(target: SocketAddr, seed: u64, impairment: Impairment) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay front");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind relay back");
        back.connect(target).expect("connect relay back");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let shared = Arc::new(Shared {
            impairment: Mutex::new(impairment),
            rng: Mutex::new((StdRng::seed_from_u64(seed), 0)),
            counters: Counters::default(),
            queue: Mutex::new((BinaryHeap::new(), 0)),
            wake: Condvar::new(),
            client: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let front = Arc::new(front);
        let back = Arc::new(back);
        let mut threads = Vec::new();
        {
            let (shared, front) = (shared.clone(), front.clone());
            threads.push(std::thread::spawn(move || read_loop(&shared, &front, true)));
        }
        {
            let (shared, back) = (shared.clone(), back.clone());
            threads.push(std::thread::spawn(move || read_loop(&shared, &back, false)));
        }
        {
            let shared = shared.clone();
            threads.push(std::thread::spawn(move || {
                send_loop(&shared, &front, &back)
            }));
        }
        Relay {
            addr,
            shared,
            threads,
        }
    }

    /// Where senders (or callers) send to reach `target` through the relay.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Changes the impairment from now on (datagrams already delayed keep their due time).
    pub fn set(&self, impairment: Impairment) {
        *self.shared.impairment.lock().unwrap() = impairment;
    }

    pub fn set_blackout(&self, on: bool) {
        self.shared.impairment.lock().unwrap().blackout = on;
    }

    pub fn counts(&self) -> RelayCounts {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RelayCounts {
            up_in: l(&c.up_in),
            up_out: l(&c.up_out),
            down_in: l(&c.down_in),
            down_out: l(&c.down_out),
            lost_random: l(&c.lost_random),
            lost_burst: l(&c.lost_burst),
            lost_blackout: l(&c.lost_blackout),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn read_loop(shared: &Shared, socket: &UdpSocket, up: bool) {
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            // Timeouts let the loop see `stop`; ICMP refusals (peer not up yet) are not fatal.
            Err(_) => continue,
        };
        let c = &shared.counters;
        if up {
            c.up_in.fetch_add(1, Ordering::Relaxed);
            *shared.client.lock().unwrap() = Some(from);
        } else {
            c.down_in.fetch_add(1, Ordering::Relaxed);
        }
        let imp = *shared.impairment.lock().unwrap();
        let extra = {
            let mut rng = shared.rng.lock().unwrap();
            let (rng, burst_left) = &mut *rng;
            if imp.blackout {
                c.lost_blackout.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if *burst_left > 0 {
                *burst_left -= 1;
                c.lost_burst.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if imp.burst > 0.0 && rng.gen_bool(imp.burst.min(1.0)) {
                *burst_left = imp.burst_len.saturating_sub(1);
                c.lost_burst.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if imp.loss > 0.0 && rng.gen_bool(imp.loss.min(1.0)) {
                c.lost_random.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if imp.jitter.is_zero() {
                Duration::ZERO
            } else {
                imp.jitter.mul_f64(rng.gen::<f64>())
            }
        };
        let item_due = Instant::now() + imp.delay + extra;
        let mut q = shared.queue.lock().unwrap();
        let order = q.1;
        q.1 += 1;
        q.0.push(Queued {
            due: item_due,
            order,
            up,
            data: buf[..n].to_vec(),
        });
        drop(q);
        shared.wake.notify_one();
    }
}

fn send_loop(shared: &Shared, front: &UdpSocket, back: &UdpSocket) {
    let mut q = shared.queue.lock().unwrap();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        match q.0.peek() {
            Some(item) if item.due <= now => {
                let item = q.0.pop().expect("peeked");
                drop(q);
                let c = &shared.counters;
                if item.up {
                    if back.send(&item.data).is_ok() {
                        c.up_out.fetch_add(1, Ordering::Relaxed);
                    }
                } else if let Some(client) = *shared.client.lock().unwrap() {
                    if front.send_to(&item.data, client).is_ok() {
                        c.down_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
                q = shared.queue.lock().unwrap();
            }
            Some(item) => {
                let wait = item.due - now;
                q = shared.wake.wait_timeout(q, wait).unwrap().0;
            }
            None => {
                q = shared
                    .wake
                    .wait_timeout(q, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
        }
    }
}
