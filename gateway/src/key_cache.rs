//! API keys by value: a request's bearer token is looked up here, in a map rebuilt when
//! the served topology (which holds the keys) changes.

use miroir_proto::keys::key_value;
use miroir_proto::pb;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Key values of the served topology's keys, rebuilt when the topology changes.
#[derive(Default)]
pub struct KeyCache {
    by_value: RwLock<(u64, HashMap<String, Arc<pb::ApiKey>>)>,
}

impl KeyCache {
    /// The key of `topology` whose value (derived from `master_key`) is `token`, if any.
    pub fn find(
        &self,
        topology: &pb::Topology,
        master_key: &str,
        token: &str,
    ) -> Option<Arc<pb::ApiKey>> {
        {
            let cached = self.by_value.read().unwrap_or_else(|e| e.into_inner());
            if cached.0 == topology.version && topology.version != 0 {
                return cached.1.get(token).cloned();
            }
        }
        let map: HashMap<String, Arc<pb::ApiKey>> = topology
            .keys
            .iter()
            .map(|k| (key_value(master_key, &k.uid), Arc::new(k.clone())))
            .collect();
        let found = map.get(token).cloned();
        *self.by_value.write().unwrap_or_else(|e| e.into_inner()) = (topology.version, map);
        found
    }
}
