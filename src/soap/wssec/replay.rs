//! MessageIDs seen: this process's memory and the one shared by the instances on a store.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// MessageIDs seen by every instance serving one store (PostgreSQL), behind this process's
/// [`ReplayCache`]. Implemented in the wiring (`app`), so `soap` names no store type.
pub trait SharedReplay: Send + Sync {
    /// Records `message_id` as seen until `until` (unix seconds): `Ok(true)` when no instance saw
    /// it within its window before `now`, `Ok(false)` when one did, `Err` when that cannot be
    /// known now (the request is then not answered: fail closed).
    fn claim(&self, message_id: &str, now: i64, until: i64) -> Result<bool, String>;
}

/// A bounded memory of MessageIDs seen within their validity window.
pub struct ReplayCache {
    pub(super) inner: Mutex<ReplayInner>,
    capacity: usize,
    shared: Option<std::sync::Arc<dyn SharedReplay>>,
}

pub(super) struct ReplayInner {
    pub(super) seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` MessageIDs.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(ReplayInner {
                seen: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            shared: None,
        }
    }

    /// This cache in front of the MessageIDs every instance on the store has seen.
    pub fn with_shared(mut self, shared: std::sync::Arc<dyn SharedReplay>) -> ReplayCache {
        self.shared = Some(shared);
        self
    }

    /// The instances' shared memory behind this cache, if any.
    pub fn shared(&self) -> Option<&dyn SharedReplay> {
        self.shared.as_deref()
    }

    /// Forgets a MessageID recorded here whose request was not answered after all (the shared
    /// memory could not be asked), so a retry of it is judged afresh.
    pub fn forget(&self, id: &str) {
        if let Ok(mut g) = self.inner.lock() {
            g.seen.remove(id);
        }
    }

    /// Records a MessageID valid until `until` (unix seconds); false if it was already seen.
    pub fn check_and_insert(&self, id: &str, now: i64, until: i64) -> bool {
        let Ok(mut g) = self.inner.lock() else {
            return false;
        };
        while let Some((exp, _)) = g.order.front() {
            if *exp >= now && g.order.len() < self.capacity {
                break;
            }
            // Expired, or over capacity: forget the oldest entry. Over capacity a replay older than
            // the evicted entry could pass, but its Timestamp is then close to expiry anyway.
            if let Some((_, old)) = g.order.pop_front() {
                g.seen.remove(&old);
            }
        }
        if g.seen.get(id).is_some_and(|&exp| exp >= now) {
            return false;
        }
        g.seen.insert(id.to_owned(), until);
        // Keep `order` sorted enough: windows are similar, so appending is a good approximation.
        g.order.push_back((until, id.to_owned()));
        true
    }
}
