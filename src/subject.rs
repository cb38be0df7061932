//! The object an accepted event is about, resolved from broker's cache:
//! host, service, groups, poller, severity, BA ([`Subject`]), and what
//! templates read of it on demand ([`ObjectFields`]).
//!
//! Plain data: the filters make it (a subject is what they accept), the
//! renderer and every output read it; none of them owns it.

use crate::cache::{BaInfo, HostInfo, ServiceInfo};
use crate::event::Field;
use std::cell::OnceCell;
use std::fmt;

/// What the formatter needs about an accepted event's objects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subject {
    /// The host id.
    pub host_id: u64,
    /// The host name (its id when the cache has no name).
    pub host_name: String,
    /// Cached host fields.
    pub host: HostInfo,
    /// The service id and description (description = id when unknown).
    pub service: Option<(u64, String)>,
    /// Cached service fields.
    pub service_info: ServiceInfo,
    /// Host group names.
    pub hostgroups: Vec<String>,
    /// Service group names.
    pub servicegroups: Vec<String>,
    /// The poller's name.
    pub poller: Option<String>,
    /// The object's severity.
    pub severity: Option<i64>,
    /// A BA's id and cached fields.
    pub ba: Option<(u64, BaInfo)>,
    /// A BA's business views (when `accepted_bvs` or `rejected_bvs` is
    /// set).
    pub bvs: Vec<String>,
    /// Cache answers only a template reads, fetched when it first renders.
    pub objects: Kept<ObjectFields>,
    /// The formatter's rendering of what a status's JSON takes from this
    /// subject alone, a head and a tail (made once per remembered subject,
    /// for the connector's format and the object's kind).
    pub rendered: Kept<HeadTail>,
}

/// A head and a tail of JSON.
type HeadTail = (Box<[u8]>, Box<[u8]>);

impl Subject {
    /// The status's object's `notes_url` and `action_url`: the service's
    /// for a service status, else the host's.
    pub fn urls(&self, service: bool) -> (&Option<String>, &Option<String>) {
        if service {
            (&self.service_info.notes_url, &self.service_info.action_url)
        } else {
            (&self.host.notes_url, &self.host.action_url)
        }
    }
}

/// A value derived from a subject once, when first needed: not part of the
/// subject's value.
#[derive(Clone)]
pub struct Kept<T>(OnceCell<T>);

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept(OnceCell::new())
    }
}

impl<T> Kept<T> {
    /// The value, made by `make` the first time.
    pub fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(make)
    }
}

impl<T> PartialEq for Kept<T> {
    fn eq(&self, _: &Kept<T>) -> bool {
        true
    }
}

impl<T> fmt::Debug for Kept<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kept")
    }
}

/// Cache answers only templates need, kept with the subject they describe,
/// and what the template writes from them alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectFields {
    pub(crate) host: Fields,
    pub(crate) service: Fields,
    pub(crate) severity_host: Option<i64>,
    pub(crate) severity_service: Option<i64>,
    pub(crate) poller: Option<String>,
    pub(crate) bvs: Option<Vec<String>>,
    /// `{groups(hgalias,...)}`: empty on a broker without aliases.
    pub(crate) hostgroup_aliases: Vec<String>,
    /// [`crate::template::Template::render_objects`].
    pub(crate) written: Vec<Box<[u8]>>,
}

/// Cached host and service fields.
pub(crate) type Fields = Option<Vec<Option<Field>>>;
