//! Connections per client address (Kafka's `max.connections.per.ip` and
//! `max.connections.per.ip.overrides`), counted across every listener: a connection over the
//! limit of its address is closed as soon as it is accepted, before it is read, as Kafka's
//! `ConnectionQuotas` does. `max.connections` (per listener) is the listener's semaphore.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct ConnectionQuotas {
    per_ip_max: usize,
    overrides: HashMap<IpAddr, usize>,
    /// Open connections by address. An address leaves the map with its last connection, so
    /// its size is bounded by the open connections.
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it gives its slot back.
pub struct IpConnection {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl ConnectionQuotas {
    pub fn new(per_ip_max: usize, overrides: &[(IpAddr, usize)]) -> ConnectionQuotas {
        ConnectionQuotas {
            per_ip_max,
            overrides: overrides.iter().copied().collect(),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn limit(&self, ip: &IpAddr) -> usize {
        self.overrides.get(ip).copied().unwrap_or(self.per_ip_max)
    }

    /// Counts a new connection from `ip`, or None when `ip` is at its limit.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Option<IpConnection> {
        let limit = self.limit(&ip);
        let mut open = self.open.lock().expect("connection quotas lock");
        let count = open.entry(ip).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(IpConnection {
            quotas: self.clone(),
            ip,
        })
    }

    pub fn open_from(&self, ip: &IpAddr) -> usize {
        let open = self.open.lock().expect("connection quotas lock");
        open.get(ip).copied().unwrap_or(0)
    }
}

impl Drop for IpConnection {
    fn drop(&mut self) {
        let mut open = self.quotas.open.lock().expect("connection quotas lock");
        let count = open
            .get_mut(&self.ip)
            .expect("a counted connection has an entry");
        assert!(*count > 0, "connection count underflow for {}", self.ip);
        *count -= 1;
        if *count == 0 {
            open.remove(&self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_with_overrides() {
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        let quotas = Arc::new(ConnectionQuotas::new(2, &[(b, 3), (c, 0)]));
        let first = quotas.try_open(a).expect("1 of 2");
        let _second = quotas.try_open(a).expect("2 of 2");
        assert!(quotas.try_open(a).is_none(), "a third from a is refused");
        let from_b: Vec<_> = (0..3)
            .map(|_| quotas.try_open(b).expect("override 3"))
            .collect();
        assert!(quotas.try_open(b).is_none());
        assert!(
            quotas.try_open(c).is_none(),
            "an override of 0 refuses every connection"
        );
        drop(first);
        assert_eq!(quotas.open_from(&a), 1);
        assert!(
            quotas.try_open(a).is_some(),
            "a closed connection frees its slot"
        );
        drop(from_b);
        assert_eq!(quotas.open_from(&b), 0);
        assert!(
            quotas.open.lock().unwrap().get(&b).is_none(),
            "no entry without connections"
        );
        assert!(quotas.open.lock().unwrap().get(&c).is_none());
    }
}
