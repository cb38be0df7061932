//! Which names a template may use: the element keys of a `format_file`
//! ([`kind_of_key`]), each event's fields, and the cache's fields per
//! `{cache.<type>.<field>}` type; the host and service field lists custom
//! code sees too.
//!
//! Checked once, when templates compile, so a misspelt macro is named at
//! `init` rather than left verbatim in every event.

use super::CacheType;
use crate::event::ElementKind;

/// Broker element names (BBDO 2 and 3) of each category, for telling a
/// misspelt key from an element this connector never sends.
pub(super) const NEB_ELEMENTS: &[&str] = &[
    "comment",
    "custom_variable",
    "custom_variable_status",
    "event_handler",
    "flapping_status",
    "host_check",
    "host_dependency",
    "host_group",
    "host_group_member",
    "host",
    "host_parent",
    "instance",
    "instance_status",
    "log_entry",
    "module",
    "service_check",
    "service_dependency",
    "service_group",
    "service_group_member",
    "service",
    "instance_configuration",
    "responsive_instance",
    "pb_service",
    "pb_adaptive_service",
    "pb_host",
    "pb_adaptive_host",
    "pb_severity",
    "pb_tag",
    "pb_comment",
    "pb_custom_variable",
    "pb_custom_variable_status",
    "pb_host_check",
    "pb_service_check",
    "pb_log_entry",
    "pb_instance_status",
    "pb_instance",
    "pb_responsive_instance",
];

/// The kind a key such as `neb_host_status` names. The library splits it
/// at the first `_` and looks the element up whatever the category, so
/// `neb_ba_status` lands in the acknowledgement slot there; here category
/// and element must agree.
pub(super) fn kind_of_key(key: &str) -> Result<ElementKind, String> {
    let split = key
        .find('_')
        .filter(|&i| i > 0 && key[..i].bytes().all(|b| b.is_ascii_alphanumeric()));
    let Some(i) = split else {
        return Err(
            "not a template key (expected <category>_<element>, such as neb_host_status): ignored"
                .into(),
        );
    };
    let (cat, el) = (&key[..i], &key[i + 1..]);
    let el = el.strip_prefix("pb_").unwrap_or(el);
    match (cat, el) {
        ("neb", "host_status") => Ok(ElementKind::HostStatus),
        ("neb", "service_status") => Ok(ElementKind::ServiceStatus),
        ("neb", "acknowledgement") => Ok(ElementKind::Acknowledgement),
        ("neb", "downtime") => Ok(ElementKind::Downtime),
        ("bam", "ba_status") => Ok(ElementKind::BaStatus),
        ("neb", "ba_status") => Err("ba_status is a bam event: write bam_ba_status: ignored".into()),
        ("neb", _) if NEB_ELEMENTS.contains(&&key[i + 1..]) => Err(format!(
            "this connector does not send {} events (it sends host_status, service_status, acknowledgement, downtime and bam ba_status): ignored",
            &key[i + 1..]
        )),
        ("neb", _) => Err(format!("unknown neb element '{}': ignored", &key[i + 1..])),
        ("bam", _) => Err("the only bam events this connector sends are ba_status: ignored".into()),
        ("storage", _) => Err("storage events (metrics) are not sent to Canopsis: ignored".into()),
        _ => Err(format!("unknown category '{cat}' (neb or bam): ignored")),
    }
}

/// Fields an event of each kind may carry (BBDO 2 and 3), plus the ones
/// the library adds, so a misspelt macro is reported at `init`.
pub(super) fn known_event_field(kind: ElementKind, name: &str) -> bool {
    const COMMON: &[&str] = &[
        "category",
        "element",
        "_type",
        "state",
        "current_state",
        "host_id",
        "service_id",
    ];
    const STATUS: &[&str] = &[
        "acknowledged",
        "acknowledgement_type",
        "active_checks",
        "check_interval",
        "check_period",
        "check_type",
        "check_attempt",
        "scheduled_downtime_depth",
        "downtime_depth",
        "enabled",
        "event_handler",
        "event_handler_enabled",
        "execution_time",
        "flap_detection",
        "checked",
        "flapping",
        "last_check",
        "last_hard_state",
        "last_hard_state_change",
        "last_notification",
        "last_state_change",
        "last_time_down",
        "last_time_unreachable",
        "last_time_up",
        "last_time_ok",
        "last_time_warning",
        "last_time_critical",
        "last_time_unknown",
        "last_update",
        "latency",
        "max_check_attempts",
        "next_check",
        "next_host_notification",
        "next_notification",
        "no_more_notifications",
        "notification_number",
        "notify",
        "obsess_over_host",
        "obsess_over_service",
        "passive_checks",
        "percent_state_change",
        "retry_interval",
        "should_be_scheduled",
        "state_type",
        "check_command",
        "output",
        "long_output",
        "short_output",
        "perfdata",
        "type",
        "internal_id",
    ];
    const ACK: &[&str] = &[
        "acknowledgement_type",
        "author",
        "comment_data",
        "deletion_time",
        "entry_time",
        "instance_id",
        "is_sticky",
        "sticky",
        "notify_contacts",
        "persistent_comment",
        "notify_only_if_not_already_acknowledged",
        "type",
        "id",
    ];
    const DOWNTIME: &[&str] = &[
        "actual_end_time",
        "actual_start_time",
        "author",
        "cancelled",
        "comment_data",
        "deletion_time",
        "duration",
        "end_time",
        "entry_time",
        "fixed",
        "instance_id",
        "internal_id",
        "id",
        "start_time",
        "triggered_by",
        "type",
        "started",
        "is_recurring",
        "recurring_timeperiod",
    ];
    const BA: &[&str] = &[
        "ba_id",
        "in_downtime",
        "last_state_change",
        "level_acknowledgement",
        "level_downtime",
        "level_nominal",
        "state_changed",
        "output",
    ];
    COMMON.contains(&name)
        || match kind {
            ElementKind::HostStatus | ElementKind::ServiceStatus => STATUS.contains(&name),
            ElementKind::Acknowledgement => ACK.contains(&name),
            ElementKind::Downtime => DOWNTIME.contains(&name),
            ElementKind::BaStatus => BA.contains(&name),
        }
}

/// Fields of broker's cached hosts (`pb_host`), besides the `default_*`,
/// `notify_on_*`, `stalk_on_*`, `freshness*` and `retain_*` families.
pub const HOST_FIELDS: &[&str] = &[
    "host_id",
    "name",
    "alias",
    "address",
    "display_name",
    "instance_id",
    "state",
    "state_type",
    "check_attempt",
    "max_check_attempts",
    "output",
    "perfdata",
    "last_check",
    "last_state_change",
    "last_hard_state",
    "last_hard_state_change",
    "last_time_up",
    "last_time_down",
    "last_time_unreachable",
    "last_update",
    "last_notification",
    "next_check",
    "next_host_notification",
    "latency",
    "execution_time",
    "percent_state_change",
    "scheduled_downtime_depth",
    "acknowledged",
    "acknowledgement_type",
    "flapping",
    "checked",
    "check_type",
    "check_command",
    "check_interval",
    "check_period",
    "retry_interval",
    "enabled",
    "active_checks",
    "passive_checks",
    "notify",
    "notes",
    "notes_url",
    "action_url",
    "icon_image",
    "icon_image_alt",
    "icon_id",
    "statusmap_image",
    "timezone",
    "severity_id",
    "tags",
    "obsess_over_host",
    "should_be_scheduled",
    "no_more_notifications",
    "notification_number",
    "notification_interval",
    "notification_period",
    "first_notification_delay",
    "event_handler",
    "event_handler_enabled",
    "flap_detection",
    "low_flap_threshold",
    "high_flap_threshold",
    "freshness_threshold",
    "check_freshness",
];

/// Fields a cached service (`pb_service`) has besides the host's (but for
/// `name`, `alias`, `address` and `instance_id`).
pub const SERVICE_FIELDS: &[&str] = &[
    "service_id",
    "description",
    "host_name",
    "long_output",
    "last_time_ok",
    "last_time_warning",
    "last_time_critical",
    "last_time_unknown",
    "next_notification",
    "is_volatile",
    "obsess_over_service",
    "type",
    "internal_id",
];

/// Fields of broker's cached hosts and services (`pb_host`, `pb_service`).
pub(super) fn known_cache_field(ty: CacheType, name: &str) -> bool {
    const HOST: &[&str] = HOST_FIELDS;
    const SERVICE: &[&str] = SERVICE_FIELDS;
    let prefixed = [
        "default_",
        "flap_detection",
        "notify_on_",
        "stalk_on_",
        "freshness",
        "retain_",
    ]
    .iter()
    .any(|p| name.starts_with(p));
    match ty {
        CacheType::Host => HOST.contains(&name) || prefixed,
        CacheType::Service => {
            (HOST.contains(&name) && !matches!(name, "name" | "alias" | "address" | "instance_id"))
                || SERVICE.contains(&name)
                || prefixed
        }
        CacheType::Instance => matches!(name, "id" | "name"),
        CacheType::Severity => matches!(name, "host" | "service"),
        CacheType::Ba => matches!(name, "ba_id" | "ba_name" | "ba_description"),
    }
}
