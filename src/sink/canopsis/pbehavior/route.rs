//! Which of Canopsis's pbehavior routes downtimes take.
//!
//! `canopsis_downtime_route` names one of three routes, newest first: the
//! connector route (Canopsis 24.04+: pbehaviors merged by window and
//! comment, comment inline), the bulk route (arrays answered 207 item by
//! item) and the single route (one pbehavior per request). A Canopsis that
//! lacks the configured one (a 404 from Canopsis, or app-info telling a
//! version older than 24.04 for the connector route) gets the next older
//! route instead, for as long as the connector runs: [`Learnt`] remembers
//! it for every lane, so the change is logged once.

/// The shape of a downtime route, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `/api/v4/pbehaviors`: one pbehavior per request, its comment apart.
    Single,
    /// `/api/v4/bulk/pbehaviors`: arrays of pbehaviors, comments apart.
    Bulk,
    /// `/api/v4/bulk/connector-pbehaviors`: arrays of (entities, window,
    /// comment), merged by Canopsis into one pbehavior per (origin, tstart,
    /// tstop, comment).
    Connector,
}

const SINGLE: &str = "/pbehaviors";
const BULK: &str = "/bulk/pbehaviors";
const CONNECTOR: &str = "/bulk/connector-pbehaviors";

/// The first Canopsis with the connector route (commit 9e7d299905,
/// release-24.04).
pub const CONNECTOR_SINCE: (u32, u32) = (24, 4);

impl Kind {
    /// The kind of a configured route, read from its end (a proxy prefix
    /// before `/api/v4` is kept); any other route is taken as a single one.
    pub fn of(route: &str) -> Kind {
        let r = route.trim_end_matches('/');
        if r.ends_with(CONNECTOR) {
            Kind::Connector
        } else if r.ends_with(BULK) {
            Kind::Bulk
        } else {
            Kind::Single
        }
    }

    /// Whether it takes arrays, so consecutive downtimes share requests.
    pub fn takes_arrays(self) -> bool {
        self != Kind::Single
    }

    /// The route to try on a Canopsis without this one.
    pub fn older(self) -> Option<Kind> {
        match self {
            Kind::Connector => Some(Kind::Bulk),
            Kind::Bulk => Some(Kind::Single),
            Kind::Single => None,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Kind::Single => SINGLE,
            Kind::Bulk => BULK,
            Kind::Connector => CONNECTOR,
        }
    }
}

/// `route` (a configured downtime route) turned into `kind`'s route, with
/// whatever comes before `/api/v4` kept; a route of none of the three
/// shapes is returned as it is.
pub fn path_for(route: &str, kind: Kind) -> String {
    let r = route.trim_end_matches('/');
    let base = [CONNECTOR, BULK, SINGLE]
        .iter()
        .find_map(|s| r.strip_suffix(s));
    match base {
        Some(base) if Kind::of(route) != kind => format!("{base}{}", kind.suffix()),
        _ => route.to_string(),
    }
}

/// Whether Canopsis `version` (app-info's `version`, such as `24.04.2`)
/// has the connector route; `None` when the version is not a number
/// (`development`): then the route is tried, and a 404 still falls back.
pub fn has_connector_route(version: &str) -> Option<bool> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse::<u32>().ok()?;
    let minor = parts
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    Some((major, minor) >= CONNECTOR_SINCE)
}

/// What the connector learnt about the routes Canopsis has, shared by the
/// lanes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Learnt {
    /// The newest kind Canopsis has, once it turned out not to have the
    /// configured one.
    cap: Option<Kind>,
    /// Whether app-info was read to check the connector route.
    pub version_checked: bool,
}

impl Learnt {
    /// The kind to use now for a configured `kind`.
    pub fn kind(&self, configured: Kind) -> Kind {
        self.cap.map_or(configured, |cap| cap.min(configured))
    }

    /// Canopsis has no `kind` route: the next older one from now on. The
    /// new kind when this changed anything (to be logged once), `None`
    /// when another lane learnt it first or no route is older.
    pub fn lacks(&mut self, kind: Kind) -> Option<Kind> {
        let older = kind.older()?;
        if self.cap.is_some_and(|cap| cap <= older) {
            return None;
        }
        self.cap = Some(older);
        Some(older)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_paths() {
        assert_eq!(Kind::of("/api/v4/pbehaviors"), Kind::Single);
        assert_eq!(Kind::of("/api/v4/bulk/pbehaviors/"), Kind::Bulk);
        assert_eq!(
            Kind::of("/canopsis/api/v4/bulk/connector-pbehaviors"),
            Kind::Connector
        );
        assert_eq!(
            path_for("/api/v4/bulk/pbehaviors", Kind::Single),
            "/api/v4/pbehaviors"
        );
        assert_eq!(
            path_for("/x/api/v4/bulk/connector-pbehaviors", Kind::Bulk),
            "/x/api/v4/bulk/pbehaviors"
        );
        assert_eq!(
            path_for("/api/v4/pbehaviors", Kind::Single),
            "/api/v4/pbehaviors"
        );
        assert_eq!(path_for("/custom", Kind::Single), "/custom");
        assert!(Kind::Connector.takes_arrays() && !Kind::Single.takes_arrays());
    }

    #[test]
    fn versions_with_the_connector_route() {
        assert_eq!(has_connector_route("24.04.2"), Some(true));
        assert_eq!(has_connector_route("24.10.0"), Some(true));
        assert_eq!(has_connector_route("25.04"), Some(true));
        assert_eq!(has_connector_route("23.10.7"), Some(false));
        assert_eq!(has_connector_route("22.10.4"), Some(false));
        assert_eq!(has_connector_route("4.6.1"), Some(false));
        assert_eq!(has_connector_route("development"), None);
    }

    #[test]
    fn a_missing_route_falls_back_once_for_every_lane() {
        let mut l = Learnt::default();
        assert_eq!(l.kind(Kind::Connector), Kind::Connector);
        assert_eq!(l.lacks(Kind::Connector), Some(Kind::Bulk));
        assert_eq!(l.lacks(Kind::Connector), None, "another lane learnt it");
        assert_eq!(l.kind(Kind::Connector), Kind::Bulk);
        assert_eq!(l.lacks(Kind::Bulk), Some(Kind::Single));
        assert_eq!(l.kind(Kind::Connector), Kind::Single);
        assert_eq!(l.lacks(Kind::Single), None);
        // A single route configured stays single.
        assert_eq!(Learnt::default().kind(Kind::Single), Kind::Single);
    }
}
