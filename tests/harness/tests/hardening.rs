//! Faults real deployments meet: reverse proxies answering instead of
//! Canopsis, redirects, proxies refusing credentials, a Canopsis that hangs
//! while broker reloads or stops, events the host cannot hand over.

use canopsis_harness::broker::{Muxer, Output, Param};
use canopsis_harness::events::{Bbdo, Status};
use canopsis_harness::mock::{Foreign, MockCanopsis};
use canopsis_harness::{drain, run_for, Lab};
use mlua::{Lua, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

const T: i64 = 1_700_000_000;

fn statuses(n: i64) -> Muxer {
    let mut mux = Muxer::new();
    for i in 0..n {
        mux.push(Status::service(12, 34, i % 3, T + i).event(Bbdo::V3));
    }
    mux
}

fn event_posts(mock: &MockCanopsis) -> usize {
    mock.state()
        .requests
        .iter()
        .filter(|r| r.path == "/api/v4/event")
        .count()
}

#[test]
fn a_redirect_is_never_followed_and_the_key_stays_home() {
    let lab = Lab::new("redirect");
    let elsewhere = MockCanopsis::start();
    {
        let mut st = lab.mock.state();
        for _ in 0..5 {
            st.foreign.push_back(Foreign {
                status: 301,
                headers: vec![(
                    "Location".into(),
                    format!(
                        "http://127.0.0.1:{}/api/v4/event?token=abc",
                        elsewhere.port()
                    ),
                )],
                body: String::new(),
            });
        }
    }
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    let mut mux = statuses(5);
    run_for(&mut out, &mut mux, Duration::from_millis(1500));
    assert_eq!(mux.acked, 0, "acknowledged what Canopsis never took");
    assert!(
        elsewhere.state().requests.is_empty(),
        "the redirect was followed: {:?}",
        elsewhere.state().requests
    );
    out.close();
    let log = lab.log();
    assert!(
        log.contains(&format!(
            "HTTP 301 redirect to http://127.0.0.1:{}",
            elsewhere.port()
        )),
        "{log}"
    );
    assert!(!log.contains("token=abc"), "only the host is logged");
    assert!(!log.contains(&lab.mock.authkey()), "key in the log");
}

#[test]
fn an_html_refusal_is_a_configuration_fault_not_a_dead_letter() {
    let lab = Lab::new("html-400");
    {
        let mut st = lab.mock.state();
        for _ in 0..40 {
            st.foreign.push_back(Foreign {
                status: 400,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n</body>\r\n</html>\r\n".into(),
            });
        }
    }
    let mut out = lab.open(lab.params(&[("max_buffer_size", Param::Num(8))]), Bbdo::V3);
    let mut mux = statuses(8);
    run_for(&mut out, &mut mux, Duration::from_millis(1500));
    assert_eq!(mux.acked, 0);
    assert!(event_posts(&lab.mock) <= 2, "split a batch a proxy refused");
    out.close();
    assert!(!lab.dir.join("canopsis.deadletter.jsonl").exists());
    let log = lab.log();
    assert!(log.contains("configuration problem"), "{log}");
    assert!(log.contains("set sending_protocol=https"), "{log}");
    assert!(log.contains("dead_lettered=0"), "{log}");
    assert!(!log.contains("\n<"), "server text spread over lines: {log}");
}

/// An HTTP proxy that refuses every CONNECT with 407.
fn refusing_proxy() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"lan\"\r\nContent-Length: 0\r\n\r\n",
            );
        }
    });
    port
}

#[test]
fn a_proxy_refusing_credentials_on_connect_is_named_as_such() {
    let lab = Lab::new("proxy-407");
    let proxy = refusing_proxy();
    let mut out = lab.open(
        lab.params(&[
            ("sending_protocol", Param::Str("https".into())),
            ("proxy_address", Param::Str("127.0.0.1".into())),
            ("proxy_port", Param::Num(proxy as i32)),
            ("proxy_username", Param::Str("bob".into())),
            ("proxy_password", Param::Str("pr0xy-s3cret".into())),
        ]),
        Bbdo::V3,
    );
    let mut mux = statuses(2);
    run_for(&mut out, &mut mux, Duration::from_millis(800));
    assert_eq!(mux.acked, 0);
    out.close();
    let log = lab.log();
    assert!(
        log.contains("the proxy refused proxy_username/proxy_password"),
        "{log}"
    );
    assert!(!log.contains("pr0xy-s3cret"), "proxy password in the log");
}

fn spool_params(lab: &Lab) -> Vec<(String, Param)> {
    lab.params(&[
        ("use_spool", Param::Num(1)),
        (
            "spool_directory",
            Param::Str(lab.dir.join("spool").display().to_string()),
        ),
    ])
}

#[test]
fn a_reload_while_canopsis_hangs_acknowledges_again_within_two_seconds() {
    let lab = Lab::new("reload-hang");
    lab.mock.state().hang = true;
    let mut out = lab.open(spool_params(&lab), Bbdo::V3);
    let mut mux = statuses(10);
    assert!(
        drain(&mut out, &mut mux, Duration::from_secs(5)),
        "spooled events are acknowledged"
    );
    // The sender now waits on a request Canopsis never answers.
    std::thread::sleep(Duration::from_millis(300));
    assert!(event_posts(&lab.mock) >= 1);
    let reload = Instant::now();
    out.close();
    let closed = reload.elapsed();
    let mut out = lab.open(spool_params(&lab), Bbdo::V3);
    let mut mux = statuses(3);
    let acked = drain(&mut out, &mut mux, Duration::from_secs(2));
    let total = reload.elapsed();
    assert!(
        acked,
        "the new state never acknowledged ({closed:?} to close): {}",
        lab.log()
    );
    assert!(
        total < Duration::from_millis(2500),
        "{closed:?} / {total:?}"
    );
    lab.mock.state().hang = false;
    out.close();
}

#[test]
fn three_outputs_stop_far_within_cbwd_patience_when_canopsis_hangs() {
    let lab = Lab::new("three-hang");
    lab.mock.state().hang = true;
    let mut outs: Vec<(Output, Muxer)> = (0..3)
        .map(|i| {
            let params = lab.params(&[(
                "logfile",
                Param::Str(lab.dir.join(format!("out{i}.log")).display().to_string()),
            )]);
            (lab.open(params, Bbdo::V3), statuses(20))
        })
        .collect();
    for (out, mux) in &mut outs {
        run_for(out, mux, Duration::from_millis(300));
        assert_eq!(mux.acked, 0);
    }
    let stop = Instant::now();
    for (out, _) in outs {
        out.close();
    }
    let took = stop.elapsed();
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    lab.mock.state().hang = false;
}

/// A service status whose `state` field raises through `__index` what
/// `raise` says (Lua code).
fn poisoned(lua: &Lua, raise: &str) -> mlua::Result<Value> {
    let ev = Status::service(12, 34, 2, T).event(Bbdo::V3);
    let t = lua.create_table()?;
    t.raw_set("_type", ev.type_id as i64)?;
    t.raw_set("category", ev.category() as i64)?;
    t.raw_set("element", ev.element() as i64)?;
    t.raw_set("state_type", 1)?;
    let mt = lua.create_table()?;
    let index = lua
        .load(format!("return function(t, k) {raise} end"))
        .eval::<mlua::Function>()?;
    mt.raw_set("__index", index)?;
    t.set_metatable(Some(mt))?;
    Ok(Value::Table(t))
}

#[test]
fn events_the_host_cannot_hand_over_are_never_acknowledged() {
    let lab = Lab::new("read-errors");
    lab.use_api(1);
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    let (cat, el) = (1, 24);
    // Broker's own accessor error: logged, acknowledged with the others.
    assert_eq!(
        out.write_lua(cat, el, |lua| poisoned(lua, "error('no such field')")),
        1
    );
    // A stack overflow is nothing the event said.
    assert_eq!(
        out.write_lua(cat, el, |lua| poisoned(lua, "return t[k]")),
        0
    );
    // Neither is Lua running out of memory.
    out.lua()
        .set_memory_limit(out.lua().used_memory() + (8 << 20))
        .unwrap();
    assert_eq!(
        out.write_lua(cat, el, |lua| poisoned(
            lua,
            "return string.rep('x', 64 * 1024 * 1024)"
        )),
        0
    );
    out.lua().set_memory_limit(0).unwrap();
    // Broker's next `true` would acknowledge them: none comes.
    let mut mux = statuses(3);
    run_for(&mut out, &mut mux, Duration::from_millis(600));
    assert_eq!(mux.acked, 0, "unread events acknowledged");
    assert_eq!(lab.mock.state().events.len(), 3, "the others still go");
    out.close();
    let log = lab.log();
    assert!(log.contains("no such field"), "{log}");
    assert!(log.contains("cannot read an event"), "{log}");
    assert!(log.contains("out of memory"), "{log}");
    assert!(log.contains("read_errors=2"), "{log}");
    assert!(log.contains("state=holding"), "{log}");
}

#[test]
fn a_numeric_error_under_memory_pressure_does_not_wedge_the_output() {
    let lab = Lab::new("numeric-error");
    lab.use_api(1);
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    let (cat, el) = (1, 24);
    // The accessor starves Lua of memory, then raises a number: turning
    // that number into text would need memory the state no longer has.
    let starve = out
        .lua()
        .create_function(|lua, ()| lua.set_memory_limit(1).map(|_| ()))
        .unwrap();
    out.lua().globals().set("starve", starve).unwrap();
    let acked = out.write_lua(cat, el, |lua| poisoned(lua, "starve() error(1.5)"));
    out.lua().set_memory_limit(0).unwrap();
    assert_eq!(acked, 1, "{:?} {}", out.broker_log.borrow(), lab.log());
    let mut mux = statuses(2);
    assert!(
        drain(&mut out, &mut mux, Duration::from_secs(5)),
        "the output no longer acknowledges: {:?}",
        out.broker_log.borrow()
    );
    out.close();
    assert!(lab.log().contains("cannot read event: 1.5"));
}

#[test]
fn oversized_and_multiline_answers_stay_out_of_memory_and_on_one_line() {
    let lab = Lab::new("big-answer");
    {
        let mut st = lab.mock.state();
        st.foreign.push_back(Foreign {
            status: 200,
            headers: vec![],
            body: "x".repeat(12 << 20),
        });
        st.foreign.push_back(Foreign {
            status: 502,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: format!(
                "<html>\n<h1>502 Bad Gateway</h1>\n{}\n</html>\n",
                "upstream trace line\n".repeat(100)
            ),
        });
    }
    let mut out = lab.open(lab.params(&[]), Bbdo::V3);
    let mut mux = statuses(3);
    assert!(drain(&mut out, &mut mux, Duration::from_secs(10)));
    out.close();
    let log = lab.log();
    assert!(log.contains("answer larger than 8 MiB"), "{log}");
    assert!(
        log.contains("HTTP 502: <html>\\n<h1>502 Bad Gateway"),
        "{log}"
    );
    assert!(!log.contains("\nupstream trace line"), "{log}");
    assert!(log.lines().all(|l| l.len() < 2000), "a line is too long");
}
