//! What the filters take from the parameters: accepted categories,
//! elements and states, groups, pollers, authors, name patterns,
//! severities, dedup. The same for every output.

use super::reader::{join, split_list};
use super::{NameList, ParamValue, Reader, SeverityOp, DEFAULT_HOST_CHANGE_DELTA};
use crate::event::{Category, ElementKind};
use crate::luapattern::Pattern;

/// Everything the filter needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    /// Accepted host states (`host_status`).
    pub host_status: Vec<i64>,
    /// Accepted service states (`service_status`).
    pub service_status: Vec<i64>,
    /// Accepted host states for acknowledgements (`ack_host_status`).
    pub ack_host_status: Vec<i64>,
    /// Accepted service states for acknowledgements (`ack_service_status`).
    pub ack_service_status: Vec<i64>,
    /// Accepted host states for downtimes (`dt_host_status`).
    pub dt_host_status: Vec<i64>,
    /// Accepted service states for downtimes (`dt_service_status`).
    pub dt_service_status: Vec<i64>,
    /// `hard_only`: 1 sends HARD states only.
    pub hard_only: bool,
    /// `acknowledged`: 0 skips acknowledged objects.
    pub acknowledged: bool,
    /// `in_downtime`: 0 skips objects in downtime.
    pub in_downtime: bool,
    /// `flapping`: 0 (the default) skips the statuses of flapping objects,
    /// as the Lua library does (`is_valid_event_flapping_state`, on host and
    /// service statuses only); 1 sends them.
    pub flapping: bool,
    /// `accepted_hostgroups`.
    pub accepted_hostgroups: NameList,
    /// `rejected_hostgroups`.
    pub rejected_hostgroups: NameList,
    /// `accepted_servicegroups`.
    pub accepted_servicegroups: NameList,
    /// `rejected_servicegroups`.
    pub rejected_servicegroups: NameList,
    /// `accepted_pollers`.
    pub accepted_pollers: NameList,
    /// `rejected_pollers`.
    pub rejected_pollers: NameList,
    /// `accepted_authors` (acknowledgements and downtimes).
    pub accepted_authors: NameList,
    /// `rejected_authors`.
    pub rejected_authors: NameList,
    /// Accepted BA states (`ba_status`).
    pub ba_status: Vec<i64>,
    /// `accepted_bvs`: business views, for BAs.
    pub accepted_bvs: NameList,
    /// `rejected_bvs`.
    pub rejected_bvs: NameList,
    /// `accepted_hosts`: Lua patterns, one of which the host name must
    /// match (none: every host).
    pub accepted_hosts: Vec<Pattern>,
    /// `accepted_services`: the same on the service description.
    pub accepted_services: Vec<Pattern>,
    /// `host_severity_threshold` with its operator.
    pub host_severity: Option<(i64, SeverityOp)>,
    /// `service_severity_threshold` with its operator.
    pub service_severity: Option<(i64, SeverityOp)>,
    /// `skip_anon_events`: 1 skips objects the cache cannot name.
    pub skip_anon_events: bool,
    /// `skip_nil_id`: 1 skips events without host/service id.
    pub skip_nil_id: bool,
    /// `enable_bam_host`: 1 sends the statuses of BAM's fake hosts, a
    /// service `ba_<id>` named after its BA.
    pub enable_bam_host: bool,
    /// `enable_host_status_dedup`: 1 sends host states only when they change.
    pub host_dedup: bool,
    /// `enable_service_status_dedup`.
    pub service_dedup: bool,
    /// `delta_host_status_change_allow`: how many seconds a host's
    /// `last_hard_state_change` may lie from its `last_check` (or
    /// `last_update`) for the status to report the change. A real engine
    /// stamps the change when it processes the result, a second or more
    /// after the check.
    pub host_change_delta: i64,
}

impl Reader<'_> {
    /// The filters' parameters.
    pub(super) fn filters(&mut self) -> FilterConfig {
        let host_status = self.states("host_status", "0,1,2", 2);
        let service_status = self.states("service_status", "0,1,2,3", 3);
        let host_default = join(&host_status);
        let service_default = join(&service_status);
        let filter = FilterConfig {
            ack_host_status: self.states("ack_host_status", &host_default, 2),
            ack_service_status: self.states("ack_service_status", &service_default, 3),
            dt_host_status: self.states("dt_host_status", &host_default, 2),
            dt_service_status: self.states("dt_service_status", &service_default, 3),
            host_status,
            service_status,
            hard_only: self.flag("hard_only", true),
            acknowledged: self.flag("acknowledged", false),
            in_downtime: self.flag("in_downtime", false),
            flapping: self.flag("flapping", false),
            accepted_hostgroups: self.names("accepted_hostgroups"),
            rejected_hostgroups: self.names("rejected_hostgroups"),
            accepted_servicegroups: self.names("accepted_servicegroups"),
            rejected_servicegroups: self.names("rejected_servicegroups"),
            accepted_pollers: self.names("accepted_pollers"),
            rejected_pollers: self.names("rejected_pollers"),
            accepted_authors: self.names("accepted_authors"),
            rejected_authors: self.names("rejected_authors"),
            ba_status: self.states("ba_status", "0,1,2", 3),
            accepted_bvs: self.names("accepted_bvs"),
            rejected_bvs: self.names("rejected_bvs"),
            accepted_hosts: self.patterns("accepted_hosts"),
            accepted_services: self.patterns("accepted_services"),
            host_severity: self.severity("host_severity_threshold", "host_severity_operator"),
            service_severity: self
                .severity("service_severity_threshold", "service_severity_operator"),
            skip_anon_events: self.flag("skip_anon_events", true),
            skip_nil_id: self.flag("skip_nil_id", true),
            enable_bam_host: self.flag("enable_bam_host", false),
            host_dedup: self.flag("enable_host_status_dedup", true),
            service_dedup: self.flag("enable_service_status_dedup", true),
            host_change_delta: self.int(
                "delta_host_status_change_allow",
                DEFAULT_HOST_CHANGE_DELTA,
                0,
                86_400,
                "a number of seconds between 0 and 86400",
            ),
        };
        for (a, b) in [
            ("accepted_hostgroups", "rejected_hostgroups"),
            ("accepted_servicegroups", "rejected_servicegroups"),
            ("accepted_pollers", "rejected_pollers"),
            ("accepted_authors", "rejected_authors"),
            ("accepted_bvs", "rejected_bvs"),
        ] {
            let set = |n: &str| matches!(self.params.get(n), Some(ParamValue::Str(s)) if !s.trim().is_empty());
            if set(a) && set(b) {
                self.notices.push(format!(
                    "parameters {a} and {b} are both set: an object must match {a} and not {b}"
                ));
            }
        }

        filter
    }

    pub(super) fn categories(&mut self) -> Vec<Category> {
        let mut out = Vec::new();
        for name in split_list(&self.string("accepted_categories", "neb")) {
            match Category::from_name(&name) {
                Some(c) => out.push(c),
                None if ["bbdo", "storage", "correlation", "dumper", "extcmd"]
                    .contains(&name.as_str()) =>
                {
                    self.notices.push(format!(
                        "accepted category '{name}' carries no event this connector sends: ignored"
                    ))
                }
                None => {
                    let got = ParamValue::Str(name);
                    self.fail(
                        "accepted_categories",
                        "a comma-separated list of categories (neb, bam)",
                        Some(&got),
                    );
                }
            }
        }
        out
    }

    pub(super) fn elements(&mut self) -> Vec<ElementKind> {
        let mut out = Vec::new();
        let list = self.string(
            "accepted_elements",
            "host_status,service_status,acknowledgement,downtime",
        );
        for name in split_list(&list) {
            match ElementKind::from_name(&name) {
                Some(e) => {
                    if !out.contains(&e) {
                        out.push(e)
                    }
                }
                None => self.notices.push(format!(
                    "accepted element '{name}' is not handled by this connector (host_status, service_status, acknowledgement, downtime, ba_status): ignored"
                )),
            }
        }
        if out.is_empty() {
            let got = ParamValue::Str(list);
            self.fail(
                "accepted_elements",
                "a comma-separated list among host_status,service_status,acknowledgement,downtime,ba_status",
                Some(&got),
            );
        }
        out
    }
}
