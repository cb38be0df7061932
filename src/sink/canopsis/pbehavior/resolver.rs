//! Learning what pbehaviors need from Canopsis, on the sender thread: the
//! reason and type ids (creating the reason when it is missing), whether
//! `color` is required, the version and which downtime route it has.

use super::outcome::{rights, Outcome};
use super::route::{self, Kind, Learnt};
use super::Ids;
use crate::config::DowntimeConfig;
use crate::logger::Logger;
use crate::transport::{Method, Request, Transport};
use serde_json::{json, Value};

/// Learns and caches reason and type ids, the Canopsis version and which
/// downtime route Canopsis has.
#[derive(Debug, Default)]
pub struct Resolver {
    ids: Option<Ids>,
    placeholder: bool,
    /// app-info's `version`, once read.
    version: Option<String>,
    /// Routes Canopsis turned out not to have.
    learnt: Learnt,
}

/// Page size for list lookups.
pub(super) const PAGE: usize = 100;

/// Pages read at most in one lookup: 10,000 reasons or types is far more
/// than any Canopsis holds, and a server that keeps announcing more pages
/// must not keep the sender (or a closing connector) busy.
pub(super) const MAX_PAGES: u64 = 100;

impl Resolver {
    /// A resolver; with `placeholder` (`send_data_test=1`) it answers fixed
    /// ids without asking Canopsis, as the Lua connector does.
    pub fn new(placeholder: bool) -> Resolver {
        Resolver {
            placeholder,
            ..Resolver::default()
        }
    }

    /// The kind of route downtimes take now (see [`route`]). Before the
    /// first use of the connector route, app-info tells whether this
    /// Canopsis has it (24.04 or later); when it does not, the bulk route
    /// is used instead, said once in the log.
    pub fn route(
        &mut self,
        t: &mut dyn Transport,
        cfg: &DowntimeConfig,
        log: &Logger,
    ) -> Result<Kind, Outcome> {
        let configured = Kind::of(&cfg.route);
        if configured == Kind::Connector
            && !self.placeholder
            && !self.learnt.version_checked
            && self.learnt.kind(configured) == Kind::Connector
        {
            let version = self.version(t)?;
            self.learnt.version_checked = true;
            if route::has_connector_route(&version) == Some(false) {
                if let Some(older) = self.learnt.lacks(Kind::Connector) {
                    log.error(format_args!(
                        "canopsis_downtime_route={} needs Canopsis {}.{:02} or later and this one is {version} (app-info): refused; downtimes go through {} instead",
                        cfg.route,
                        route::CONNECTOR_SINCE.0,
                        route::CONNECTOR_SINCE.1,
                        route::path_for(&cfg.route, older)
                    ));
                }
            }
        }
        Ok(self.learnt.kind(configured))
    }

    /// Canopsis answered 404 on `kind`'s route: the next older one from
    /// now on, for every lane, said once in the log.
    pub fn lacks(&mut self, kind: Kind, cfg: &DowntimeConfig, why: &str, log: &Logger) {
        if let Some(older) = self.learnt.lacks(kind) {
            log.warn(format_args!(
                "{} is not a route of this Canopsis ({why}): downtimes go through {} from now on",
                route::path_for(&cfg.route, kind),
                route::path_for(&cfg.route, older)
            ));
        }
    }

    /// Whether this Canopsis has the connector route, as far as the
    /// connector knows (app-info read once; a version it cannot read is
    /// given the benefit of the doubt, a 404 met is not).
    pub fn has_connector_route(&mut self, t: &mut dyn Transport) -> Result<bool, Outcome> {
        if self.placeholder || self.learnt.kind(Kind::Connector) != Kind::Connector {
            return Ok(false);
        }
        let version = self.version(t)?;
        Ok(route::has_connector_route(&version) != Some(false))
    }

    /// app-info's `version`, read once.
    fn version(&mut self, t: &mut dyn Transport) -> Result<String, Outcome> {
        if let Some(v) = &self.version {
            return Ok(v.clone());
        }
        let v = get_json(t, "/api/v4/app-info", "read on app-info")?;
        let version = v["version"].as_str().unwrap_or("").to_string();
        self.version = Some(version.clone());
        Ok(version)
    }

    /// Forgets the cached ids (after Canopsis said they do not exist).
    pub fn forget(&mut self) {
        self.ids = None;
    }

    /// The ids, from the cache or from Canopsis.
    pub fn ids(&mut self, t: &mut dyn Transport, cfg: &DowntimeConfig) -> Result<Ids, Outcome> {
        if let Some(ids) = &self.ids {
            return Ok(ids.clone());
        }
        let ids = if self.placeholder {
            Ids {
                reason: "send_data_test_reason".into(),
                kind: "send_data_test_type".into(),
                color_required: false,
            }
        } else {
            let reason = match find(
                t,
                &cfg.reason_route,
                &cfg.reason_name,
                "read on pbehavior reasons (api_pbehaviorreason)",
            )? {
                Some(id) => id,
                None => create_reason(t, cfg)?,
            };
            let kind = find(
                t,
                &cfg.type_route,
                &cfg.type_name,
                "read on pbehavior types (api_pbehaviortype)",
            )?
            .ok_or_else(|| Outcome::Retry {
                reason: format!(
                    "pbehavior type '{}' does not exist in Canopsis (canopsis_downtime_type_name)",
                    cfg.type_name
                ),
                config_fault: true,
            })?;
            let version = self.version(t)?;
            Ids {
                reason,
                kind,
                color_required: version.starts_with("22.10") || version.starts_with("4."),
            }
        };
        self.ids = Some(ids.clone());
        Ok(ids)
    }
}

pub(super) fn get_json(t: &mut dyn Transport, path: &str, right: &str) -> Result<Value, Outcome> {
    let resp = t
        .send(Request {
            method: Method::Get,
            path,
            body: b"",
        })
        .map_err(|e| Outcome::Retry {
            reason: e.to_string(),
            config_fault: false,
        })?;
    if !(200..=299).contains(&resp.status) {
        return Err(rights(&resp, right));
    }
    serde_json::from_str(&resp.body).map_err(|_| Outcome::Retry {
        reason: format!("GET {path}: answer is not JSON: {}", resp.snippet()),
        config_fault: true,
    })
}

/// Looks `name` up in a paginated list, page after page.
pub(super) fn find(
    t: &mut dyn Transport,
    route: &str,
    name: &str,
    right: &str,
) -> Result<Option<String>, Outcome> {
    let mut page = 1;
    loop {
        let path = format!("{route}?limit={PAGE}&page={page}");
        let v = get_json(t, &path, right)?;
        let data = v["data"].as_array().ok_or_else(|| Outcome::Retry {
            reason: format!("GET {path}: no 'data' list in the answer"),
            config_fault: true,
        })?;
        if let Some(item) = data.iter().find(|i| i["name"] == name) {
            return Ok(item["_id"].as_str().map(str::to_string));
        }
        let pages = v["meta"]["page_count"].as_u64().unwrap_or(1);
        if page >= pages || data.is_empty() {
            return Ok(None);
        }
        if page >= MAX_PAGES {
            return Err(Outcome::Retry {
                reason: format!(
                    "GET {route}: '{name}' not found in the first {MAX_PAGES} pages of {pages}"
                ),
                config_fault: true,
            });
        }
        page += 1;
    }
}

pub(super) fn create_reason(
    t: &mut dyn Transport,
    cfg: &DowntimeConfig,
) -> Result<String, Outcome> {
    let body = serde_json::to_vec(
        &json!({"name": cfg.reason_name, "description": "Activation Maintenance Centreon"}),
    )
    .expect("serializing plain data cannot fail");
    let resp = t
        .send(Request {
            method: Method::Post,
            path: &cfg.reason_route,
            body: &body,
        })
        .map_err(|e| Outcome::Retry {
            reason: e.to_string(),
            config_fault: false,
        })?;
    match resp.status {
        200..=299 => serde_json::from_str::<Value>(&resp.body)
            .ok()
            .and_then(|v| v["_id"].as_str().map(str::to_string))
            .ok_or_else(|| Outcome::Retry {
                reason: format!(
                    "created reason '{}' but the answer has no _id: {}",
                    cfg.reason_name,
                    resp.snippet()
                ),
                config_fault: true,
            }),
        // Created meanwhile by someone else: the next lookup finds it.
        400 if resp.body.contains("already exists") => Err(Outcome::Retry {
            reason: format!("reason '{}' was created concurrently", cfg.reason_name),
            config_fault: false,
        }),
        _ => Err(rights(
            &resp,
            "create on pbehavior reasons (api_pbehaviorreason)",
        )),
    }
}
