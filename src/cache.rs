//! What the connector asks of `broker_cache`.
//!
//! Names, groups, pollers and severities are not in status events; broker
//! keeps them in a per-output cache. The trait keeps the filter and the
//! formatter free of Lua: the module implements it over `broker_cache`,
//! tests over [`MemoryCache`].

use std::collections::HashMap;

/// A cached host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostInfo {
    /// `name`.
    pub name: Option<String>,
    /// `instance_id`: the poller that monitors it.
    pub instance_id: Option<u64>,
    /// `notes_url`.
    pub notes_url: Option<String>,
    /// `action_url`.
    pub action_url: Option<String>,
    /// Current `state`.
    pub state: Option<i64>,
}

/// A cached service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceInfo {
    /// `description`.
    pub description: Option<String>,
    /// `notes_url`.
    pub notes_url: Option<String>,
    /// `action_url`.
    pub action_url: Option<String>,
    /// Current `state`.
    pub state: Option<i64>,
}

/// Lookups in broker's cache. A miss is `None` or an empty list.
pub trait Cache {
    /// `get_host`.
    fn host(&mut self, host_id: u64) -> Option<HostInfo>;
    /// `get_service`.
    fn service(&mut self, host_id: u64, service_id: u64) -> Option<ServiceInfo>;
    /// Names from `get_hostgroups`.
    fn hostgroups(&mut self, host_id: u64) -> Vec<String>;
    /// Names from `get_servicegroups`.
    fn servicegroups(&mut self, host_id: u64, service_id: u64) -> Vec<String>;
    /// `get_instance_name`.
    fn poller_name(&mut self, instance_id: u64) -> Option<String>;
    /// `get_severity`.
    fn severity(&mut self, host_id: u64, service_id: Option<u64>) -> Option<i64>;
}

/// An in-memory cache, for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct MemoryCache {
    /// Hosts by id.
    pub hosts: HashMap<u64, HostInfo>,
    /// Services by (host id, service id).
    pub services: HashMap<(u64, u64), ServiceInfo>,
    /// Host group names by host id.
    pub hostgroups: HashMap<u64, Vec<String>>,
    /// Service group names by (host id, service id).
    pub servicegroups: HashMap<(u64, u64), Vec<String>>,
    /// Poller names by instance id.
    pub pollers: HashMap<u64, String>,
    /// Severities by (host id, service id or 0).
    pub severities: HashMap<(u64, u64), i64>,
}

impl Cache for MemoryCache {
    fn host(&mut self, host_id: u64) -> Option<HostInfo> {
        self.hosts.get(&host_id).cloned()
    }
    fn service(&mut self, host_id: u64, service_id: u64) -> Option<ServiceInfo> {
        self.services.get(&(host_id, service_id)).cloned()
    }
    fn hostgroups(&mut self, host_id: u64) -> Vec<String> {
        self.hostgroups.get(&host_id).cloned().unwrap_or_default()
    }
    fn servicegroups(&mut self, host_id: u64, service_id: u64) -> Vec<String> {
        self.servicegroups
            .get(&(host_id, service_id))
            .cloned()
            .unwrap_or_default()
    }
    fn poller_name(&mut self, instance_id: u64) -> Option<String> {
        self.pollers.get(&instance_id).cloned()
    }
    fn severity(&mut self, host_id: u64, service_id: Option<u64>) -> Option<i64> {
        self.severities
            .get(&(host_id, service_id.unwrap_or(0)))
            .copied()
    }
}
