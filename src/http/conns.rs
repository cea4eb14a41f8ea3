//! The listener's connection budget: connections still in the TLS handshake and established
//! (authenticated) connections are counted apart, so neither kind can lock the other out.
//!
//! - A connection that has not finished its handshake holds one of `handshakes` slots, and one of
//!   `per_address` for its peer address (IPv6: its /64). When either is full, a new connection
//!   sheds the oldest connection still in the handshake there: whoever holds slots without
//!   completing a handshake (idle sockets, half-sent ClientHellos) makes room for the next
//!   arrival instead of making it wait until the handshake deadline, and an address with many
//!   such sockets only sheds its own first.
//! - An authenticated connection holds one of `connections` slots. When they are full, the
//!   connection idle the longest (no request in flight) is shed: it is closed gracefully, which
//!   for an idle HTTP/1.1 connection is at once. Only when every slot has a request in flight
//!   does a new connection wait (within its handshake deadline) for one to free.
//!
//! Shedding is a [`Notify`]: the connection's task sees it and closes itself.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// The budget's sizes, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Connections in the TLS handshake, in all.
    pub handshakes: usize,
    /// Connections in the TLS handshake from one peer address.
    pub per_address: usize,
    /// Established connections.
    pub connections: usize,
}

/// Shared by the accept loop and every connection task.
pub struct Budget {
    sizes: Sizes,
    inner: Mutex<Registry>,
    /// Woken when an established slot frees or a connection turns idle (sheddable).
    freed: Notify,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// In the handshake (or authenticated and waiting for a slot), by arrival: id order is age.
    handshaking: BTreeMap<u64, Pending>,
    per_address: HashMap<IpAddr, usize>,
    established: HashMap<u64, Established>,
    /// Advances on every change of activity, so "idle the longest" is the smallest `last`.
    clock: u64,
}

struct Pending {
    address: IpAddr,
    shed: Arc<Notify>,
    /// Finished its handshake: never shed for a newcomer (it is a real client waiting).
    authenticated: bool,
}

struct Established {
    busy: u32,
    last: u64,
    shed: Arc<Notify>,
}

/// The key a peer's handshakes are counted under: the address, an IPv6 one by its /64 (one
/// host usually has a whole /64 to pick from).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Budget {
    /// A budget of these sizes (each at least 1; `config` validates them).
    pub fn new(sizes: Sizes) -> Arc<Budget> {
        Arc::new(Budget {
            sizes,
            inner: Mutex::new(Registry::default()),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry is consistent after every statement: a panic elsewhere cannot leave it
        // half-changed, so a poisoned lock is used as it is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection that starts its handshake, shedding the oldest unauthenticated
    /// handshake of its address, or of all, where the budget is full. `None`: every slot it
    /// could take is held by an authenticated client waiting for a connection slot; the new
    /// connection is refused.
    pub fn arrive(self: &Arc<Self>, peer: IpAddr) -> Option<Handshake> {
        let address = address_key(peer);
        let mut r = self.lock();
        let from_address = r.per_address.get(&address).copied().unwrap_or(0);
        if from_address >= self.sizes.per_address && !r.shed_oldest(Some(address)) {
            return None;
        }
        if r.handshaking.len() >= self.sizes.handshakes && !r.shed_oldest(None) {
            return None;
        }
        let id = r.next_id;
        r.next_id += 1;
        let shed = Arc::new(Notify::new());
        r.handshaking.insert(
            id,
            Pending {
                address,
                shed: shed.clone(),
                authenticated: false,
            },
        );
        *r.per_address.entry(address).or_default() += 1;
        Some(Handshake {
            budget: self.clone(),
            id,
            shed,
        })
    }

    /// Connections in the handshake and established, for tests and logs.
    pub fn counts(&self) -> (usize, usize) {
        let r = self.lock();
        (r.handshaking.len(), r.established.len())
    }
}

impl Registry {
    /// Sheds the oldest unauthenticated handshake (of `address`, when given); false if none.
    fn shed_oldest(&mut self, address: Option<IpAddr>) -> bool {
        let victim = self
            .handshaking
            .iter()
            .find(|(_, p)| !p.authenticated && address.is_none_or(|a| p.address == a))
            .map(|(id, _)| *id);
        match victim {
            Some(id) => {
                self.remove_pending(id);
                true
            }
            None => false,
        }
    }

    fn remove_pending(&mut self, id: u64) {
        if let Some(p) = self.handshaking.remove(&id) {
            p.shed.notify_one();
            if let Some(n) = self.per_address.get_mut(&p.address) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_address.remove(&p.address);
                }
            }
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// A connection in its handshake. Dropping it (a failed or shed handshake) frees its slots.
pub struct Handshake {
    budget: Arc<Budget>,
    id: u64,
    /// Notified when this connection is shed.
    pub shed: Arc<Notify>,
}

impl Handshake {
    /// The handshake is done: waits for a connection slot, shedding the connection idle the
    /// longest when all are taken. `None`: this connection was shed meanwhile. The caller bounds
    /// the wait (the handshake deadline).
    pub async fn establish(self) -> Option<Conn> {
        {
            let mut r = self.budget.lock();
            match r.handshaking.get_mut(&self.id) {
                Some(p) => p.authenticated = true,
                // Shed between the end of the handshake and here.
                None => return None,
            }
        }
        loop {
            // Registered before the attempt, so a slot freed in between is not missed.
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(conn) = self.try_establish() {
                return Some(conn);
            }
            tokio::select! {
                _ = freed => {}
                _ = self.shed.notified() => return None,
            }
        }
    }

    fn try_establish(&self) -> Option<Conn> {
        let mut r = self.budget.lock();
        if !r.handshaking.contains_key(&self.id) {
            return None;
        }
        if r.established.len() >= self.budget.sizes.connections {
            let idle = r
                .established
                .iter()
                .filter(|(_, e)| e.busy == 0)
                .min_by_key(|(_, e)| e.last)
                .map(|(id, _)| *id);
            // The shed connection gives its slot up now; it closes as soon as its task runs.
            let victim = r.established.remove(&idle?)?;
            victim.shed.notify_one();
        }
        // From here on it holds a connection slot instead of a handshake slot.
        if let Some(p) = r.handshaking.remove(&self.id) {
            if let Some(n) = r.per_address.get_mut(&p.address) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    r.per_address.remove(&p.address);
                }
            }
        }
        let last = r.tick();
        let shed = Arc::new(Notify::new());
        r.established.insert(
            self.id,
            Established {
                busy: 0,
                last,
                shed: shed.clone(),
            },
        );
        Some(Conn {
            budget: self.budget.clone(),
            id: self.id,
            shed,
        })
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut r = self.budget.lock();
        if let Some(p) = r.handshaking.get(&self.id) {
            // Removing it must not notify this connection's own shed: it is going anyway.
            let address = p.address;
            r.handshaking.remove(&self.id);
            if let Some(n) = r.per_address.get_mut(&address) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    r.per_address.remove(&address);
                }
            }
        }
    }
}

/// An established connection's slot; freed when dropped.
pub struct Conn {
    budget: Arc<Budget>,
    id: u64,
    /// Notified when this connection is to close (it was idle the longest and a newcomer needed
    /// its slot).
    pub shed: Arc<Notify>,
}

impl Conn {
    /// What the connection's requests mark themselves busy with.
    pub fn activity(&self) -> Activity {
        Activity {
            budget: self.budget.clone(),
            id: self.id,
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let removed = self.budget.lock().established.remove(&self.id).is_some();
        if removed {
            self.budget.freed.notify_waiters();
        }
    }
}

/// Marks a connection busy while a request is in flight.
#[derive(Clone)]
pub struct Activity {
    budget: Arc<Budget>,
    id: u64,
}

impl Activity {
    /// Busy until the guard is dropped: the connection is not shed meanwhile.
    pub fn busy(&self) -> Busy {
        if let Some(e) = self.budget.lock().established.get_mut(&self.id) {
            e.busy += 1;
        }
        Busy(self.clone())
    }
}

/// See [`Activity::busy`].
pub struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        let budget = &self.0.budget;
        let idle = {
            let mut r = budget.lock();
            let last = r.tick();
            match r.established.get_mut(&self.0.id) {
                Some(e) => {
                    e.busy = e.busy.saturating_sub(1);
                    e.last = last;
                    e.busy == 0
                }
                None => false,
            }
        };
        if idle {
            // A newcomer waiting for a slot may shed this one now.
            budget.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    fn budget(handshakes: usize, per_address: usize, connections: usize) -> Arc<Budget> {
        Budget::new(Sizes {
            handshakes,
            per_address,
            connections,
        })
    }

    fn is_shed(n: &Notify) -> bool {
        let f = n.notified();
        tokio::pin!(f);
        // A stored permit (notify_one) completes it at once.
        f.as_mut().enable()
    }

    #[test]
    fn a_full_address_sheds_its_own_oldest_handshake_first() {
        let b = budget(10, 2, 4);
        let a1 = b.arrive(A).expect("a1");
        let other = b.arrive(B).expect("b1");
        let a2 = b.arrive(A).expect("a2");
        let a3 = b.arrive(A).expect("a3");
        assert!(is_shed(&a1.shed), "the address's oldest goes");
        assert!(!is_shed(&other.shed) && !is_shed(&a2.shed) && !is_shed(&a3.shed));
        drop(a1);
        assert_eq!(b.counts(), (3, 0));
    }

    #[test]
    fn a_full_budget_sheds_the_oldest_handshake_of_all() {
        let b = budget(2, 2, 4);
        let first = b.arrive(A).expect("first");
        let second = b.arrive(B).expect("second");
        let third = b.arrive(B).expect("third");
        assert!(is_shed(&first.shed));
        assert!(!is_shed(&second.shed) && !is_shed(&third.shed));
    }

    #[test]
    fn ipv6_peers_are_counted_by_their_slash_64() {
        let b = budget(10, 1, 4);
        let one = b.arrive("2001:db8::1".parse().expect("ip")).expect("one");
        let _two = b.arrive("2001:db8::2".parse().expect("ip")).expect("two");
        assert!(is_shed(&one.shed));
    }

    #[tokio::test]
    async fn an_idle_connection_makes_room_and_a_busy_one_does_not() {
        let b = budget(10, 10, 1);
        let first = b.arrive(A).expect("first").establish().await.expect("slot");
        let busy = first.activity().busy();
        let second = b.arrive(A).expect("second");
        // Every slot has a request in flight: the newcomer waits.
        let waiting = tokio::spawn(second.establish());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(!is_shed(&first.shed));
        drop(busy);
        let second = waiting
            .await
            .expect("task")
            .expect("slot once the first is idle");
        assert!(is_shed(&first.shed), "the idle connection was shed");
        assert_eq!(b.counts(), (0, 1));
        drop(first);
        drop(second);
        assert_eq!(b.counts(), (0, 0));
    }

    #[tokio::test]
    async fn an_authenticated_client_waiting_for_a_slot_is_not_shed_for_a_newcomer() {
        let b = budget(1, 1, 1);
        let _held = b.arrive(A).expect("held").establish().await.expect("slot");
        let _busy = _held.activity().busy();
        let waiting = b.arrive(A).expect("waiting");
        let shed = waiting.shed.clone();
        let task = tokio::spawn(waiting.establish());
        tokio::task::yield_now().await;
        assert!(
            b.arrive(A).is_none(),
            "no slot to shed: the newcomer is refused"
        );
        assert!(!is_shed(&shed));
        task.abort();
    }
}
