//! When a HARD status is news for Canopsis although the engine's stamps
//! say it only repeats a change (`enable_*_status_dedup`).
//!
//! Dedup's stamp rule ([`crate::dedup::reports_change`]) sends a state on
//! the status where the engine stamped its change. Two kinds of state never
//! get such a status, and Canopsis would keep an old state (or none) until
//! the object's next change:
//!
//! - an object's first state: at engine start a host's first HARD status
//!   carries `last_hard_state_change = 0` (it never changed), and its stamp
//!   comes one check later, or never within the window;
//! - a change hidden by a downtime, an acknowledgement or flapping (with
//!   `in_downtime=0`, `acknowledged=0`, `flapping=0`): its stamped status was
//!   filtered, and the status the engine sends the moment the downtime ends
//!   or the acknowledgement goes (`scheduled_downtime_depth` or
//!   `acknowledgement_type` back to 0) repeats the stamp.
//!
//! Both are the same question, answered by the connector's memory of what
//! it sent ([`Sent`], kept across restarts in `.sent-states`): a HARD status
//! whose state differs from the state last sent for its object, or of an
//! object never sent, is news. It then goes through every other filter as
//! any status does, and once sent it is the state last sent, so it is sent
//! once. With dedup off every HARD status that passes the filters is sent
//! anyway, so there is nothing to add.

use crate::dedup::Sent;
use crate::event::StatusEvent;

/// Whether the HARD status `s` (of a service when `service`) tells
/// Canopsis a state it was not last sent for its object.
pub fn is_news(sent: &Sent, s: &StatusEvent, service: bool) -> bool {
    let (Some(host), Some(1)) = (s.host_id, s.state_type) else {
        return false;
    };
    let object = match (service, s.service_id) {
        (false, _) => (host, 0),
        (true, Some(id)) if id != 0 => (host, id),
        _ => return false,
    };
    match sent.last(object) {
        None => true,
        Some((_, state, state_type)) => (state, state_type) != (s.state.unwrap_or(-1), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hard(state: i64, stamp: i64, checked: i64) -> StatusEvent {
        StatusEvent {
            host_id: Some(3),
            service_id: Some(9),
            state: Some(state),
            state_type: Some(1),
            last_hard_state_change: Some(stamp).filter(|t| *t > 0),
            last_check: Some(checked),
            ..StatusEvent::default()
        }
    }

    #[test]
    fn a_first_state_then_only_what_differs_from_the_state_sent() {
        let mut sent = Sent::default();
        // Never sent: the first HARD status is news, stamped or not.
        let first = hard(0, 0, 100);
        assert!(is_news(&sent, &first, true));
        sent.queued(&first, true).unwrap();
        assert!(!is_news(&sent, &hard(0, 0, 115), true));
        // The engine stamps that first state later: the same report.
        let stamped = hard(0, 101, 130);
        assert!(!is_news(&sent, &stamped, true));
        assert!(sent.queued(&stamped, true).is_err(), "not sent twice");
        // A change hidden by a downtime: its later repeats are news until
        // one of them is sent.
        let hidden = hard(2, 140, 150);
        assert!(is_news(&sent, &hidden, true));
        sent.queued(&hidden, true).unwrap();
        assert!(!is_news(&sent, &hard(2, 140, 160), true));
        // SOFT statuses never are; a host is apart from its services.
        let mut soft = hard(1, 140, 170);
        soft.state_type = Some(0);
        assert!(!is_news(&sent, &soft, true));
        assert!(is_news(&sent, &hard(2, 140, 150), false));
        let mut anonymous = hard(2, 140, 150);
        anonymous.service_id = None;
        assert!(!is_news(&sent, &anonymous, true));
    }

    /// Reads `s` through a screen knowing `sent`, as the Lua readers do:
    /// its rejection, if any.
    fn screened(sent: &Sent, s: &StatusEvent) -> Option<crate::rejection::Rejection> {
        use crate::event::{ElementKind, Field, StatusBuilder};
        let c = crate::config::parse(&crate::config::tests::minimal())
            .unwrap()
            .config;
        let kind = ElementKind::ServiceStatus;
        let screen = crate::filter::Screen::new(&c.filter, kind).knowing(sent);
        let mut b = StatusBuilder::new(kind, Some(29));
        let int = |v: Option<i64>| v.map(Field::Int);
        while let Some((i, name)) = b.next_field() {
            let v = match name {
                "state_type" => int(s.state_type),
                "state" => int(s.state),
                "last_check" => int(s.last_check),
                "last_hard_state_change" => int(s.last_hard_state_change),
                "host_id" => int(s.host_id.map(|h| h as i64)),
                "service_id" => int(s.service_id.map(|h| h as i64)),
                "scheduled_downtime_depth" => Some(Field::Int(s.downtime_depth)),
                _ => None,
            };
            b.set(i, v).unwrap();
            if let Some(why) = screen.after(i, &b) {
                return Some(why);
            }
        }
        None
    }

    #[test]
    fn the_screen_lets_news_through_once_the_object_is_read_and_check_agrees() {
        use crate::filter::Verdicts;
        use crate::rejection::Rejection;
        let c = crate::config::parse(&crate::config::tests::minimal())
            .unwrap()
            .config;
        let check = |sent: &Sent, s: &StatusEvent| {
            Verdicts::default()
                .check_status(
                    &c.filter,
                    &c.format,
                    &crate::event::NebEvent::Service(s.clone()),
                    &mut crate::cache::Memo::default(),
                    &mut crate::filter::tests::cache(),
                    std::time::Instant::now(),
                    sent,
                )
                .map(|_| ())
        };
        let mut sent = Sent::default();
        let mut s = hard(0, 0, 100);
        s.host_id = Some(12);
        s.service_id = Some(34);
        // Never sent: news, although unstamped.
        assert_eq!(screened(&sent, &s), None);
        assert_eq!(check(&sent, &s), Ok(()));
        sent.queued(&s, true).unwrap();
        // Sent: a repeat, stopped once its service id is read.
        let again = StatusEvent {
            last_check: Some(115),
            ..s.clone()
        };
        assert!(matches!(
            screened(&sent, &again),
            Some(Rejection::Duplicate(_))
        ));
        assert!(matches!(check(&sent, &again), Err(Rejection::Duplicate(_))));
        // CRITICAL since a downtime, which just ended: news.
        let after = StatusEvent {
            state: Some(2),
            last_hard_state_change: Some(140),
            last_check: Some(150),
            ..s.clone()
        };
        assert_eq!(screened(&sent, &after), None);
        assert_eq!(check(&sent, &after), Ok(()));
        // Still in downtime: refused all the same.
        let hidden = StatusEvent {
            downtime_depth: 1,
            ..after.clone()
        };
        assert_eq!(screened(&sent, &hidden), Some(Rejection::InDowntime));
        assert_eq!(check(&sent, &hidden), Err(Rejection::InDowntime));
    }
}
